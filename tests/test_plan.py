"""Reading plans, ticking boxes, writing notes, and writing the file safely."""

from __future__ import annotations

import os
import re
import socket
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ralph.errors import PlanError
from ralph.plan import (
    MAX_PLAN_BYTES,
    Plan,
    Step,
    add_note,
    load_plan,
    parse_plan,
    tick,
    write_atomic,
)
from tests.test_github_parity import markdown_documents, nested_task_plan

FIXTURES = Path(__file__).parent / "fixtures" / "plans"
ENDINGS = re.compile(rb"\r\n|\r|\n")


def parse(text: str | bytes) -> Plan:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return parse_plan(data, Path("plan.md"))


def fixture(name: str) -> Plan:
    return load_plan(FIXTURES / name)


def shape(step: Step) -> tuple[object, ...]:
    """Everything about a step that a note must leave as it was."""
    return (
        step.number,
        step.done,
        step.title,
        step.body,
        step.verify,
        step.phase,
        step.depth,
        step.parent,
        step.children,
    )


# Reading


def test_nested_groups_have_numbers_parents_and_children() -> None:
    plan = fixture("nested-groups.md")

    tree = [(s.number, s.title, s.depth, s.parent, s.children) for s in plan.steps]
    assert tree[:7] == [
        (1, "Create the package", 0, None, ()),
        (2, "Write the core", 0, None, (3, 4, 7)),
        (3, "Parser", 1, 2, ()),
        (4, "Printer", 1, 2, (5, 6)),
        (5, "Print numbers", 2, 4, ()),
        (6, "Print lists", 2, 4, ()),
        (7, "Round trip", 1, 2, ()),
    ]
    assert plan.step(10).parent == 9
    assert [s.phase for s in plan.steps] == ["Setup"] * 7 + ["Release"] * 4


def test_title_context_and_front_matter() -> None:
    plan = fixture("nested-groups.md")

    assert plan.title == "Nested groups"
    assert plan.context == (
        "Work through a small library in three layers.\nEvery step runs the tests."
    )
    assert plan.front == {"engine": "shell", "max_attempts": 2}
    assert plan.front_lines == {("engine",): 2, ("max_attempts",): 3}


def test_setext_title_and_phases() -> None:
    plan = fixture("tables-setext.md")

    assert plan.title == "Tables and setext headings"
    assert [s.phase for s in plan.steps] == ["First phase"] * 3 + ["Second phase"] * 2
    assert plan.step(4).body == "| a | b |\n| - | - |\n| [ ] | cell |"
    assert plan.step(5).body == "lazy continuation of its title paragraph"


def test_body_leaves_out_child_steps_and_keeps_plain_bullets() -> None:
    plan = fixture("nested-groups.md")

    assert plan.step(2).body == "The core holds the parser and the printer."
    assert plan.step(6).body == (
        "Details about lists, with a plain sub-bullet:\n- keep the order"
    )
    assert plan.step(4).body == ""


def test_crlf_plan_offsets_point_at_the_box() -> None:
    plan = fixture("crlf-windows.md")

    assert [plan.data[s.offset : s.offset + 1] for s in plan.steps] == [
        b" ", b"x", b" ", b" ", b" ", b" ", b"X"
    ]  # fmt: skip
    assert plan.step(1).body == "Details of the first step.\nVerify: `dir`"
    assert "\r" not in plan.context + plan.step(1).body


def test_bom_and_tabs_count_in_bytes_and_columns() -> None:
    plan = fixture("bom-tabs-unicode.md")

    assert plan.data.startswith(b"\xef\xbb\xbf")
    assert all(
        plan.data[s.offset - 1 : s.offset + 2] in (b"[ ]", b"[x]") for s in plan.steps
    )
    assert plan.step(1).title == "Première étape — café ☕"
    assert plan.step(1).body == "Détails avec une tabulation."
    assert plan.step(2).parent == 1
    assert plan.step(4).title == "Titre après une tabulation"
    assert plan.front["ralph"] == {"model": "claude-sonnet-4-6"}


