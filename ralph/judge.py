"""The runner's judgement of an attempt: the runner decides, not the model.

An attempt is accepted only if it left the plan alone, changed no
protected file, reported done, and every verify command then exits 0.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

from ralph.commands import CommandResult, bound_output, run_command
from ralph.config import Settings
from ralph.engines import Report
from ralph.git import Repo
from ralph.plan import Step, is_regular_file, put_back, write_atomic
from ralph.sandbox import Sandbox
from ralph.secrets import redact

HANDOFF_TAIL = 3_000


@dataclass
class Verdict:
    """The runner's judgement of one attempt: None problem means accepted."""

    problem: str | None
    checks: list[CommandResult] = field(default_factory=list)


class Judge:
    """Checks attempts at the steps of one plan in one workspace."""

    def __init__(
        self, repo: Repo, settings: Settings, env: dict[str, str], plan_path: Path
    ) -> None:
        self.repo = repo
        self.settings = settings
        self.env = env
        self.plan_path = plan_path

    def verify_commands(self, step: Step) -> list[str]:
        """The step's own check, then the plan's, each once."""
        commands = [step.verify, self.settings.verify]
        return list(dict.fromkeys(c for c in commands if c))

    def judge(
        self,
        report: Report,
        plan_before: bytes,
        attributes_before: dict[str, bytes],
        base: str,
        checks: list[str],
        log_dir: Path,
    ) -> Verdict:
        """Decide whether an attempt did the step: the runner decides, not the model."""
        # Both are put back before anything asks git about the tree.
        problems = []
        if self.plan_changed(plan_before):
            put_back(self.plan_path, plan_before)
            problems.append(
                "the attempt edited the plan file, which belongs to the "
                "runner; the edit was undone"
            )
        if attributes := self.attributes_changed(attributes_before):
            problems.append(
                f"the attempt changed {', '.join(attributes)}, which decides how "
                "git stores files, the plan among them; the change was undone"
            )
        if problems:
            return Verdict("; ".join(problems))
        if protected := self.protected_changes(base):
            return Verdict(
                f"the attempt changed protected files ({', '.join(protected)}); "
                "those changes were undone"
            )
        if report.status != "done":
            return Verdict(f"the attempt did not finish: {report.summary}")
        results = self.verify(checks, log_dir / "verify-after.log")
        for result in results:
            if not result.ok:
                tail = bound_output(result.output, HANDOFF_TAIL)
                last = first_line(
                    result.output.strip().splitlines()[-1:][0]
                    if result.output.strip()
                    else "(no output)"
                )
                return Verdict(
                    f"verify {result.describe()}, ending: {last}\n\n{tail}", results
                )
        return Verdict(None, results)

    def plan_changed(self, original: bytes) -> bool:
        """Whether the plan is no longer the regular file it was, byte for byte.

        The path is examined before it is opened: an attempt may have put a
        FIFO there, which would hang a read, or a symlink to a file outside.
        """
        if not is_regular_file(self.plan_path):
            return True
        return self.plan_path.read_bytes() != original

    def attributes_changed(self, before: dict[str, bytes]) -> list[str]:
        """.gitattributes files the attempt changed, put back as they were."""
        after = self.repo.attribute_files()
        changed = sorted(
            rel
            for rel in before.keys() | after.keys()
            if before.get(rel) != after.get(rel)
        )
        for rel in changed:
            if rel in before:
                write_atomic(self.repo.root / rel, before[rel])
            else:
                (self.repo.root / rel).unlink()
        return changed

    def protected_changes(self, tree: str) -> list[str]:
        """Paths matching `protect` that changed since `tree`, put back as they were."""
        if not self.settings.protect:
            return []
        hits = [
            path
            for path in self.repo.changed_since(tree)
            if any(fnmatch.fnmatch(path, glob) for glob in self.settings.protect)
        ]
        for path in hits:
            self.repo.restore_path(tree, path)
        return hits

    def verify(self, commands: list[str], log_file: Path) -> list[CommandResult]:
        results = []
        for command in commands:
            with Sandbox(self.settings, self.repo.root) as box:
                argv = box.wrap(["bash", "-c", command])
                result = run_command(
                    argv,
                    self.repo.root,
                    self.env,
                    self.settings.verify_timeout,
                    display=command,
                )
            results.append(result)
            with log_file.open("a", encoding="utf-8") as f:
                entry = f"$ {command}\n{result.output}\n[{result.describe()}]\n"
                f.write(redact(entry, os.environ))
        return results


def render_verify(commands: list[str], before: list[CommandResult]) -> str:
    if not commands:
        return (
            "This step has no verify command: the runner accepts your report "
            "of done as it is, so check your own work."
        )
    lines = ["After you finish, the runner runs:"]
    for result in before:
        state = "already passes" if result.ok else f"fails now ({result.describe()})"
        lines.append(f"- `{result.command}`: {state}")
    return "\n".join(lines)


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""
