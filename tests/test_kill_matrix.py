"""Kill ralph with SIGKILL at many points of a step, then run it again.

For every point the second run must finish the plan with each step
committed exactly once, and lose nothing an earlier attempt wrote. Points
inside git are reached through a `git` on PATH that stops before or after
one chosen subcommand; the rest through the step's own commands.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ralph.plan import load_plan
from tests.conftest import (
    ROOT,
    commit_plan,
    git,
    make_repo,
    ralph_commits,
    run_ralph,
    wait_for,
)
from tests.fakes.anthropic_server import FakeAnthropic, Turn

STALL = (
    '[ "$STALL" != {where} ] || [ -e "$FLAG.done" ] || '
    '{{ touch "$FLAG.done"; echo $$ > "$FLAG"; sleep 60; }}'
)
# The kill points are found through files under /tmp, which a sandbox hides.
PLAN = f"""---
engine: shell
sandbox: none
---
# Survive

- [ ] First
  ```sh
  echo one > one.txt
  ```
- [ ] Second
  ```sh
  echo "attempt $(date +%s%N)" >> log.txt
  {STALL.format(where="block")}
  ```
  Verify: `{STALL.format(where="verify")}; test -s log.txt`
- [ ] Third
  ```sh
  test -s log.txt && echo three > three.txt
  ```
"""

# Stops the chosen git subcommand, the n-th time it runs, before or after it.
GIT_WRAPPER = """#!/bin/bash
args=("$@"); i=0
while [ "${args[$i]}" = "-c" ]; do i=$((i+2)); done
sub="${args[$i]}"
stop() {
  n=$(cat "$FLAG.count.$1" 2>/dev/null || echo 0); n=$((n+1))
  echo $n > "$FLAG.count.$1"
  if [ "$n" = "$GIT_NTH" ]; then echo $$ > "$FLAG"; sleep 60; fi
}
[ "$sub" = "$GIT_BEFORE" ] && stop before
REAL_GIT "$@"; rc=$?
[ "$sub" = "$GIT_AFTER" ] && stop after
exit $rc
"""

# name: (environment of the first run)
POINTS = {
    "during a shell block": {"STALL": "block"},
    "during verify": {"STALL": "verify"},
    "while saving the in-progress marker": {"GIT_BEFORE": "update-ref", "GIT_NTH": "3"},
    "after saving the in-progress marker": {"GIT_AFTER": "update-ref", "GIT_NTH": "3"},
    "between the tick and the commit": {"GIT_BEFORE": "commit", "GIT_NTH": "2"},
    "during the commit, before its staging": {"GIT_BEFORE": "add", "GIT_NTH": "2"},
    "right after the commit": {"GIT_AFTER": "commit", "GIT_NTH": "2"},
    "while clearing the marker": {"GIT_BEFORE": "update-ref", "GIT_NTH": "4"},
    "while taking a snapshot": {"GIT_BEFORE": "write-tree", "GIT_NTH": "2"},
}


def start_ralph(repo: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "ralph", "run", "plan.md"],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def kill_everything(proc: subprocess.Popen[bytes], flag: Path) -> None:
    """SIGKILL ralph, its children, and the command it was running."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    try:
        os.killpg(os.getpgid(int(flag.read_text())), signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.mark.parametrize("point", list(POINTS))
def test_killed_then_resumed(repo: Path, tmp_path: Path, point: str) -> None:
    (repo / "plan.md").write_text(PLAN)
    git(repo, "add", "plan.md")
    git(repo, "commit", "-qm", "plan")
    flag = tmp_path / "flag"
    env = {"FLAG": str(flag), **POINTS[point]}
    if "GIT_NTH" in env:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        wrapper = bin_dir / "git"
        wrapper.write_text(GIT_WRAPPER.replace("REAL_GIT", shutil.which("git") or ""))
        wrapper.chmod(0o755)
        env["PATH"] = f"{bin_dir}:{os.environ['PATH']}"

    proc = start_ralph(repo, env)
    wait_for(flag, proc)
    kill_everything(proc, flag)
    log_before = (repo / "log.txt").read_text() if (repo / "log.txt").exists() else ""

    result = run_ralph("run", "plan.md", cwd=repo)

    assert result.returncode == 0, result.stderr
    assert ralph_commits(repo) == ["ralph: First", "ralph: Second", "ralph: Third"]
    assert all(step.done for step in load_plan(repo / "plan.md").steps)
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "for-each-ref", "refs/ralph/wip") == ""
    log_after = git(repo, "show", "HEAD:log.txt")
    assert log_after.startswith(log_before), "a line the killed attempt wrote is lost"
    assert git(repo, "show", "HEAD:one.txt") == "one\n"


MODEL_PLAN = """---
model: claude-sonnet-4-6
sandbox: none
---
# Two files

- [ ] Write a.txt
  Verify: `test -f a.txt`
- [ ] Write b.txt
  Verify: `grep -q bee b.txt`
"""


