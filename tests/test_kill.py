"""A run killed with SIGKILL in the middle of a step, then run again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ralph.plan import load_plan
from tests.conftest import ROOT, git, ralph_commits, run_ralph


def kill_plan(flag: Path) -> str:
    return f"""---
engine: shell
---
# Survive a kill

- [ ] First
  ```sh
  echo one > one.txt
  ```
- [ ] Second, interrupted
  ```sh
  echo "line from attempt $$" >> log.txt
  if [ ! -e {flag}.seen ]; then
    touch {flag}.seen
    echo $$ > {flag}
    sleep 60
  fi
  echo two > two.txt
  ```
  Verify: `test -f two.txt`
- [ ] Third
  ```sh
  echo three > three.txt
  ```
"""


def wait_for(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text().strip():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_killed_mid_step_then_resumed(repo: Path, tmp_path: Path) -> None:
    flag = tmp_path / "block-pid"
    (repo / "plan.md").write_text(kill_plan(flag))
    git(repo, "add", "plan.md")
    git(repo, "commit", "-qm", "plan")

    proc = subprocess.Popen(
        [sys.executable, "-m", "ralph", "run", "plan.md"],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(flag)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The machine going down takes the running command with it too.
    os.killpg(int(flag.read_text()), signal.SIGKILL)
    assert (repo / "log.txt").exists()

    result = run_ralph("run", "plan.md", cwd=repo)

    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stderr
    assert ralph_commits(repo) == [
        "ralph: First",
        "ralph: Second, interrupted",
        "ralph: Third",
    ]
    assert all(step.done for step in load_plan(repo / "plan.md").steps)
    # The interrupted attempt's line survived into the step's commit.
    log_lines = git(repo, "show", "HEAD~1:log.txt").splitlines()
    assert len(log_lines) == 2
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "for-each-ref", "refs/ralph/wip") == ""
