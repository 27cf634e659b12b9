"""Agent CLI engines, driven through stub executables on PATH."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from ralph.cli import cli
from ralph.plan import load_plan
from tests.conftest import git, ralph_commits

PLAN = """---
engine: claude
---
# Agents

- [ ] Write hello.txt
  Verify: `grep -q hello hello.txt`
"""


def install_agent(bin_dir: Path, name: str, script: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/usr/bin/env python3\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def run_plan(
    repo: Path, bin_dir: Path, monkeypatch: pytest.MonkeyPatch, text: str = PLAN
) -> tuple[int, str]:
    (repo / "plan.md").write_text(text)
    git(repo, "add", "plan.md")
    git(repo, "commit", "-qm", "plan")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    result = CliRunner().invoke(cli, ["run", str(repo / "plan.md")])
    return result.exit_code, result.output


CLAUDE = r"""
import json, os, sys
prompt = sys.stdin.read()
with open(os.environ["AGENT_LOG"], "a") as log:
    log.write(json.dumps({"argv": sys.argv[1:], "prompt": prompt,
                          "key": os.environ.get("ANTHROPIC_API_KEY"),
                          "secret": os.environ.get("MY_SERVICE_TOKEN")}) + "\n")
open("hello.txt", "w").write("hello\n")
print(json.dumps({"type": "result", "result": "Wrote hello.txt.\nRALPH: done",
                  "total_cost_usd": 0.25,
                  "usage": {"input_tokens": 100, "output_tokens": 20,
                            "cache_creation_input_tokens": 5,
                            "cache_read_input_tokens": 7}}))
"""


def test_claude_engine_gets_the_fresh_context_on_stdin(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_agent(tmp_path / "bin", "claude", CLAUDE)
    log = tmp_path / "agent.log"
    monkeypatch.setenv("AGENT_LOG", str(log))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key")
    monkeypatch.setenv("MY_SERVICE_TOKEN", "hunter2")

    code, output = run_plan(repo, tmp_path / "bin", monkeypatch)

    assert code == 0, output
    [call] = [json.loads(line) for line in log.read_text().splitlines()]
    assert call["argv"][:1] == ["-p"]
    assert "# Your step: Write hello.txt" in call["prompt"]
    assert "RALPH: done" in call["prompt"]
    assert "finish_step" not in call["prompt"]  # the API engine's tools are not its
    assert call["key"] == "sk-ant-test-key"  # the agent's own credential
    assert call["secret"] is None
    assert ralph_commits(repo) == ["ralph: Write hello.txt"]
    assert load_plan(repo / "plan.md").steps[0].notes == ("Wrote hello.txt.",)
    trailers = git(repo, "log", "-1", "--format=%(trailers)")
    assert "Ralph-Cost-USD: 0.250000" in trailers
    assert "Ralph-Input-Tokens: 100" in trailers


def test_an_agent_that_says_blocked_blocks_the_step(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_agent(
        tmp_path / "bin",
        "my-agent",
        "import sys\nsys.stdin.read()\nprint('RALPH: blocked needs a human')\n",
    )
    text = PLAN.replace("engine: claude", "engine: command\ncommand: my-agent --go")

    code, _ = run_plan(repo, tmp_path / "bin", monkeypatch, text)

    assert code == 3
    assert "needs a human" in load_plan(repo / "plan.md").steps[0].notes[-1]


def test_an_agent_that_fails_is_retried_then_blocked(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_agent(
        tmp_path / "bin",
        "my-agent",
        "import sys\nsys.stdin.read()\nprint('boom')\nsys.exit(4)\n",
    )
    text = PLAN.replace(
        "engine: claude", "engine: command\ncommand: my-agent\nmax_attempts: 2"
    )

    code, _ = run_plan(repo, tmp_path / "bin", monkeypatch, text)

    assert code == 3
    note = load_plan(repo / "plan.md").steps[0].notes[-1]
    assert "2 attempts failed" in note and "exited 4" in note


def test_a_missing_agent_executable_is_a_clear_error(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = PLAN.replace("engine: claude", "engine: command\ncommand: no-such-agent-x")
    (tmp_path / "bin").mkdir()
    code, output = run_plan(repo, tmp_path / "bin", monkeypatch, text)
    assert code == 2
    assert "no-such-agent-x" in output and "not on PATH" in output
