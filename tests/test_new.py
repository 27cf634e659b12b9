"""`ralph new`: an idea or a plan in hand becomes a repository that runs it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from ralph.cli import cli
from ralph.plan import parse_plan
from ralph.planner import plan_errors, render_plan
from tests.conftest import ROOT, git, ralph_commits
from tests.fakes.anthropic_server import FakeAnthropic, Turn

IDEA = "a tiny greeting script"
GOOD_PLAN: dict[str, Any] = {
    "title": "Greeter",
    "context": "Plain POSIX shell. Files live at the repository root.",
    "phases": [
        {
            "name": "Skeleton",
            "steps": [
                {
                    "title": "Write greet.sh",
                    "details": "It prints hello.",
                    "verify": "sh greet.sh | grep -q hello",
                },
            ],
        },
        {
            "name": "Polish",
            "steps": [
                {"title": "Add a README", "details": "", "verify": "test -s README.md"},
            ],
        },
    ],
}


def invoke(*args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), input=input)
    if result.exit_code == 1 and not result.output:
        raise result.exception  # type: ignore[misc]
    return result.exit_code, result.output


def bash(command: str) -> Turn:
    return Turn.tool("bash", {"command": command})


def test_an_idea_becomes_a_repository_that_runs(
    tmp_path: Path, fake_api: FakeAnthropic
) -> None:
    fake_api.add(
        Turn.tool("write_plan", GOOD_PLAN),
        bash("printf 'echo hello\\n' > greet.sh"),
        Turn.finish(),
        bash("printf '# Greeter\\n' > README.md"),
        Turn.finish(),
    )
    folder = tmp_path / "greeter"

    code, output = invoke("new", IDEA, str(folder))

    assert code == 0, output
    assert ralph_commits(folder) == [
        "ralph: plan",
        "ralph: Write greet.sh",
        "ralph: Add a README",
    ]
    planning = fake_api.bodies[0]
    assert [tool["name"] for tool in planning["tools"]] == ["write_plan"]
    assert planning["tool_choice"] == {"type": "tool", "name": "write_plan"}
    assert IDEA in planning["messages"][0]["content"]
    # The first step's context is fresh: the planning chat is not in it.
    assert len(fake_api.bodies[1]["messages"]) == 1


def test_an_invalid_plan_is_corrected_on_the_second_try(
    tmp_path: Path, fake_api: FakeAnthropic
) -> None:
    broken = {"title": "Greeter", "phases": [{"name": "x", "steps": []}]}
    fake_api.add(Turn.tool("write_plan", broken), Turn.tool("write_plan", GOOD_PLAN))
    folder = tmp_path / "greeter"

    code, output = invoke("new", IDEA, str(folder), "--plan-only")

    assert code == 0, output
    retry = fake_api.bodies[1]["messages"][-1]["content"][0]
    assert retry["type"] == "tool_result" and retry["is_error"] is True
    assert "context" in retry["content"]
    assert ralph_commits(folder) == ["ralph: plan"]
    assert "- [ ] Write greet.sh" in (folder / "plan.md").read_text()


def test_a_model_that_never_plans_leaves_nothing_behind(
    tmp_path: Path, fake_api: FakeAnthropic
) -> None:
    fake_api.add(*[Turn.tool("write_plan", {"title": "no phases"})] * 3)
    folder = tmp_path / "greeter"

    code, output = invoke("new", IDEA, str(folder))

    assert code == 1
    assert "no valid plan in 3 tries" in output
    assert not folder.exists()
    assert len(fake_api.bodies) == 3


def test_the_idea_can_come_from_stdin(tmp_path: Path, fake_api: FakeAnthropic) -> None:
    fake_api.add(Turn.tool("write_plan", GOOD_PLAN))
    code, output = invoke(
        "new", "-", str(tmp_path / "g"), "--plan-only", input="a greeter from stdin\n"
    )
    assert code == 0, output
    assert "a greeter from stdin" in fake_api.bodies[0]["messages"][0]["content"]


def test_new_from_the_demo_plan_runs_offline(tmp_path: Path) -> None:
    folder = tmp_path / "demo"

    code, output = invoke("new", "--plan", str(ROOT / "tasks" / "demo.md"), str(folder))

    assert code == 0, output
    assert len(ralph_commits(folder)) == 5
    assert git(folder, "status", "--porcelain") == ""


def test_new_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    folder = tmp_path / "taken"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep me")

    code, output = invoke("new", "--plan", str(ROOT / "tasks" / "demo.md"), str(folder))

    assert code == 2
    assert "--force" in output
    assert [p.name for p in folder.iterdir()] == ["mine.txt"]


def test_new_without_a_key_says_what_to_do(tmp_path: Path) -> None:
    code, output = invoke("new", IDEA, str(tmp_path / "x"))
    assert code == 2
    assert "ANTHROPIC_API_KEY" in output
    assert not (tmp_path / "x").exists()


line = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
    min_size=1,
    max_size=30,
).filter(lambda s: s.strip())
steps = st.lists(
    st.fixed_dictionaries(
        {
            "title": line,
            "details": st.text(max_size=80),
            "verify": line | st.just(""),
        }
    ),
    min_size=1,
    max_size=4,
)
plans = st.fixed_dictionaries(
    {
        "title": line,
        "context": st.text(max_size=80),
        "phases": st.lists(
            st.fixed_dictionaries({"name": line, "steps": steps}),
            min_size=1,
            max_size=3,
        ),
    }
)


@settings(max_examples=150, deadline=None)
@given(plans)
def test_a_rendered_plan_parses_back_to_exactly_its_steps(data: dict[str, Any]) -> None:
    if plan_errors(data):
        return
    text = render_plan(data, {"engine": "anthropic"})
    parsed = parse_plan(text.encode(), Path("plan.md"))

    expected = [
        (phase["name"].strip(), step["title"].strip(), step["verify"].strip() or None)
        for phase in data["phases"]
        for step in phase["steps"]
    ]
    assert [(s.phase, s.title, s.verify) for s in parsed.steps] == expected
    assert not any(step.done for step in parsed.steps)
    assert parsed.title == data["title"].strip()


def test_lint_finds_what_wastes_attempts(tmp_path: Path) -> None:
    plan = tmp_path / "plan.md"
    plan.write_text("# P\n\n- [ ] Same\n- [ ] Same\n  Verify: `true`\n")

    code, output = invoke("lint", str(plan))
    assert code == 0
    assert f"{plan}:3: warning:" in output and "no `Verify:`" in output
    assert "used by 2 steps" in output

    code, _ = invoke("lint", str(plan), "--strict")
    assert code == 2


@pytest.mark.parametrize("name", ["todo-cli.md", "url-shortener.md"])
def test_example_plans_are_in_the_shape_ralph_new_writes(name: str) -> None:
    plan = parse_plan((ROOT / "tasks" / name).read_bytes(), Path(name))
    assert plan.front == {"engine": "anthropic", "model": "claude-sonnet-4-6"}
    assert plan.steps and all(step.verify and step.phase for step in plan.steps)
    code, output = invoke("lint", str(ROOT / "tasks" / name))
    assert code == 0 and "no findings" in output


def test_new_with_a_bad_plan_makes_no_folder(tmp_path: Path) -> None:
    bad = tmp_path / "bad.md"
    bad.write_text("---\nmax_attemps: 2\n---\n# P\n\n- [ ] a\n")
    code, output = invoke("new", "--plan", str(bad), str(tmp_path / "x"))
    assert code == 2
    assert "did you mean max_attempts" in output
    assert not (tmp_path / "x").exists()


def test_a_longer_brief_comes_from_a_file(
    tmp_path: Path, fake_api: FakeAnthropic, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    brief = tmp_path / "brief.md"
    brief.write_text("# Greeter\n\nA greeter, with a README.\n")
    fake_api.add(Turn.tool("write_plan", GOOD_PLAN))

    code, output = invoke("new", "--idea-file", str(brief), "--plan-only")

    assert code == 0, output
    assert "A greeter, with a README." in fake_api.bodies[0]["messages"][0]["content"]
    assert (tmp_path / "greeter-a-greeter-with-a-readme" / "plan.md").exists()