def test_only_rendered_boxes_are_steps() -> None:
    plan = fixture("code-quotes-html.md")

    assert [s.title for s in plan.steps] == [
        "A real step",
        "Another real step",
        "The last real step, mentioning `[ ]` in passing",
    ]


def test_notes_are_read_back_without_their_quote_marks() -> None:
    plan = fixture("notes-written.md")

    assert plan.step(1).notes == (
        "did the thing\nand left a second line\n\n- an escaped dash line",
    )
    assert plan.step(2).notes == ()
    assert "a plain quote" in plan.step(2).body
    assert plan.step(3).notes == ("blocked: needs a key",)
    assert plan.step(3).body == ""


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("Verify: `pytest -q tests/test_a.py`", "pytest -q tests/test_a.py"),
        ("Verify: make check", "make check"),
        ("verify: ``echo `x` ``", "echo `x`"),
        ("**Verify:** `npm test`", "npm test"),
        ("**Verify**: `cargo test`", "cargo test"),
        ("- Verify: `go test ./...`", "go test ./..."),
        ("Verify:", None),
        ("Verify the output by hand", None),
        ("Please Verify: `no`", None),
    ],
)
def test_verify_line_in_the_body(line: str, command: str | None) -> None:
    plan = parse(f"- [ ] Step\n  Some details.\n  {line}\n")

    assert plan.step(1).verify == command


def test_verify_in_a_code_block_or_a_child_step_is_not_the_steps() -> None:
    plan = parse(
        "- [ ] Parent\n  ```\n  Verify: `in code`\n  ```\n"
        "  - [ ] Child\n    Verify: `child only`\n"
    )

    assert plan.step(1).verify is None
    assert plan.step(2).verify == "child only"


def test_no_steps_and_no_title() -> None:
    plan = parse("just text\n\n- a plain list\n")

    assert plan.steps == ()
    assert plan.title is None
    assert plan.context == "just text\n\n- a plain list"
    assert plan.next_step() is None
    assert plan.is_complete()


def test_asking_for_a_missing_step_says_which_exist() -> None:
    with pytest.raises(PlanError, match="numbered 1 to 11"):
        fixture("nested-groups.md").step(12)


def test_twelve_levels_of_steps_are_twelve_steps() -> None:
    plan = parse(nested_task_plan(12))

    assert [s.title for s in plan.steps] == [f"d{depth}" for depth in range(12)]
    assert [s.depth for s in plan.steps] == list(range(12))
    assert plan.step(9).body == "```sh\necho 8\n```"
    assert plan.next_step() == plan.step(12)


def test_steps_nested_deeper_than_ralph_reads_are_an_error() -> None:
    with pytest.raises(PlanError) as caught:
        parse("# Plan\n\n" + nested_task_plan(50))

    # The 50th list's item, on line 2 + 4 * 49 + 1, is the first left unread.
    assert caught.value.message.startswith(
        "plan.md:199: the plan nests lists and quotes deeper than ralph reads "
        "(more than 49 lists, or 99 quotes, one inside another); move the deeper "
        "steps up a level"
    )
    assert caught.value.exit_code == 2


def test_quotes_nested_deeper_than_ralph_reads_are_an_error() -> None:
    assert len(parse(">" * 99 + " deep\n- [ ] step\n").steps) == 1
    with pytest.raises(PlanError, match="plan.md:3: .* deeper than ralph reads"):
        parse("- [ ] step\n\n" + ">" * 100 + " deeper\n")


# Order


def test_next_step_goes_depth_first_and_groups_wait_for_children() -> None:
    plan = fixture("nested-groups.md")
    order = []
    while (step := plan.next_step()) is not None:
        order.append(step.number)
        plan = parse(tick(plan.data, step))

    # 10 sits under ticked step 9, so it is done with it; 2 and 4 are groups.
    assert order == [5, 6, 4, 7, 2, 8, 11]
    assert plan.is_complete()
    assert not plan.step(10).done


