"""The tools an attempt's model calls: bash, the editor and finish_step."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ralph.config import Settings
from ralph.tools import EDITOR, FILE_LIMIT, Toolbox


@pytest.fixture
def box(repo: Path) -> Toolbox:
    return Toolbox(repo, Settings(command_timeout=10), dict(os.environ))


def edit(box: Toolbox, **input: object) -> tuple[str, bool]:
    result = box.run(EDITOR, input)
    return result.content, result.is_error


def test_definitions_are_the_client_tools_and_finish_step(box: Toolbox) -> None:
    tools = {tool["name"]: tool for tool in box.definitions()}
    assert tools["bash"] == {"type": "bash_20250124", "name": "bash"}
    assert tools[EDITOR]["type"] == "text_editor_20250728"
    schema = tools["finish_step"]["input_schema"]
    assert schema["required"] == ["status", "summary"]
    assert schema["properties"]["status"]["enum"] == ["done", "blocked"]


def test_unknown_tool_is_an_error_result(box: Toolbox) -> None:
    result = box.run("browser", {"url": "x"})
    assert result.is_error
    assert "unknown tool `browser`" in result.content


@pytest.mark.parametrize(
    ("name", "input", "expected"),
    [
        ("bash", {"command": 5}, "5 is not of type 'string'"),
        ("bash", "ls", "is not of type 'object'"),
        ("bash", {"cmd": "ls"}, "'cmd' was unexpected"),
        (EDITOR, {"command": "view"}, "'path' is a required property"),
        (EDITOR, {"command": "undo_edit", "path": "a"}, "'undo_edit' is not one of"),
        (EDITOR, {"command": "create", "path": "a"}, "'file_text' is a required"),
        (EDITOR, {"command": "view", "path": "a", "view_range": [1]}, "view_range"),
        ("finish_step", {"status": "maybe", "summary": "x"}, "'maybe' is not one of"),
        ("finish_step", {"status": "done"}, "'summary' is a required property"),
    ],
)
def test_bad_input_is_an_error_result(
    box: Toolbox, name: str, input: object, expected: str
) -> None:
    result = box.run(name, input)
    assert result.is_error
    assert f"invalid input for {name}" in result.content
    assert expected in result.content


def test_finish_step_with_good_input_succeeds(box: Toolbox) -> None:
    result = box.run("finish_step", {"status": "done", "summary": "ok", "notes": "n"})
    assert not result.is_error


def test_bash_runs_in_the_workspace_and_reports_the_exit_code(
    box: Toolbox, repo: Path
) -> None:
    result = box.run("bash", {"command": "pwd; echo made > made.txt"})
    assert result.content == f"exit code 0\n{repo.resolve()}\n"
    assert (repo / "made.txt").read_text() == "made\n"

    failed = box.run("bash", {"command": "echo oops >&2; exit 3"})
    assert failed.content == "exit code 3\noops\n"
    assert not failed.is_error


def test_bash_without_output_and_empty_commands(box: Toolbox) -> None:
    assert box.run("bash", {"command": "true"}).content == "exit code 0\n(no output)"
    empty = box.run("bash", {"command": "  "})
    assert empty.is_error and "needs a command" in empty.content


def test_bash_restart_is_a_no_op_that_says_so(box: Toolbox) -> None:
    result = box.run("bash", {"restart": True})
    assert not result.is_error
    assert "fresh bash" in result.content


def test_bash_timeout_is_an_error_result(repo: Path) -> None:
    box = Toolbox(repo, Settings(command_timeout=0.5), dict(os.environ))
    result = box.run("bash", {"command": "echo started; sleep 30"})
    assert result.is_error
    assert result.content.startswith("timed out after")
    assert "started" in result.content


def test_bash_sees_no_api_key_even_if_the_caller_passed_one(repo: Path) -> None:
    env = {**os.environ, "ANTHROPIC_API_KEY": "sk-ant-leak", "GITHUB_TOKEN": "ghp_x"}
    box = Toolbox(repo, Settings(), env)
    output = box.run("bash", {"command": "env"}).content
    assert "sk-ant-leak" not in output
    assert "ghp_x" not in output
    assert "PATH=" in output


def test_view_numbers_lines_and_honours_view_range(box: Toolbox, repo: Path) -> None:
    (repo / "f.txt").write_text("one\ntwo\nthree\nfour\n")
    content, error = edit(box, command="view", path="f.txt")
    assert not error
    assert content.splitlines() == [
        "     1\tone",
        "     2\ttwo",
        "     3\tthree",
        "     4\tfour",
    ]
    content, _ = edit(box, command="view", path="f.txt", view_range=[2, 3])
    assert content == "     2\ttwo\n     3\tthree"
    content, _ = edit(box, command="view", path="f.txt", view_range=[3, -1])
    assert content == "     3\tthree\n     4\tfour"


@pytest.mark.parametrize(
    ("view_range", "expected"),
    [([0, 2], "lines count from 1"), ([3, 2], "invalid view_range"), ([9, 9], "past")],
)
def test_view_range_errors(
    box: Toolbox, repo: Path, view_range: list[int], expected: str
) -> None:
    (repo / "f.txt").write_text("one\ntwo\n")
    content, error = edit(box, command="view", path="f.txt", view_range=view_range)
    assert error
    assert expected in content


def test_view_of_a_directory_lists_two_levels_without_hidden(
    box: Toolbox, repo: Path
) -> None:
    (repo / "src" / "pkg" / "deep").mkdir(parents=True)
    (repo / "src" / "main.py").write_text("")
    (repo / "src" / "pkg" / "deep" / "x.py").write_text("")
    (repo / ".hidden").write_text("")
    content, error = edit(box, command="view", path=".")
    assert not error
    entries = content.splitlines()[1:]
    assert entries == ["README.md", "src/", "src/main.py", "src/pkg/"]


def test_view_max_characters_cuts_the_output(box: Toolbox, repo: Path) -> None:
    (repo / "long.txt").write_text("".join(f"line {n}\n" for n in range(1, 200)))
    content, error = edit(box, command="view", path="long.txt", max_characters=100)
    assert not error
    assert len(content) < 200
    assert content.splitlines()[-1].startswith("[cut at 100 characters; view from")


def test_view_of_a_missing_file_and_of_binary(box: Toolbox, repo: Path) -> None:
    content, error = edit(box, command="view", path="nope.txt")
    assert error and "does not exist" in content
    (repo / "blob.bin").write_bytes(b"\xff\xfe\x00\x81")
    content, error = edit(box, command="view", path="blob.bin")
    assert error and "not UTF-8" in content


def test_create_makes_folders_and_says_when_it_overwrites(
    box: Toolbox, repo: Path
) -> None:
    content, error = edit(box, command="create", path="a/b/new.py", file_text="x\ny\n")
    assert (error, content) == (False, "created a/b/new.py (2 lines)")
    assert (repo / "a" / "b" / "new.py").read_text() == "x\ny\n"
    content, _ = edit(box, command="create", path="a/b/new.py", file_text="z\n")
    assert content == "overwrote a/b/new.py (1 line)"


def test_str_replace_edits_a_unique_match(box: Toolbox, repo: Path) -> None:
    (repo / "app.py").write_text("def f():\n    return 1\n")
    content, error = edit(
        box,
        command="str_replace",
        path="app.py",
        old_str="return 1",
        new_str="return 2",
    )
    assert not error
    assert content.startswith("edited app.py:")
    assert "     2\t    return 2" in content
    assert (repo / "app.py").read_text() == "def f():\n    return 2\n"


def test_str_replace_says_how_often_old_str_occurs(box: Toolbox, repo: Path) -> None:
    (repo / "app.py").write_text("x = 1\ny = 1\nz = 1\n")
    content, error = edit(box, command="str_replace", path="app.py", old_str="= 1")
    assert error
    assert "occurs 3 times" in content and "lines 1, 2, 3" in content
    content, error = edit(box, command="str_replace", path="app.py", old_str="w = 1")
    assert error and "occurs 0 times" in content
    assert (repo / "app.py").read_text() == "x = 1\ny = 1\nz = 1\n"


def test_str_replace_keeps_crlf_line_endings(box: Toolbox, repo: Path) -> None:
    (repo / "win.txt").write_bytes(b"alpha\r\nbeta\r\ngamma\r\n")
    _, error = edit(
        box,
        command="str_replace",
        path="win.txt",
        old_str="alpha\nbeta",
        new_str="A\nB",
    )
    assert not error
    assert (repo / "win.txt").read_bytes() == b"A\r\nB\r\ngamma\r\n"


@pytest.mark.parametrize(
    ("line", "expected"),
    [(0, "new\none\ntwo\n"), (1, "one\nnew\ntwo\n"), (2, "one\ntwo\nnew\n")],
)
def test_insert_after_a_line(
    box: Toolbox, repo: Path, line: int, expected: str
) -> None:
    (repo / "f.txt").write_text("one\ntwo\n")
    _, error = edit(
        box, command="insert", path="f.txt", insert_line=line, insert_text="new"
    )
    assert not error
    assert (repo / "f.txt").read_text() == expected


def test_insert_past_the_end_and_on_crlf(box: Toolbox, repo: Path) -> None:
    (repo / "f.txt").write_bytes(b"one\r\ntwo")
    content, error = edit(
        box, command="insert", path="f.txt", insert_line=5, insert_text="x"
    )
    assert error and "has 2 lines" in content
    _, error = edit(box, command="insert", path="f.txt", insert_line=2, insert_text="x")
    assert not error
    assert (repo / "f.txt").read_bytes() == b"one\r\ntwo\r\nx\r\n"


def test_big_files_are_not_read_whole(box: Toolbox, repo: Path) -> None:
    line = "x" * 99 + "\n"
    (repo / "big.txt").write_text(line * (FILE_LIMIT // 100 + 10))
    content, error = edit(
        box, command="str_replace", path="big.txt", old_str="x", new_str="y"
    )
    assert error and "more than the editor reads whole" in content

    content, error = edit(box, command="view", path="big.txt")
    assert not error
    assert len(content) < 40_000
    assert "[cut at" in content
    content, error = edit(
        box, command="view", path="big.txt", view_range=[20000, 20001]
    )
    assert not error and content.startswith(" 20000\t")


@pytest.mark.parametrize("path", ["../outside.txt", "/etc/passwd", ".git/config"])
def test_editor_refuses_paths_outside_or_in_git(
    box: Toolbox, repo: Path, path: str
) -> None:
    before = (repo / ".git" / "config").read_text()
    for command in ({"command": "view"}, {"command": "create", "file_text": "x"}):
        content, error = edit(box, path=path, **command)
        assert error
        assert content.startswith("refused:")
    assert not (repo.parent / "outside.txt").exists()
    assert (repo / ".git" / "config").read_text() == before


def test_editor_refuses_a_symlink_pointing_out(
    box: Toolbox, repo: Path, tmp_path: Path
) -> None:
    target = tmp_path / "target.txt"
    target.write_text("keep\n")
    (repo / "out").symlink_to(target)
    content, error = edit(box, command="str_replace", path="out", old_str="keep")
    assert error and "outside the workspace" in content
    assert target.read_text() == "keep\n"
