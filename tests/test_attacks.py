"""Attempts that turn on the runner itself: the plan's path, secrets in
output, linked work trees, commands that leave children behind."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ralph.cli import cli
from ralph.plan import load_plan
from tests.conftest import commit_plan, git, ralph_commits

TOKEN = "ghp_" + "a1b2c3d4e5" * 3 + "f6g7h8"


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def one_step(block: str, extra: str = "") -> str:
    lines = "\n".join(f"  {line}" for line in block.strip().splitlines())
    return (
        f"---\nengine: shell\nmax_attempts: 1\n{extra}---\n# Attack\n\n"
        f"- [ ] Go\n  ```sh\n{lines}\n  ```\n"
    )


@pytest.mark.parametrize(
    "replace",
    [
        "ln -s {victim} plan.md",
        "mkfifo plan.md",
        "mkdir plan.md && touch plan.md/inside",
    ],
)
def test_whatever_replaces_the_plan_is_undone_without_touching_outside(
    repo: Path, tmp_path: Path, replace: str
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    text = one_step(f"rm plan.md\n{replace.format(victim=victim)}")
    plan = commit_plan(repo, text)

    started = time.monotonic()
    code, _ = invoke("run", str(plan))

    assert code == 3
    assert time.monotonic() - started < 30
    assert victim.read_text() == "precious\n"
    assert plan.is_file() and not plan.is_symlink()
    assert "edited the plan file" in load_plan(plan).steps[0].notes[-1]
    assert git(repo, "status", "--porcelain") == ""


def test_secrets_in_output_never_reach_the_plan_or_the_history(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (repo / ".gitignore").write_text(".env\n")
    (repo / ".env").write_text(f"GITHUB_TOKEN={TOKEN}\n")
    monkeypatch.setenv("MY_SERVICE_TOKEN", "correct-horse-battery")
    plan = commit_plan(
        repo,
        one_step(
            'cat .env\necho "$MY_SERVICE_TOKEN"\nfalse',
            extra="env_allow: [MY_SERVICE_TOKEN]\n",
        ),
    )

    code, _ = invoke("run", str(plan))

    assert code == 3
    history = git(repo, "log", "-p", "--all")
    for secret in (TOKEN, "correct-horse-battery"):
        assert secret not in plan.read_text()
        assert secret not in history
    assert "[redacted]" in load_plan(plan).steps[0].notes[-1]
    logs = [p.read_text() for p in (repo / ".ralph" / "logs").rglob("*") if p.is_file()]
    assert logs and not any(
        secret in log for log in logs for secret in (TOKEN, "correct-horse-battery")
    )


def test_a_linked_work_tree_keeps_ralph_dir_out_of_git(repo: Path) -> None:
    git(repo, "worktree", "add", "-q", "-b", "side", str(repo.parent / "side"))
    side = repo.parent / "side"
    plan = commit_plan(
        side, one_step("echo hi > hi.txt").replace("max_attempts: 1\n", "")
    )

    code, output = invoke("run", str(plan))

    assert code == 0, output
    assert ralph_commits(side) == ["ralph: Go"]
    assert ".ralph" not in git(side, "ls-files")


def test_a_background_child_does_not_hold_the_step(repo: Path) -> None:
    plan = commit_plan(
        repo,
        one_step(
            "sleep 1000 &\necho started > started.txt",
            extra="sandbox: none\ncommand_timeout: 20\n",
        ),
    )
    started = time.monotonic()

    code, _ = invoke("run", str(plan))

    assert code == 0
    assert time.monotonic() - started < 15
    assert git(repo, "show", "HEAD:started.txt") == "started\n"


@pytest.mark.parametrize(
    "attributes",
    [
        "plan.md working-tree-encoding=UTF-16",
        "plan.md text eol=crlf ident",
    ],
)
def test_an_attempt_may_not_change_how_git_reads_files(
    repo: Path, attributes: str
) -> None:
    plan = commit_plan(repo, one_step(f"echo '{attributes}' > .gitattributes"))
    before = plan.read_bytes()

    code, _ = invoke("run", str(plan))

    assert code == 3
    assert not (repo / ".gitattributes").exists()
    note = load_plan(plan).steps[0].notes[-1]
    assert ".gitattributes" in note and "undone" in note
    assert b"\r\n" not in plan.read_bytes() and plan.read_bytes().startswith(before)


def test_tokens_on_later_lines_of_output_are_redacted_in_transcripts(
    repo: Path,
) -> None:
    aws = "AKIA" + "ABCDEFGHIJKLMNOP"
    plan = commit_plan(repo, one_step(f"echo first\necho {TOKEN}\necho {aws}"))

    code, _ = invoke("run", str(plan))

    assert code == 0
    [transcript] = list((repo / ".ralph" / "logs").rglob("transcript.jsonl"))
    text = transcript.read_text()
    assert "first" in text and TOKEN not in text and aws not in text


def test_snapshots_on_ralphs_refs_hold_no_secret_files(repo: Path) -> None:
    # The token is put together by the shell, so the plan never holds it.
    block = f'p=ghp; echo "TOKEN=${{p}}{TOKEN[3:]}" > .env\necho work > work.txt\nfalse'
    plan = commit_plan(repo, one_step(block))

    code, _ = invoke("run", str(plan))

    assert code == 3
    assert TOKEN not in git(repo, "log", "-p", "--all")
    [ref] = git(repo, "for-each-ref", "--format=%(refname)", "refs/ralph/").split()
    assert "work.txt" in git(repo, "show", "--name-only", "--format=", ref)
    # The rejected attempt's secret file is left in place, not thrown away.
    assert (repo / ".env").read_text() == f"TOKEN={TOKEN}\n"
