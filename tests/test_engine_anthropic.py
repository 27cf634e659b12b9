"""The Anthropic engine, through the real SDK, against the fake API over HTTP."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ralph.config import Settings
from ralph.engines import Attempt, Report
from ralph.engines.anthropic import NUDGE, AnthropicEngine
from ralph.errors import InputError, RalphError
from ralph.guard import scrub_env
from ralph.plan import Step
from ralph.pricing import price_for
from tests.conftest import git
from tests.fakes.anthropic_server import FakeAnthropic, ToolCall, Turn

KEY = "sk-ant-test-0123456789abcdef"
EDITOR = "str_replace_based_edit_tool"


@pytest.fixture
def engine(fake: FakeAnthropic) -> Iterator[AnthropicEngine]:
    environ = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": fake.url}
    yield AnthropicEngine.from_settings(Settings(), environ=environ)


@pytest.fixture
def run(repo: Path, tmp_path: Path, engine: AnthropicEngine) -> Callable[..., Report]:
    """Run one attempt in the test repository."""
    count = 0

    def attempt(prompt: str = "Do step 1.", **overrides: Any) -> Report:
        nonlocal count
        count += 1
        settings = overrides.pop("settings", Settings())
        env = overrides.pop("env", scrub_env(os.environ))
        return engine.run(
            Attempt(
                workspace=repo,
                step=make_step(),
                number=count,
                system="You are ralph's worker. Work in the repository.",
                prompt=prompt,
                settings=settings,
                log_dir=tmp_path / "logs" / f"attempt-{count}",
                env=env,
            )
        )

    return attempt


def make_step() -> Step:
    return Step(
        number=1,
        line=3,
        offset=5,
        done=False,
        title="Write the notes",
        body="Write notes.txt.",
        verify=None,
        phase=None,
        depth=0,
        parent=None,
        children=(),
        notes=(),
    )


def tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool_result blocks of a request's last message."""
    content = body["messages"][-1]["content"]
    return [b for b in content if isinstance(b, dict) and b["type"] == "tool_result"]


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_full_attempt_in_a_real_repository(
    fake: FakeAnthropic, run: Callable[..., Report], repo: Path, tmp_path: Path
) -> None:
    fake.add(
        Turn.tool(
            "bash", {"command": "printf 'hello\\n' > notes.txt"}, text="Writing."
        ),
        Turn.tool(
            EDITOR,
            {
                "command": "str_replace",
                "path": "notes.txt",
                "old_str": "hello",
                "new_str": "hello, world",
            },
        ),
        Turn.finish("done", "wrote notes.txt", notes="notes.txt is new"),
    )
    report = run("Write notes.txt.", settings=Settings(max_tokens=32000))

    assert (report.status, report.summary, report.notes) == (
        "done",
        "wrote notes.txt",
        "notes.txt is new",
    )
    assert (repo / "notes.txt").read_text() == "hello, world\n"
    assert git(repo, "status", "--porcelain") == "?? notes.txt\n"
    assert fake.rejections == []

    first = fake.bodies[0]
    assert first["messages"] == [{"role": "user", "content": "Write notes.txt."}]
    assert first["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert (first["model"], first["max_tokens"], first["stream"]) == (
        "claude-sonnet-4-6",
        32000,
        True,
    )
    assert [t["name"] for t in first["tools"]] == ["bash", EDITOR, "finish_step"]
    assert len(fake.bodies) == 3

    usage = report.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.cost_usd > 0

    logs = tmp_path / "logs" / "attempt-1"
    tools = read_lines(logs / "tools.jsonl")
    assert [(t["name"], t["is_error"]) for t in tools] == [
        ("bash", False),
        (EDITOR, False),
        ("finish_step", False),
    ]
    assert all(t["seconds"] >= 0 for t in tools)
    kinds = [entry["kind"] for entry in read_lines(logs / "transcript.jsonl")]
    assert kinds[0] == "attempt" and kinds[-1] == "report"
    assert kinds.count("request") == 3 and kinds.count("tool") == 3


def assert_every_call_answered(bodies: list[dict[str, Any]]) -> None:
    for body in bodies:
        messages = body["messages"]
        for at, message in enumerate(messages):
            if message["role"] != "assistant" or isinstance(message["content"], str):
                continue
            ids = [b["id"] for b in message["content"] if b["type"] == "tool_use"]
            if not ids:
                continue
            following = messages[at + 1]["content"]
            leading = [b["tool_use_id"] for b in following[: len(ids)]]
            assert sorted(leading) == sorted(ids)
            assert all(b["type"] == "tool_result" for b in following[: len(ids)])


