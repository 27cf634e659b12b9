"""A fake of the Anthropic Messages API on 127.0.0.1, for the real SDK to talk to.

It speaks the wire format the `anthropic` 2.x SDK expects: JSON replies and
SSE streams with split `input_json_delta`s and pings, the API's own 400
texts for malformed conversations, token usage from a deterministic
estimator with a prompt-cache model, and faults on demand (error statuses
with retry headers, a non-JSON 502, an `error` event inside a 200 stream,
a stream closed before `message_stop`, a dropped connection, a cut at
max_tokens inside a tool call, unparseable tool JSON).

    with FakeAnthropic([Turn.tool("bash", {"command": "ls"}), Turn.finish()]) as fake:
        client = anthropic.Anthropic(api_key="test", base_url=fake.url)

Run as a script to serve a JSON list of turns to another process:
`python -m tests.fakes.anthropic_server --script turns.json` prints the URL.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import itertools
import json
import math
import random
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import jiter

MAX_BODY = 32 * 1024 * 1024
MAX_CACHE_MARKS = 4
LOOKBACK = 20
SIGNATURE = "c2lnbmF0dXJlIG9mIHRoZSBmYWtl"
TYPED_TOOLS = {
    "bash_20250124": "bash",
    "text_editor_20250728": "str_replace_based_edit_tool",
}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}

Body = dict[str, Any]


@dataclass
class ToolCall:
    name: str
    input: Any
    id: str | None = None


@dataclass
class Fault:
    """What goes wrong with one request instead of (or inside) its reply.

    kind: `status` (an error reply), `html` (a non-JSON error page),
    `error_event` (an SSE error after `after_events` events), `drop` (the
    stream closes after `after_events` events), `disconnect` (the socket
    closes before any reply), `bad_json` (tool JSON that cannot parse).
    """

    kind: str
    status: int = 500
    error_type: str | None = None
    message: str = "Internal server error"
    retry_after_ms: float | None = None
    retry_after: str | None = None
    should_retry: str | None = None
    after_events: int = 3


@dataclass
class Turn:
    """One scripted reply: what the model says and does, or how it fails."""

    text: str = ""
    calls: list[ToolCall] = field(default_factory=list)
    stop_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    thinking: str | None = None
    stop_details: dict[str, Any] | None = None
    fault: Fault | None = None
    cut_after: int | None = None
    delay: float = 0.0

    @classmethod
    def say(cls, text: str, stop_reason: str = "end_turn") -> Turn:
        return cls(text=text, stop_reason=stop_reason)

    @classmethod
    def tool(cls, name: str, input: Any, text: str = "") -> Turn:
        return cls(text=text, calls=[ToolCall(name, input)])

    @classmethod
    def tools(cls, *calls: tuple[str, Any], text: str = "") -> Turn:
        return cls(text=text, calls=[ToolCall(name, data) for name, data in calls])

    @classmethod
    def finish(
        cls, status: str = "done", summary: str = "did it", notes: str | None = None
    ) -> Turn:
        data = {"status": status, "summary": summary}
        if notes is not None:
            data["notes"] = notes
        return cls.tool("finish_step", data)

    @classmethod
    def error(
        cls,
        status: int,
        error_type: str | None = None,
        message: str = "simulated failure",
        **headers: Any,
    ) -> Turn:
        """An error reply; headers: retry_after_ms, retry_after, should_retry."""
        fault = Fault("status", status, error_type, message, **headers)
        return cls(fault=fault)

    @classmethod
    def html(cls, status: int = 502) -> Turn:
        return cls(fault=Fault("html", status))

    @classmethod
    def error_event(
        cls, error_type: str = "overloaded_error", after_events: int = 3
    ) -> Turn:
        fault = Fault(
            "error_event", 200, error_type, "Overloaded", after_events=after_events
        )
        return cls(text="I will start by", fault=fault)

    @classmethod
    def drop(cls, after_events: int = 3) -> Turn:
        return cls(
            text="Let me look at", fault=Fault("drop", after_events=after_events)
        )

    @classmethod
    def disconnect(cls) -> Turn:
        return cls(fault=Fault("disconnect"))

    @classmethod
    def bad_json(cls, name: str = "bash") -> Turn:
        return cls(calls=[ToolCall(name, {})], fault=Fault("bad_json"))

    @classmethod
    def cut_in_tool(
        cls, name: str, input: Any, keep: float = 0.5, text: str = ""
    ) -> Turn:
        """Stop at max_tokens part way through the tool call's JSON."""
        size = len(text) + int(len(dump(input)) * keep)
        return cls(text=text, calls=[ToolCall(name, input)], cut_after=size)

    @classmethod
    def refusal(cls, explanation: str = "I can't help with that.") -> Turn:
        details = {"type": "refusal", "category": None, "explanation": explanation}
        return cls(stop_reason="refusal", stop_details=details)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Turn:
        fields = dict(data)
        fields["calls"] = [ToolCall(**call) for call in fields.get("calls", [])]
        if "fault" in fields:
            fields["fault"] = Fault(**fields["fault"])
        return cls(**fields)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int = 0
    usage: dict[str, Any] = field(default_factory=dict)


