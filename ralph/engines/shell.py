"""The model-free engine: a step's work is its own fenced shell blocks.

It makes plans runnable offline and deterministic: demos, scripted chores,
and the tests of ralph itself.
"""

from __future__ import annotations

import json
import os
import time

from markdown_it import MarkdownIt

from ralph.commands import run_command
from ralph.engines import Attempt, Report
from ralph.sandbox import Sandbox
from ralph.secrets import redact_data

SHELL_LANGUAGES = {"sh", "bash", "shell"}


class ShellEngine:
    name = "shell"

    def run(self, attempt: Attempt) -> Report:
        blocks = shell_blocks(attempt.step.body)
        if not blocks:
            return Report(
                "blocked",
                "the step has no sh or bash code block for the shell engine to run",
            )

        with Sandbox(attempt.settings, attempt.workspace) as box:
            return self.run_blocks(attempt, blocks, box)

    def run_blocks(self, attempt: Attempt, blocks: list[str], box: Sandbox) -> Report:
        transcript = attempt.log_dir / "transcript.jsonl"
        for index, code in enumerate(blocks, 1):
            result = run_command(
                box.wrap(["bash", "-e", "-o", "pipefail", "-c", code]),
                attempt.workspace,
                attempt.env,
                attempt.settings.command_timeout,
                display=f"block {index}",
            )
            with transcript.open("a", encoding="utf-8") as f:
                record = {
                    "time": time.time(),
                    "block": index,
                    "code": code,
                    "exit_code": result.exit_code,
                    "output": result.output,
                }
                f.write(json.dumps(redact_data(record, os.environ)) + "\n")
            if not result.ok:
                last = (result.output.strip().splitlines() or ["(no output)"])[-1]
                summary = f"{result.describe()}, ending: {last}\n\n{result.output}"
                return Report("failed", summary)

        return Report("done", f"ran {len(blocks)} shell block(s)")


def shell_blocks(body: str) -> list[str]:
    """The fenced blocks of a step body whose info string names a shell."""
    tokens = MarkdownIt("commonmark").parse(body)
    return [
        token.content
        for token in tokens
        if token.type == "fence" and names_shell(token.info)
    ]


def names_shell(info: str) -> bool:
    words = info.split()
    return bool(words) and words[0].lower() in SHELL_LANGUAGES
