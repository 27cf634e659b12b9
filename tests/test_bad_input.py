"""Bad plans and bad surroundings: exit 2, a message that says what to do,
and the plan byte-identical afterwards."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT, TEST_IDENTITY, git, make_repo, run_ralph

GOOD = "---\nengine: shell\n---\n# Plan\n\n- [ ] Step\n  ```sh\n  true\n  ```\n"


def plan_repo(tmp_path: Path, data: bytes, commit: bool = True) -> Path:
    repo = make_repo(tmp_path / "work", {"README.md": "x\n"})
    (repo / "plan.md").write_bytes(data)
    if commit:
        git(repo, "add", "plan.md")
        git(repo, "commit", "-qm", "plan")
    return repo


def detach(repo: Path) -> None:
    git(repo, "checkout", "-q", "--detach")


def start_merge(repo: Path) -> None:
    git(repo, "checkout", "-qb", "other")
    (repo / "README.md").write_text("other\n")
    git(repo, "commit", "-qam", "other")
    git(repo, "checkout", "-q", "main")
    (repo / "README.md").write_text("main\n")
    git(repo, "commit", "-qam", "main")
    subprocess.run(
        ["git", *TEST_IDENTITY, "merge", "other"], cwd=repo, capture_output=True
    )
    assert (repo / ".git" / "MERGE_HEAD").exists()


def start_rebase(repo: Path) -> None:
    (repo / ".git" / "rebase-merge").mkdir()


def read_only(repo: Path) -> None:
    (repo / "plan.md").chmod(0o444)


CASES: dict[str, tuple[bytes, Callable[[Path], None] | None, str]] = {
    "empty file": (b"", None, "no steps"),
    "no steps": (b"# Plan\n\nJust prose.\n", None, "no steps"),
    "invalid utf-8": (b"# Plan\n\n- [ ] caf\xe9\n", None, "UTF-8"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00IHDR", None, "binary"),
    "huge": (b"- [ ] step\n" + b"x" * (21 * 1024 * 1024), None, "MB"),
    "front matter not yaml": (b"---\nengine: [shell\n---\n- [ ] a\n", None, "YAML"),
    "front matter not a mapping": (b"---\n- a\n- b\n---\n- [ ] a\n", None, "mapping"),
    "front matter never closed": (
        b"---\nengine: shell\n\n# Plan\n\n- [ ] a\n",
        None,
        "no `---` line closes it",
    ),
    "rebase in progress": (GOOD.encode(), lambda repo: start_rebase(repo), "rebase"),
    "misspelled key": (b"---\nmax_attemps: 2\n---\n- [ ] a\n", None, "max_attempts"),
    "wrong type": (b"---\nmax_attempts: three\n---\n- [ ] a\n", None, "max_attempts"),
    "unknown key under ralph": (
        b"---\nralph:\n  colour: red\n---\n- [ ] a\n",
        None,
        "colour",
    ),
    "detached head": (GOOD.encode(), detach, "detached"),
    "read-only plan": (GOOD.encode(), read_only, "read-only"),
    "merge in progress": (GOOD.encode(), start_merge, "merge"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_exits_2_and_keeps_the_plan(tmp_path: Path, name: str) -> None:
    data, prepare, hint = CASES[name]
    repo = plan_repo(tmp_path, data)
    if prepare:
        prepare(repo)
    before = (repo / "plan.md").read_bytes()

    result = run_ralph("run", "plan.md", "--engine", "shell", cwd=repo)

    assert result.returncode == 2, (result.stdout, result.stderr)
    assert hint.lower() in result.stderr.lower()
    assert len(result.stderr.strip().splitlines()) <= 3, result.stderr
    assert "Traceback" not in result.stderr
    assert (repo / "plan.md").read_bytes() == before


def test_not_a_git_repository(tmp_path: Path) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "plan.md").write_text(GOOD)
    result = run_ralph("run", "plan.md", cwd=folder)
    assert result.returncode == 2
    assert "git init" in result.stderr
    assert (folder / "plan.md").read_text() == GOOD


def test_plan_outside_the_work_tree(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "work", {"README.md": "x\n"})
    outside = tmp_path / "plan.md"
    outside.write_text(GOOD)
    result = run_ralph("run", str(outside), cwd=repo)
    assert result.returncode == 2
    assert outside.read_text() == GOOD


def test_missing_plan_file(repo: Path) -> None:
    result = run_ralph("run", "nope.md", cwd=repo)
    assert result.returncode == 2
    assert "nope.md" in result.stderr


def test_missing_api_key_fails_before_anything_changes(repo: Path) -> None:
    (repo / "plan.md").write_text("# Plan\n\n- [ ] Step\n")
    git(repo, "add", "plan.md")
    git(repo, "commit", "-qm", "plan")
    head = git(repo, "rev-parse", "HEAD")
    result = run_ralph("run", "plan.md", cwd=repo)
    assert result.returncode == 2
    assert "ANTHROPIC_API_KEY" in result.stderr
    assert git(repo, "rev-parse", "HEAD") == head
    assert not (repo / ".ralph").exists()


def test_missing_git_executable(tmp_path: Path) -> None:
    repo = plan_repo(tmp_path, GOOD.encode())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "ralph", "run", "plan.md"],
        cwd=repo,
        env={"PATH": str(bin_dir), "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2, result.stderr
    assert "git is not installed" in result.stderr
    assert (repo / "plan.md").read_text() == GOOD
