"""The loop end to end with the shell engine, on real git repositories."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from click.testing import CliRunner

from ralph.cli import cli
from ralph.plan import load_plan
from tests.conftest import ROOT, git, ralph_commits

DEMO = ROOT / "tasks" / "demo.md"


def write_plan(repo: Path, text: str, commit: bool = True) -> Path:
    plan = repo / "plan.md"
    plan.write_text(text, encoding="utf-8")
    if commit:
        git(repo, "add", "plan.md")
        git(repo, "commit", "-q", "-m", "plan")
    return plan


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_demo_runs_to_the_end_with_one_commit_per_step(repo: Path) -> None:
    shutil.copy(DEMO, repo / "plan.md")

    code, output = invoke("run", str(repo / "plan.md"))

    assert code == 0, output
    plan = load_plan(repo / "plan.md")
    assert all(step.done for step in plan.steps)
    assert ralph_commits(repo) == ["ralph: plan"] + [
        f"ralph: {step.title}" for step in plan.steps
    ]
    assert git(repo, "status", "--porcelain") == ""
    assert "counts.txt" in git(repo, "ls-files")


def test_each_commit_holds_the_work_and_the_tick(repo: Path) -> None:
    shutil.copy(DEMO, repo / "plan.md")
    invoke("run", str(repo / "plan.md"))

    first = git(repo, "log", "--format=%H", "--grep=Write the word counter").split()[0]
    changed = git(repo, "show", "--name-only", "--format=", first).split()
    assert sorted(changed) == ["plan.md", "wordcount.py"]
    diff = git(repo, "show", "--format=", first, "--", "plan.md")
    assert "-- [ ] Write the word counter" in diff
    assert "+- [x] Write the word counter" in diff
    trailers = git(repo, "log", "-1", "--format=%(trailers)", first)
    assert "Ralph-Step: Write the word counter" in trailers
    assert "Ralph-Attempts: 1" in trailers


def test_status_reads_the_books_back_from_git(repo: Path) -> None:
    shutil.copy(DEMO, repo / "plan.md")
    invoke("run", str(repo / "plan.md"))

    code, output = invoke("status", str(repo / "plan.md"))

    assert code == 0
    assert "4 of 4 steps done" in output
    assert "[x] 1. Write the word counter  (1 attempt, 0 tokens" in output
    assert "total: 4 attempts" in output


def test_status_tells_steps_with_the_same_title_apart(repo: Path) -> None:
    write_plan(
        repo,
        """---
engine: shell
---
# Twins

- [ ] Same
  ```sh
  echo 1 > one
  ```
- [ ] Same
  ```sh
  echo 2 > two
  ```
""",
    )
    invoke("run", str(repo / "plan.md"))

    code, output = invoke("status", str(repo / "plan.md"))

    assert output.count("(1 attempt, ") == 2
    assert "total: 2 attempts" in output


def test_status_shows_the_step_in_progress(repo: Path) -> None:
    shutil.copy(DEMO, repo / "plan.md")
    git(repo, "add", "plan.md")
    git(repo, "commit", "-qm", "plan")
    marker = git(
        repo,
        "commit-tree",
        "HEAD^{tree}",
        "-p",
        "HEAD",
        "-m",
        "ralph: wip\n\nRalph-Step: Test it\nRalph-Step-Number: 2\n"
        "Ralph-Plan: plan.md\nRalph-Attempts: 2",
    ).strip()
    git(repo, "update-ref", "refs/ralph/wip", marker)

    _, output = invoke("status", str(repo / "plan.md"))

    assert "[ ] 2. Test it  (interrupted in attempt 2; ralph run resumes it)" in output


def test_a_failed_attempt_is_kept_on_a_ref_and_the_retry_starts_clean(
    repo: Path, tmp_path: Path
) -> None:
    counter = tmp_path / "tries"
    write_plan(
        repo,
        f"""---
engine: shell
sandbox: none
---
# Flaky

- [ ] Succeed on the second try
  ```sh
  echo "attempt $(cat {counter} 2>/dev/null || echo 0)" > trace.txt
  n=$(cat {counter} 2>/dev/null || echo 0)
  echo $((n + 1)) > {counter}
  echo "left behind" > junk-$n.txt
  test "$n" -ge 1
  ```
""",
    )

    code, output = invoke("run", str(repo / "plan.md"))

    assert code == 0, output
    assert ralph_commits(repo) == ["ralph: Succeed on the second try"]
    files = git(repo, "ls-files").split()
    assert "junk-1.txt" in files and "junk-0.txt" not in files
    refs = git(repo, "for-each-ref", "--format=%(refname)", "refs/ralph/attempts")
    [ref] = refs.split()
    assert "junk-0.txt" in git(repo, "show", "--name-only", "--format=", ref)
    assert "Ralph-Attempts: 2" in git(repo, "log", "-1", "--format=%B")


def test_a_step_that_never_passes_is_blocked_with_its_reason(repo: Path) -> None:
    write_plan(
        repo,
        """---
engine: shell
max_attempts: 2
---
# Hopeless

- [ ] Never passes
  ```sh
  echo trying > attempt.txt
  ```
  Verify: `test -f does-not-exist`
- [ ] Never reached
  ```sh
  touch reached
  ```
