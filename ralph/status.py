"""`ralph status`: the plan's steps with what git says each one took."""

from __future__ import annotations

from collections import Counter

from ralph.engines import Usage
from ralph.git import Commit, Repo
from ralph.ledger import Ledger, StepBooks, books_of, step_commits
from ralph.lock import lock_holder
from ralph.loop import WIP_REF, find_step, plural
from ralph.plan import Plan, Step


def status_lines(plan: Plan, repo: Repo, plan_rel: str) -> list[str]:
    """One line for the plan, one per step, and one of totals."""
    commits = step_commits(repo, plan_rel)
    shared = Counter(step.title for step in plan.steps)
    running = step_in_progress(plan, repo, plan_rel)

    done = sum(step.done for step in plan.steps)
    lines = [f"{plan_rel}: {done} of {plural(len(plan.steps), 'step')} done"]
    total = StepBooks()
    for step in plan.steps:
        books = books_of(own_commits(step, commits, shared[step.title] > 1))
        total.attempts += books.attempts
        total.usage.add(books.usage)
        lines.append(step_line(step, books, running))
    lines.append(f"total: {plural(total.attempts, 'attempt')}, {spend(total.usage)}")
    return lines


def own_commits(
    step: Step, commits: dict[str, list[Commit]], shared: bool
) -> list[Commit]:
    """A step's commits; steps that share a title are told apart by number."""
    mine = commits.get(step.title, [])
    if shared:
        mine = [
            c for c in mine if c.trailers.get("Ralph-Step-Number") == str(step.number)
        ]
    return mine


def step_in_progress(
    plan: Plan, repo: Repo, plan_rel: str
) -> tuple[int, int, str] | None:
    """The step a running, or an interrupted, run is on: number, attempt, words."""
    marker = repo.read_ref(WIP_REF)
    if marker is None:
        return None
    ledger = Ledger.from_message(repo.message_of(marker))
    step = find_step(plan, ledger) if ledger.plan == plan_rel else None
    if step is None:
        return None
    pid = lock_holder(repo.root)
    words = (
        f"in progress, attempt {ledger.attempts}, pid {pid}"
        if pid
        else f"interrupted in attempt {ledger.attempts}; ralph run resumes it"
    )
    return step.number, ledger.attempts, words


def step_line(
    step: Step, books: StepBooks, running: tuple[int, int, str] | None
) -> str:
    box = "x" if step.done else " "
    line = f"{'  ' * step.depth}[{box}] {step.number}. {step.title}"
    notes = []
    if running and running[0] == step.number:
        notes.append(running[2])
    elif books.blocked and not step.done:
        notes.append("blocked")
    if books.commits:
        notes.append(
            f"{plural(books.attempts, 'attempt')}, {spend(books.usage)}, "
            f"{books.commits[-1].sha[:8]}"
        )
    return f"{line}  ({'; '.join(notes)})" if notes else line


def spend(usage: Usage) -> str:
    return f"{usage.total_tokens:,} tokens, ${usage.cost_usd:.4f}"
