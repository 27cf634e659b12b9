"""Warnings about a plan before it runs: what would waste attempts later."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ralph.config import Settings
from ralph.plan import Plan

# About a quarter of a context window of prose: beyond it a step is several steps.
STEP_CHARS_LIMIT = 40_000


@dataclass(frozen=True)
class Finding:
    line: int
    message: str

    def render(self, path: str) -> str:
        return f"{path}:{self.line}: warning: {self.message}"


def lint_plan(plan: Plan, settings: Settings) -> list[Finding]:
    """Everything in the plan that is likely to go wrong, by line."""
    if not plan.steps:
        return [
            Finding(
                1,
                "the plan has no steps; add task items such as "
                "`- [ ] Write the parser`",
            )
        ]
    findings = []
    counts = Counter(step.title for step in plan.steps)
    for step in plan.steps:
        if not step.title.strip():
            findings.append(Finding(step.line, "a step has an empty title"))
        elif counts[step.title] > 1:
            findings.append(
                Finding(
                    step.line,
                    f"the title {step.title!r} is used by "
                    f"{counts[step.title]} steps; ralph's ledger tells steps by title",
                )
            )
        if not step.children and not step.verify and not settings.verify:
            findings.append(
                Finding(
                    step.line,
                    f"step {step.title!r} has no `Verify:` line and the plan "
                    "no `verify`; nothing but the engine's word will check it",
                )
            )
        if len(step.title) + len(step.body) > STEP_CHARS_LIMIT:
            findings.append(
                Finding(
                    step.line,
                    f"step {step.title!r} is longer than {STEP_CHARS_LIMIT} "
                    "characters; split it so one context can hold it",
                )
            )
    return findings
