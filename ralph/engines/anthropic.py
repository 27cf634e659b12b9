"""The built-in engine: the Messages API in a tool loop, one fresh conversation each.

An attempt starts from the system prompt and the attempt's prompt alone,
streams every reply (large `max_tokens` needs streaming), runs the tools the
model calls and answers each call, and ends when the model calls
`finish_step`, or fails on a limit. Transport faults are retried by
`ralph.retry`; what the model did is kept in the attempt's log folder.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import anthropic
from anthropic.types import Message, ToolUseBlock

from ralph.config import Settings
from ralph.context import template
from ralph.engines import Attempt, Report, Status, Usage
from ralph.errors import InputError
from ralph.pricing import cost_usd
from ralph.retry import StreamCut, call_with_retry
from ralph.secrets import redact_data
from ralph.tools import BASH, EDITOR, FINISH, Toolbox, ToolResult

log = logging.getLogger("ralph")

# Short turns ralph adds to a conversation; their text lives in prompts/.
NUDGE = template("nudge.md").template.strip()
CUT_TEXT = template("cut-text.md").template.strip()
CUT_CALL = template("cut-call.md").template.strip()
FAILED_STOPS = {
    "refusal": "the model refused the step",
    "model_context_window_exceeded": "the conversation outgrew the context window",
}


class AnthropicEngine:
    """Runs attempts through the Anthropic Messages API."""

    name = "anthropic"

    def __init__(self, api_key: str, base_url: str | None = None) -> None:
        self.api_key = api_key
        self.base_url = base_url

    @classmethod
    def from_settings(
        cls, settings: Settings, environ: Mapping[str, str] | None = None
    ) -> AnthropicEngine:
        """Build the engine from ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL.

        The model, limits and timeouts are read from each attempt's settings.
        """
        env = os.environ if environ is None else environ
        key = env.get("ANTHROPIC_API_KEY", "").strip()
        if not key:
            raise InputError(
                "ANTHROPIC_API_KEY is not set: export it, or set `engine: shell` "
                "to run the plan's own shell blocks without a model"
            )
        return cls(key, env.get("ANTHROPIC_BASE_URL") or None)

    def run(self, attempt: Attempt) -> Report:
        # A client per attempt: nothing, not even a connection, outlives it.
        with (
            self.connect() as client,
            Transcript(attempt.log_dir, self.api_key) as transcript,
        ):
            conversation = Conversation(client, attempt, transcript)
            try:
                report = conversation.run()
            finally:
                conversation.toolbox.close()
            transcript.write(
                "report",
                status=report.status,
                summary=report.summary,
                notes=report.notes,
                usage=vars(report.usage),
            )
        return report

    def connect(self) -> anthropic.Anthropic:
        # Retries belong to ralph's one policy, so the SDK makes none of its own.
        return anthropic.Anthropic(
            api_key=self.api_key, base_url=self.base_url, max_retries=0
        )


class Conversation:
    """One attempt's messages, from the first prompt to the report."""

    def __init__(
        self, client: anthropic.Anthropic, attempt: Attempt, transcript: Transcript
    ) -> None:
        self.client = client
        self.attempt = attempt
        self.settings = attempt.settings
        self.transcript = transcript
        self.deadline = time.monotonic() + self.settings.attempt_timeout
        self.toolbox = Toolbox(
            attempt.workspace, self.settings, attempt.env, deadline=self.deadline
        )
        # The system prompt is the same for every step, so the cache serves it.
        self.system = [
            {"type": "text", "text": attempt.system, "cache_control": EPHEMERAL}
        ]
        self.messages: list[dict[str, Any]] = []
        self.usage = Usage()
        self.turns = 0
        self.nudged = False

    def run(self) -> Report:
        self.transcript.write(
            "attempt",
            step=self.attempt.step.number,
            title=self.attempt.step.title,
            number=self.attempt.number,
            model=self.settings.model,
            system=self.attempt.system,
            tools=self.toolbox.definitions(),
        )
        self.add("user", self.attempt.prompt)
        while True:
            limit = self.limit_reached()
            if limit is not None:
                return self.report("failed", limit)
            report = self.handle(self.request())
            if report is not None:
                return report

    def limit_reached(self) -> str | None:
        if self.turns >= self.settings.max_turns:
            return (
                f"turn limit: {self.settings.max_turns} requests without "
                "a finish_step report"
            )
        if time.monotonic() > self.deadline:
            return (
                f"time limit: the attempt ran past attempt_timeout "
                f"({self.settings.attempt_timeout:.0f}s)"
            )
        return None

    def request(self) -> Message:
        self.turns += 1
        self.transcript.write("request", turn=self.turns, messages=len(self.messages))
        message = call_with_retry(self.stream, self.settings, f"turn {self.turns}")
        self.transcript.write(
            "reply",
            turn=self.turns,
            stop_reason=message.stop_reason,
            usage=message.usage.model_dump(mode="json") if message.usage else None,
        )
        return message

    def stream(self) -> Message:
        """One streamed request; a reply that did not arrive whole is a StreamCut."""
        try:
            with self.client.messages.stream(
                model=self.settings.model,
                max_tokens=self.settings.max_tokens,
                system=cast(Any, self.system),
                messages=cast(Any, self.messages),
                tools=cast(Any, self.toolbox.definitions()),
                cache_control=cast(Any, EPHEMERAL),
            ) as stream:
                message = stream.get_final_message()
        except ValueError as exc:
            # The SDK raises this when the streamed tool JSON cannot be parsed.
            if "tool parameter JSON" not in str(exc):
                raise
            raise StreamCut(
                f"the reply's tool input was not valid JSON: {exc}"
            ) from exc
        self.count(message)
        if message.stop_reason is None:
            raise StreamCut("the reply stream ended before message_stop")
        return message

    def count(self, message: Message) -> None:
        """Add a reply's tokens, a cut one's too: they were billed."""
        usage = message.usage
        if usage is None:
            return
        self.usage.add(
            Usage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_write_tokens=usage.cache_creation_input_tokens or 0,
                cache_read_tokens=usage.cache_read_input_tokens or 0,
            )
        )
        self.usage.cost_usd = cost_usd(self.settings.model, self.usage)
        self.attempt.progress(self.usage)

    def handle(self, message: Message) -> Report | None:
        """Act on one reply; a Report ends the attempt, None asks for another turn."""
        blocks = [
            block.model_dump(mode="json", exclude_none=True)
            for block in message.content
        ]
        if blocks:
            self.add("assistant", blocks)
        calls = [block for block in message.content if isinstance(block, ToolUseBlock)]
        if calls:
            last = message.content[-1]
            cut = message.stop_reason == "max_tokens" and isinstance(last, ToolUseBlock)
            return self.answer(calls, cut_call=last if cut else None)
        return self.after_text(message)

    def answer(self, calls: list[ToolUseBlock], cut_call: object) -> Report | None:
        """Answer every call; finish_step is taken after the others have run."""
        last_finish = sorted(calls, key=lambda call: call.name == FINISH)
        results = {
            call.id: self.answer_one(call, call is cut_call) for call in last_finish
        }
        blocks = [tool_result(call.id, results[call.id]) for call in calls]
        finish = next(
            (c for c in calls if c.name == FINISH and not results[c.id].is_error), None
        )
        if finish is None:
            self.add("user", blocks)
            return None

        self.transcript.write("message", role="user", content=blocks)
        data = cast(dict[str, Any], finish.input)
        status = cast(Status, data["status"])
        return self.report(status, data["summary"], data.get("notes", ""))

    def answer_one(self, call: ToolUseBlock, cut: bool) -> ToolResult:
        if cut:
            result = ToolResult(CUT_CALL, is_error=True)
            log.info("%s not run: cut at max_tokens", call.name)
            self.transcript.tool(call, result, 0.0)
            return result
        return self.run_tool(call)

    def after_text(self, message: Message) -> Report | None:
        stop = message.stop_reason
        if stop == "pause_turn":
            return None
        if stop == "max_tokens":
            self.add("user", CUT_TEXT)
            return None
        if stop in ("end_turn", "stop_sequence"):
            if self.nudged:
                return self.report(
                    "failed", "the model ended its turn again without finish_step"
                )
            self.nudged = True
            self.add("user", NUDGE)
            return None
        if stop in FAILED_STOPS:
            return self.report(
                "failed", f"{FAILED_STOPS[stop]}{refusal_reason(message)}"
            )
        return self.report("failed", f"the reply ended with stop reason {stop}")

    def run_tool(self, call: ToolUseBlock) -> ToolResult:
        started = time.monotonic()
        result = self.toolbox.run(call.name, call.input)
        seconds = time.monotonic() - started
        log.info(
            "%s %s%s (%.1fs)",
            call.name,
            gist(call.name, call.input),
            " [error]" if result.is_error else "",
            seconds,
        )
        self.transcript.tool(call, result, seconds)
        return result

    def add(self, role: str, content: str | list[dict[str, Any]]) -> None:
        """Append a message; a turn of the same role as the last merges into it."""
        self.transcript.write("message", role=role, content=content)
        if self.messages and self.messages[-1]["role"] == role:
            last = self.messages[-1]
            last["content"] = as_blocks(last["content"]) + as_blocks(content)
            return
        self.messages.append({"role": role, "content": content})

    def report(self, status: Status, summary: str, notes: str = "") -> Report:
        self.usage.cost_usd = cost_usd(self.settings.model, self.usage)
        if status == "failed":
            log.info("attempt failed: %s", summary)
        return Report(status=status, summary=summary, notes=notes, usage=self.usage)


