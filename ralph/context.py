"""The fresh context of an attempt, built from the plan and the repository.

An attempt starts from nothing but what is built here: the stable system
prompt, the plan, the step in full, and a short view of the repository. No
message of an earlier attempt is ever sent again; what a retry learns from
the failure before it is the handoff the runner writes.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from string import Template

from ralph.git import Repo
from ralph.plan import Plan, Step

OUTLINE_LIMIT = 8_000
NOTES_LIMIT = 6_000
RECENT_COMMITS = 5


def prompts_dir() -> Path:
    """Templates ship inside the package; a source checkout keeps them beside it."""
    packaged = Path(__file__).parent / "prompts"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "prompts"


@cache
def template(name: str) -> Template:
    return Template((prompts_dir() / name).read_text(encoding="utf-8"))


def system_prompt() -> str:
    """The same for every step of every plan, so prompt caching can serve it."""
    return template("system.md").template


def step_prompt(plan: Plan, step: Step, repo: Repo, verify: str, handoff: str) -> str:
    """The user turn that opens an attempt on `step`."""
    return template("step.md").substitute(
        plan_title=plan.title or plan.path.name,
        plan_context=plan.context.strip() or "(no context given)",
        outline=render_outline(plan, step),
        notes=render_notes(plan, step),
        step_title=step.title,
        step_body=step.body.strip() or "(no details beyond the title)",
        verify=verify,
        handoff=handoff,
        recent=render_recent(repo),
        status=repo.status_short() or "(clean)",
    )


def render_outline(plan: Plan, current: Step) -> str:
    """Every step with its state, trimmed around the current one if the plan is long."""
    lines = []
    for step in plan.steps:
        box = "x" if step.done else " "
        mark = "   <- your step" if step.number == current.number else ""
        lines.append(f"{'  ' * step.depth}- [{box}] {step.title}{mark}")
    return trim_around(lines, current.number - 1, OUTLINE_LIMIT)


def trim_around(lines: list[str], center: int, limit: int) -> str:
    """Keep the lines nearest `center` within `limit` characters, saying what went."""
    low = high = center
    size = len(lines[center]) + 1
    while True:
        grew = False
        if low > 0 and size + len(lines[low - 1]) + 1 <= limit:
            low -= 1
            size += len(lines[low]) + 1
            grew = True
        if high < len(lines) - 1 and size + len(lines[high + 1]) + 1 <= limit:
            high += 1
            size += len(lines[high]) + 1
            grew = True
        if not grew:
            break
    kept = lines[low : high + 1]
    if low:
        kept.insert(0, f"({low} earlier steps not shown)")
    if high < len(lines) - 1:
        kept.append(f"({len(lines) - 1 - high} later steps not shown)")
    return "\n".join(kept)


def render_notes(plan: Plan, current: Step) -> str:
    """Notes earlier steps left, the newest first to survive the size bound."""
    blocks: list[str] = []
    size = 0
    for step in reversed(plan.steps[: current.number - 1]):
        for note in reversed(step.notes):
            block = f"From \u201c{step.title}\u201d:\n{note.strip()}\n"
            if size + len(block) > NOTES_LIMIT:
                break
            blocks.insert(0, block)
            size += len(block)
    if not blocks:
        return ""
    return "## Notes from earlier steps\n\n" + "\n".join(blocks) + "\n"


def render_recent(repo: Repo) -> str:
    commits = repo.ralph_commits(limit=RECENT_COMMITS)
    if not commits:
        return "(no ralph commits yet)"
    return "\n".join(f"- {c.sha[:8]} {c.subject}" for c in commits)
