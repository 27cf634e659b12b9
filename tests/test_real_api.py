"""One small plan against the real Anthropic API; skipped without a key.

Set ANTHROPIC_API_KEY to run it. It spends a few cents on a small model.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import commit_plan, ralph_commits, run_ralph

# Read before the isolation fixture clears ANTHROPIC_* from the environment.
REAL_KEY = os.environ.get("ANTHROPIC_API_KEY")

pytestmark = [
    pytest.mark.real_api,
    pytest.mark.skipif(not REAL_KEY, reason="needs a real ANTHROPIC_API_KEY"),
]

PLAN = """---
model: claude-haiku-4-5
max_attempts: 2
budget_usd: 0.5
---
# Hello

- [ ] Create hello.txt whose only line is the word hello
  Verify: `grep -qx hello hello.txt`
"""


def test_a_real_model_does_a_step(repo: Path) -> None:
    commit_plan(repo, PLAN)
    result = run_ralph(
        "run",
        "plan.md",
        cwd=repo,
        env={"ANTHROPIC_API_KEY": REAL_KEY or ""},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert ralph_commits(repo)[-1].startswith("ralph: Create hello.txt")