def test_every_tool_use_is_answered_failures_included(
    fake: FakeAnthropic, run: Callable[..., Report]
) -> None:
    fake.add(
        Turn.tools(
            ("bash", {"command": "echo one"}),
            (EDITOR, {"command": "view", "path": "missing.txt"}),
            ("bash", {"command": 7}),
            ("browser", {"url": "x"}),
        ),
        Turn.tools(
            ("bash", {"command": "exit 4"}), (EDITOR, {"command": "view", "path": "."})
        ),
        Turn.finish(),
    )
    assert run().status == "done"

    assert fake.rejections == []
    assert_every_call_answered(fake.bodies)
    results = tool_results(fake.bodies[1])
    assert [r["is_error"] for r in results] == [False, True, True, True]
    assert "unknown tool `browser`" in results[3]["content"]
    assert [r["is_error"] for r in tool_results(fake.bodies[2])] == [False, False]


def test_finish_step_waits_for_the_other_calls_of_its_turn(
    fake: FakeAnthropic, run: Callable[..., Report], repo: Path
) -> None:
    fake.add(
        Turn(
            calls=[
                ToolCall(
                    "finish_step", {"status": "blocked", "summary": "needs a key"}
                ),
                ToolCall("bash", {"command": "echo ran > after.txt"}),
            ]
        )
    )
    report = run()
    assert (report.status, report.summary) == ("blocked", "needs a key")
    assert (repo / "after.txt").read_text() == "ran\n"
    assert len(fake.bodies) == 1


def test_a_bad_finish_step_is_an_error_result_and_the_attempt_goes_on(
    fake: FakeAnthropic, run: Callable[..., Report]
) -> None:
    fake.add(
        Turn.tool("finish_step", {"status": "finished"}), Turn.finish("done", "ok")
    )
    assert run().status == "done"
    (result,) = tool_results(fake.bodies[1])
    assert result["is_error"] and "invalid input for finish_step" in result["content"]


def test_two_attempts_share_no_messages(
    fake: FakeAnthropic, run: Callable[..., Report]
) -> None:
    fake.add(Turn.tool("bash", {"command": "echo first-attempt-output"}), Turn.finish())
    fake.add(Turn.finish("done", "second"))
    run("Prompt of attempt one.")
    run("Prompt of attempt two.")

    second = fake.bodies[2]
    assert second["messages"] == [{"role": "user", "content": "Prompt of attempt two."}]
    text = json.dumps(second)
    assert "attempt one" not in text and "first-attempt-output" not in text


@pytest.mark.parametrize(
    "fault",
    [
        Turn.error(429, retry_after_ms=1),
        Turn.error(529),
        Turn.error(500),
        Turn.disconnect(),
        Turn.drop(after_events=4),
        Turn.error_event("overloaded_error"),
        Turn.bad_json(),
    ],
    ids=[
        "429",
        "529",
        "500",
        "dropped-connection",
        "cut-stream",
        "error-event",
        "json",
    ],
)
def test_transport_faults_are_retried_with_the_same_request(
    fake: FakeAnthropic,
    run: Callable[..., Report],
    caplog: pytest.LogCaptureFixture,
    fault: Turn,
) -> None:
    fake.add(Turn.tool("bash", {"command": "true"}), fault, Turn.finish())
    with caplog.at_level(logging.WARNING, logger="ralph"):
        report = run()

    assert report.status == "done"
    assert len(fake.bodies) == 3
    assert fake.bodies[1] == fake.bodies[2]
    retries = [r for r in caplog.records if "(retry 1)" in r.getMessage()]
    assert len(retries) == 1
    assert fake.requests[2].headers.get("x-stainless-retry-count") == "0"


def test_a_refused_key_stops_the_run(
    fake: FakeAnthropic, run: Callable[..., Report], tmp_path: Path
) -> None:
    fake.add(Turn.error(401, message="invalid x-api-key"), Turn.finish())
    with pytest.raises(RalphError) as caught:
        run()
    assert "the API refused the key" in caught.value.message
    assert "ANTHROPIC_API_KEY" in caught.value.message
    assert len(fake.bodies) == 1
    entries = read_lines(tmp_path / "logs" / "attempt-1" / "transcript.jsonl")
    assert entries[-1]["kind"] == "error"


