"""The sandbox: how commands are wrapped in bubblewrap, and what that holds."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ralph import sandbox
from ralph.commands import CommandResult, run_command
from ralph.config import Settings
from ralph.errors import EXIT_INPUT, InputError
from ralph.sandbox import (
    Sandbox,
    bwrap_problem,
    check_read_only_possible,
    resolve_sandbox,
    sandbox_argv,
)
from ralph.tools import Toolbox
from tests.conftest import make_repo
from tests.fakes.listener import Listener

PROBLEM = bwrap_problem()
needs_bwrap = pytest.mark.skipif(
    PROBLEM is not None, reason=f"bubblewrap cannot run here: {PROBLEM}"
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home folder holding a secret, set as $HOME."""
    path = tmp_path / "home"
    (path / ".ssh").mkdir(parents=True)
    (path / ".ssh" / "id_rsa").write_text("home secret\n")
    monkeypatch.setenv("HOME", str(path))
    return path


@pytest.fixture
def work(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "work", {"README.md": "# work\n"})


def run_in(
    work: Path, script: str, settings: Settings | None = None, timeout: float = 30
) -> CommandResult:
    with Sandbox(settings or Settings(sandbox="bwrap"), work) as box:
        argv = box.wrap(["bash", "-c", script])
        return run_command(argv, work, dict(os.environ), timeout)


def test_the_argv_confines_and_then_runs_the_command(tmp_path: Path) -> None:
    work, tmp = tmp_path / "work", tmp_path / "tmp"
    (work / ".git").mkdir(parents=True)
    argv = sandbox_argv(["pytest", "-q"], work, Settings(), tmp)

    assert argv[:5] == ["bwrap", "--ro-bind", "/", "/", "--dev"]
    assert argv[-3:] == ["--", "pytest", "-q"]
    for flag in ("--unshare-all", "--die-with-parent", "--new-session"):
        assert flag in argv
    assert "--share-net" not in argv
    assert argv[argv.index("--chdir") + 1] == str(work.resolve())
    pairs = list(zip(argv, argv[1:], strict=False))
    assert ("--bind", str(tmp)) in pairs
    assert ("--bind", str(work.resolve())) in pairs
    assert ("--ro-bind", str(work.resolve() / ".git")) in pairs


