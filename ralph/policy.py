"""The command policy: shell commands the bash tool refuses before they run.

This is a tripwire, not a wall. It reads the text of a command line, and
a shell can say the same thing in endless ways the text does not show
(`$(printf 'gi''t')`, a script written to a file first, an alias). It
stops the mistakes a model makes in plain words: publishing or rewriting
git history, deleting outside the work tree, becoming root, writing into
`.git/`, signalling ralph's own process, reading other processes'
environments. The wall is the sandbox (`ralph.sandbox`); without it, the
policy is all there is.

The line is read into simple commands by `ralph.shellwords`; `bash -c`
and `eval` strings and `$(...)` are read as command lines in turn.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from ralph.shellwords import (
    Simple,
    command_words,
    long_option,
    operands,
    short_flag,
    simple_commands,
    skip_options,
)

MAX_DEPTH = 8
# `.git` as a path of its own, not `.gitignore`, `x.git` or `--exclude=.git`;
# `.git/*` is left alone as the exclusion pattern it nearly always is.
GIT_PATH = re.compile(r"(?<![\w.=-])\.git(?:/(?!\*)|$|(?=['\"\s,;)\]]))")
ENVIRON = re.compile(r"(?<!/proc/self)(?<!/proc/thread-self)/environ\b")

SHELLS = frozenset({"bash", "sh", "dash", "zsh", "ksh", "mksh", "ash"})
SUPERUSER = frozenset({"sudo", "su", "doas", "pkexec", "run0"})
REMOVERS = frozenset({"rm", "rmdir", "unlink", "shred"})
# Commands that only read, so naming `.git` in their arguments is harmless.
READERS = frozenset(
    {"cat", "head", "tail", "less", "more", "wc", "file", "stat", "ls", "tree"}
    | {"du", "find", "grep", "egrep", "fgrep", "rg", "ag", "git", "diff", "cmp"}
    | {"md5sum", "sha1sum", "sha256sum", "xxd", "od", "hexdump", "strings"}
)
GIT_VALUED = frozenset(
    {"-C", "-c", "--git-dir", "--work-tree", "--namespace", "--config-env"}
)
REWRITES = "rewrites history, the record of ralph's steps"
HISTORY = f"it {REWRITES}"
GIT_REFUSED = {
    "push": "ralph never publishes; whoever runs it pushes after review",
    "send-email": "ralph never publishes; whoever runs it sends after review",
    "rebase": HISTORY,
    "filter-branch": HISTORY,
    "filter-repo": HISTORY,
    "replace": HISTORY,
    "update-ref": "it moves refs by hand, and the refs are ralph's record",
    "prune": "it deletes unreachable objects, earlier attempts' work among them",
    "switch": "ralph commits each step on the branch the run started on",
}
CONFIG_VALUED = frozenset({"-f", "--file", "--blob", "--type", "--default"})
CONFIG_WRITES = frozenset(
    {"--unset", "--unset-all", "--add", "--replace-all", "--edit", "-e"}
    | {"--rename-section", "--remove-section"}
)
CONFIG_READS = frozenset(
    {"--get", "--get-all", "--get-regexp", "--get-urlmatch", "--list", "-l"}
)
KILL_VALUED = frozenset(
    {"-g", "-G", "-P", "-s", "-t", "-u", "-U", "-F", "-o", "-y", "--signal"}
    | {"--ns", "--nslist", "--pidfile", "--older-than", "--younger-than"}
)


def check_command(
    command: str, workspace: Path, env: Mapping[str, str] | None = None
) -> str | None:
    """Why the bash tool refuses `command`, or None when the policy lets it run.

    `env` is the environment the command will get; its HOME is where `~`
    points.
    """
    home = (env if env is not None else os.environ).get("HOME", "")
    return Checker(workspace.resolve(), home).line(command, 0)


class Checker:
    """Reads one command line against the policy, following its `cd`s."""

    def __init__(self, root: Path, home: str) -> None:
        self.root = root
        self.home = home
        self.cwd = root
        self.handlers: dict[str, Callable[[str, list[str], int], str | None]] = {
            **dict.fromkeys(SUPERUSER, self.superuser),
            **dict.fromkeys(SHELLS, self.shell),
            **dict.fromkeys(REMOVERS, self.removal),
            **dict.fromkeys(("cd", "pushd"), self.cd),
            **dict.fromkeys(("pkill", "killall"), self.pkill),
            "eval": lambda _, args, depth: self.line(" ".join(args), depth + 1),
            "git": self.git,
            "find": self.find,
            "kill": self.kill,
            "ps": self.ps,
        }

    def line(self, text: str, depth: int) -> str | None:
        if depth > MAX_DEPTH:
            return "the command nests shells too deeply for ralph to check it"
        try:
            commands = simple_commands(text)
        except ValueError as exc:
            return (
                f"ralph cannot parse this command line to check it ({exc}); "
                "write it more simply, or put a script in a file and run that"
            )
        for command in commands:
            if reason := self.simple(command, depth):
                return reason
        return None

    def simple(self, command: Simple, depth: int) -> str | None:
        for word in command.words + command.targets:
            if ("$(" in word or "`" in word) and (reason := self.line(word, depth + 1)):
                return reason
        words = command_words(command.words)
        name = os.path.basename(words[0]) if words else ""
        if reason := self.named_paths(name, command):
            return reason
        handler = self.handlers.get(name)
        return handler(name, words[1:], depth) if handler else None

    def named_paths(self, name: str, command: Simple) -> str | None:
        everything = command.words + command.targets
        if any(ENVIRON.search(word) for word in everything):
            return (
                "reading another process's environment is refused: it may hold "
                "ralph's API key"
            )
        written = command.targets + ([] if name in READERS else command.words)
        for word in written:
            if GIT_PATH.search(word):
                return (
                    f"`{word}` is inside .git/, the record only git itself may "
                    "change; use git commands (not ones that rewrite history)"
                )
        return None

    def superuser(self, name: str, args: list[str], depth: int) -> str:
        return f"`{name}` is refused: attempts never run as another user or root"

    def shell(self, name: str, args: list[str], depth: int) -> str | None:
        at = 0
        while at < len(args) and args[at][:1] in "-+":
            option = args[at]
            if option[:1] == "-" and option[1:2] != "-" and "c" in option[1:]:
                script = args[at + 1 : at + 2]
                return self.line(script[0], depth + 1) if script else None
            at += 2 if option in ("-o", "+o", "-O", "+O") else 1
        return None

    def cd(self, name: str, args: list[str], depth: int) -> str | None:
        target = args[0] if args else self.home
        path = self.expand(target)
        self.cwd = self.root if path is None else self.place(path, follow=True)
        if self.in_git(self.cwd):
            return f"`{name} {target}` is refused: .git/ is the record only git changes"
        return None

    def removal(self, name: str, args: list[str], depth: int) -> str | None:
        for word in operands(args):
            if reason := self.removable(word, whole_tree=False):
                return f"`{name} {word}` is refused: {reason}"
        return None

    def find(self, name: str, args: list[str], depth: int) -> str | None:
        roots = []
        for arg in args:
            if arg.startswith(("-", "(", "!", ")")):
                break
            roots.append(arg)
        exec_at = [i for i, a in enumerate(args) if a in ("-exec", "-execdir")]
        removes = "-delete" in args or any(
            os.path.basename(args[i + 1]) in REMOVERS
            for i in exec_at
            if i + 1 < len(args)
        )
        for root in (roots or ["."]) if removes else []:
            if reason := self.removable(root, whole_tree=True):
                return f"`find {root}` that deletes is refused: {reason}"
        return None

    def removable(self, word: str, whole_tree: bool) -> str | None:
        """Why removing what `word` names would reach past the work tree."""
        path = self.expand(word)
        if path is None:
            return f"ralph cannot tell where `{word}` points; name a path in the tree"
        found = glob.glob(path) if glob.has_magic(path) else []
        targets = [self.place(p, follow=p.endswith("/")) for p in found or [path]]
        for target in targets:
            if target != self.root and self.root not in target.parents:
                return f"{target} is outside the work tree {self.root}"
        if self.root in targets and not whole_tree:
            return "that is the whole work tree"
        if any(self.in_git(target) for target in targets):
            return "that is in .git/, git's record of the work"
        return None

    def expand(self, word: str) -> str | None:
        """`word` with ~, $HOME and $PWD filled in; None if other variables remain."""
        if word == "~" or word.startswith("~/"):
            word = self.home + word[1:]
        elif word.startswith("~"):
            word = os.path.expanduser(word)
        for name in ("HOME", "PWD"):
            value = self.home if name == "HOME" else str(self.cwd)
            word = word.replace(f"${{{name}}}", value).replace(f"${name}", value)
        if "$" in word or word.startswith("~"):
            return None
        # os.path.join keeps a trailing slash, which tells rm to follow a link.
        return os.path.join(self.cwd, word)

    def place(self, path: str, follow: bool) -> Path:
        """Where `path` lands: links in its parents followed, the last one only
        when asked (rm removes a link itself, `rm -r link/` what it points to)."""
        normal = Path(os.path.normpath(path))
        if follow or not normal.name:
            return Path(os.path.realpath(normal))
        return Path(os.path.realpath(normal.parent)) / normal.name

    def in_git(self, path: Path) -> bool:
        if path != self.root and self.root not in path.parents:
            return False
        inside = path.relative_to(self.root).parts
        return bool(inside) and inside[0].lower() == ".git"

    def git(self, name: str, args: list[str], depth: int) -> str | None:
        rest = skip_options(args, GIT_VALUED)
        if not rest:
            return None
        sub, sub_args = rest[0], rest[1:]
        reason = GIT_REFUSED.get(sub) or self.git_rule(sub, sub_args)
        return f"`git {sub}` is refused here: {reason}" if reason else None

    def git_rule(self, sub: str, args: list[str]) -> str | None:
        given = operands(args)
        if sub == "reset" and "--" not in args:
            moved = [a for a in given if a not in ("HEAD", "@") and not self.has(a)]
            return f"resetting to {moved[0]} {REWRITES}" if moved else None
        if sub == "commit" and long_option(args, "--amend"):
            return f"--amend {REWRITES}"
        if sub == "reflog" and given[:1] in (["expire"], ["delete"]):
            return "it drops the reflog, the way back to earlier work"
        if sub == "gc" and long_option(args, "--prune"):
            return "--prune deletes unreachable objects, earlier attempts' work"
        if sub == "pull" and (long_option(args, "--rebase") or "-r" in args):
            return f"--rebase {REWRITES}"
        if sub == "clean" and (short_flag(args, "x") or short_flag(args, "X")):
            return "-x deletes ignored files, ralph's own .ralph/ among them"
        if sub == "config":
            return self.config_rule(args)
        if sub == "branch" and self.branch_moves(args):
            return "ralph commits each step on the branch the run started on"
        if sub == "checkout" and self.checkout_moves(args, given):
            return "ralph commits each step on the branch the run started on"
        return None

    def config_rule(self, args: list[str]) -> str | None:
        given = operands(skip_valued(args, CONFIG_VALUED))
        writes = any(a in CONFIG_WRITES for a in args) or given[:1] in (
            ["set"],
            ["unset"],
            ["edit"],
        )
        reads = any(a in CONFIG_READS for a in args) or given[:1] in (["get"], ["list"])
        if writes or (len(given) >= 2 and not reads):
            return (
                "settings such as core.hooksPath or core.fsmonitor would run "
                "code when ralph itself runs git; read them with --get"
            )
        return None

    def branch_moves(self, args: list[str]) -> bool:
        flags = {"-D", "-d", "-M", "-m", "-f"}
        return any(a in flags for a in args) or any(
            long_option(args, name) for name in ("--delete", "--force", "--move")
        )

    def checkout_moves(self, args: list[str], given: list[str]) -> bool:
        if any(a in ("-b", "-B", "--orphan", "--detach") for a in args):
            return True
        return "--" not in args and len(given) == 1 and not self.has(given[0])

    def has(self, name: str) -> bool:
        return os.path.lexists(self.cwd / name)

    def kill(self, name: str, args: list[str], depth: int) -> str | None:
        for target in kill_targets(args):
            if reason := protected(target):
                return f"`kill {target}` is refused: {reason}"
        return None

    def pkill(self, name: str, args: list[str], depth: int) -> str | None:
        patterns = operands(skip_valued(args, KILL_VALUED))
        full = "-f" in args or "--full" in args
        if not patterns:
            return f"`{name}` without a name matches every process, ralph's too"
        for pattern in patterns:
            if any(matches(pattern, who) for who in own_processes(full)):
                return f"`{name} {pattern}` is refused: it matches ralph's process"
        return None

    def ps(self, name: str, args: list[str], depth: int) -> str | None:
        if any(not a.startswith("-") and "e" in a for a in args[:1]):
            return "`ps e` is refused: it shows other processes' environments"
        return None


def skip_valued(args: list[str], valued: frozenset[str]) -> list[str]:
    """`args` without the options in `valued` and the values they take."""
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in valued:
            skip = True
        else:
            kept.append(arg)
    return kept


def kill_targets(args: list[str]) -> list[str]:
    """The processes a `kill` names: the first option is the signal."""
    if args[:1] in (["-l"], ["-L"]):
        return []
    at = 0
    if args[:1] in (["-s"], ["-n"]):
        at = 2
    elif args[:1] and args[0].startswith("-") and args[0] != "--":
        at = 1
    rest = args[at:]
    return rest[1:] if rest[:1] == ["--"] else rest


def protected(target: str) -> str | None:
    if target in ("$PPID", "${PPID}", "-$PPID", "-${PPID}"):
        return "that is the process that runs ralph's tools"
    if target == "-1":
        return "it signals every process you may signal, ralph among them"
    number = target.lstrip("-")
    own = {os.getpid(), os.getppid(), os.getpgrp(), 1}
    if number.isdigit() and int(number) in own:
        return "that is ralph's own process, its parent, or init"
    return None


def own_processes(full: bool) -> list[str]:
    """How pkill would see ralph and its parent: names, or whole command lines."""
    seen = []
    for pid in (os.getpid(), os.getppid()):
        part = "cmdline" if full else "comm"
        try:
            raw = Path(f"/proc/{pid}/{part}").read_bytes()
        except OSError:
            continue
        seen.append(raw.replace(b"\0", b" ").decode(errors="replace").strip())
    return seen


def matches(pattern: str, subject: str) -> bool:
    try:
        return re.search(pattern, subject) is not None
    except re.error:
        return pattern in subject