EPHEMERAL = {"type": "ephemeral"}


def tool_result(tool_id: str, result: ToolResult) -> dict[str, Any]:
    return {
        "type": "tool_result",
        "tool_use_id": tool_id,
        "content": result.content,
        "is_error": result.is_error,
    }


def as_blocks(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"type": "text", "text": content}] if isinstance(content, str) else content


def refusal_reason(message: Message) -> str:
    details = getattr(message, "stop_details", None)
    reason = getattr(details, "explanation", None) or getattr(details, "category", None)
    return f": {reason}" if reason else " (no reason given)"


def gist(name: str, input: object) -> str:
    """A few words on what a tool call does, for the progress line."""
    data = input if isinstance(input, dict) else {}
    if name == BASH:
        text = str(data.get("command", "restart" if data.get("restart") else ""))
    elif name == EDITOR:
        text = f"{data.get('command', '?')} {data.get('path', '?')}"
    else:
        text = str(data.get("status", ""))
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 80 else line[:77] + "..."


class Transcript:
    """The attempt's conversation and tool calls as JSON lines, for people to read."""

    def __init__(self, log_dir: Path, secret: str) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        # The key is blanked out should it ever reach a log line.
        self.secret = secret
        self.conversation = (log_dir / "transcript.jsonl").open("a", encoding="utf-8")
        self.tools = (log_dir / "tools.jsonl").open("a", encoding="utf-8")

    def __enter__(self) -> Transcript:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if exc is not None:
            self.write("error", error=f"{type(exc).__name__}: {exc}")
        self.conversation.close()
        self.tools.close()

    def write(self, kind: str, **fields: Any) -> None:
        self.line(self.conversation, {"kind": kind, "at": now(), **fields})

    def tool(self, call: ToolUseBlock, result: ToolResult, seconds: float) -> None:
        entry = {"name": call.name, "input": call.input, "is_error": result.is_error}
        self.line(self.tools, {**entry, "seconds": round(seconds, 3)})
        self.write("tool", id=call.id, **entry, output=result.content)

    def line(self, handle: Any, entry: dict[str, Any]) -> None:
        # Redacted before encoding: JSON escapes would hide a token's edges.
        clean = redact_data(json.loads(json.dumps(entry, default=str)), os.environ)
        text = json.dumps(clean, ensure_ascii=False)
        if len(self.secret) >= 8:
            text = text.replace(self.secret, "[api key]")
        handle.write(text + "\n")
        handle.flush()


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