def test_network_and_read_only_change_the_argv(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    settings = Settings(network=True, read_only=True)
    argv = sandbox_argv(["true"], work, settings, tmp_path)
    assert "--share-net" in argv
    pairs = list(zip(argv, argv[1:], strict=False))
    assert ("--ro-bind", str(work)) in pairs
    assert ("--bind", str(work)) not in pairs


def test_the_work_tree_is_mounted_after_the_home_and_tmp_that_hold_it(
    home: Path,
) -> None:
    work = home / "projects" / "app"
    (work / ".git").mkdir(parents=True)
    argv = sandbox_argv(["true"], work, Settings(), Path("/var/tmp/x"))
    places = [argv.index(str(path)) for path in (Path("/tmp"), home, work)]
    assert places == sorted(places)
    assert argv.index(str(work / ".git")) > argv.index(str(work))


@needs_bwrap
def test_the_work_tree_is_writable_and_the_rest_is_not(
    work: Path, tmp_path: Path
) -> None:
    # The folder beside the work tree is under /tmp, so the write lands in
    # the sandbox's private /tmp and vanishes with it.
    beside = tmp_path / "beside.txt"
    result = run_in(
        work,
        f"echo made > made.txt; echo x > {beside}; echo y > .git/hooks/pre-commit; "
        "touch /usr/ralph-test; true",
    )
    assert (work / "made.txt").read_text() == "made\n"
    assert not beside.exists()
    assert not (work / ".git" / "hooks" / "pre-commit").exists()
    assert not Path("/usr/ralph-test").exists()
    assert result.output.count("Read-only file system") == 2


@needs_bwrap
def test_the_home_is_hidden_even_around_a_work_tree_inside_it(home: Path) -> None:
    work = make_repo(home / "projects" / "app", {"README.md": "# app\n"})
    result = run_in(work, "ls -A ~; cat ~/.ssh/id_rsa; cat README.md; pwd")
    assert "home secret" not in result.output
    assert "No such file or directory" in result.output
    assert result.output.splitlines()[-2:] == ["# app", str(work.resolve())]


@needs_bwrap
def test_tmp_is_private_and_shared_by_the_commands_of_one_sandbox(
    work: Path,
) -> None:
    marker = f"ralph-sandbox-test-{os.getpid()}"
    with Sandbox(Settings(sandbox="bwrap"), work) as box:
        first = box.wrap(["bash", "-c", f"echo kept > /tmp/{marker}"])
        run_command(first, work, dict(os.environ), 30)
        second = box.wrap(["bash", "-c", f"cat /tmp/{marker}; echo $TMPDIR"])
        result = run_command(second, work, dict(os.environ), 30)
        private = box.tmp
    assert result.output == "kept\n/tmp\n"
    assert not Path("/tmp", marker).exists()
    assert private is not None and not private.exists()


@pytest.fixture
def listener() -> Iterator[Listener]:
    port = Listener()
    yield port
    port.server.close()


CONNECT = (
    "import socket, sys; "
    "socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5); "
    "print('connected')"
)


@needs_bwrap
def test_the_network_is_cut_unless_the_plan_allows_it(
    work: Path, listener: Listener
) -> None:
    # The venv of the tests may sit in /tmp, out of the sandbox's sight.
    script = f'python3 -c "{CONNECT}" {listener.port}'
    cut = run_in(work, script)
    assert "ConnectionRefusedError" in cut.output
    assert listener.accepted() == 0

    allowed = run_in(work, script, Settings(sandbox="bwrap", network=True))
    assert allowed.output == "connected\n"
    assert listener.accepted() == 1


@needs_bwrap
def test_ralph_is_out_of_sight_and_nothing_outlives_the_command(work: Path) -> None:
    result = run_in(
        work,
        "setsid sleep 313 > /dev/null 2>&1 & sleep 0.5; "
        "kill -9 $PPID; ps -eo pid=,comm= | tr -s ' '",
    )
    names = {line.split()[-1] for line in result.output.splitlines()}
    assert names <= {"bwrap", "bash", "sleep", "ps", "tr"}
    survivors = subprocess.run(
        ["pgrep", "-f", "^sleep 313"], capture_output=True, text=True
    )
    assert survivors.stdout == ""


@needs_bwrap
def test_a_timeout_ends_the_whole_sandbox(work: Path) -> None:
    result = run_in(work, "sleep 314 & sleep 315", timeout=1)
    assert result.timed_out
    leftovers = subprocess.run(["pgrep", "-f", "^sleep 31[45]"], capture_output=True)
    assert leftovers.stdout == b""


@needs_bwrap
def test_a_read_only_run_cannot_change_the_work_tree(work: Path) -> None:
    settings = Settings(sandbox="bwrap", read_only=True)
    result = run_in(work, "cat README.md; echo x > new.txt; echo y > /tmp/ok", settings)
    assert result.output.startswith("# work\n")
    assert "Read-only file system" in result.output
    assert not (work / "new.txt").exists()


@pytest.fixture
def no_bwrap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    sandbox.warn_unsandboxed.cache_clear()


def test_none_is_none_and_an_unknown_kind_is_bad_input() -> None:
    assert resolve_sandbox(Settings(sandbox="none")) == "none"
    with pytest.raises(InputError, match="sandbox must be one of auto, bwrap, none"):
        resolve_sandbox(Settings(sandbox="docker"))


def test_auto_without_bwrap_runs_unsandboxed_and_warns_once(
    no_bwrap: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ralph"):
        assert resolve_sandbox(Settings()) == "none"
        assert resolve_sandbox(Settings()) == "none"
    [record] = caplog.records
    assert "commands run unsandboxed: bwrap is not on PATH" in record.getMessage()


def test_bwrap_asked_for_but_missing_is_bad_input(no_bwrap: None) -> None:
    with pytest.raises(InputError, match="bwrap is not on PATH") as caught:
        resolve_sandbox(Settings(sandbox="bwrap"))
    assert caught.value.exit_code == EXIT_INPUT


def test_a_bwrap_that_fails_here_is_named_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "bwrap"
    said = "bwrap: No permissions to create a new namespace"
    stub.write_text(f"#!/bin/sh\necho '{said}' >&2\nexit 1\n")
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(InputError, match="No permissions to create a new namespace"):
        resolve_sandbox(Settings(sandbox="bwrap"))


def test_a_read_only_run_needs_a_sandbox(no_bwrap: None, tmp_path: Path) -> None:
    check_read_only_possible(Settings(sandbox="none"))
    with pytest.raises(InputError, match="read_only needs the bwrap sandbox"):
        check_read_only_possible(Settings(sandbox="none", read_only=True))
    with pytest.raises(InputError, match="read_only needs the bwrap sandbox"):
        Toolbox(tmp_path, Settings(read_only=True), dict(os.environ))


def test_without_a_sandbox_commands_only_die_with_ralph(work: Path) -> None:
    with Sandbox(Settings(sandbox="none"), work) as box:
        assert box.wrap(["ls"])[-2:] == ["--", "ls"]
        assert "--pdeathsig" in box.wrap(["ls"])
        assert box.tmp is None


@needs_bwrap
def test_read_only_is_possible_with_bwrap() -> None:
    check_read_only_possible(Settings(sandbox="bwrap", read_only=True))