class Rejected(Exception):
    """A request the real API would refuse, with its status and text."""

    def __init__(self, status: int, message: str, error_type: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type or ERROR_TYPES.get(status, "invalid_request_error")


def dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def estimate(chars: int) -> int:
    """Deterministic token estimate: four characters a token."""
    return math.ceil(chars / 4)


class FakeAnthropic:
    """The fake server; a context manager that serves on 127.0.0.1 in a thread."""

    def __init__(
        self,
        script: Iterable[Turn] = (),
        respond: Callable[[Body], Turn] | None = None,
        *,
        prefix: str = "",
        deny_keys: Iterable[str] = (),
        min_cacheable: int = 1024,
        count_top_level_cache: bool = True,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.script: deque[Turn] = deque(script)
        self.respond = respond
        self.prefix = prefix.rstrip("/")
        self.deny_keys = set(deny_keys)
        self.min_cacheable = min_cacheable
        self.count_top_level_cache = count_top_level_cache
        self.seed = seed
        self.clock = clock
        self.requests: list[Recorded] = []
        self.rejections: list[tuple[int, str]] = []
        self.cache: dict[str, float] = {}
        self.lock = threading.Lock()
        self.counter = 0
        self.server: _Server | None = None
        self.thread: threading.Thread | None = None

    def __enter__(self) -> FakeAnthropic:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.fake = self
        self.thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
        )
        self.thread.start()

    def stop(self) -> None:
        if self.server is None or self.thread is None:
            return
        self.server.shutdown()
        self.server.close_all()
        self.server.server_close()
        self.thread.join()
        self.server = None

    @property
    def url(self) -> str:
        if self.server is None:
            raise RuntimeError("the fake is not started")
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.prefix}"

    def add(self, *turns: Turn) -> None:
        with self.lock:
            self.script.extend(turns)

    @property
    def bodies(self) -> list[Body]:
        """Bodies of every POST /v1/messages, in order, whatever their outcome."""
        wanted = f"{self.prefix}/v1/messages"
        return [r.body for r in self.requests if r.path == wanted]

    def next_turn(self, body: Body) -> Turn:
        with self.lock:
            if self.script:
                return self.script.popleft()
        if self.respond is not None:
            return self.respond(body)
        raise Rejected(400, "the fake's script has no turn left for this request")

    def next_number(self) -> int:
        with self.lock:
            self.counter += 1
            return self.counter

    def usage_for(self, body: Body) -> dict[str, Any]:
        """Input usage from the estimator and the prompt-cache model."""
        items, marks = prompt_items(body)
        sizes = list(itertools.accumulate(len(dump(item)) + 1 for item in items))
        total = estimate(sizes[-1]) if sizes else 0
        cacheable = [
            (at, ttl) for at, ttl in marks if estimate(sizes[at]) >= self.min_cacheable
        ]
        now = self.clock()

        with self.lock:
            hits = (self.cached(body, items, at, now) for at, _ in reversed(cacheable))
            hit = next((found for found in hits if found is not None), None)
            read = estimate(sizes[hit]) if hit is not None else 0
            created = estimate(sizes[cacheable[-1][0]]) - read if cacheable else 0
            for at, ttl in cacheable:
                expiry = now + (3600.0 if ttl == "1h" else 300.0)
                self.cache[self.cache_key(body, items[: at + 1])] = expiry

        long_ttl = bool(cacheable) and cacheable[-1][1] == "1h"
        return {
            "input_tokens": total - read - created,
            "cache_creation_input_tokens": created,
            "cache_read_input_tokens": read,
            "cache_creation": {
                "ephemeral_5m_input_tokens": 0 if long_ttl else created,
                "ephemeral_1h_input_tokens": created if long_ttl else 0,
            },
        }

    def cached(self, body: Body, items: list[Any], at: int, now: float) -> int | None:
        """The longest live cached prefix ending within LOOKBACK blocks of `at`."""
        for end in range(at, max(-1, at - LOOKBACK), -1):
            if self.cache.get(self.cache_key(body, items[: end + 1]), -1.0) > now:
                return end
        return None

    def cache_key(self, body: Body, items: list[Any]) -> str:
        return hashlib.sha256(dump([body.get("model"), items]).encode()).hexdigest()


