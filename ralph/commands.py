"""Running shell commands for tools, verify and the shell engine.

Every command runs in its own process group, so a timeout or an interrupt
ends the whole tree it started, and its output is bounded so a chatty
command cannot fill memory or a context.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

OUTPUT_LIMIT = 30_000


@dataclass
class CommandResult:
    command: str
    exit_code: int | None
    output: str
    seconds: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def describe(self) -> str:
        """A short account of the result for prompts and notes."""
        if self.timed_out:
            return f"`{self.command}` timed out after {self.seconds:.0f}s"
        return f"`{self.command}` exited {self.exit_code}"


def bound_output(text: str, limit: int = OUTPUT_LIMIT) -> str:
    """Keep the head and the tail of long output: errors tend to be at the end."""
    if len(text) <= limit:
        return text
    head = limit // 4
    tail = limit - head
    dropped = len(text) - limit
    return f"{text[:head]}\n[... {dropped} characters cut ...]\n{text[-tail:]}"


def run_command(
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    timeout: float,
    display: str | None = None,
    limit: int = OUTPUT_LIMIT,
) -> CommandResult:
    """Run argv with stdout and stderr merged, ending its whole group at the end.

    The output goes to a file, not a pipe, so a background child that keeps
    the pipe open cannot hold the command past its own exit; the child is
    ended with the group then, as it is in the sandbox.
    """
    started = time.monotonic()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            # Also on an interrupt: nothing the command started stays behind.
            kill_group(proc)
            proc.wait()
        output = read_bounded(out, limit)
    return CommandResult(
        command=display or " ".join(argv),
        exit_code=None if timed_out else proc.returncode,
        output=output,
        seconds=time.monotonic() - started,
        timed_out=timed_out,
    )


def read_bounded(out: IO[bytes], limit: int) -> str:
    """The head and tail of what a command wrote, without reading it all."""
    size = out.seek(0, os.SEEK_END)
    out.seek(0)
    if size <= limit:
        return out.read().decode("utf-8", errors="replace")
    head = out.read(limit // 4).decode("utf-8", errors="replace")
    out.seek(size - (limit - limit // 4))
    tail = out.read().decode("utf-8", errors="replace")
    return f"{head}\n[... {size - limit} bytes cut ...]\n{tail}"


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
