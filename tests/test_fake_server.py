"""The fake Messages API behaves as the real one does for the real SDK."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.fakes.anthropic_server import FakeAnthropic, Turn

ROOT = Path(__file__).resolve().parents[1]
MODEL = "claude-sonnet-4-6"
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture
def client(fake: FakeAnthropic) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key="test-key", base_url=fake.url, max_retries=0) as c:
        yield c


def stream(client: anthropic.Anthropic, **params: Any) -> Any:
    params = {"model": MODEL, "max_tokens": 1000, "messages": HELLO, **params}
    with client.messages.stream(**params) as events:
        return events.get_final_message()


def post(url: str, body: object, headers: dict[str, str] | None = None) -> Any:
    """A raw request, to see what the SDK would hide."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def test_plain_reply_has_the_full_message_shape(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake.add(Turn.say("Hi there."))
    message = client.messages.create(model=MODEL, max_tokens=100, messages=HELLO)
    assert message.model == MODEL
    assert message.content[0].type == "text" and message.content[0].text == "Hi there."
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert message.usage.cache_read_input_tokens == 0

    recorded = fake.requests[0]
    assert recorded.headers["authorization"] == "Bearer test-key"
    assert recorded.body == {"model": MODEL, "max_tokens": 100, "messages": HELLO}


def test_streamed_tool_input_survives_arbitrary_splits(fake: FakeAnthropic) -> None:
    data = {"command": "printf '%s\\n' \"a b\" {1..3} && echo ✓", "n": [1, 2.5, None]}
    for seed in range(12):
        with (
            FakeAnthropic(
                [Turn.tool("bash", data, text="Running it.")], seed=seed
            ) as f,
            anthropic.Anthropic(api_key="k", base_url=f.url, max_retries=0) as c,
        ):
            message = stream(c)
        assert message.stop_reason == "tool_use"
        assert message.content[0].text == "Running it."
        assert message.content[1].input == data
        assert message.content[1].id.startswith("toolu_")


def test_stream_wire_format_has_event_lines_pings_and_split_json(
    fake: FakeAnthropic,
) -> None:
    fake.add(Turn.tool("bash", {"command": "echo " + "x" * 60}))
    body = {"model": MODEL, "max_tokens": 100, "messages": HELLO, "stream": True}
    status, text = post(f"{fake.url}/v1/messages", body, {"x-api-key": "k"})
    assert status == 200
    frames = [frame for frame in text.split("\n\n") if frame]
    names = [frame.splitlines()[0] for frame in frames]
    assert names[0] == "event: message_start"
    assert names[-1] == "event: message_stop"
    assert "event: ping" in names
    deltas = [json.loads(f.splitlines()[1][6:]) for f in frames if "input_json" in f]
    assert deltas[0]["delta"]["partial_json"] == ""
    assert len(deltas) > 2


def test_auth_is_required_and_deny_listed_keys_fail() -> None:
    with FakeAnthropic([Turn.say("x")], deny_keys={"bad"}) as fake:
        body = {"model": MODEL, "max_tokens": 5, "messages": HELLO}
        status, text = post(f"{fake.url}/v1/messages", body)
        assert status == 401 and "authentication_error" in text
        status, _ = post(
            f"{fake.url}/v1/messages", body, {"authorization": "Bearer bad"}
        )
        assert status == 401
        status, _ = post(f"{fake.url}/v1/messages", body, {"x-api-key": "good"})
        assert status == 200


def test_other_paths_are_404(fake: FakeAnthropic) -> None:
    status, text = post(f"{fake.url}/v1/complete", {}, {"x-api-key": "k"})
    assert status == 404
    assert json.loads(text)["error"]["type"] == "not_found_error"


def test_prefix_is_kept_in_the_route() -> None:
    with (
        FakeAnthropic([Turn.say("ok")], prefix="/proxy/anthropic") as fake,
        anthropic.Anthropic(api_key="k", base_url=fake.url, max_retries=0) as client,
    ):
        assert stream(client).content[0].text == "ok"
        assert fake.requests[0].path == "/proxy/anthropic/v1/messages"