""",
    )
    before_head = git(repo, "rev-parse", "HEAD")

    code, output = invoke("run", str(repo / "plan.md"))

    assert code == 3, output
    plan = load_plan(repo / "plan.md")
    assert not plan.steps[0].done and not plan.steps[1].done
    assert "blocked" in plan.steps[0].notes[-1]
    assert "test -f does-not-exist" in plan.steps[0].notes[-1]
    assert ralph_commits(repo) == ["ralph: blocked: Never passes"]
    assert git(repo, "rev-parse", "HEAD~1").strip() == before_head.strip()
    assert not (repo / "attempt.txt").exists()
    assert not (repo / "reached").exists()
    refs = git(repo, "for-each-ref", "--format=%(refname)", "refs/ralph/attempts")
    assert len(refs.split()) == 2


def test_an_attempt_that_edits_the_plan_is_rejected_and_undone(repo: Path) -> None:
    plan_text = """---
engine: shell
max_attempts: 1
---
# Cheat

- [ ] Tick my own box
  ```sh
  sed -i 's/- \\[ \\] Tick/- [x] Tick/' plan.md
  ```
"""
    write_plan(repo, plan_text)

    code, output = invoke("run", str(repo / "plan.md"))

    assert code == 3
    plan = load_plan(repo / "plan.md")
    assert not plan.steps[0].done
    assert "edited the plan file" in plan.steps[0].notes[-1]


def test_a_step_without_shell_blocks_is_blocked(repo: Path) -> None:
    write_plan(repo, "---\nengine: shell\n---\n# Nothing\n\n- [ ] Think hard\n")
    code, _ = invoke("run", str(repo / "plan.md"))
    assert code == 3
    assert "no sh or bash code block" in load_plan(repo / "plan.md").steps[0].notes[-1]


def test_groups_are_ticked_with_their_last_child(repo: Path) -> None:
    write_plan(
        repo,
        """---
engine: shell
---
# Groups

- [ ] Group
  - [ ] Child one
    ```sh
    touch one
    ```
  - [ ] Child two
    ```sh
    touch two
    ```
- [ ] After
  ```sh
  test -f one && test -f two && touch after
  ```
""",
    )
    code, output = invoke("run", str(repo / "plan.md"))
    assert code == 0, output
    assert ralph_commits(repo) == [
        "ralph: Child one",
        "ralph: Child two",
        "ralph: After",
    ]
    plan = load_plan(repo / "plan.md")
    assert all(step.done for step in plan.steps)


def test_only_ticked_steps_means_nothing_to_do(repo: Path) -> None:
    plan = write_plan(repo, "# Done\n\n- [x] Already\n")
    before = plan.read_bytes()
    code, _ = invoke("run", str(plan), "--engine", "shell")
    assert code == 0
    assert plan.read_bytes() == before
    assert ralph_commits(repo) == []


def test_max_steps_stops_between_steps(repo: Path) -> None:
    shutil.copy(DEMO, repo / "plan.md")
    code, _ = invoke("run", str(repo / "plan.md"), "--max-steps", "1")
    assert code == 3
    assert len(ralph_commits(repo)) == 2  # the plan, then one step
    code, _ = invoke("run", str(repo / "plan.md"))
    assert code == 0
    assert len(ralph_commits(repo)) == 5


def test_uncommitted_changes_of_the_user_are_refused(repo: Path) -> None:
    shutil.copy(DEMO, repo / "plan.md")
    (repo / "mine.txt").write_text("my work\n")
    plan_before = (repo / "plan.md").read_bytes()

    code, output = invoke("run", str(repo / "plan.md"))

    assert code == 2
    assert "uncommitted changes (mine.txt" in output and "--allow-dirty" in output
    assert (repo / "plan.md").read_bytes() == plan_before
    assert (repo / "mine.txt").read_text() == "my work\n"


def test_allow_dirty_keeps_the_users_changes(repo: Path) -> None:
    shutil.copy(DEMO, repo / "plan.md")
    (repo / "mine.txt").write_text("my work\n")
    code, _ = invoke("run", str(repo / "plan.md"), "--allow-dirty")
    assert code == 0
    assert (repo / "mine.txt").read_text() == "my work\n"
    assert "mine.txt" in git(repo, "ls-files")


def test_commits_succeed_without_a_git_identity(tmp_path: Path) -> None:
    repo = tmp_path / "bare"
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    shutil.copy(DEMO, repo / "plan.md")

    code, output = invoke("run", str(repo / "plan.md"))

    assert code == 0, output
    author = git(repo, "log", "-1", "--format=%an <%ae>").strip()
    assert author == "ralph <ralph@localhost>"
    assert "user" not in (repo / ".git" / "config").read_text()


def test_ralph_dir_is_kept_out_of_git(repo: Path) -> None:
    shutil.copy(DEMO, repo / "plan.md")
    invoke("run", str(repo / "plan.md"))
    assert (repo / ".ralph" / "logs").is_dir()
    assert "/.ralph/" in (repo / ".git" / "info" / "exclude").read_text()
    assert ".ralph" not in git(repo, "ls-files")


def test_the_models_own_commits_are_folded_into_the_step(repo: Path) -> None:
    write_plan(
        repo,
        """---
engine: shell
sandbox: none
---
# Commits

- [ ] Commit by hand
  ```sh
  echo a > a.txt
  git add a.txt
  git -c user.name=x -c user.email=x@x commit -qm "my own commit"
  ```
""",
    )
    code, output = invoke("run", str(repo / "plan.md"))
    assert code == 0, output
    subjects = git(repo, "log", "--format=%s").splitlines()
    assert "my own commit" not in subjects
    assert subjects[0] == "ralph: Commit by hand"