def blocks_of(content: Any) -> list[Any]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content) if isinstance(content, list) else []


def prompt_items(body: Body) -> tuple[list[Any], list[tuple[int, str]]]:
    """The prompt in cache order (tools, system, messages) and its breakpoints."""
    raw: list[Any] = list(body.get("tools") or [])
    system = body.get("system")
    raw += blocks_of(system) if system is not None else []
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            raw += [
                {"role": message.get("role"), **b} for b in blocks_of_dicts(message)
            ]

    items, marks = [], []
    for at, item in enumerate(raw):
        mark = item.get("cache_control") if isinstance(item, dict) else None
        if mark:
            marks.append((at, mark.get("ttl", "5m")))
        if isinstance(item, dict):
            item = {k: v for k, v in item.items() if k != "cache_control"}
        items.append(item)
    if body.get("cache_control") and items:
        marks.append((len(items) - 1, body["cache_control"].get("ttl", "5m")))
    return items, marks


def blocks_of_dicts(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in blocks_of(message.get("content")) if isinstance(b, dict)]


# Validation: the checks and texts of the real API.


def validate(body: Any, *, counting: bool, count_top_level: bool) -> None:
    if not isinstance(body, dict):
        raise Rejected(400, "body: Input should be an object")
    required = (
        ("model", "messages") if counting else ("model", "max_tokens", "messages")
    )
    for key in required:
        if key not in body:
            raise Rejected(400, f"{key}: Field required")
    if not counting:
        tokens = body["max_tokens"]
        if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1:
            raise Rejected(
                400, "max_tokens: Input should be greater than or equal to 1"
            )
    check_messages(body["messages"])
    check_tools(body)
    check_cache_marks(body, count_top_level)


def check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise Rejected(400, "messages: at least one message is required")
    for at, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in (
            "user",
            "assistant",
        ):
            raise Rejected(
                400, f"messages.{at}.role: Input should be 'user' or 'assistant'"
            )
        content = message.get("content")
        if not isinstance(content, str | list):
            raise Rejected(400, f"messages.{at}.content: Field required")
        if not content and at != len(messages) - 1:
            raise Rejected(
                400,
                f"messages.{at}: all messages must have non-empty content except "
                "for the optional final assistant message",
            )
    check_tool_pairs(merged(messages))


