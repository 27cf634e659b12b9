"""Ctrl-C, SIGTERM and a second runner: stop cleanly, resume correctly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, commit_plan, git, ralph_commits, run_ralph, wait_for

PLAN = """---
engine: shell
sandbox: none
---
# Long

- [ ] Long step
  ```sh
  sleep 60 &
  echo $! > {child}
  wait
  ```
"""


def start(repo: Path, child: Path, plan: str = PLAN) -> subprocess.Popen[str]:
    """Start `ralph run` on the plan and wait until its step wrote `child`."""
    commit_plan(repo, plan.format(child=child))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ralph", "run", "plan.md"],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(child, proc, timeout=30)
    return proc


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes: it holds no resources but its entry.
    status = Path(f"/proc/{pid}/stat").read_text().split()[2]
    return status != "Z"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_run_and_its_commands(
    repo: Path, tmp_path: Path, signum: int
) -> None:
    child = tmp_path / "child"
    proc = start(repo, child)
    plan_before = (repo / "plan.md").read_bytes()
    head_before = git(repo, "rev-parse", "HEAD")

    started = time.monotonic()
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=30)

    assert proc.returncode == 130, stderr
    assert time.monotonic() - started < 10
    assert "interrupted" in stderr and "again to resume" in stderr
    assert not alive(int(child.read_text()))
    assert (repo / "plan.md").read_bytes() == plan_before
    assert git(repo, "rev-parse", "HEAD") == head_before


def test_a_second_runner_refuses_and_a_dead_ones_lock_is_taken_over(
    repo: Path, tmp_path: Path
) -> None:
    child = tmp_path / "child"
    first = start(repo, child)

    second = run_ralph("run", "plan.md", cwd=repo)

    assert second.returncode == 1
    assert f"pid {first.pid}" in second.stderr
    first.send_signal(signal.SIGKILL)
    first.communicate()
    os.kill(int(child.read_text()), signal.SIGKILL)

    (repo / "plan.md").write_text(
        (repo / "plan.md").read_text().replace("sleep 60 &", "true &")
    )
    third = run_ralph("run", "plan.md", cwd=repo)
    assert third.returncode == 0, third.stderr
    assert ralph_commits(repo)[-1] == "ralph: Long step"


ORPHAN = """---
engine: shell
sandbox: none
---
# Orphan

- [ ] Wait
  ```sh
  echo $$ > {child}
  sleep 60
  echo late > late.txt
  ```
"""


def test_a_killed_ralph_takes_its_unsandboxed_command_along(
    repo: Path, tmp_path: Path
) -> None:
    shell = tmp_path / "shell"
    proc = start(repo, shell, ORPHAN)

    proc.send_signal(signal.SIGKILL)
    proc.communicate()

    deadline = time.monotonic() + 5
    while alive(int(shell.read_text())):
        assert time.monotonic() < deadline, "the step's shell outlived ralph"
        time.sleep(0.05)
    assert not (repo / "late.txt").exists()


def test_status_tells_a_running_step_from_an_interrupted_one(
    repo: Path, tmp_path: Path
) -> None:
    child = tmp_path / "child"
    proc = start(repo, child)

    during = run_ralph("status", "plan.md", cwd=repo)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    os.kill(int(child.read_text()), signal.SIGKILL)
    after = run_ralph("status", "plan.md", cwd=repo)

    assert f"(in progress, attempt 1, pid {proc.pid})" in during.stdout
    assert "(interrupted in attempt 1; ralph run resumes it)" in after.stdout
