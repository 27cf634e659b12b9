"""The runner checks the work: protected files, honest notes, budgets in git."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ralph.cli import cli
from ralph.plan import load_plan
from tests.conftest import commit_plan, git, ralph_commits
from tests.fakes.anthropic_server import FakeAnthropic, Turn


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_an_attempt_that_edits_a_protected_test_is_rejected(repo: Path) -> None:
    (repo / "tests").mkdir()
    (repo / "tests" / "test_app.py").write_text("assert False\n")
    plan = commit_plan(
        repo,
        """---
engine: shell
max_attempts: 1
protect: ["tests/*"]
---
# Cheat

- [ ] Make the test pass
  ```sh
  echo "assert True" > tests/test_app.py
  echo "print('app')" > app.py
  ```
  Verify: `python3 tests/test_app.py`
""",
    )

    code, _ = invoke("run", str(plan))

    assert code == 3
    assert (repo / "tests" / "test_app.py").read_text() == "assert False\n"
    assert not (repo / "app.py").exists()
    note = load_plan(plan).steps[0].notes[-1]
    assert "protected files (tests/test_app.py)" in note


def test_a_step_done_with_no_change_and_no_check_says_so(repo: Path) -> None:
    plan = commit_plan(
        repo,
        """---
engine: shell
---
# Nothing

- [ ] Look around
  ```sh
  ls > /dev/null
  ```
""",
    )
    code, _ = invoke("run", str(plan))
    assert code == 0
    assert "no change and no verify command" in load_plan(plan).steps[0].notes[-1]


def test_a_check_that_passes_before_the_attempt_is_shown_in_the_prompt(
    repo: Path,
) -> None:
    plan = commit_plan(
        repo,
        """---
engine: shell
---
# Already

- [ ] Already there
  ```sh
  true
  ```
  Verify: `test -f README.md`
""",
    )
    code, _ = invoke("run", str(plan))
    assert code == 0
    [prompt] = list((repo / ".ralph" / "logs").rglob("prompt.md"))
    assert "`test -f README.md`: already passes" in prompt.read_text()


def test_a_budget_holds_across_separate_runs(
    repo: Path, fake_api: FakeAnthropic, caplog: pytest.LogCaptureFixture
) -> None:
    plan = commit_plan(
        repo,
        """---
budget_tokens: 100
---
# Spend

- [ ] One
- [ ] Two
- [ ] Three
""",
    )
    fake_api.add(Turn.finish())

    code, _ = invoke("run", str(plan))

    assert code == 3
    assert "stopping before step 2" in caplog.text and "budget_tokens" in caplog.text
    assert ralph_commits(repo) == ["ralph: One"]
    assert len(fake_api.bodies) == 1
    caplog.clear()

    code, _ = invoke("run", str(plan))

    assert code == 3
    assert "stopping before step 2" in caplog.text
    assert len(fake_api.bodies) == 1  # the second run spent nothing
    assert ralph_commits(repo) == ["ralph: One"]


def test_a_turn_limit_fails_the_attempt(repo: Path, fake_api: FakeAnthropic) -> None:
    plan = commit_plan(
        repo,
        """---
max_turns: 2
max_attempts: 1
---
# Chatty

- [ ] Never finishes
""",
    )
    fake_api.add(*[Turn.tool("bash", {"command": "true"})] * 2)
    code, _ = invoke("run", str(plan))
    assert code == 3
    assert "turn" in load_plan(plan).steps[0].notes[-1]


def test_files_that_look_like_secrets_stay_out_of_the_commit(repo: Path) -> None:
    plan = commit_plan(
        repo,
        """---
engine: shell
---
# Secrets

- [ ] Configure the app
  ```sh
  echo "DEBUG=1" > settings.ini
  echo "API_TOKEN=hunter2" > .env
  printf -- '-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXk=\\n' > deploy_key
  ```
""",
    )

    code, _ = invoke("run", str(plan))

    assert code == 0
    committed = git(repo, "show", "--name-only", "--format=", "HEAD").split()
    assert sorted(committed) == ["plan.md", "settings.ini"]
    assert (repo / ".env").exists() and (repo / "deploy_key").exists()
    note = load_plan(plan).steps[0].notes[-1]
    assert ".env" in note and "deploy_key" in note and "Left out of the commit" in note

    # A later run is not stopped by the files held back, nor does it repeat them.
    with plan.open("a") as f:
        f.write("- [ ] Then more\n  ```sh\n  echo more > more.txt\n  ```\n")
    code, _ = invoke("run", str(plan))
    assert code == 0
    assert ".env" not in "".join(load_plan(plan).steps[1].notes)
    assert ".env" not in git(repo, "ls-files")


def test_commands_run_in_the_sandbox_when_bubblewrap_works(
    repo: Path, tmp_path: Path
) -> None:
    from ralph.sandbox import bwrap_problem

    if bwrap_problem():
        pytest.skip(f"bubblewrap is not usable here: {bwrap_problem()}")
    outside = tmp_path / "outside.txt"
    plan = commit_plan(
        repo,
        f"""---
engine: shell
max_attempts: 1
---
# Contained

- [ ] Try to leave
  ```sh
  echo escaped > {outside} || true
  ls ~ > home.txt
  echo inside > inside.txt
  ```
  Verify: `test -f inside.txt && ! test -s home.txt && touch {outside}.verify || true`
""",
    )

    code, _ = invoke("run", str(plan))

    assert code == 0
    assert not outside.exists()
    assert not Path(f"{outside}.verify").exists()
    assert git(repo, "show", "HEAD:inside.txt") == "inside\n"


def test_a_read_only_run_may_read_and_run_but_not_change_files(repo: Path) -> None:
    from ralph.sandbox import bwrap_problem

    if bwrap_problem():
        pytest.skip(f"bubblewrap is not usable here: {bwrap_problem()}")
    plan = commit_plan(
        repo,
        """---
engine: shell
max_attempts: 1
---
# Audit

- [ ] Read the README
  ```sh
  grep -q work README.md
  ```
- [ ] Try to change it
  ```sh
  echo changed > README.md
  ```
""",
    )

    code, _ = invoke("run", str(plan), "--read-only")

    assert code == 3
    assert (repo / "README.md").read_text() == "# work\n"
    steps = load_plan(plan).steps
    assert steps[0].done and not steps[1].done
    first = git(repo, "show", "--name-only", "--format=", "HEAD~1").split()
    assert first == ["plan.md"]