def merged(
    messages: list[dict[str, Any]],
) -> list[tuple[int, str, list[dict[str, Any]]]]:
    """Consecutive turns of one role merge into one, as the API merges them."""
    turns: list[tuple[int, str, list[dict[str, Any]]]] = []
    for at, message in enumerate(messages):
        blocks = blocks_of_dicts(message)
        if turns and turns[-1][1] == message["role"]:
            turns[-1][2].extend(blocks)
        else:
            turns.append((at, message["role"], blocks))
    return turns


def check_tool_pairs(turns: list[tuple[int, str, list[dict[str, Any]]]]) -> None:
    asked: list[str] = []
    for position, (at, role, blocks) in enumerate(turns):
        kinds = [b.get("type") for b in blocks]
        if role == "user" and "tool_use" in kinds:
            raise Rejected(
                400,
                f"messages.{at}: `tool_use` blocks can only be in assistant messages",
            )
        if role == "assistant" and "tool_result" in kinds:
            raise Rejected(
                400, f"messages.{at}: `tool_result` blocks can only be in user messages"
            )
        if role == "user":
            answer_tool_uses(at, blocks, asked)
            asked = []
            continue
        asked = [b.get("id", "") for b in blocks if b.get("type") == "tool_use"]
        following = turns[position + 1] if position + 1 < len(turns) else None
        if asked and following is None:
            raise Rejected(400, dangling(at, asked))


def answer_tool_uses(at: int, blocks: list[dict[str, Any]], asked: list[str]) -> None:
    results = [b for b in blocks if b.get("type") == "tool_result"]
    for result in results:
        if result.get("tool_use_id") not in asked:
            raise Rejected(
                400,
                f"messages.{at}.content: unexpected `tool_use_id` found in "
                f"`tool_result` blocks: {result.get('tool_use_id')}. Each "
                "`tool_result` block must have a corresponding `tool_use` block "
                "in the previous message.",
            )
    answered = {r.get("tool_use_id") for r in results}
    missing = [tool_id for tool_id in asked if tool_id not in answered]
    if missing:
        raise Rejected(400, dangling(at - 1, missing))
    leading = 0
    while leading < len(blocks) and blocks[leading].get("type") == "tool_result":
        leading += 1
    if asked and leading < len(results):
        raise Rejected(
            400,
            f"messages.{at}: Did not find {len(asked)} `tool_result` block(s) at "
            "the beginning of this message. Messages following `tool_use` blocks "
            "must begin with a matching number of `tool_result` blocks.",
        )


def dangling(at: int, ids: list[str]) -> str:
    return (
        f"messages.{at}: `tool_use` ids were found without `tool_result` blocks "
        f"immediately after: {', '.join(ids)}. Each `tool_use` block must have a "
        "corresponding `tool_result` block in the next message."
    )


def check_tools(body: Body) -> None:
    names = set()
    for at, tool in enumerate(body.get("tools") or []):
        kind = tool.get("type")
        if kind in TYPED_TOOLS and tool.get("name") != TYPED_TOOLS[kind]:
            raise Rejected(
                400, f"tools.{at}.name: Input should be '{TYPED_TOOLS[kind]}'"
            )
        if kind in (None, "custom"):
            schema = tool.get("input_schema")
            if "name" not in tool:
                raise Rejected(400, f"tools.{at}.custom.name: Field required")
            if not isinstance(schema, dict) or schema.get("type") != "object":
                raise Rejected(400, f"tools.{at}.custom.input_schema: Field required")
        names.add(tool.get("name"))
    choice = body.get("tool_choice") or {}
    if choice.get("type") == "tool" and choice.get("name") not in names:
        raise Rejected(400, f"tool_choice: tool `{choice.get('name')}` is not in tools")


