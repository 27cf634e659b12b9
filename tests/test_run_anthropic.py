"""`ralph run` with the anthropic engine: the real SDK against the fake API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from ralph.cli import cli
from ralph.plan import load_plan
from tests.conftest import commit_plan, git, ralph_commits
from tests.fakes.anthropic_server import FakeAnthropic, Turn

PLAN = """---
model: claude-sonnet-4-6
---
# Two files

Write small text files.

- [ ] Write a.txt
  Verify: `grep -q alpha a.txt`
- [ ] Write b.txt
  Verify: `grep -q beta b.txt`
"""


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def write(path: str, text: str) -> Turn:
    return Turn.tool("bash", {"command": f"printf '{text}\\n' > {path}"})


def first_prompt(body: dict[str, Any]) -> str:
    content = body["messages"][0]["content"]
    return content if isinstance(content, str) else content[0]["text"]


def tool_use_ids(body: dict[str, Any]) -> set[str]:
    return {
        block["id"]
        for message in body["messages"]
        if isinstance(message["content"], list)
        for block in message["content"]
        if block.get("type") == "tool_use"
    }


def test_each_step_gets_a_fresh_context(repo: Path, fake_api: FakeAnthropic) -> None:
    plan = commit_plan(repo, PLAN)
    fake_api.add(
        write("a.txt", "alpha"),
        Turn.finish("done", "wrote a.txt", "a is alpha"),
        write("b.txt", "beta"),
        Turn.finish("done", "wrote b.txt"),
    )

    code, output = invoke("run", str(plan))

    assert code == 0, output
    assert ralph_commits(repo) == ["ralph: Write a.txt", "ralph: Write b.txt"]
    bodies = fake_api.bodies
    assert len(bodies) == 4
    step_one, step_two = bodies[:2], bodies[2:]
    assert "# Your step: Write a.txt" in first_prompt(step_one[0])
    assert "# Your step: Write b.txt" in first_prompt(step_two[0])
    # A new step starts from one user message: nothing of the step before.
    assert len(step_two[0]["messages"]) == 1
    assert not tool_use_ids(step_one[-1]) & tool_use_ids(step_two[-1])
    assert "Write a.txt" not in json.dumps(step_two[-1]["messages"][1:])
    # The note step one left reaches step two through the plan, not the chat.
    assert "a is alpha" in first_prompt(step_two[0])
    # The system prompt is the same for every step, so the cache can serve it.
    assert step_one[0]["system"] == step_two[0]["system"]
    assert fake_api.rejections == []


def test_every_tool_use_gets_its_tool_result(
    repo: Path, fake_api: FakeAnthropic
) -> None:
    plan = commit_plan(repo, PLAN.split("- [ ] Write b.txt")[0])
    fake_api.add(
        Turn.tools(("bash", {"command": "true"}), ("bash", {"nonsense": 1})),
        Turn.tool(
            "str_replace_based_edit_tool",
            {"command": "create", "path": "../escape.txt", "file_text": "x"},
        ),
        write("a.txt", "alpha"),
        Turn.finish("done", "ok"),
    )

    code, output = invoke("run", str(plan))

    assert code == 0, output
    for number, body in enumerate(fake_api.bodies[1:], 1):
        asked = tool_use_ids({"messages": fake_api.bodies[number - 1]["messages"][-1:]})
        answered = {
            block["tool_use_id"]
            for block in body["messages"][-1]["content"]
            if block.get("type") == "tool_result"
        }
        assert asked <= answered
    assert not (repo.parent / "escape.txt").exists()
    assert fake_api.rejections == []


def test_a_failed_check_is_retried_fresh_with_a_handoff(
    repo: Path, fake_api: FakeAnthropic
) -> None:
    plan = commit_plan(repo, PLAN.split("- [ ] Write b.txt")[0])
    fake_api.add(
        write("a.txt", "wrong"),
        Turn.finish("done", "wrote it"),
        write("a.txt", "alpha"),
        Turn.finish("done", "fixed it"),
    )

    code, output = invoke("run", str(plan))

    assert code == 0, output
    second = fake_api.bodies[2]
    assert len(second["messages"]) == 1
    prompt = first_prompt(second)
    assert "rejected" in prompt and "grep -q alpha a.txt" in prompt
    assert "refs/ralph/attempts/" in prompt
    assert "Ralph-Attempts: 2" in git(repo, "log", "-1", "--format=%B")


def test_status_totals_equal_the_reported_usage(
    repo: Path, fake_api: FakeAnthropic
) -> None:
    plan = commit_plan(repo, PLAN)
    fake_api.add(
        write("a.txt", "alpha"), Turn.finish(), write("b.txt", "beta"), Turn.finish()
    )
    invoke("run", str(plan))

    code, output = invoke("status", str(plan))

    assert code == 0
    replies = [r for r in fake_api.requests if r.path == "/v1/messages"]
    kinds = (
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    )
    total = sum(r.usage[kind] for r in replies for kind in kinds)
    assert total > 0
    assert f"{total:,} tokens" in output.splitlines()[-1]


def test_blocked_by_the_model_stops_at_once(
    repo: Path, fake_api: FakeAnthropic
) -> None:
    plan = commit_plan(repo, PLAN)
    fake_api.add(Turn.finish("blocked", "needs a database password"))

    code, _ = invoke("run", str(plan))

    assert code == 3
    assert len(fake_api.bodies) == 1
    steps = load_plan(plan).steps
    assert "needs a database password" in steps[0].notes[-1]
    assert ralph_commits(repo) == ["ralph: blocked: Write a.txt"]
