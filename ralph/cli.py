"""The command line: parse, build, call the library, echo."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from types import FrameType
from typing import Any

import click

from ralph import __version__
from ralph.config import Settings, load_settings
from ralph.engines import build_engine
from ralph.errors import EXIT_INTERRUPTED, InputError
from ralph.git import Repo
from ralph.lint import lint_plan
from ralph.loop import Runner, plural, preflight, require_steps
from ralph.new import PLAN_NAME, check_target, create_project, slug
from ralph.plan import Plan, load_plan, parse_plan
from ralph.status import status_lines

log = logging.getLogger("ralph")

plan_argument = click.argument("plan", type=click.Path(path_type=Path, dir_okay=False))


@click.group()
@click.version_option(__version__, prog_name="ralph")
def cli() -> None:
    """Carry long coding work through a markdown plan, one fresh context a step.

    The plan file and git are the whole state: run the same command again to
    resume after an interruption.
    """


@cli.command()
@plan_argument
@click.option("--engine", help="anthropic, shell, claude, codex or command.")
@click.option("--model", help="Model for the anthropic engine.")
@click.option(
    "--max-steps",
    type=click.IntRange(min=1),
    help="Stop after this many steps in this run.",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    help="Fresh attempts per step before it is blocked.",
)
@click.option(
    "--sandbox",
    type=click.Choice(["auto", "bwrap", "none"]),
    help="Where commands run: bubblewrap if it works (auto), always, or never.",
)
@click.option(
    "--read-only",
    is_flag=True,
    default=None,
    help="Steps may read and run commands but not change files (needs bwrap).",
)
@click.option(
    "--allow-dirty",
    is_flag=True,
    help="Start even with uncommitted changes; the next step's commit includes them.",
)
def run(
    plan: Path,
    engine: str | None,
    model: str | None,
    max_steps: int | None,
    max_attempts: int | None,
    sandbox: str | None,
    read_only: bool | None,
    allow_dirty: bool,
) -> None:
    """Run or resume PLAN, one step at a time.

    Example:

        ralph run plan.md

    Each step runs in a fresh context, is checked by its verify command and
    committed with its box ticked. Exit codes: 0 every step done, 1 an error,
    2 bad input, 3 a step is blocked or a budget reached, 130 interrupted.
    """
    overrides = {
        "engine": engine,
        "model": model,
        "max_steps": max_steps,
        "max_attempts": max_attempts,
        "sandbox": sandbox,
        "read_only": read_only or None,
    }
    settings = resolve_settings(preflight(plan), overrides)
    runner = Runner(plan, settings, build_engine(settings), allow_dirty=allow_dirty)
    sys.exit(runner.run())


@cli.command()
@plan_argument
def status(plan: Path) -> None:
    """Show each step of PLAN, its state, and what it cost, from the plan and git.

    Example:

        ralph status plan.md
    """
    parsed = load_plan(plan)
    repo = Repo.discover(plan.resolve())
    rel = plan.resolve().relative_to(repo.root).as_posix()
    for line in status_lines(parsed, repo, rel):
        click.echo(line)


@cli.command()
@plan_argument
@click.option("--json", "as_json", is_flag=True, help="Print JSON for tools.")
def parse(plan: Path, as_json: bool) -> None:
    """Print the steps ralph finds in PLAN.

    Example:

        ralph parse plan.md --json
    """
    parsed = load_plan(plan)
    if as_json:
        click.echo(json.dumps(plan_as_dict(parsed), indent=2, ensure_ascii=False))
        return
    for step in parsed.steps:
        box = "x" if step.done else " "
        click.echo(f"{step.line:>5}: {'  ' * step.depth}[{box}] {step.title}")


@cli.command()
@click.argument("args", nargs=-1, metavar="[IDEA] [DIR]")
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Start from this plan instead of an idea.",
)
@click.option(
    "--idea-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Read a longer brief from a file.",
)
@click.option("--plan-only", is_flag=True, help="Stop after committing the plan.")
@click.option("--force", is_flag=True, help="Use DIR even if it is not empty.")
@click.option("--engine", help="Engine for the run (planning uses anthropic).")
@click.option("--model", help="Model for planning and the run.")
def new(
    args: tuple[str, ...],
    plan_file: Path | None,
    idea_file: Path | None,
    plan_only: bool,
    force: bool,
    engine: str | None,
    model: str | None,
) -> None:
    """Turn IDEA into a plan in a new git repository DIR, then run it.

    Examples:

        ralph new "a command-line todo list in Python with tests"

        echo "a URL shortener" | ralph new - shortener

        ralph new --plan tasks/demo.md ../demo

    DIR defaults to a short name made from the idea. Planning is one fresh
    context with a single tool, write_plan, so it cannot start implementing;
    every step it writes carries a verify command.
    """
    idea, folder = split_new_args(args, given=plan_file or idea_file)
    overrides = {"engine": engine, "model": model}
    if plan_file is not None:
        data = plan_file.read_bytes()
        folder = folder or Path(slug(plan_file.stem))
    else:
        idea = idea_file.read_text(encoding="utf-8") if idea_file else idea
        if idea == "-":
            idea = sys.stdin.read()
        if not idea or not idea.strip():
            raise InputError(
                'give an idea (`ralph new "a todo app"`), - to read '
                "it from stdin, --idea-file FILE, or --plan FILE"
            )
        folder = folder or Path(slug(idea))
        check_target(folder, force)
        # The API client loads only when a plan is asked of the model.
        from ralph.planner import plan_idea

        data = plan_idea(idea, model=model, engine=engine)

    # The plan is checked whole before any folder is made for it.
    parsed = parse_plan(data, folder / PLAN_NAME)
    require_steps(parsed)
    settings = resolve_settings(parsed, overrides)
    runner_engine = None if plan_only else build_engine(settings)
    for finding in lint_plan(parsed, settings):
        log.warning("%s", finding.render(PLAN_NAME))

    path = create_project(folder, data, force)
    click.echo(f"ralph: wrote {path} and committed it", err=True)
    if runner_engine is None:
        click.echo(f"ralph: run it with: ralph run {path}", err=True)
    if runner_engine is not None:
        sys.exit(Runner(path, settings, runner_engine).run())


def split_new_args(
    args: tuple[str, ...], given: object
) -> tuple[str | None, Path | None]:
    """`new IDEA [DIR]`, or just `[DIR]` when the plan or idea comes from a file."""
    limit = 1 if given else 2
    if len(args) > limit:
        raise InputError(f"too many arguments: {' '.join(args)}; see ralph new --help")
    if given:
        return None, Path(args[0]) if args else None
    idea = args[0] if args else None
    return idea, Path(args[1]) if len(args) > 1 else None


@cli.command()
@plan_argument
@click.option("--strict", is_flag=True, help="Treat warnings as errors (exit 2).")
def lint(plan: Path, strict: bool) -> None:
    """Warn about what in PLAN is likely to waste attempts.

    Example:

        ralph lint plan.md --strict

    It finds: no steps, duplicate titles, steps with nothing to check them,
    empty titles, and steps too long for one context.
    """
    parsed = load_plan(plan)
    settings = resolve_settings(parsed, {})
    findings = lint_plan(parsed, settings)
    for finding in findings:
        click.echo(finding.render(str(plan)))
    if findings and strict:
        raise InputError(f"{plural(len(findings), 'lint finding')} in {plan}")
    if not findings:
        click.echo(f"{plan}: no findings")


def plan_as_dict(plan: Plan) -> dict[str, Any]:
    return {
        "path": str(plan.path),
        "title": plan.title,
        "front_matter": plan.front,
        "steps": [asdict(step) for step in plan.steps],
    }


def resolve_settings(plan: Plan, overrides: dict[str, Any]) -> Settings:
    """Front matter over defaults, the command line over both; warn once."""
    settings, warnings = load_settings(plan, overrides)
    for warning in warnings:
        log.warning("%s", warning)
    # RALPH_MODEL is the user's standing choice; a plan that names a model wins.
    ralph_section = plan.front.get("ralph")
    in_plan = "model" in plan.front or (
        isinstance(ralph_section, dict) and "model" in ralph_section
    )
    if os.environ.get("RALPH_MODEL") and not in_plan and not overrides.get("model"):
        settings.model = os.environ["RALPH_MODEL"]
    return settings


def main() -> None:
    """The console entry point: logging, signals and exit codes live here only."""
    debug = os.environ.get("RALPH_DEBUG") == "1"
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="ralph: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2", "anthropic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        code = cli.main(standalone_mode=False)
    except click.ClickException as error:
        if debug:
            raise
        error.show()
        sys.exit(error.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("ralph: interrupted; run the same command again to resume", err=True)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


def interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM stops a run the way Ctrl-C does."""
    raise KeyboardInterrupt