def test_a_tool_call_cut_at_max_tokens_is_not_run(
    fake: FakeAnthropic, run: Callable[..., Report], repo: Path, tmp_path: Path
) -> None:
    data = {"command": "touch cut.txt", "restart": False}
    # Cut inside `false`: the SDK still parses {"command": "touch cut.txt"}.
    size = len(json.dumps(data, separators=(",", ":"))) - 3
    fake.add(Turn(calls=[ToolCall("bash", data)], cut_after=size), Turn.finish())
    assert run().status == "done"

    assert not (repo / "cut.txt").exists()
    (result,) = tool_results(fake.bodies[1])
    assert result["is_error"] and "max_tokens" in result["content"]
    (logged, _) = read_lines(tmp_path / "logs" / "attempt-1" / "tools.jsonl")
    assert logged["input"] == {"command": "touch cut.txt"}
    assert logged["is_error"]


def test_earlier_calls_of_a_cut_reply_still_run(
    fake: FakeAnthropic, run: Callable[..., Report], repo: Path
) -> None:
    whole = ToolCall("bash", {"command": "touch whole.txt"})
    cut = ToolCall("bash", {"command": "touch cut.txt"})
    size = len(json.dumps(whole.input, separators=(",", ":"))) + 10
    fake.add(Turn(calls=[whole, cut], cut_after=size), Turn.finish())
    assert run().status == "done"
    assert (repo / "whole.txt").exists() and not (repo / "cut.txt").exists()
    assert [r["is_error"] for r in tool_results(fake.bodies[1])] == [False, True]


def test_cut_text_asks_the_model_to_continue(
    fake: FakeAnthropic, run: Callable[..., Report]
) -> None:
    fake.add(Turn.say("a long explanation " * 50), Turn.finish())
    assert run(settings=Settings(max_tokens=20)).status == "done"
    last = fake.bodies[1]["messages"][-1]
    assert last["role"] == "user" and "max_tokens" in json.dumps(last)


def test_no_finish_step_is_nudged_once_then_failed(
    fake: FakeAnthropic, run: Callable[..., Report]
) -> None:
    fake.add(Turn.say("I did it."), Turn.say("Really, it is done."), Turn.finish())
    report = run()

    assert report.status == "failed"
    assert "without finish_step" in report.summary
    assert len(fake.bodies) == 2
    assert fake.bodies[1]["messages"][-1] == {"role": "user", "content": NUDGE}
    assert len(fake.script) == 1


def test_a_nudge_that_works_finishes_the_attempt(
    fake: FakeAnthropic, run: Callable[..., Report]
) -> None:
    fake.add(Turn.say("Done, I think."), Turn.finish("done", "now reported"))
    assert run().summary == "now reported"


def test_turn_limit(fake: FakeAnthropic, run: Callable[..., Report]) -> None:
    fake.respond = lambda body: Turn.tool("bash", {"command": "true"})
    report = run(settings=Settings(max_turns=3))
    assert report.status == "failed"
    assert report.summary.startswith("turn limit")
    assert len(fake.bodies) == 3


def test_attempt_timeout(fake: FakeAnthropic, run: Callable[..., Report]) -> None:
    fake.respond = lambda body: Turn.tool("bash", {"command": "sleep 0.4"})
    report = run(settings=Settings(attempt_timeout=0.2))
    assert report.status == "failed"
    assert report.summary.startswith("time limit")
    assert len(fake.bodies) == 1


@pytest.mark.parametrize(
    "path", ["../x", "/etc/passwd", "out-link", ".git/config", "sub/../../x"]
)
def test_path_escapes_are_refused_as_tool_results(
    fake: FakeAnthropic,
    run: Callable[..., Report],
    repo: Path,
    tmp_path: Path,
    path: str,
) -> None:
    (tmp_path / "outside.txt").write_text("outside\n")
    (repo / "out-link").symlink_to(tmp_path / "outside.txt")
    fake.add(
        Turn.tools(
            (EDITOR, {"command": "view", "path": path}),
            (EDITOR, {"command": "create", "path": path, "file_text": "pwned\n"}),
        ),
        Turn.finish(),
    )
    run()
    results = tool_results(fake.bodies[1])
    assert [r["is_error"] for r in results] == [True, True]
    assert all(r["content"].startswith("refused:") for r in results)
    assert (tmp_path / "outside.txt").read_text() == "outside\n"
    assert "pwned" not in (repo / ".git" / "config").read_text()


