"""The wall around the commands an attempt runs: bubblewrap, when it works here.

Inside the sandbox the whole filesystem is read-only except the work tree
and a private /tmp; the work tree's `.git` (ralph's record) and `.ralph`
(its logs) stay read-only; the home folder is an empty tmpfs, so keys and
tokens kept there are out of sight; the network is cut unless the plan
sets `network: true`; and the command lives in its own process namespace,
where ralph's process cannot be seen, signalled or read.

`sandbox: auto` uses bubblewrap when it runs here and otherwise warns, once,
that commands run unsandboxed; `sandbox: bwrap` insists on it; `none` runs
commands as they are.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from functools import cache
from itertools import chain
from pathlib import Path
from types import TracebackType

from ralph.config import Settings
from ralph.errors import InputError

log = logging.getLogger("ralph")

BWRAP = "bwrap"
KINDS = ("auto", "bwrap", "none")
PROBE_TIMEOUT = 15.0
# Folders of the work tree that commands may read but never change.
READ_ONLY_PARTS = (".git", ".ralph")

Wrap = Callable[[list[str]], list[str]]


def sandbox_argv(
    argv: list[str], workspace: Path, settings: Settings, tmp: Path
) -> list[str]:
    """`argv` wrapped in bubblewrap, confined as the module docstring says."""
    root = workspace.resolve()
    work = "--ro-bind" if settings.read_only else "--bind"
    hidden = [Path("/tmp"), *homes()]
    mounts = [
        (Path("/tmp"), ["--bind", str(tmp), "/tmp"]),
        *((home, ["--tmpfs", str(home)]) for home in hidden[1:]),
        *((tool, ["--ro-bind", str(tool), str(tool)]) for tool in tools(hidden)),
        (root, [work, str(root), str(root)]),
        *((part, ["--ro-bind", str(part), str(part)]) for part in kept(root)),
    ]
    # A mount hides whatever earlier mounts put below it, so parents go first;
    # the sort is stable, so a work tree equal to a hidden home still shows.
    mounts.sort(key=lambda mount: len(mount[0].parts))
    network = ["--share-net"] if settings.network else []
    return [
        BWRAP,
        *("--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"),
        *chain.from_iterable(args for _, args in mounts),
        *("--unshare-all", *network, "--die-with-parent", "--new-session"),
        *("--setenv", "TMPDIR", "/tmp", "--chdir", str(root), "--"),
        *argv,
    ]


def homes() -> list[Path]:
    """The user's home folders to hide: $HOME and the account's own."""
    found = [os.environ.get("HOME", ""), pwd.getpwuid(os.getuid()).pw_dir]
    paths = {Path(home).resolve() for home in found if home}
    # Hiding / would hide everything, the work tree's parents included.
    return sorted(path for path in paths if path != Path("/") and path.is_dir())


def tools(hidden: list[Path]) -> list[Path]:
    """Tool folders that hiding the home or /tmp would take away: kept, read-only.

    These are the folders on PATH and Python's own prefixes (a virtualenv,
    a pyenv version). A `shims` folder brings its manager along (~/.pyenv),
    since a shim only runs with it; any other bin folder is kept alone, so
    a tool's siblings (~/.cargo/credentials.toml) stay hidden.
    """
    folders = [Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    folders += [Path(sys.prefix), Path(sys.base_prefix)]
    found = set()
    for folder in folders:
        real = folder.resolve()
        if real.name == "shims":
            real = real.parent
        if real.is_dir() and any(place in real.parents for place in hidden):
            found.add(real)
    return sorted(found)


def tied_to_ralph(argv: list[str]) -> list[str]:
    """Unsandboxed, a command still dies with ralph, even when ralph is killed.

    bubblewrap's --die-with-parent does this inside the sandbox; outside it,
    util-linux's setpriv asks the kernel for the same.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return list(argv)
    return [setpriv, "--pdeathsig", "KILL", "--", *argv]


def kept(root: Path) -> list[Path]:
    return [root / part for part in READ_ONLY_PARTS if (root / part).exists()]


def resolve_sandbox(settings: Settings) -> str:
    """What the settings' `sandbox` comes to on this machine: "bwrap" or "none"."""
    if settings.sandbox not in KINDS:
        raise InputError(
            f"sandbox must be one of {', '.join(KINDS)}, got {settings.sandbox!r}"
        )
    if settings.sandbox == "none":
        return "none"
    problem = bwrap_problem()
    if problem is None:
        return "bwrap"
    if settings.sandbox == "bwrap":
        raise InputError(
            f"sandbox: bwrap is set, but {problem}; install bubblewrap "
            "(apt-get install bubblewrap), or set sandbox: none to run "
            "commands unsandboxed"
        )
    warn_unsandboxed(problem)
    return "none"


def bwrap_problem() -> str | None:
    """Why bubblewrap cannot be used here, or None when it can."""
    path = shutil.which(BWRAP)
    if path is None:
        return "bwrap is not on PATH"
    return probe(path)


@cache
def probe(path: str) -> str | None:
    """Run a trivial command with the flags ralph uses; None when it works."""
    argv = [path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    argv += ["--unshare-all", "--die-with-parent", "--new-session", "true"]
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{path} could not be run ({exc})"
    if proc.returncode != 0:
        said = proc.stderr.strip().splitlines()
        return f"{path} fails here ({said[-1] if said else f'exit {proc.returncode}'})"
    return None


@cache
def warn_unsandboxed(problem: str) -> None:
    log.warning(
        "commands run unsandboxed: %s; they can read and change anything "
        "your user can (install bubblewrap, or set sandbox: none to silence this)",
        problem,
    )


def check_read_only_possible(settings: Settings) -> None:
    """Refuse a read-only run that nothing could hold to being read-only."""
    if settings.read_only and resolve_sandbox(settings) == "none":
        fix = (
            "drop sandbox: none (or --sandbox none)"
            if settings.sandbox == "none"
            else "install bubblewrap"
        )
        raise InputError(
            "read_only needs the bwrap sandbox: without it a command could "
            f"still change the work tree; {fix}, or drop read_only"
        )


class Sandbox:
    """The containment of one attempt's commands, with the private /tmp they share.

    Use it as a context manager, or call `close`, so the /tmp goes with it.
    """

    def __init__(self, settings: Settings, workspace: Path) -> None:
        self.settings = settings
        self.workspace = workspace.resolve()
        self.kind = resolve_sandbox(settings)
        self.tmp: Path | None = None

    def wrap(self, argv: list[str]) -> list[str]:
        if self.kind == "none":
            return tied_to_ralph(argv)
        if self.tmp is None:
            self.tmp = Path(tempfile.mkdtemp(prefix="ralph-tmp-"))
        return sandbox_argv(argv, self.workspace, self.settings, self.tmp)

    def close(self) -> None:
        if self.tmp is None:
            return
        tmp, self.tmp = self.tmp, None
        try:
            shutil.rmtree(tmp)
        except OSError as exc:
            log.warning("could not remove the sandbox's /tmp %s: %s", tmp, exc)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
