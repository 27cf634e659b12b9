"""The command policy: shell commands the bash tool refuses before they run.

This is a tripwire, not a wall. It reads the text of a command line, and
a shell can say the same thing in endless ways the text does not show
(`$(printf 'gi''t')`, a script written to a file first, an alias). It
stops the mistakes a model makes in plain words: publishing or rewriting
git history, deleting outside the work tree, becoming root, writing into
`.git/`, signalling ralph's own process, reading other processes'
environments. The wall is the sandbox (`ralph.sandbox`); without it, the
policy is all there is.

The line is split into simple commands on `;`, `&&`, `||`, `|`, `&`,
newlines and subshell brackets; `bash -c` and `eval` strings and `$(...)`
are read as command lines in turn; wrappers such as `env X=1`, `command`,
`exec`, `nohup`, `timeout` or `xargs` are looked through.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

MAX_DEPTH = 8
PUNCTUATION = ";&|()<>\n`"
REDIRECTS = frozenset(
    {">", ">>", "<", "<<", "<<<", ">&", "<&", "&>", "&>>", ">|", "<>"}
)
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=")
HEREDOC = re.compile(
    r"<<(-?)[ \t]*(?:'([^'\n]*)'|\"([^\"\n]*)\"|\\?([^\s'\"<>;&|()]+))"
)
# `.git` as a path of its own, not `.gitignore`, `x.git` or `--exclude=.git`;
# `.git/*` is left alone as the exclusion pattern it nearly always is.
GIT_PATH = re.compile(r"(?<![\w.=-])\.git(?:/(?!\*)|$|(?=['\"\s,;)\]]))")
SUBSTITUTION = re.compile(r"\$\(([^()]*)\)|`([^`]*)`")
ENVIRON = re.compile(r"(?<!/proc/self)(?<!/proc/thread-self)/environ\b")

# Wrappers that run the command after them: options taking a value, and the
# positional arguments (such as timeout's duration) before the command.
PREFIXES: dict[str, tuple[frozenset[str], int]] = {
    "env": (frozenset({"-u", "--unset", "-C", "--chdir", "-S"}), 0),
    "command": (frozenset(), 0),
    "builtin": (frozenset(), 0),
    "exec": (frozenset({"-a"}), 0),
    "nohup": (frozenset(), 0),
    "setsid": (frozenset(), 0),
    "time": (frozenset(), 0),
    "nice": (frozenset({"-n", "--adjustment"}), 0),
    "stdbuf": (frozenset({"-i", "-o", "-e"}), 0),
    "timeout": (frozenset({"-s", "--signal", "-k", "--kill-after"}), 1),
    "xargs": (
        frozenset({"-a", "-d", "-E", "-I", "-L", "-n", "-P", "-s", "--arg-file"}),
        0,
    ),
}
# Reserved words the shell reads before the command they introduce.
KEYWORDS = frozenset({"{", "!", "if", "then", "else", "elif", "do", "while", "until"})
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


@dataclass
class Simple:
    """One simple command: its words, and the files its redirections name."""

    words: list[str] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)


def simple_commands(text: str) -> list[Simple]:
    """Split a command line into simple commands; ValueError if it cannot parse."""
    lexer = shlex.shlex(plain_text(text), posix=True, punctuation_chars=PUNCTUATION)
    lexer.whitespace = " \t\r"
    # As in the shell, a word is everything up to a blank or a metacharacter.
    lexer.whitespace_split = True
    lexer.commenters = ""
    commands = [Simple()]
    redirect = False
    for token in lexer:
        if redirect:
            commands[-1].targets.append(token)
            redirect = False
        elif token in REDIRECTS:
            redirect = True
        elif token and all(char in PUNCTUATION for char in token):
            commands.append(Simple())
        else:
            commands[-1].words.append(token)
    return [command for command in commands if command.words or command.targets]


def plain_text(text: str) -> str:
    """The line without comments, line continuations and here-document bodies.

    shlex knows none of the three: a quote in a comment or a here-document
    would make the whole line unreadable to it. What a body substitutes
    with `$(...)` is kept, on lines of its own, since the shell runs it.
    """
    out: list[str] = []
    quote = ""
    pending: list[HereDoc] = []
    at = 0
    while at < len(text):
        char = text[at]
        before = out[-1][-1] if out else "\n"
        if quote == "'" or (quote == '"' and char not in '\\"'):
            quote = "" if char == quote else quote
        elif char == "\\":
            # A backslash before a newline joins the lines, as in the shell.
            if text[at + 1 : at + 2] != "\n":
                out.append(text[at : at + 2])
            at += 2
            continue
        elif char in "'\"":
            quote = "" if char == quote else char
        elif char == "#" and before in " \t\n;&|()":
            at = text.find("\n", at) if "\n" in text[at:] else len(text)
            continue
        elif (match := HEREDOC.match(text, at)) and not text.startswith("<<<", at):
            pending.append(here_doc(match))
            out.append(match.group(0))
            at = match.end()
            continue
        elif char == "\n" and pending:
            at, commands = skip_bodies(text, at + 1, pending)
            out.append("\n" + "".join(f"{command}\n" for command in commands))
            pending = []
            continue
        out.append(char)
        at += 1
    return "".join(out)


@dataclass(frozen=True)
class HereDoc:
    delimiter: str
    strip_tabs: bool
    # With an unquoted delimiter the shell runs the `$(...)` in the body.
    expands: bool


def here_doc(match: re.Match[str]) -> HereDoc:
    dash, single, double, bare = match.groups()
    quoted = single is not None or double is not None or "\\" in match.group(0)
    delimiter = next(part for part in (single, double, bare) if part is not None)
    return HereDoc(delimiter, dash == "-", not quoted)


def skip_bodies(text: str, at: int, docs: list[HereDoc]) -> tuple[int, list[str]]:
    """The position after the bodies that start at `at`, and the commands
    substituted in those the shell expands."""
    commands: list[str] = []
    for doc in docs:
        while at < len(text):
            end = text.find("\n", at)
            end = len(text) if end == -1 else end
            line = text[at:end]
            at = end + 1
            if (line.lstrip("\t") if doc.strip_tabs else line) == doc.delimiter:
                break
            if doc.expands:
                commands += [a or b for a, b in SUBSTITUTION.findall(line)]
    return min(at, len(text)), commands


def command_words(words: list[str]) -> list[str]:
    """The words of the command that runs, past assignments and wrappers."""
    while words:
        if ASSIGNMENT.match(words[0]) or words[0] in KEYWORDS:
            words = words[1:]
            continue
        prefix = PREFIXES.get(os.path.basename(words[0]))
        if prefix is None:
            return words
        valued, positionals = prefix
        words = skip_options(words[1:], valued)[positionals:]
    return words


def skip_options(words: list[str], valued: frozenset[str]) -> list[str]:
    """`words` from the first one that is not an option (or after `--`)."""
    at = 0
    while at < len(words) and words[at].startswith("-"):
        if words[at] == "--":
            return words[at + 1 :]
        at += 2 if words[at] in valued else 1
    return words[at:]


def operands(args: list[str]) -> list[str]:
    """Arguments that are not options; everything after `--` is one."""
    if "--" in args:
        cut = args.index("--")
        return [a for a in args[:cut] if not a.startswith("-")] + args[cut + 1 :]
    return [arg for arg in args if not arg.startswith("-")]


def long_option(args: list[str], name: str) -> bool:
    """Whether `args` give the long option `name`, abbreviated as git allows."""
    for arg in args:
        given = arg.split("=", 1)[0]
        if len(given) > 3 and name.startswith(given):
            return True
    return False


def short_flag(args: list[str], letter: str) -> bool:
    return any(a.startswith("-") and a[1:2] != "-" and letter in a[1:] for a in args)


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
