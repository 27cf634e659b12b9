"""`ralph new`: from an idea, or a plan in hand, to a repository that runs it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from ralph.errors import InputError, RalphError
from ralph.git import Repo

PLAN_NAME = "plan.md"
SLUG_WORDS = 6


def slug(text: str) -> str:
    """A short folder name for an idea: its first words, lower case, hyphenated."""
    words = re.findall(r"[a-z0-9]+", text.lower())[:SLUG_WORDS]
    return "-".join(words) or "ralph-project"


def check_target(folder: Path, force: bool) -> None:
    """Refuse a folder that holds something, unless the user said --force."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} exists and is not a folder; choose another DIR")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise InputError(
            f"{folder} is not empty; choose a new DIR, or pass --force to add "
            f"the plan there anyway"
        )


def create_project(folder: Path, plan: bytes, force: bool) -> Path:
    """Make `folder` a git repository whose first commit is the plan."""
    check_target(folder, force)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        if not (folder / ".git").exists():
            subprocess.run(
                ["git", "init", "-q"], cwd=folder, check=True, capture_output=True
            )
        path = folder / PLAN_NAME
        if path.exists():
            raise InputError(f"{path} already exists; ralph will not overwrite it")
        path.write_bytes(plan)
        repo = Repo(folder.resolve())
        repo.exclude_ralph_dir()
        repo.commit(f"ralph: plan\n\nRalph-Plan: {PLAN_NAME}\n", paths=[PLAN_NAME])
    except (OSError, subprocess.CalledProcessError, RalphError):
        # Nothing half made: a folder ralph created goes again.
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return path