def bash(command: str) -> Turn:
    return Turn.tool("bash", {"command": command})


@pytest.mark.parametrize("point", ["during a model call", "during a tool command"])
def test_killed_in_an_anthropic_attempt_then_resumed(
    repo: Path, tmp_path: Path, point: str
) -> None:
    (repo / "plan.md").write_text(MODEL_PLAN)
    git(repo, "add", "plan.md")
    git(repo, "commit", "-qm", "plan")
    flag = tmp_path / "flag"
    stall = (
        Turn(text="thinking", delay=60)
        if point == "during a model call"
        else bash(f"echo $$ > {flag}; sleep 60")
    )
    with FakeAnthropic() as fake:
        fake.add(
            bash("echo a > a.txt"),
            Turn.finish(),
            bash("echo 'first try' >> notes.txt"),
            stall,
        )
        env = {
            "ANTHROPIC_API_KEY": "sk-ant-test",
            "ANTHROPIC_BASE_URL": fake.url,
            "RALPH_RETRY_BASE": "0.001",
        }
        proc = start_ralph(repo, env)
        if point == "during a model call":
            while len(fake.bodies) < 4:
                assert proc.poll() is None
                time.sleep(0.02)
            flag.write_text(str(proc.pid))
        wait_for(flag, proc)
        kill_everything(proc, flag)

        fake.script.clear()
        fake.add(bash("echo bee > b.txt"), Turn.finish("done", "finished b"))
        result = run_ralph("run", "plan.md", cwd=repo, env=env)

    assert result.returncode == 0, result.stderr
    assert ralph_commits(repo) == ["ralph: Write a.txt", "ralph: Write b.txt"]
    # The resumed attempt was told of the interrupted one and its changes.
    resumed = fake.bodies[-2]["messages"][0]["content"]
    assert "interrupted" in str(resumed) and "notes.txt" in str(resumed)
    assert git(repo, "show", "HEAD:notes.txt") == "first try\n"
    # The killed attempt's spend was kept in git and counts for the step.
    replies = [r for r in fake.requests if r.path == "/v1/messages" and r.usage]
    kinds = (
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    )
    spent = sum(r.usage[kind] for r in replies[2:] for kind in kinds)
    trailers = git(repo, "log", "-1", "--format=%(trailers)")
    counted = sum(
        int(line.split(": ")[1])
        for line in trailers.splitlines()
        if line.startswith("Ralph-") and line.split(":")[0].endswith("Tokens")
    )
    assert counted == spent


def test_plan_edits_made_while_interrupted_are_committed_and_the_step_resumes(
    repo: Path, tmp_path: Path
) -> None:
    commit_plan(repo, PLAN)
    flag = tmp_path / "flag"
    proc = start_ralph(repo, {"FLAG": str(flag), "STALL": "block"})
    wait_for(flag, proc)
    kill_everything(proc, flag)
    plan = repo / "plan.md"
    plan.write_text(plan.read_text() + "- [ ] Fourth\n  ```sh\n  touch four\n  ```\n")

    result = run_ralph("run", "plan.md", cwd=repo)

    assert result.returncode == 0, result.stderr
    assert ralph_commits(repo) == [
        "ralph: First",
        "ralph: plan",
        "ralph: Second",
        "ralph: Third",
        "ralph: Fourth",
    ]
    assert "Ralph-Attempts: 1" in git(
        repo, "log", "-1", "--format=%B", "--grep=^ralph: Second"
    )
    assert git(repo, "show", "HEAD:log.txt").count("attempt") == 2


def test_a_plan_swapped_for_a_symlink_before_a_kill_is_put_back(
    repo: Path, tmp_path: Path
) -> None:
    victim = make_repo(tmp_path / "victim", {"plan.md": "# V\n\n- [ ] Victim\n"})
    victim_plan = (victim / "plan.md").read_bytes()
    flag = tmp_path / "flag"
    commit_plan(
        repo,
        f"""---
engine: shell
sandbox: none
---
# Swap

- [ ] Swap the plan
  ```sh
  if [ ! -e {flag}.done ]; then
    touch {flag}.done
    rm plan.md
    ln -s {victim}/plan.md plan.md
    echo $$ > {flag}
    sleep 60
  fi
  ```
""",
    )
    proc = start_ralph(repo, {})
    wait_for(flag, proc)
    kill_everything(proc, flag)

    result = run_ralph("run", "plan.md", "--engine", "shell", cwd=repo)

    assert "put back as committed" in result.stderr
    assert (victim / "plan.md").read_bytes() == victim_plan
    assert git(victim, "log", "--format=%s").split("\n")[0] == "start"
    assert not (repo / "plan.md").is_symlink()
    assert result.returncode == 0, result.stderr
