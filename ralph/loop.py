"""The loop: take the first open step, attempt it fresh, check it, commit it.

Nothing lives in memory between steps. Each turn of the loop reads the plan
file and the repository again, so a run that was killed simply starts the
same way a new one does.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from ralph import context
from ralph.config import Settings
from ralph.engines import Attempt, Engine, Report, Usage
from ralph.errors import EXIT_BLOCKED, EXIT_OK, InputError
from ralph.git import Repo
from ralph.guard import scrub_env
from ralph.judge import Judge, Verdict, first_line, render_verify
from ralph.ledger import Ledger, total_spend
from ralph.lock import workspace_lock
from ralph.plan import (
    Plan,
    Step,
    add_note,
    is_regular_file,
    load_plan,
    put_back,
    tick,
    write_atomic,
)
from ralph.sandbox import check_read_only_possible, resolve_sandbox
from ralph.secrets import redact

log = logging.getLogger("ralph")

WIP_REF = "refs/ralph/wip"
ATTEMPTS_REF = "refs/ralph/attempts"


@dataclass
class Resume:
    """A step an interrupted run left half done, as its marker in git tells."""

    ledger: Ledger
    base: str
    handoff: str


class Runner:
    """Runs one plan in one workspace until it is done, blocked or out of budget."""

    def __init__(
        self,
        plan_path: Path,
        settings: Settings,
        engine: Engine,
        allow_dirty: bool = False,
    ) -> None:
        self.plan_path = plan_path.resolve()
        self.settings = settings
        self.engine = engine
        self.allow_dirty = allow_dirty
        self.repo = Repo.discover(self.plan_path)
        self.plan_rel = self.plan_path.relative_to(self.repo.root).as_posix()
        self.env = scrub_env(dict(os.environ), settings.env_allow)
        self.judge = Judge(self.repo, settings, self.env, self.plan_path)
        self.log_root = (
            self.repo.root / ".ralph" / "logs" / time.strftime("%Y%m%d-%H%M%S")
        )

    def run(self) -> int:
        """Run or resume the plan; return the exit code.

        The plan and its repository have passed `preflight` (or, for a new
        project, were made so) before the engine was built.
        """
        resolve_sandbox(self.settings)
        check_read_only_possible(self.settings)
        self.repo.exclude_ralph_dir()
        with workspace_lock(self.repo.root):
            resume = self.prepare()
            return self.loop(resume)

    def loop(self, resume: Resume | None) -> int:
        steps_run = 0
        while True:
            plan = load_plan(self.plan_path)
            step = plan.next_step()
            if step is None:
                log.info("every step of %s is done", self.plan_rel)
                return EXIT_OK
            if reason := self.budget_reached(steps_run):
                log.warning("stopping before step %d: %s", step.number, reason)
                return EXIT_BLOCKED
            if step.children:
                self.finish_group(plan, step)
                continue
            if not self.run_step(plan, step, resume):
                return EXIT_BLOCKED
            resume = None
            steps_run += 1

    # -- before the first step -------------------------------------------

    def prepare(self) -> Resume | None:
        """Recover an interrupted step, or make sure the tree is ours to change."""
        if self.repo.is_ignored(self.plan_path):
            raise InputError(
                f"{self.plan_rel} is ignored by git; ralph commits the plan with "
                f"every step, so remove it from .gitignore"
            )
        if not self.plan_path.stat().st_mode & stat.S_IWUSR:
            raise InputError(
                f"{self.plan_rel} is read-only; ralph ticks its boxes, so make it "
                f"writable (chmod u+w {self.plan_rel})"
            )
        resume = self.recover()
        if resume is not None:
            return resume
        changed = [p for p in self.repo.changed_paths() if p != self.plan_rel]
        if held := dict(self.repo.held_back()):
            # Files ralph holds back from its commits are no reason to stop.
            names = ", ".join(held)
            log.warning("leaving %s uncommitted: they look like secrets", names)
            changed = [p for p in changed if p not in held]
        if changed and not self.allow_dirty:
            shown = ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else "")
            raise InputError(
                f"the work tree has uncommitted changes ({shown}); commit or stash "
                f"them, or pass --allow-dirty to let the next step's commit "
                f"include them"
            )
        if self.plan_rel in self.repo.changed_paths():
            self.commit_plan_edits()
        return None

    def commit_plan_edits(self) -> None:
        """Your edits of the plan (new steps, say) get a commit of their own."""
        log.info("committing your changes to %s first", self.plan_rel)
        self.repo.commit(
            f"ralph: plan\n\nRalph-Plan: {self.plan_rel}\n", paths=[self.plan_rel]
        )

    def recover(self) -> Resume | None:
        """Read the marker of a step in progress, if an interrupted run left one."""
        marker = self.repo.read_ref(WIP_REF)
        if marker is None:
            return None
        ledger = Ledger.from_message(self.repo.message_of(marker))
        if self.repo.parent_of(marker) != self.repo.head() or ledger.plan != (
            self.plan_rel
        ):
            # The step's commit landed, or someone moved the branch on since.
            self.repo.delete_ref(WIP_REF)
            return None

        plan = load_plan(self.plan_path)
        step = find_step(plan, ledger)
        base = self.repo.tree_of(marker)
        if step is not None and step.done:
            log.info(
                "completing the commit of %r, interrupted after its tick", step.title
            )
            self.commit_step(step, ledger, "committed after an interrupted run")
            return None
        if self.plan_rel in self.repo.changed_paths():
            base = self.commit_plan_edits_under(marker, base)
        if plan.next_step() != step:
            log.warning(
                "the interrupted step %r is not the next step any more; its "
                "changes stay in the work tree for the next step's commit",
                ledger.title,
            )
        changes = self.repo.diff_stat(base)
        handoff = context.template("resume.md").substitute(
            diffstat=changes or "(no changes)"
        )
        log.info(
            "resuming %r: an earlier run stopped during its attempt %d",
            ledger.title,
            ledger.attempts,
        )
        return Resume(ledger=ledger, base=base, handoff=handoff)

    def redact(self, text: str) -> str:
        """What ralph writes to the plan and the history carries no secret."""
        return redact(text, os.environ)

    def commit_plan_edits_under(self, marker: str, base: str) -> str:
        """Commit plan edits made while a step was interrupted; return its new base.

        The marker moves on top of the new commit, with the edited plan in
        its tree, so the step still resumes and a reset keeps the edit.
        """
        self.commit_plan_edits()
        base = self.repo.tree_with_file(
            base, self.plan_rel, self.plan_path.read_bytes()
        )
        self.repo.save_tree(WIP_REF, base, self.repo.message_of(marker))
        return base

    def budget_reached(self, steps_run: int) -> str | None:
        settings = self.settings
        if settings.max_steps is not None and steps_run >= settings.max_steps:
            return f"ran {plural(steps_run, 'step')}, the --max-steps limit"
        if settings.budget_usd is None and settings.budget_tokens is None:
            return None
        spent = total_spend(self.repo, self.plan_rel)
        if settings.budget_usd is not None and spent.cost_usd >= settings.budget_usd:
            return (
                f"spent ${spent.cost_usd:.2f} of the ${settings.budget_usd:.2f} "
                f"budget_usd"
            )
        tokens = spent.total_tokens
        if settings.budget_tokens is not None and tokens >= settings.budget_tokens:
            return f"spent {tokens} of the {settings.budget_tokens} budget_tokens"
        return None

    # -- one step ---------------------------------------------------------

    def run_step(self, plan: Plan, step: Step, resume: Resume | None) -> bool:
        """Attempt a step until it is done or blocked; True when it is done."""
        if resume is not None and find_step(plan, resume.ledger) == step:
            ledger, base, handoff = resume.ledger, resume.base, resume.handoff
            first = max(ledger.attempts, 1)
        else:
            ledger = Ledger(step.title, step.number, self.plan_rel)
            base, handoff, first = self.repo.snapshot(), "", 1

        held_before = {path for path, _ in self.repo.held_back()}
        problem = "no attempt was made"
        for number in range(first, self.settings.max_attempts + 1):
            ledger.attempts = number
            self.repo.save_tree(
                WIP_REF, base, ledger.message(f"ralph: wip {step.title}")
            )
            log.info(
                "step %d of %d: %s (attempt %d of %d)",
                step.number,
                len(plan.steps),
                step.title,
                number,
                self.settings.max_attempts,
            )

            report, verdict = self.attempt(plan, step, ledger, base, handoff)
            ledger.usage.add(report.usage)
            if report.status == "blocked":
                self.reject(step, number, base, f"blocked: {report.summary}")
                return self.block(step, ledger, report.summary)
            if verdict.problem is None:
                self.finish_step(step, ledger, report, verdict, held_before)
                return True

            problem = verdict.problem
            log.warning(
                "attempt %d rejected: %s", number, self.redact(first_line(problem))
            )
            ref = self.reject(step, number, base, problem)
            handoff = self.handoff(problem, report, ref)

        tries = plural(self.settings.max_attempts, "attempt")
        reason = f"{tries} failed; the last: {problem}"
        return self.block(step, ledger, reason)

    def attempt(
        self, plan: Plan, step: Step, ledger: Ledger, base: str, handoff: str
    ) -> tuple[Report, Verdict]:
        """One fresh context on the step, then the runner's own checks."""
        number = ledger.attempts
        log_dir = self.log_root / f"step-{step.number}" / f"attempt-{number}"
        log_dir.mkdir(parents=True, exist_ok=True)
        checks = self.judge.verify_commands(step)
        before = self.judge.verify(checks, log_dir / "verify-before.log")
        prompt = context.step_prompt(
            plan, step, self.repo, render_verify(checks, before), handoff
        )
        (log_dir / "prompt.md").write_text(self.redact(prompt), encoding="utf-8")

        plan_before = self.plan_path.read_bytes()
        attributes_before = self.repo.attribute_files()
        head_before = self.repo.head()
        started = time.monotonic()
        report = self.engine.run(
            Attempt(
                workspace=self.repo.root,
                step=step,
                number=number,
                system=context.system_prompt(),
                prompt=prompt,
                settings=self.settings,
                log_dir=log_dir,
                env=self.env,
                progress=partial(self.record_spend, step, ledger, base),
            )
        )
        log.info(
            "attempt %d ended %s after %.0fs: %s",
            number,
            report.status,
            time.monotonic() - started,
            self.redact(first_line(report.summary)),
        )
        # The model's own commits become part of the step's single commit.
        self.repo.fold_commits_since(head_before)
        verdict = self.judge.judge(
            report, plan_before, attributes_before, base, checks, log_dir
        )
        return report, verdict

    def record_spend(
        self, step: Step, ledger: Ledger, base: str, running: Usage
    ) -> None:
        """Rewrite the marker with the attempt's spend so far, so a kill keeps it."""
        spent = ledger.with_usage(ledger.usage.plus(running))
        self.repo.save_tree(WIP_REF, base, spent.message(f"ralph: wip {step.title}"))

    # -- endings ----------------------------------------------------------

    def reject(self, step: Step, number: int, base: str, problem: str) -> str:
        """Keep a failed attempt's work on a ref, then put the tree back."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        ref = f"{ATTEMPTS_REF}/{stamp}-step-{step.number}-attempt-{number}"
        message = self.redact(
            f"ralph: rejected attempt {number} at {step.title}\n\n{problem}\n"
        )
        self.repo.save_tree(ref, self.repo.snapshot(), message)
        self.repo.restore(base)
        return ref

    def handoff(self, problem: str, report: Report, ref: str) -> str:
        return context.template("handoff.md").substitute(
            problem=problem,
            summary=report.summary or "(none)",
            ref=ref,
            diffstat=self.repo.git("show", "--stat", "--format=", ref)
            or "(no changes)",
        )

    def finish_step(
        self,
        step: Step,
        ledger: Ledger,
        report: Report,
        verdict: Verdict,
        held_before: set[str],
    ) -> None:
        note = report.summary.strip()
        if report.notes.strip():
            note += "\n\n" + report.notes.strip()
        if not verdict.checks and not self.repo.changed_paths():
            note += "\n\n(done with no change and no verify command)"
        secrets = self.repo.held_back()
        # Only what this step wrote is news; files held back before stay so.
        if new := [(path, why) for path, why in secrets if path not in held_before]:
            left = "; ".join(f"{path} ({why})" for path, why in new)
            note += f"\n\nLeft out of the commit: {left}"
            log.warning("not committing %s", left)
        data = add_note(self.plan_path.read_bytes(), step, self.redact(note or "done"))
        data = tick_with_groups(data, self.plan_path, step)
        write_atomic(self.plan_path, data)
        passed = ", ".join(f"`{r.command}`" for r in verdict.checks) or "none"
        self.commit_step(
            step,
            ledger,
            self.redact(report.summary),
            leave=[path for path, _ in secrets],
            **{"Ralph-Verify": passed},
        )

    def commit_step(
        self,
        step: Step,
        ledger: Ledger,
        body: str,
        leave: Sequence[str] = (),
        **extra: str,
    ) -> None:
        message = ledger.message(
            f"ralph: {step.title}", body, **{"Ralph-Outcome": "done", **extra}
        )
        sha = self.repo.commit(message, leave=leave)
        self.repo.delete_ref(WIP_REF)
        log.info("step %d done: committed %s", step.number, sha[:8])

    def finish_group(self, plan: Plan, group: Step) -> None:
        """Tick a group whose children were all ticked outside a run."""
        data = tick_with_groups(self.plan_path.read_bytes(), self.plan_path, group)
        write_atomic(self.plan_path, data)
        ledger = Ledger(group.title, group.number, self.plan_rel)
        self.repo.commit(
            ledger.message(f"ralph: {group.title}", **{"Ralph-Outcome": "done"}),
            paths=[self.plan_rel],
        )

    def block(self, step: Step, ledger: Ledger, reason: str) -> bool:
        """Write why the step is blocked under it, commit that, and stop."""
        reason = self.redact(reason)
        data = add_note(self.plan_path.read_bytes(), step, f"blocked: {reason}")
        write_atomic(self.plan_path, data)
        message = ledger.message(
            f"ralph: blocked: {step.title}", reason, **{"Ralph-Outcome": "blocked"}
        )
        self.repo.commit(message, paths=[self.plan_rel])
        self.repo.delete_ref(WIP_REF)
        log.error("step %d is blocked: %s", step.number, first_line(reason))
        return False


def repair_plan(path: Path) -> None:
    """Put back a plan that an attempt replaced before its run was killed.

    Within a run the judge undoes such a change; after a kill, the next run
    must not follow a symlink or read a FIFO that an attempt left at the
    plan's path. HEAD's copy is the plan as ralph last committed it.
    """
    try:
        repo = Repo.discover(path)
    except InputError:
        return
    rel = os.path.relpath(os.path.abspath(path), repo.root)
    if repo.read_ref(WIP_REF) is None or rel.startswith(".."):
        return
    if is_regular_file(path):
        return
    committed = repo.committed_file(rel)
    if committed is None:
        return
    put_back(path, committed)
    log.warning("%s was replaced by an interrupted attempt; put back as committed", rel)


def preflight(path: Path) -> Plan:
    """The plan, checked as far as it can be before an engine is built."""
    repair_plan(path)
    plan = load_plan(path)
    require_steps(plan)
    Repo.discover(path.resolve()).check_usable()
    return plan


def require_steps(plan: Plan) -> None:
    if not plan.steps:
        raise InputError(
            f"{plan.path.name} has no steps; ralph runs task items such as "
            f"`- [ ] Write the parser`, one per step"
        )


def find_step(plan: Plan, ledger: Ledger) -> Step | None:
    """The step a ledger speaks of: by number if the title still matches."""
    if 0 < ledger.number <= len(plan.steps):
        step = plan.step(ledger.number)
        if step.title == ledger.title:
            return step
    return next((s for s in plan.steps if s.title == ledger.title), None)


def tick_with_groups(data: bytes, path: Path, step: Step) -> bytes:
    """Tick a step, and each group above it that this leaves with no open child."""
    from ralph.plan import parse_plan

    plan = parse_plan(data, path)
    data = tick(data, plan.step(step.number))
    parent = step.parent
    while parent is not None:
        plan = parse_plan(data, path)
        group = plan.step(parent)
        if group.done or any(not plan.step(c).done for c in group.children):
            break
        data = tick(data, group)
        parent = group.parent
    return data


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