def test_a_ticked_group_is_done_with_everything_under_it() -> None:
    plan = parse("- [x] Group\n  - [ ] Left open\n    - [ ] Deeper\n- [ ] Next\n")

    assert plan.next_step() == plan.step(4)


def test_an_open_group_with_all_children_done_is_next() -> None:
    plan = parse("- [ ] Group\n  - [x] One\n  - [x] Two\n- [ ] Later\n")

    assert plan.next_step() == plan.step(1)
    assert not plan.is_complete()


# Ticking


def test_tick_changes_one_byte_and_keeps_crlf() -> None:
    plan = fixture("crlf-windows.md")

    ticked = tick(plan.data, plan.step(3))

    assert len(ticked) == len(plan.data)
    assert [i for i in range(len(ticked)) if ticked[i] != plan.data[i]] == [
        plan.step(3).offset
    ]
    assert parse(ticked).step(3).done


def test_tick_refuses_a_done_step_and_a_stale_one() -> None:
    plan = parse("- [x] Done\n- [ ] Open\n")

    with pytest.raises(PlanError, match="already done"):
        tick(plan.data, plan.step(1))
    with pytest.raises(PlanError, match="read it again"):
        tick(b"- [ ] Moved\n" + plan.data, plan.step(2))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markdown_documents(with_steps=True), st.data())
def test_ticking_any_open_step_changes_one_byte(text: str, data: st.DataObject) -> None:
    plan = parse(text)
    open_steps = [s for s in plan.steps if not s.done]
    assume(open_steps)
    step = data.draw(st.sampled_from(open_steps))

    ticked = tick(plan.data, step)
    after = parse(ticked)

    assert len(ticked) == len(plan.data)
    assert sum(a != b for a, b in zip(ticked, plan.data, strict=True)) == 1
    expected = [(s.number, s.line, s.offset, s.title, s.done) for s in plan.steps]
    expected[step.number - 1] = (*expected[step.number - 1][:4], True)
    assert [
        (s.number, s.line, s.offset, s.title, s.done) for s in after.steps
    ] == expected


# Notes


def test_note_goes_after_the_details_in_the_steps_indentation() -> None:
    plan = parse("- [ ] Parent\n  Details.\n  - [ ] Child\n- [ ] Next\n")

    data = add_note(plan.data, plan.step(1), "did it\n\nsecond paragraph")

    assert data == (
        b"- [ ] Parent\n  Details.\n"
        b"  > ralph: did it\n  >\n  > second paragraph\n"
        b"  - [ ] Child\n- [ ] Next\n"
    )
    assert parse(data).step(1).notes == ("did it\n\nsecond paragraph",)


def test_note_in_a_crlf_plan_uses_crlf() -> None:
    plan = fixture("crlf-windows.md")

    data = add_note(plan.data, plan.step(1), "done:\nall good")

    assert b"Verify: `dir`\r\n  > ralph: done:\r\n  > all good\r\n- [x]" in data
    assert not re.search(rb"[^\r]\n", data)
    assert parse(data).step(1).notes == ("done:\nall good",)


def test_note_lines_that_look_like_markdown_are_escaped() -> None:
    plan = parse("1. [ ] Step\n2. [ ] Next\n")
    text = "- [ ] not a step\n# not a heading\n```\n<div>\n3. no list\n\\ kept"

    data = add_note(plan.data, plan.step(1), text)
    after = parse(data)

    assert [s.title for s in after.steps] == ["Step", "Next"]
    assert after.step(1).notes == (text,)
    assert b"   > ralph: - [ ] not a step\n   > \\# not a heading\n" in data


def test_second_note_stays_a_separate_note() -> None:
    plan = parse("- [ ] Step\n- [ ] Next\n")

    once = add_note(plan.data, plan.step(1), "first")
    twice = add_note(once, parse(once).step(1), "second")

    assert parse(twice).step(1).notes == ("first", "second")
    assert [s.title for s in parse(twice).steps] == ["Step", "Next"]