def check_cache_marks(body: Body, count_top_level: bool) -> None:
    for at, message in enumerate(body["messages"]):
        for index, block in enumerate(blocks_of_dicts(message)):
            if (
                block.get("type") in ("thinking", "redacted_thinking")
                and "cache_control" in block
            ):
                raise Rejected(
                    400,
                    f"messages.{at}.content.{index}.{block['type']}.cache_control: "
                    "Extra inputs are not permitted",
                )
    items, marks = prompt_items(body)
    found = len(marks) - (0 if count_top_level or not body.get("cache_control") else 1)
    if found > MAX_CACHE_MARKS:
        raise Rejected(
            400,
            f"A maximum of {MAX_CACHE_MARKS} blocks with cache_control may be "
            f"provided. Found {found}.",
        )


# Replies: the content of a turn as a Message, or as SSE events.


@dataclass
class Reply:
    """A turn rendered for one request: blocks, stop reason, usage."""

    message_id: str
    model: str
    blocks: list[dict[str, Any]]
    texts: list[str]
    stop_reason: str
    usage: dict[str, Any]
    stop_details: dict[str, Any] | None = None


def render(turn: Turn, body: Body, usage: dict[str, Any], number: int) -> Reply:
    """Lay the turn out as content blocks, cut at max_tokens if it is longer."""
    budget = turn.cut_after if turn.cut_after is not None else body["max_tokens"] * 4
    blocks, texts, cut = cut_to(planned_blocks(turn, number), budget)
    if cut:
        stop = "max_tokens"
    else:
        stop = turn.stop_reason or ("tool_use" if turn.calls else "end_turn")
    output = max(1, estimate(sum(len(text) for text in texts)))
    usage = {**usage, "output_tokens": output, "service_tier": "standard"}
    usage.update(turn.usage)
    return Reply(
        f"msg_{number:024d}",
        body["model"],
        blocks,
        texts,
        stop,
        usage,
        turn.stop_details,
    )


def planned_blocks(turn: Turn, number: int) -> list[tuple[Body, str]]:
    """Each block's skeleton (as content_block_start sends it) and its text."""
    planned: list[tuple[Body, str]] = []
    if turn.thinking is not None:
        skeleton: Body = {"type": "thinking", "thinking": "", "signature": ""}
        planned.append((skeleton, turn.thinking))
    if turn.text:
        planned.append(({"type": "text", "text": ""}, turn.text))
    broken = turn.fault is not None and turn.fault.kind == "bad_json"
    for index, call in enumerate(turn.calls):
        tool_id = call.id or f"toolu_{number:012d}{index:012d}"
        skeleton = {"type": "tool_use", "id": tool_id, "name": call.name, "input": {}}
        planned.append((skeleton, '{"command": ls}' if broken else dump(call.input)))
    return planned


def cut_to(
    planned: list[tuple[Body, str]], budget: int
) -> tuple[list[Body], list[str], bool]:
    """Keep `budget` characters of output; True when something was cut."""
    blocks: list[Body] = []
    texts: list[str] = []
    for skeleton, text in planned:
        room = budget - sum(len(kept) for kept in texts)
        if room <= 0:
            return blocks, texts, True
        blocks.append(skeleton)
        texts.append(text[:room])
        if len(text) > room:
            return blocks, texts, True
    return blocks, texts, False


def whole_message(reply: Reply) -> Body:
    pairs = zip(reply.blocks, reply.texts, strict=True)
    content = [finished(dict(skeleton), text) for skeleton, text in pairs]
    message = envelope(reply, content, reply.stop_reason, reply.usage)
    return {**message, "stop_details": reply.stop_details}


def envelope(reply: Reply, content: list[Any], stop: str | None, usage: Body) -> Body:
    return {
        "id": reply.message_id,
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }


def finished(block: Body, text: str) -> Body:
    if block["type"] == "tool_use":
        try:
            block["input"] = jiter.from_json(text.encode(), partial_mode=True)
        except ValueError:
            block["input"] = {}
    elif block["type"] == "thinking":
        block.update(thinking=text, signature=SIGNATURE)
    else:
        block["text"] = text
    return block


def event(kind: str, **fields: Any) -> Body:
    return {"type": kind, **fields}


