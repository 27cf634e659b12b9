"""Agent CLIs as engines: `claude -p`, `codex exec`, or any command.

The command gets the whole fresh context on stdin and works in the
workspace. Its exit code and its last line say how the attempt ended; the
runner's verify command still decides whether the step is done.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time

from ralph.commands import bound_output, kill_group
from ralph.config import Settings
from ralph.context import template
from ralph.engines import Attempt, Report, Usage
from ralph.errors import InputError
from ralph.pricing import cost_usd
from ralph.secrets import redact

AGENT_COMMANDS = {
    "claude": "claude -p --output-format json --dangerously-skip-permissions",
    "codex": "codex exec --full-auto -",
}
# An agent CLI needs its own credential, which ralph's scrubbed env lacks.
AGENT_KEYS = {
    "claude": ("ANTHROPIC_API_KEY",),
    "codex": ("OPENAI_API_KEY", "CODEX_API_KEY"),
}
STATUS_LINE = re.compile(r"^\W*RALPH:\s*(done|blocked)\b\s*(.*)$", re.I | re.M)
SUMMARY_LIMIT = 4_000


class CommandEngine:
    def __init__(self, name: str, argv: list[str]) -> None:
        self.name = name
        self.argv = argv

    @classmethod
    def from_settings(cls, settings: Settings) -> CommandEngine:
        command = settings.command or AGENT_COMMANDS.get(settings.engine)
        if not command:
            raise InputError(
                "engine: command needs a `command:` in the front matter, for "
                "example `command: my-agent --yes`; it gets the step on stdin"
            )
        argv = shlex.split(command)
        if shutil.which(argv[0]) is None:
            raise InputError(
                f"the {settings.engine} engine runs `{argv[0]}`, which is not on "
                f"PATH; install it or choose another engine"
            )
        return cls(settings.engine, argv)

    def run(self, attempt: Attempt) -> Report:
        # The agent brings its own tools, so it gets its own instructions
        # rather than the built-in engine's system prompt.
        prompt = template("agent.md").substitute(prompt=attempt.prompt)
        keys = AGENT_KEYS.get(self.name, ())
        env = {**attempt.env, **{k: os.environ[k] for k in keys if k in os.environ}}
        started = time.monotonic()
        proc = subprocess.Popen(
            self.argv,
            cwd=attempt.workspace,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            raw, _ = proc.communicate(
                prompt.encode(), timeout=attempt.settings.attempt_timeout
            )
        except subprocess.TimeoutExpired:
            kill_group(proc)
            proc.communicate()
            return Report("failed", f"`{self.argv[0]}` ran out of time")
        finally:
            kill_group(proc)

        output = raw.decode("utf-8", errors="replace")
        transcript = redact(output, os.environ)
        (attempt.log_dir / "transcript.txt").write_text(transcript, encoding="utf-8")
        report = read_report(output, proc.returncode)
        report.usage = read_usage(output, attempt.settings.model)
        report.summary = report.summary or f"ran for {time.monotonic() - started:.0f}s"
        return report


def read_report(output: str, exit_code: int) -> Report:
    """How the agent says it ended: its status line, else its exit code."""
    text = agent_text(output)
    matches = STATUS_LINE.findall(text)
    summary = bound_output(STATUS_LINE.sub("", text).strip(), SUMMARY_LIMIT)
    if exit_code != 0:
        return Report("failed", f"the agent exited {exit_code}:\n{summary}")
    if matches and matches[-1][0].lower() == "blocked":
        return Report("blocked", matches[-1][1].strip() or summary)
    return Report("done", summary)


def agent_text(output: str) -> str:
    """The agent's reply: the `result` of claude's JSON output, else all of it."""
    data = parse_json(output)
    result = data.get("result") if data else None
    return result if isinstance(result, str) else output


def read_usage(output: str, model: str) -> Usage:
    """Tokens and cost, when the agent reports them (claude's JSON output does)."""
    data = parse_json(output)
    raw = data.get("usage") if data else None
    if not isinstance(raw, dict):
        return Usage()
    usage = Usage(
        input_tokens=int(raw.get("input_tokens") or 0),
        output_tokens=int(raw.get("output_tokens") or 0),
        cache_write_tokens=int(raw.get("cache_creation_input_tokens") or 0),
        cache_read_tokens=int(raw.get("cache_read_input_tokens") or 0),
    )
    reported = data.get("total_cost_usd") if data else None
    usage.cost_usd = (
        float(reported)
        if isinstance(reported, (int, float))
        else cost_usd(model, usage)
    )
    return usage


def parse_json(output: str) -> dict[str, object] | None:
    try:
        data = json.loads(output)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