def test_note_on_the_last_line_without_a_final_newline() -> None:
    plan = parse("# T\r\n\r\n- [ ] Only step")

    data = add_note(plan.data, plan.step(1), "done")

    assert data == b"# T\r\n\r\n- [ ] Only step\r\n  > ralph: done"


def test_note_after_a_closed_fence_does_not_swallow_what_follows() -> None:
    plan = parse("- [ ] Step\n  ```\n  code\n  ```\nA paragraph after the list.\n")

    data = add_note(plan.data, plan.step(1), "done")

    assert parse(data).step(1).notes == ("done",)
    assert data.endswith(b"  > ralph: done\n  >\nA paragraph after the list.\n")


def test_note_under_a_step_whose_details_never_close_a_fence() -> None:
    plan = parse("- [ ] Step\n  ```\n  code that runs to the end\n")

    data = add_note(plan.data, plan.step(1), "blocked: the fence is open")

    assert parse(data).step(1).notes == ("blocked: the fence is open",)
    assert data.startswith(b"- [ ] Step\n  > ralph: blocked: the fence is open\n")


def test_note_needs_text_and_a_current_step() -> None:
    plan = parse("- [ ] Step\n")

    with pytest.raises(ValueError, match="needs some text"):
        add_note(plan.data, plan.step(1), " \n\t\n")
    with pytest.raises(PlanError, match="read it again"):
        add_note(b"- [ ] Renamed\n", plan.step(1), "x")


_NOTE_TEXT = st.lists(
    st.text(alphabet="ab -*+#>=_~`<|:[]\\0123456789.)x\té!", max_size=12),
    min_size=1,
    max_size=4,
).map("\n".join)


def _normalized(text: str) -> str:
    lines = [line.rstrip(" \t") for line in text.split("\n")]
    return "\n".join(lines).strip("\n")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(markdown_documents(with_steps=True), _NOTE_TEXT, st.data())
def test_a_note_never_changes_the_steps(
    text: str, note: str, data: st.DataObject
) -> None:
    plan = parse(text)
    assume(plan.steps and _normalized(note))
    step = data.draw(st.sampled_from(plan.steps))

    noted = add_note(plan.data, step, note)
    after = parse(noted)

    assert [shape(s) for s in after.steps] == [shape(s) for s in plan.steps]
    assert after.step(step.number).notes == (*step.notes, _normalized(note))
    _assert_only_inserted(plan.data, noted, step)


def _assert_only_inserted(before: bytes, after: bytes, step: Step) -> None:
    """The old lines are all still there, around one run of new lines."""
    old, new = ENDINGS.split(before), ENDINGS.split(after)
    pairs = enumerate(zip(old, new, strict=False))
    first = next((i for i, (a, b) in pairs if a != b), len(old))
    count = len(new) - len(old)
    assert new[:first] + new[first + count :] == old
    if ENDINGS.findall(before):
        assert set(ENDINGS.findall(after)) == set(ENDINGS.findall(before))

    line = before[: step.offset].rsplit(b"\n", 1)[-1].rsplit(b"\r", 1)[-1]
    indent = re.sub(rb"[^ \t]", b" ", line[:-1].removeprefix(b"\xef\xbb\xbf"))
    for text in new[first : first + count]:
        assert not text.strip() or text.startswith(indent + b">")


# Writing


def test_write_atomic_replaces_the_file_and_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "plan.md"
    path.write_bytes(b"old")
    path.chmod(0o640)

    write_atomic(path, b"new\r\n")

    assert path.read_bytes() == b"new\r\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["plan.md"]


def test_write_atomic_writes_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.md"
    real.write_bytes(b"old")
    link = tmp_path / "plan.md"
    link.symlink_to(real)

    write_atomic(link, b"new")

    assert link.is_symlink()
    assert real.read_bytes() == b"new"


def test_write_atomic_creates_a_new_file(tmp_path: Path) -> None:
    write_atomic(tmp_path / "new.md", b"- [ ] x\n")

    assert (tmp_path / "new.md").read_bytes() == b"- [ ] x\n"
    assert stat.S_IMODE((tmp_path / "new.md").stat().st_mode) & 0o600 == 0o600