def stream_events(reply: Reply, rng: random.Random) -> list[Body]:
    """The SSE grammar: message_start, each block's start/deltas/stop, the end."""
    opening = envelope(reply, [], None, {**reply.usage, "output_tokens": 1})
    events = [event("message_start", message=opening), event("ping")]
    for index, (skeleton, text) in enumerate(
        zip(reply.blocks, reply.texts, strict=True)
    ):
        kind = skeleton["type"]
        events.append(event("content_block_start", index=index, content_block=skeleton))
        events += [delta(index, kind, piece) for piece in pieces(text, rng, kind)]
        if kind == "thinking":
            events.append(delta(index, "signature", SIGNATURE))
        if rng.random() < 0.3:
            events.append(event("ping"))
        events.append(event("content_block_stop", index=index))

    closing: Body = {"stop_reason": reply.stop_reason, "stop_sequence": None}
    if reply.stop_details is not None:
        closing["stop_details"] = reply.stop_details
    totals = {k: v for k, v in reply.usage.items() if k.endswith("_tokens")}
    events.append(event("message_delta", delta=closing, usage=totals))
    return [*events, event("message_stop")]


def pieces(text: str, rng: random.Random, kind: str) -> list[str]:
    """Split text at arbitrary points; tool JSON opens with "" as the API's does."""
    parts = [""] if kind == "tool_use" else []
    at = 0
    while at < len(text):
        step = rng.randint(1, max(2, len(text) // 6))
        parts.append(text[at : at + step])
        at += step
    return parts


DELTAS = {
    "text": ("text_delta", "text"),
    "tool_use": ("input_json_delta", "partial_json"),
    "thinking": ("thinking_delta", "thinking"),
    "signature": ("signature_delta", "signature"),
}


def delta(index: int, kind: str, piece: str) -> Body:
    name, key = DELTAS[kind]
    return event("content_block_delta", index=index, delta={"type": name, key: piece})


# HTTP.


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeAnthropic

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.open: set[socket.socket] = set()
        self.open_lock = threading.Lock()

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        with self.open_lock:
            self.open.add(conn)
        return conn, address

    def shutdown_request(self, request: Any) -> None:
        with self.open_lock:
            self.open.discard(request)
        super().shutdown_request(request)

    def close_all(self) -> None:
        """End keep-alive connections the client's pool still holds."""
        with self.open_lock:
            conns, self.open = list(self.open), set()
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `fake.requests`, not the access log."""

    def do_GET(self) -> None:
        self.handle_any()

    def do_POST(self) -> None:
        self.handle_any()

    def handle_any(self) -> None:
        fake = self.server.fake
        self.number = fake.next_number()
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        record = Recorded(
            self.command,
            self.path,
            {k.lower(): v for k, v in self.headers.items()},
            body,
        )
        with fake.lock:
            fake.requests.append(record)
        try:
            self.serve(fake, record, raw)
        except (BrokenPipeError, ConnectionResetError):
            # The client hung up mid-reply (it gave up on a bad stream): fine.
            self.close_connection = True
        except Rejected as exc:
            record.status = exc.status
            with fake.lock:
                fake.rejections.append((exc.status, exc.message))
            self.send_error_reply(exc.status, exc.error_type, exc.message)

    def serve(self, fake: FakeAnthropic, record: Recorded, raw: bytes) -> None:
        route = self.path.split("?")[0]
        if self.command != "POST" or route not in (
            f"{fake.prefix}/v1/messages",
            f"{fake.prefix}/v1/messages/count_tokens",
        ):
            raise Rejected(404, f"Not found: {route}")
        self.check_auth(fake)
        if len(raw) > MAX_BODY:
            raise Rejected(413, "Request exceeds the maximum allowed number of bytes.")
        counting = route.endswith("/count_tokens")
        validate(
            record.body, counting=counting, count_top_level=fake.count_top_level_cache
        )

        if counting:
            items, _ = prompt_items(record.body)
            tokens = estimate(sum(len(dump(item)) + 1 for item in items))
            record.status = 200
            self.send_json(200, {"input_tokens": tokens})
            return
        turn = fake.next_turn(record.body)
        number = self.number
        if turn.delay:
            time.sleep(turn.delay)
        if turn.fault is not None and self.fail(turn.fault, record):
            return
        reply = render(turn, record.body, fake.usage_for(record.body), number)
        record.status = 200
        record.usage = reply.usage
        if record.body.get("stream"):
            self.send_stream(
                reply, turn.fault, random.Random(fake.seed * 7919 + number)
            )
        else:
            self.send_json(200, whole_message(reply))

    def check_auth(self, fake: FakeAnthropic) -> None:
        bearer = self.headers.get("authorization", "")
        key = (
            bearer[7:]
            if bearer.lower().startswith("bearer ")
            else self.headers.get("x-api-key")
        )
        if not key:
            raise Rejected(401, "x-api-key header is required")
        if key in fake.deny_keys:
            raise Rejected(401, "invalid x-api-key")

    def fail(self, fault: Fault, record: Recorded) -> bool:
        """Reply with the fault if it replaces the reply; False if it rides in it."""
        streaming = bool(record.body.get("stream"))
        if fault.kind in ("error_event", "drop", "bad_json") and streaming:
            return False
        if fault.kind == "bad_json":
            return False
        record.status = fault.status
        if fault.kind == "disconnect" or fault.kind == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return True
        if fault.kind == "html":
            page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            self.send_bytes(fault.status, page, "text/html", {})
            return True
        status = 529 if fault.kind == "error_event" else fault.status
        headers = {}
        if fault.retry_after_ms is not None:
            headers["retry-after-ms"] = str(fault.retry_after_ms)
        if fault.retry_after is not None:
            headers["retry-after"] = str(fault.retry_after)
        if fault.should_retry is not None:
            headers["x-should-retry"] = fault.should_retry
        record.status = status
        error_type = fault.error_type or ERROR_TYPES.get(status, "api_error")
        self.send_error_reply(status, error_type, fault.message, headers)
        return True

    def send_error_reply(
        self,
        status: int,
        error_type: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        body = {
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": self.request_id(),
        }
        self.send_bytes(
            status, json.dumps(body).encode(), "application/json", headers or {}
        )

    def send_json(self, status: int, body: Any) -> None:
        self.send_bytes(status, json.dumps(body).encode(), "application/json", {})

    def send_bytes(
        self, status: int, data: bytes, kind: str, headers: dict[str, str]
    ) -> None:
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", self.request_id())
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def send_stream(
        self, reply: Reply, fault: Fault | None, rng: random.Random
    ) -> None:
        # No length and no chunking: the body ends when the socket closes, so
        # a stream cut short looks to the client like a clean, early end.
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.send_header("request-id", self.request_id())
        self.end_headers()
        self.close_connection = True
        for number, data in enumerate(stream_events(reply, rng)):
            if fault is not None and number == fault.after_events:
                if fault.kind == "error_event":
                    error = {"type": fault.error_type, "message": fault.message}
                    self.write_event(event("error", error=error))
                if fault.kind in ("drop", "error_event"):
                    return
            self.write_event(data)

    def write_event(self, data: Body) -> None:
        frame = f"event: {data['type']}\ndata: {json.dumps(data)}\n\n"
        self.wfile.write(frame.encode())
        self.wfile.flush()

    def request_id(self) -> str:
        return f"req_fake{self.number:018d}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a scripted fake Messages API.")
    parser.add_argument("--script", required=True, help="JSON file: a list of turns")
    parser.add_argument("--prefix", default="")
    args = parser.parse_args(argv)
    with open(args.script, encoding="utf-8") as handle:
        turns = [Turn.from_dict(item) for item in json.load(handle)]
    with FakeAnthropic(turns, prefix=args.prefix) as fake:
        print(fake.url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            sys.exit(0)


if __name__ == "__main__":
    main()
