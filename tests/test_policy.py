"""The command policy: what the bash tool refuses before a command runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ralph.policy import check_command
from ralph.shellwords import plain_text, simple_commands
from tests.conftest import git


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A work tree with a file, a folder and a .git, beside a sibling folder."""
    root = tmp_path / "work"
    (root / "src").mkdir(parents=True)
    (root / "notes.txt").write_text("notes\n")
    git(root, "init", "-q")
    (tmp_path / "outside").mkdir()
    return root


def check(command: str, work: Path) -> str | None:
    return check_command(command, work, {"HOME": str(work.parent / "home")})


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("git push", "`git push` is refused"),
        ("git push --force origin main", "`git push` is refused"),
        ("git -C . push", "`git push` is refused"),
        ("/usr/bin/git push", "`git push` is refused"),
        ("git send-email x.patch", "never publishes"),
        ("git rebase -i HEAD~3", "rewrites history"),
        ("git filter-branch --all", "rewrites history"),
        ("git filter-repo --path x", "rewrites history"),
        ("git reset --hard HEAD~1", "resetting to HEAD~1 rewrites history"),
        ("git reset --soft abc123", "resetting to abc123"),
        ("git commit --amend -m again", "--amend rewrites history"),
        ("git commit --amen --no-edit", "--amend"),
        ("git update-ref refs/heads/main HEAD~2", "moves refs by hand"),
        ("git reflog expire --expire=now --all", "drops the reflog"),
        ("git gc --prune=now", "--prune deletes"),
        ("git prune", "deletes unreachable objects"),
        ("git pull --rebase", "--rebase rewrites"),
        ("git clean -fdx", "ralph's own .ralph/"),
        ("git config core.hooksPath hooks", "core.hooksPath"),
        ("git config --global user.email a@b.c", "core.fsmonitor"),
        ("git config --unset user.name", "core.hooksPath"),
        ("git checkout main", "branch the run started on"),
        ("git checkout -b feature", "branch the run started on"),
        ("git switch feature", "branch the run started on"),
        ("git branch -D old", "branch the run started on"),
        ("git branch --force main HEAD~1", "branch the run started on"),
    ],
)
def test_git_that_publishes_or_rewrites_history_is_refused(
    work: Path, command: str, reason: str
) -> None:
    refused = check(command, work)
    assert refused is not None and reason in refused


@pytest.mark.parametrize(
    "command",
    [
        "git status",
        "git diff HEAD",
        "git log --oneline | head -5",
        "git add -A && git commit -m 'work --amend later'",
        "git reset --hard",
        "git reset notes.txt",
        "git reset HEAD -- src",
        "git checkout -- notes.txt",
        "git checkout notes.txt",
        "git checkout HEAD~1 notes.txt",
        "git config user.name",
        "git config --get core.hooksPath",
        "git config --list",
        "git clean -fd",
        "git branch feature",
        "git gc",
        "git stash",
        "git fetch origin",
    ],
)
def test_everyday_git_is_allowed(work: Path, command: str) -> None:
    assert check(command, work) is None


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("rm -rf ../outside", "outside the work tree"),
        ("rm -rf /", "/ is outside the work tree"),
        ("rm -rf --no-preserve-root /", "outside the work tree"),
        ("rm -rf ~", "outside the work tree"),
        ("rm -rf ~/", "outside the work tree"),
        ("rm -rf $HOME", "outside the work tree"),
        ("rm -rf ${HOME}/projects", "outside the work tree"),
        ("rm -rf src/../..", "outside the work tree"),
        ("rm -rf ../*", "outside the work tree"),
        ("cd src && rm -rf ../../outside", "outside the work tree"),
        ("cd .. && rm -rf outside", "outside the work tree"),
        ("rm -rf .", "the whole work tree"),
        ("rm -rf ./", "the whole work tree"),
        ("rm -rf .*", "in .git/"),
        ('rm -rf "$target"', "cannot tell where `$target` points"),
        ("rmdir ../outside", "outside the work tree"),
        ("shred -u ../outside/x", "outside the work tree"),
        ("find .. -name '*.txt' -delete", "outside the work tree"),
        ("find / -exec rm -f {} +", "outside the work tree"),
        ("xargs rm -rf ../outside < list", "outside the work tree"),
    ],
)
def test_removing_outside_the_work_tree_is_refused(
    work: Path, command: str, reason: str
) -> None:
    refused = check(command, work)
    assert refused is not None and reason in refused


def test_a_link_out_is_removed_as_a_link_but_not_followed(
    work: Path, tmp_path: Path
) -> None:
    (work / "out").symlink_to(tmp_path / "outside")
    assert check("rm out", work) is None
    refused = check("rm -rf out/", work)
    assert refused is not None and "outside the work tree" in refused