def test_count_tokens_matches_the_usage_of_the_same_prompt() -> None:
    with (
        FakeAnthropic([Turn.say("a"), Turn.say("b")], min_cacheable=0) as fake,
        anthropic.Anthropic(api_key="k", base_url=fake.url, max_retries=0) as client,
    ):
        system = [
            {"type": "text", "text": "S" * 800, "cache_control": {"type": "ephemeral"}}
        ]
        counted = client.messages.count_tokens(
            model=MODEL, system=system, messages=HELLO
        )
        first = stream(client, system=system).usage
        second = stream(client, system=system).usage

    assert first.cache_creation_input_tokens > 0 and first.cache_read_input_tokens == 0
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    assert second.cache_creation_input_tokens == 0
    for usage in (first, second):
        total = (
            usage.input_tokens
            + usage.cache_creation_input_tokens
            + usage.cache_read_input_tokens
        )
        assert total == counted.input_tokens


def test_automatic_caching_reads_the_last_turn_back_and_expires() -> None:
    now = [0.0]
    long = [{"role": "user", "content": "context " * 200}]
    grown = [*long, {"role": "assistant", "content": "ok"}, HELLO[0]]
    auto = {"type": "ephemeral"}
    with (
        FakeAnthropic([Turn.say("a")] * 3, min_cacheable=0, clock=lambda: now[0]) as f,
        anthropic.Anthropic(api_key="k", base_url=f.url, max_retries=0) as client,
    ):
        first = stream(client, messages=long, cache_control=auto).usage
        second = stream(client, messages=grown, cache_control=auto).usage
        now[0] += 301
        third = stream(client, messages=grown, cache_control=auto).usage

    assert first.cache_read_input_tokens == 0
    assert second.cache_read_input_tokens == first.cache_creation_input_tokens
    assert 0 < second.cache_creation_input_tokens < first.cache_creation_input_tokens
    assert third.cache_read_input_tokens == 0