@pytest.mark.parametrize("scrubbed", [True, False], ids=["scrubbed", "raw"])
def test_commands_never_see_the_key_or_credentials(
    fake: FakeAnthropic,
    run: Callable[..., Report],
    tmp_path: Path,
    scrubbed: bool,
) -> None:
    environ = {**os.environ, "ANTHROPIC_API_KEY": KEY, "GITHUB_TOKEN": "ghp_secret1"}
    env = scrub_env(environ) if scrubbed else environ
    fake.add(Turn.tool("bash", {"command": "env"}), Turn.finish())
    run(env=env)

    (result,) = tool_results(fake.bodies[1])
    assert "PATH=" in result["content"]
    assert KEY not in result["content"] and "ghp_secret1" not in result["content"]
    for log in (tmp_path / "logs" / "attempt-1").iterdir():
        assert KEY not in log.read_text()


def test_refusal_fails_with_the_reason(
    fake: FakeAnthropic, run: Callable[..., Report]
) -> None:
    fake.add(Turn.refusal("that would harm someone"))
    report = run()
    assert report.status == "failed"
    assert report.summary == "the model refused the step: that would harm someone"


def test_context_window_exceeded_fails(
    fake: FakeAnthropic, run: Callable[..., Report]
) -> None:
    fake.add(Turn.say("...", stop_reason="model_context_window_exceeded"))
    report = run()
    assert report.status == "failed" and "context window" in report.summary


def test_pause_turn_is_resent_to_continue(
    fake: FakeAnthropic, run: Callable[..., Report]
) -> None:
    fake.add(Turn.say("Searching", stop_reason="pause_turn"), Turn.finish())
    assert run().status == "done"
    last = fake.bodies[1]["messages"][-1]
    assert last["role"] == "assistant"
    assert last["content"][0]["text"] == "Searching"


def test_usage_is_summed_and_priced(
    fake: FakeAnthropic, run: Callable[..., Report]
) -> None:
    counts = {
        "input_tokens": 1000,
        "output_tokens": 200,
        "cache_creation_input_tokens": 3000,
        "cache_read_input_tokens": 50000,
    }
    first = Turn.tool("bash", {"command": "true"})
    first.usage = dict(counts)
    last = Turn.finish()
    last.usage = dict(counts)
    fake.add(first, last)
    usage = run().usage

    assert (usage.input_tokens, usage.output_tokens) == (2000, 400)
    assert (usage.cache_write_tokens, usage.cache_read_tokens) == (6000, 100000)
    price = price_for("claude-sonnet-4-6")
    assert price is not None
    expected = (
        2000 * price.input
        + 400 * price.output
        + 6000 * price.cache_write
        + 100000 * price.cache_read
    ) / 1e6
    assert usage.cost_usd == pytest.approx(expected)
    assert usage.cost_usd == pytest.approx(0.0645)


def test_an_unknown_model_costs_nothing_and_warns_once(
    fake: FakeAnthropic, run: Callable[..., Report], caplog: pytest.LogCaptureFixture
) -> None:
    fake.add(Turn.finish(), Turn.finish())
    settings = Settings(model="claude-imaginary-9")
    with caplog.at_level(logging.WARNING, logger="ralph"):
        reports = [run(settings=settings), run(settings=settings)]
    assert [r.usage.cost_usd for r in reports] == [0.0, 0.0]
    assert reports[0].usage.output_tokens > 0
    warnings = [r for r in caplog.records if "claude-imaginary-9" in r.getMessage()]
    assert len(warnings) == 1


def test_dated_model_ids_are_priced_as_their_alias() -> None:
    assert price_for("claude-sonnet-4-5-20250929") == price_for("claude-sonnet-4-5")
    assert price_for("claude-opus-4-20250514") == price_for("claude-opus-4")
    assert price_for("claude-haiku-4-5") is not None


def test_a_missing_key_is_bad_input() -> None:
    with pytest.raises(InputError) as caught:
        AnthropicEngine.from_settings(Settings(), environ={})
    assert caught.value.exit_code == 2
    assert "export it" in caught.value.message
    assert "engine: shell" in caught.value.message