def test_write_atomic_leaves_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "plan.md"
    path.write_bytes(b"old")

    with pytest.raises(TypeError):
        write_atomic(path, "not bytes")  # type: ignore[arg-type]

    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["plan.md"]


# Loading


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"# Plan\n\x00\x01binary", r"plan.md:2: holds a NUL byte.*text file"),
        (
            b"# Plan\n\n- [ ] caf\xe9\n",
            r"plan.md:3: the plan is not valid UTF-8.*as UTF-8",
        ),
        (b"---\nengine: [shell\n---\n", r"plan.md:\d: .* not valid YAML.*fix it"),
        (b"---\ntitle: a\n  bad: indent\n---\n", r"plan.md:3: .*not valid YAML"),
        (b"---\n- a\n- b\n---\n", r"plan.md:2: .* is a list.*`key: value`"),
        (b"---\njust text\n---\n", r"plan.md:2: .* is a single value"),
        (
            b"---\nengine: shell\nmodel: m\nengine: shell\n---\n",
            r"plan.md:4: engine is set twice in the front matter, on lines 2 and 4; "
            "keep one of them",
        ),
        (
            b"---\nralph:\n  max_turns: 3\n  max_turns: 4\n---\n",
            r"plan.md:4: ralph.max_turns is set twice .* on lines 3 and 4",
        ),
        (b"---\nralph: {model: a, model: b}\n---\n", r"plan.md:2: .* on line 2;"),
        (b"---\ntags: " + b"[" * 5000 + b"\n---\n", r"plan.md:2: .* too deep"),
    ],
)
def test_load_plan_rejects_bad_files_saying_what_to_do(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "plan.md"
    path.write_bytes(content)

    with pytest.raises(PlanError, match=message) as caught:
        load_plan(path)

    assert caught.value.exit_code == 2


def test_load_plan_rejects_a_huge_file(tmp_path: Path) -> None:
    path = tmp_path / "plan.md"
    with path.open("wb") as handle:
        handle.truncate(MAX_PLAN_BYTES + 1)

    with pytest.raises(PlanError, match="more than a plan may have.*split it"):
        load_plan(path)


def test_load_plan_rejects_a_missing_file_and_a_directory(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="no such plan; check the path"):
        load_plan(tmp_path / "absent.md")
    with pytest.raises(PlanError, match="is a directory; pass the plan's markdown"):
        load_plan(tmp_path)


@pytest.mark.timeout(10)
def test_load_plan_refuses_a_fifo_without_waiting_for_a_writer(
    tmp_path: Path,
) -> None:
    path = tmp_path / "plan.md"
    os.mkfifo(path)

    with pytest.raises(PlanError, match=r"plan.md is a named pipe \(FIFO\), not a"):
        load_plan(path)


def test_load_plan_refuses_a_device_and_a_socket(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="is a character device, not a regular file"):
        load_plan(Path(os.devnull))

    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(tmp_path / "s"))
        with pytest.raises(PlanError, match="is a socket.*save the plan to a file"):
            load_plan(tmp_path / "s")


def test_front_matter_keys_may_repeat_in_other_mappings_and_by_merging() -> None:
    plan = parse(
        "---\nbase: &base\n  model: a\nralph:\n  <<: *base\n  model: b\n"
        "other:\n  model: c\nloop: &loop\n  self: *loop\n---\n- [ ] s\n"
    )

    assert plan.front["ralph"] == {"model": "b"}
    assert plan.front_lines[("ralph", "model")] == 6
    assert plan.front_lines[("loop", "self")] == 10


def test_front_matter_may_end_with_dots_and_may_be_empty() -> None:
    assert parse("---\nmodel: x\n...\n- [ ] s\n").front == {"model": "x"}
    assert parse("---\n---\n- [ ] s\n").front == {}
    assert parse("---\n\n---\n- [ ] s\n").steps[0].line == 4
