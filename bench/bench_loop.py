"""What the loop costs per step, against the git work it cannot avoid.

Runs a plan of N trivial shell steps through ralph's loop, and, as the
baseline in the same run, N plain `git add -A && git commit` of the same
kind of change in a twin repository. Prints seconds per step and the ratio.

    python bench/bench_loop.py [STEPS]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ralph.config import Settings
from ralph.engines.shell import ShellEngine
from ralph.loop import Runner

IDENTITY = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
}


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def make_repo(root: Path, plan: str) -> Path:
    root.mkdir()
    git(root, "init", "-q")
    (root / "plan.md").write_text(plan)
    git(root, "add", "-A")
    git(root, "commit", "-qm", "start")
    return root


def plan_of(steps: int) -> str:
    items = [
        f"- [ ] Step {n}\n  ```sh\n  echo {n} > file-{n}.txt\n  ```\n"
        for n in range(steps)
    ]
    return "---\nengine: shell\nsandbox: none\n---\n# Bench\n\n" + "".join(items)


def time_ralph(root: Path, steps: int) -> float:
    repo = make_repo(root / "ralph", plan_of(steps))
    settings = Settings(engine="shell", sandbox="none")
    started = time.perf_counter()
    code = Runner(repo / "plan.md", settings, ShellEngine()).run()
    assert code == 0
    return time.perf_counter() - started


def time_git(root: Path, steps: int) -> float:
    repo = make_repo(root / "git", plan_of(steps))
    started = time.perf_counter()
    for n in range(steps):
        (repo / f"file-{n}.txt").write_text(f"{n}\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", f"step {n}")
    return time.perf_counter() - started


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    os.environ.update(IDENTITY)
    with tempfile.TemporaryDirectory() as tmp:
        baseline = time_git(Path(tmp), steps)
        ralph = time_ralph(Path(tmp), steps)
    print(f"{steps} steps")
    print(f"git add + commit (baseline) {baseline / steps * 1000:8.1f} ms/step")
    print(
        f"ralph loop, shell engine     {ralph / steps * 1000:8.1f} ms/step "
        f"{ralph / baseline:6.2f}x baseline"
    )


if __name__ == "__main__":
    main()
