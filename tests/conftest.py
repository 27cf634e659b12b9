"""Shared fixtures: real git repositories in temporary folders, never a mock."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.anthropic_server import FakeAnthropic

ROOT = Path(__file__).resolve().parents[1]
TEST_IDENTITY = ["-c", "user.name=Test User", "-c", "user.email=test@example.com"]


@pytest.fixture(autouse=True)
def isolated_git(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep the host's git config and credentials out of every test."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in list(os.environ):
        if name.startswith(("GIT_AUTHOR_", "GIT_COMMITTER_", "ANTHROPIC_", "RALPH_")):
            monkeypatch.delenv(name, raising=False)
    # Retries wait milliseconds, not seconds, in tests.
    monkeypatch.setenv("RALPH_RETRY_BASE", "0.001")


def git(repo: Path, *args: str) -> str:
    """Run git in a test repository with a test identity."""
    proc = subprocess.run(
        ["git", *TEST_IDENTITY, *args], cwd=repo, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def make_repo(path: Path, files: dict[str, str | bytes] | None = None) -> Path:
    """A git repository with `files` committed (or none, an unborn branch)."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    for name, content in (files or {}).items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")
    if files:
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", "start")
    return path


def ralph_commits(repo: Path) -> list[str]:
    """Subjects of the step commits on HEAD, oldest first."""
    out = git(repo, "log", "--reverse", "--format=%s")
    return [line for line in out.splitlines() if line.startswith("ralph: ")]


def run_ralph(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real `ralph` entry point in a child process."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ralph", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "work", {"README.md": "# work\n"})


def wait_for(path: Path, proc: subprocess.Popen[Any], timeout: float = 60) -> None:
    """Wait until a running ralph's step has written `path`."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        assert proc.poll() is None, "ralph ended before the point waited for"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def commit_plan(repo: Path, text: str) -> Path:
    """Write plan.md into the repository and commit it, as a user would."""
    (repo / "plan.md").write_text(text, encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "plan")
    return repo / "plan.md"


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    """The fake Messages API on 127.0.0.1, for tests that build clients."""
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
def fake_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAnthropic]:
    """The fake Messages API, with ralph's environment pointing at it."""
    with FakeAnthropic() as server:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key-000")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        yield server
