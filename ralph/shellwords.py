"""Reading a shell command line into simple commands, as far as text allows.

The command policy needs the words of each simple command a line would
run: the line is split on `;`, `&&`, `||`, `|`, `&`, newlines and subshell
brackets, here-document bodies and comments are set aside, and wrappers
such as `env X=1`, `command`, `nohup` or `timeout` are looked through.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field

PUNCTUATION = ";&|()<>\n`"
REDIRECTS = frozenset(
    {">", ">>", "<", "<<", "<<<", ">&", "<&", "&>", "&>>", ">|", "<>"}
)
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[[^]]*\])?\+?=")
SUBSTITUTION = re.compile(r"\$\(([^()]*)\)|`([^`]*)`")
HEREDOC = re.compile(
    r"<<(-?)[ \t]*(?:'([^'\n]*)'|\"([^\"\n]*)\"|\\?([^\s'\"<>;&|()]+))"
)

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