def test_below_the_minimum_nothing_is_cached(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake.add(Turn.say("a"))
    system = [{"type": "text", "text": "short", "cache_control": {"type": "ephemeral"}}]
    usage = stream(client, system=system).usage
    assert usage.cache_creation_input_tokens == 0
    assert usage.cache_read_input_tokens == 0


def test_usage_overrides_and_callback_turns() -> None:
    seen: list[dict[str, Any]] = []

    def respond(body: dict[str, Any]) -> Turn:
        seen.append(body)
        return Turn(text=f"reply {len(seen)}", usage={"output_tokens": 77})

    with (
        FakeAnthropic(respond=respond) as fake,
        anthropic.Anthropic(api_key="k", base_url=fake.url, max_retries=0) as client,
    ):
        message = stream(client)
    assert message.content[0].text == "reply 1"
    assert message.usage.output_tokens == 77
    assert seen[0]["messages"] == HELLO


def test_an_empty_script_is_a_visible_400(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    with pytest.raises(anthropic.BadRequestError, match="no turn left"):
        stream(client)


def tool_turn(tool_id: str = "toolu_1") -> dict[str, Any]:
    block = {"type": "tool_use", "id": tool_id, "name": "bash", "input": {}}
    return {"role": "assistant", "content": [block]}


def result(tool_id: str = "toolu_1") -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": "ok"}


@pytest.mark.parametrize(
    ("messages", "text"),
    [
        (
            [HELLO[0], tool_turn(), {"role": "user", "content": "next"}],
            "messages.1: `tool_use` ids were found without `tool_result` blocks "
            "immediately after: toolu_1.",
        ),
        (
            [HELLO[0], tool_turn()],
            "`tool_use` ids were found without `tool_result` blocks",
        ),
        (
            [
                HELLO[0],
                tool_turn(),
                {"role": "user", "content": [{"type": "text", "text": "x"}, result()]},
            ],
            "messages.2: Did not find 1 `tool_result` block(s) at the beginning",
        ),
        (
            [HELLO[0], tool_turn(), {"role": "user", "content": [result("toolu_9")]}],
            "unexpected `tool_use_id` found in `tool_result` blocks: toolu_9",
        ),
        (
            [{"role": "user", "content": [result()]}],
            "unexpected `tool_use_id` found",
        ),
        (
            [HELLO[0], {"role": "assistant", "content": []}, HELLO[0]],
            "messages.1: all messages must have non-empty content",
        ),
    ],
)
def test_malformed_conversations_get_the_api_texts(
    fake: FakeAnthropic, client: anthropic.Anthropic, messages: Any, text: str
) -> None:
    fake.add(Turn.say("never sent"))
    with pytest.raises(anthropic.BadRequestError) as caught:
        stream(client, messages=messages)
    assert text in caught.value.message
    assert fake.rejections[0][0] == 400
    assert len(fake.script) == 1


def test_a_well_paired_tool_conversation_passes(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake.add(Turn.say("fine"))
    answer = {"role": "user", "content": [result(), {"type": "text", "text": "more"}]}
    assert stream(client, messages=[HELLO[0], tool_turn(), answer]).content
    assert fake.rejections == []


def test_more_than_four_cache_marks_is_a_400(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    mark = {"type": "ephemeral"}
    system = [
        {"type": "text", "text": f"s{n}", "cache_control": mark} for n in range(5)
    ]
    with pytest.raises(anthropic.BadRequestError, match="Found 5"):
        stream(client, system=system)
    with pytest.raises(anthropic.BadRequestError, match="Found 5"):
        stream(client, system=system[:4], cache_control=mark)


def test_missing_fields_and_bad_tools_are_400(fake: FakeAnthropic) -> None:
    url, key = f"{fake.url}/v1/messages", {"x-api-key": "k"}
    status, text = post(url, {"model": MODEL, "messages": HELLO}, key)
    assert status == 400 and "max_tokens: Field required" in text
    bad_bash = {"type": "bash_20250124", "name": "shell"}
    body = {"model": MODEL, "max_tokens": 5, "messages": HELLO, "tools": [bad_bash]}
    status, text = post(url, body, key)
    assert status == 400 and "tools.0.name" in text


def test_status_faults_carry_their_retry_headers(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake.add(Turn.error(429, retry_after_ms=5, retry_after="1", should_retry="true"))
    with pytest.raises(anthropic.RateLimitError) as caught:
        stream(client)
    headers = caught.value.response.headers
    assert headers["retry-after-ms"] == "5"
    assert headers["retry-after"] == "1"
    assert headers["x-should-retry"] == "true"
    assert caught.value.type == "rate_limit_error"
    assert caught.value.request_id is not None and caught.value.request_id.startswith(
        "req_"
    )


def test_overload_and_html_faults(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake.add(Turn.error(529), Turn.html(502))
    with pytest.raises(anthropic.OverloadedError):
        stream(client)
    with pytest.raises(anthropic.InternalServerError) as caught:
        stream(client)
    assert caught.value.status_code == 502
    assert "Bad Gateway" in str(caught.value.body)


def test_error_event_inside_a_200_stream(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake.add(Turn.error_event(after_events=4))
    with pytest.raises(anthropic.APIStatusError) as caught:
        stream(client)
    assert caught.value.status_code == 200
    assert caught.value.type == "overloaded_error"


def test_dropped_stream_ends_without_an_exception(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake.add(Turn.drop(after_events=4))
    message = stream(client)
    assert message.stop_reason is None


def test_disconnect_is_a_connection_error(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake.add(Turn.disconnect())
    with pytest.raises(anthropic.APIConnectionError):
        stream(client)


def test_a_slow_first_byte_times_the_client_out(fake: FakeAnthropic) -> None:
    fake.add(Turn(text="late", delay=0.5))
    with (
        anthropic.Anthropic(
            api_key="k", base_url=fake.url, max_retries=0, timeout=0.1
        ) as client,
        pytest.raises(anthropic.APITimeoutError),
    ):
        stream(client)


def test_bad_tool_json_makes_the_sdk_fail(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake.add(Turn.bad_json())
    with pytest.raises(ValueError, match="Unable to parse tool parameter JSON"):
        stream(client)


def test_cut_inside_a_tool_call_stops_at_max_tokens(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake.add(Turn.cut_in_tool("bash", {"command": "rm -rf build && make all"}))
    message = stream(client)
    assert message.stop_reason == "max_tokens"
    assert message.content[-1].type == "tool_use"
    assert message.content[-1].input != {"command": "rm -rf build && make all"}


def test_long_output_is_cut_at_max_tokens(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake.add(Turn.say("word " * 100))
    message = stream(client, max_tokens=10)
    assert message.stop_reason == "max_tokens"
    assert len(message.content[0].text) == 40
    assert message.usage.output_tokens == 10


def test_refusal_carries_stop_details(
    fake: FakeAnthropic, client: anthropic.Anthropic
) -> None:
    fake.add(Turn.refusal("not this"))
    message = stream(client)
    assert message.stop_reason == "refusal"
    assert message.stop_details is not None
    assert message.stop_details.explanation == "not this"


def test_runs_as_a_script_serving_a_json_script(tmp_path: Path) -> None:
    script = tmp_path / "turns.json"
    script.write_text(json.dumps([{"text": "from a file"}]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.anthropic_server", "--script", str(script)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with anthropic.Anthropic(api_key="k", base_url=url, max_retries=0) as client:
            assert stream(client).content[0].text == "from a file"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