@pytest.mark.parametrize(
    "command",
    [
        "rm -rf build dist",
        "rm -f notes.txt",
        "rm -rf ./src/*",
        "cd src && rm -rf ../notes.txt",
        "find . -name '*.pyc' -delete",
        "rm -rf $PWD/build",
    ],
)
def test_removing_inside_the_work_tree_is_allowed(work: Path, command: str) -> None:
    assert check(command, work) is None


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        ("sudo apt-get install x", "`sudo` is refused"),
        ("su -c id root", "`su` is refused"),
        ("doas ls", "`doas` is refused"),
        ("pkexec id", "`pkexec` is refused"),
        ("echo x > .git/hooks/pre-commit", "inside .git/"),
        ("cp hook .git/hooks/", "inside .git/"),
        ("ln -s ../../evil .git/hooks/post-commit", "inside .git/"),
        ("mv .git .git-old", "inside .git/"),
        ("cd .git && touch x", "inside .git/"),
        ("python3 -c \"open('.git/config', 'a')\"", "inside .git/"),
        ("cat /proc/$PPID/environ", "another process's environment"),
        ("tr '\\0' '\\n' < /proc/1/environ", "another process's environment"),
        ("ps eww", "other processes' environments"),
        ("kill -9 $PPID", "runs ralph's tools"),
        ("kill -TERM ${PPID}", "runs ralph's tools"),
        ("kill -9 -1", "every process"),
        ("kill -- -1", "every process"),
        (f"kill {os.getpid()}", "ralph's own process"),
        ("pkill -f pytest", "matches ralph's process"),
        ("killall", "matches every process"),
        ("echo 'unbalanced", "cannot parse"),
        ("cat > f <<EOF\nnow: $(git push)\nEOF", "`git push` is refused"),
        ("cat > f <<-END\n\t`sudo id`\n\tEND", "`sudo` is refused"),
    ],
)
def test_other_refusals(work: Path, command: str, reason: str) -> None:
    refused = check(command, work)
    assert refused is not None and reason in refused


@pytest.mark.parametrize(
    "command",
    [
        "ls .git/hooks",
        "cat .git/HEAD",
        "grep -rn TODO --exclude-dir=.git .",
        "find . -path './.git/*' -prune -o -type f -print",
        "echo node_modules >> .gitignore",
        "mkdir -p .github/workflows",
        "cat /proc/self/environ",
        "ps aux",
        "ps -ef",
        "kill %1",
        "kill 99999999",
        "pkill -f my-dev-server",
        "python3 -c 'import os; print(os.environ[\"PATH\"])'",
        "cat > notes.txt <<'EOF'\nit's a note; git push is not run here\nEOF",
        "cat > notes.txt <<\\EOF\n$(git push) stays text here\nEOF",
        "cat <<''\n$(git push)\n\n",
        "echo one # a comment that isn't closed",
    ],
)
def test_harmless_lookalikes_are_allowed(work: Path, command: str) -> None:
    assert check(command, work) is None


# Every way of hiding a command in a line that the policy looks through.
DISGUISES = [
    "{}",
    "ls && {}",
    "ls || {}",
    "ls; {}",
    "ls | {}",
    "ls &\n{}",
    "ls \\\n  && {}",
    "(cd src; {})",
    "{{ {}; }}",
    "if true; then {}; fi",
    "for x in a; do {}; done",
    "FOO=1 {}",
    "env -i PATH=/bin {}",
    "command {}",
    "exec {}",
    "nohup {} &",
    "timeout -s KILL 10 {}",
    "nice -n 5 {}",
    "xargs -I{{}} {}",
    "bash -c '{}'",
    'sh -ec "{}"',
    "bash -o pipefail -c '{}'",
    "eval '{}'",
    "echo $({})",
    'echo "$({})"',
    "echo `{}`",
    "ls # comment's quote\n{}",
    "cat <<'EOF'\nit's\nEOF\n{}",
]


@given(
    disguise=st.sampled_from(DISGUISES),
    command=st.sampled_from(["git push", "sudo id", "rm -rf /", "git rebase main"]),
)
def test_disguised_commands_are_still_refused(disguise: str, command: str) -> None:
    work = Path(__file__).resolve().parents[1]
    assert check_command(disguise.format(command), work, {"HOME": "/nonexistent"})


@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_any_text_gets_an_answer_and_never_an_exception(text: str) -> None:
    work = Path(__file__).resolve().parents[1]
    result = check_command(text, work, {"HOME": "/nonexistent"})
    assert result is None or isinstance(result, str)


def test_lines_split_into_simple_commands_with_their_redirections() -> None:
    commands = simple_commands("a x && b | c > out 2>&1; d < in\ne")
    assert [(c.words, c.targets) for c in commands] == [
        (["a", "x"], []),
        (["b"], []),
        (["c", "2"], ["out", "1"]),
        (["d"], ["in"]),
        (["e"], []),
    ]


def test_comments_continuations_and_here_documents_are_set_aside() -> None:
    text = "a # it's\nb \\\nc <<-'END'\n\tbody's\n\tEND\nd '#x' e#f"
    assert plain_text(text) == "a \nb c <<-'END'\nd '#x' e#f"
