"""The errors ralph expects, each with the exit code DESIGN.md gives it."""

from __future__ import annotations

import click

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INPUT = 2
EXIT_BLOCKED = 3
EXIT_INTERRUPTED = 130


class RalphError(click.ClickException):
    """A failure of ralph or its surroundings (exit 1).

    The message says what went wrong and what to do next.
    """

    exit_code = EXIT_ERROR


class InputError(RalphError):
    """Bad input or usage: the plan, its front matter, the workspace (exit 2)."""

    exit_code = EXIT_INPUT


class PlanError(InputError):
    """The plan file cannot be used as it is."""


class EngineError(RalphError):
    """An engine could not run an attempt at all (not the same as a failed attempt)."""
