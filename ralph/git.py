"""The workspace's git repository: the record of every finished step.

ralph talks to git only through the `git` executable, never a library, so
what it does is exactly what a person could do by hand.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ralph.errors import InputError, RalphError
from ralph.secrets import secret_files

FALLBACK_NAME = "ralph"
FALLBACK_EMAIL = "ralph@localhost"
RALPH_DIR = ".ralph"
# Hooks are files an attempt could have written; ralph's own commits skip them.
SAFE_CONFIG = [
    *("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false"),
    *("-c", "commit.gpgSign=false"),
]


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str
    trailers: dict[str, str]


class Repo:
    """One git work tree, driven through the git command line."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._env = dict(os.environ)
        self._env.update(self._identity_env())
        self.git_dir = Path(self.git("rev-parse", "--absolute-git-dir"))

    @classmethod
    def discover(cls, path: Path) -> Repo:
        """The repository whose work tree holds path; exit 2 if there is none."""
        if shutil.which("git") is None:
            raise InputError(
                "git is not installed or not on PATH; install git and run again"
            )
        folder = path if path.is_dir() else path.parent
        proc = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise InputError(
                f"{folder} is not inside a git repository; "
                f"run `git init` there first, ralph records every step as a commit"
            )
        return cls(Path(proc.stdout.strip()))

    def git(
        self,
        *args: str,
        input: str | None = None,
        env: dict[str, str] | None = None,
        check: bool = True,
    ) -> str:
        """Run git in the work tree and return its stdout without the last newline."""
        proc = subprocess.run(
            ["git", *SAFE_CONFIG, *args],
            cwd=self.root,
            input=input,
            capture_output=True,
            text=True,
            env=env or self._env,
        )
        if check and proc.returncode != 0:
            raise RalphError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout.removesuffix("\n")

    def _identity_env(self) -> dict[str, str]:
        """A fallback identity for ralph's commits, never written to any config."""
        name = self.git("config", "user.name", check=False)
        email = self.git("config", "user.email", check=False)
        env = {}
        if not name:
            env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = FALLBACK_NAME
        if not email:
            env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = FALLBACK_EMAIL
        return env

    # -- the state of the work tree --------------------------------------

    def head(self) -> str | None:
        """The commit HEAD names, or None before the first commit."""
        sha = self.git("rev-parse", "--verify", "-q", "HEAD", check=False)
        return sha or None

    def check_usable(self) -> None:
        """Refuse states in which a commit would land somewhere surprising."""
        if self.git("symbolic-ref", "-q", "HEAD", check=False) == "":
            raise InputError(
                "HEAD is detached; check out a branch (`git switch -c ralph-work`) "
                "so ralph's commits have a home"
            )
        for marker, what in [
            ("MERGE_HEAD", "a merge"),
            ("rebase-merge", "a rebase"),
            ("rebase-apply", "a rebase"),
            ("CHERRY_PICK_HEAD", "a cherry-pick"),
            ("REVERT_HEAD", "a revert"),
        ]:
            if (self.git_dir / marker).exists():
                raise InputError(
                    f"{what} is in progress in {self.root}; finish or abort it, "
                    f"then run ralph again"
                )

    def exclude_ralph_dir(self) -> None:
        """Keep .ralph/ (logs, transcripts, the lock) out of git for good."""
        # Linked work trees read the exclude file of the main repository only.
        common = Path(self.git("rev-parse", "--git-common-dir"))
        exclude = (self.root / common).resolve() / "info" / "exclude"
        exclude.parent.mkdir(parents=True, exist_ok=True)
        text = exclude.read_text() if exclude.exists() else ""
        if f"/{RALPH_DIR}/" not in text.splitlines():
            prefix = "" if text.endswith("\n") or not text else "\n"
            with exclude.open("a") as f:
                f.write(f"{prefix}# ralph's logs and lock\n/{RALPH_DIR}/\n")

    def changed_paths(self) -> list[str]:
        """Paths that differ from HEAD, untracked ones included."""
        out = self.git("status", "--porcelain=v1", "-z", "--untracked-files=all")
        paths = []
        entries = out.split("\0")
        index = 0
        while index < len(entries):
            entry = entries[index]
            index += 1
            if not entry:
                continue
            paths.append(entry[3:])
            if entry[0] in "RC":
                index += 1  # a rename carries its old name in the next field
        return paths

    def status_short(self) -> str:
        return self.git("status", "--short", "--untracked-files=all")

    def is_ignored(self, path: Path) -> bool:
        rel = str(path.relative_to(self.root))
        proc = subprocess.run(["git", "check-ignore", "-q", rel], cwd=self.root)
        return proc.returncode == 0

    # -- snapshots: whole work trees as git trees -------------------------

    def _scratch_env(self, index: Path) -> dict[str, str]:
        return {**self._env, "GIT_INDEX_FILE": str(index)}

    def snapshot(self) -> str:
        """Write the work tree as a tree and return its id.

        Ignored files are left out, and so are uncommitted files that look
        like secrets: snapshots are commits too, on ralph's own refs.
        """
        held = [path for path, _ in self.held_back()]
        with tempfile.TemporaryDirectory() as tmp:
            env = self._scratch_env(Path(tmp) / "index")
            if self.head():
                self.git("read-tree", "HEAD", env=env)
            self.git("add", "-A", env=env)
            if held:
                self.git(
                    "rm", "--cached", "-q", "--ignore-unmatch", "--", *held, env=env
                )
            return self.git("write-tree", env=env)

    def held_back(self) -> list[tuple[str, str]]:
        """Uncommitted files ralph keeps out of every commit it makes, with why."""
        return secret_files(self.root, self.changed_paths())

    def restore(self, tree: str) -> None:
        """Make the work tree what `tree` says, leaving ignored files alone."""
        wanted = set(self.git("ls-tree", "-r", "-z", "--name-only", tree).split("\0"))
        present = self.git("ls-files", "-z", "-co", "--exclude-standard").split("\0")
        # Held-back files are in no snapshot; they stay where they are.
        kept = {path for path, _ in self.held_back()}
        for rel in present:
            if rel and rel not in wanted and rel not in kept:
                (self.root / rel).unlink(missing_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            env = self._scratch_env(Path(tmp) / "index")
            self.git("read-tree", tree, env=env)
            self.git("checkout-index", "-a", "-f", env=env)
        if self.head():
            self.git("reset", "-q")

    def committed_file(self, rel: str) -> bytes | None:
        """A regular file's bytes as HEAD has it, or None if HEAD holds no such file."""
        entry = self.git("ls-tree", "HEAD", "--", rel, check=False)
        if not entry.startswith("100"):
            return None
        proc = subprocess.run(
            ["git", "show", f"HEAD:{rel}"],
            cwd=self.root,
            capture_output=True,
            check=True,
        )
        return proc.stdout

    def attribute_files(self) -> dict[str, bytes]:
        """Every .gitattributes in the work tree, by path, with its bytes.

        Listed without reading any other file: attributes change how git
        reads files, so they are looked at before git is asked to.
        """
        out = self.git(
            "ls-files",
            "-z",
            "-co",
            "--exclude-standard",
            "--",
            ".gitattributes",
            "*/.gitattributes",
        )
        return {
            rel: (self.root / rel).read_bytes()
            for rel in set(out.split("\0"))
            if rel and (self.root / rel).is_file()
        }

    def tree_with_file(self, tree: str, rel: str, data: bytes) -> str:
        """`tree` with the file at `rel` holding `data`."""
        blob = (
            subprocess.run(
                ["git", "hash-object", "-w", "--stdin"],
                cwd=self.root,
                input=data,
                capture_output=True,
                check=True,
            )
            .stdout.decode()
            .strip()
        )
        with tempfile.TemporaryDirectory() as tmp:
            env = self._scratch_env(Path(tmp) / "index")
            self.git("read-tree", tree, env=env)
            self.git(
                "update-index", "--add", "--cacheinfo", f"100644,{blob},{rel}", env=env
            )
            return self.git("write-tree", env=env)

    def restore_path(self, tree: str, rel: str) -> None:
        """Put one path back as `tree` has it (gone, if the tree lacks it)."""
        if self.git("ls-tree", "--name-only", tree, "--", rel):
            self.git("checkout", tree, "--", rel)
            if self.head():
                self.git("reset", "-q", "--", rel)
        else:
            (self.root / rel).unlink(missing_ok=True)

    def diff_stat(self, tree: str) -> str:
        """How the work tree differs from a snapshot."""
        return self.git("diff", "--stat", tree, self.snapshot())

    def changed_since(self, tree: str) -> list[str]:
        out = self.git("diff", "--name-only", "-z", tree, self.snapshot())
        return [p for p in out.split("\0") if p]

    # -- refs that hold ralph's own bookkeeping ---------------------------

    def save_tree(self, ref: str, tree: str, message: str) -> str:
        """Record a tree as a commit on a ref outside the branches."""
        parents = ["-p", head] if (head := self.head()) else []
        sha = self.git("commit-tree", tree, *parents, "-F", "-", input=message)
        self.git("update-ref", ref, sha)
        return sha

    def read_ref(self, ref: str) -> str | None:
        sha = self.git("rev-parse", "--verify", "-q", ref, check=False)
        return sha or None

    def delete_ref(self, ref: str) -> None:
        self.git("update-ref", "-d", ref, check=False)

    def parent_of(self, sha: str) -> str | None:
        out = self.git("rev-parse", "--verify", "-q", f"{sha}^", check=False)
        return out or None

    def tree_of(self, sha: str) -> str:
        return self.git("rev-parse", f"{sha}^{{tree}}")

    def message_of(self, sha: str) -> str:
        return self.git("log", "-1", "--format=%B", sha)

    # -- commits ----------------------------------------------------------

    def commit(
        self, message: str, paths: list[str] | None = None, leave: Sequence[str] = ()
    ) -> str:
        """Commit everything but `leave` (or only `paths`); return the new HEAD."""
        if paths is None:
            self.git("add", "-A")
            if leave:
                self.git("reset", "-q", "--", *leave)
            self.git("commit", "-q", "--allow-empty", "-F", "-", input=message)
        else:
            self.git("add", "--", *paths)
            self.git("commit", "-q", "-F", "-", "--", *paths, input=message)
        return self.head() or ""

    def fold_commits_since(self, start: str | None) -> None:
        """Undo commits made during an attempt, keeping their changes in the tree."""
        if self.head() == start:
            return
        if start is None:
            self.git("update-ref", "-d", "HEAD")
        else:
            self.git("reset", "-q", "--soft", start)

    def ralph_commits(self, limit: int | None = None) -> list[Commit]:
        """ralph's step commits on this branch, newest first."""
        args = ["log", "-z", "--format=%H%x1f%s%x1f%(trailers:only,unfold)"]
        if limit:
            args.append(f"-n{limit * 5}")
        if not self.head():
            return []
        commits = []
        for record in self.git(*args).split("\0"):
            if not record.strip():
                continue
            sha, subject, trailer_text = record.strip("\n").split("\x1f")
            trailers = parse_trailers(trailer_text)
            if "Ralph-Step" in trailers:
                commits.append(Commit(sha, subject, trailers))
        return commits[:limit] if limit else commits


def parse_trailers(text: str) -> dict[str, str]:
    trailers = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            trailers[key.strip()] = value.strip()
    return trailers


def format_trailers(trailers: dict[str, str]) -> str:
    return "\n".join(f"{key}: {value}" for key, value in trailers.items())
