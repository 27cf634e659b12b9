"""Engines run one attempt: a fresh context working on one step.

Every engine has the same narrow seam: it gets an `Attempt` and returns a
`Report`. The loop never knows which engine it talks to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from ralph.config import Settings
from ralph.plan import Step

Status = Literal["done", "blocked", "failed"]


@dataclass
class Usage:
    """Tokens an attempt spent, as the API reported them."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_write_tokens
            + self.cache_read_tokens
        )

    def plus(self, other: Usage) -> Usage:
        total = Usage(**vars(self))
        total.add(other)
        return total

    def add(self, other: Usage) -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cost_usd += other.cost_usd


@dataclass
class Attempt:
    """Everything one attempt may know. Nothing else crosses into an engine."""

    workspace: Path
    step: Step
    number: int
    system: str
    prompt: str
    settings: Settings
    log_dir: Path
    env: dict[str, str]
    # Told the attempt's spend so far after each model reply, so a run that
    # is killed mid-attempt still leaves its cost in git.
    progress: Callable[[Usage], None] = field(default=lambda usage: None)


@dataclass
class Report:
    """How an attempt ended, in the engine's own words.

    `failed` means the engine could not finish (no report, turn limit, a
    command that failed); the loop decides whether the step is done.
    """

    status: Status
    summary: str
    notes: str = ""
    usage: Usage = field(default_factory=Usage)


class Engine(Protocol):
    name: str

    def run(self, attempt: Attempt) -> Report: ...


def build_engine(settings: Settings) -> Engine:
    """Return the engine the settings name, ready to run attempts."""
    if settings.engine == "shell":
        from ralph.engines.shell import ShellEngine

        return ShellEngine()
    if settings.engine == "anthropic":
        from ralph.engines.anthropic import AnthropicEngine

        return AnthropicEngine.from_settings(settings)
    from ralph.engines.command import CommandEngine

    return CommandEngine.from_settings(settings)
