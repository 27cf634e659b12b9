"""The books of a run, kept in commit trailers so a restart never resets them.

Every step commit carries the attempts, tokens and cost it took. The marker
of a step in progress is a commit on `refs/ralph/wip` whose message carries
the same trailers, so an interrupted step keeps counting where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ralph.engines import Usage
from ralph.git import Commit, Repo, format_trailers, parse_trailers

USAGE_TRAILERS = {
    "Ralph-Input-Tokens": "input_tokens",
    "Ralph-Output-Tokens": "output_tokens",
    "Ralph-Cache-Write-Tokens": "cache_write_tokens",
    "Ralph-Cache-Read-Tokens": "cache_read_tokens",
}


@dataclass
class Ledger:
    """What one step has cost so far."""

    title: str
    number: int
    plan: str
    attempts: int = 0
    usage: Usage = field(default_factory=Usage)

    def with_usage(self, usage: Usage) -> Ledger:
        return Ledger(self.title, self.number, self.plan, self.attempts, usage)

    def trailers(self, **extra: str) -> dict[str, str]:
        trailers = {
            "Ralph-Step": self.title,
            "Ralph-Step-Number": str(self.number),
            "Ralph-Plan": self.plan,
            "Ralph-Attempts": str(self.attempts),
        }
        for key, attr in USAGE_TRAILERS.items():
            trailers[key] = str(getattr(self.usage, attr))
        trailers["Ralph-Cost-USD"] = f"{self.usage.cost_usd:.6f}"
        return {**trailers, **extra}

    def message(self, subject: str, body: str = "", **extra: str) -> str:
        parts = [subject, body.strip(), format_trailers(self.trailers(**extra))]
        return "\n\n".join(part for part in parts if part) + "\n"

    @classmethod
    def from_message(cls, message: str) -> Ledger:
        trailers = parse_trailers(message.rsplit("\n\n", 1)[-1])
        return cls(
            title=trailers.get("Ralph-Step", ""),
            number=int(trailers.get("Ralph-Step-Number", "0") or 0),
            plan=trailers.get("Ralph-Plan", ""),
            attempts=int(trailers.get("Ralph-Attempts", "0") or 0),
            usage=usage_from(trailers),
        )


def usage_from(trailers: dict[str, str]) -> Usage:
    usage = Usage()
    for key, attr in USAGE_TRAILERS.items():
        setattr(usage, attr, int(trailers.get(key, "0") or 0))
    usage.cost_usd = float(trailers.get("Ralph-Cost-USD", "0") or 0)
    return usage


@dataclass
class StepBooks:
    """Totals of one step over all its commits (a blocked run, then a done one)."""

    attempts: int = 0
    usage: Usage = field(default_factory=Usage)
    commits: list[Commit] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        return bool(self.commits) and (
            self.commits[-1].trailers.get("Ralph-Outcome") == "blocked"
        )


def step_commits(repo: Repo, plan: str) -> dict[str, list[Commit]]:
    """The step commits of `plan`, oldest first, by step title, from `git log`."""
    by_title: dict[str, list[Commit]] = {}
    for commit in reversed(repo.ralph_commits()):
        if commit.trailers.get("Ralph-Plan") == plan:
            by_title.setdefault(commit.trailers["Ralph-Step"], []).append(commit)
    return by_title


def books_of(commits: list[Commit]) -> StepBooks:
    books = StepBooks(commits=commits)
    for commit in commits:
        books.attempts += int(commit.trailers.get("Ralph-Attempts", "0") or 0)
        books.usage.add(usage_from(commit.trailers))
    return books


def total_spend(repo: Repo, plan: str) -> Usage:
    total = Usage()
    for commits in step_commits(repo, plan).values():
        total.add(books_of(commits).usage)
    return total
