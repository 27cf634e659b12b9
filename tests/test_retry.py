"""The one retry policy, exercised through the real SDK against the fake API."""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import pytest

from ralph.config import Settings
from ralph.errors import EngineError, InputError
from ralph.retry import (
    API_ERRORS,
    BACKOFF_CAP,
    MAX_TRIES,
    StreamCut,
    backoff,
    call_with_retry,
    classify,
    requested_wait,
)
from tests.fakes.anthropic_server import FakeAnthropic, Turn

MODEL = "claude-sonnet-4-6"


@pytest.fixture
def ask(fake: FakeAnthropic) -> Iterator[Callable[[], Any]]:
    """One streamed request, with a cut stream raised as the engine raises it."""
    client = anthropic.Anthropic(api_key="k", base_url=fake.url, max_retries=0)

    def call() -> Any:
        messages = [{"role": "user", "content": "hi"}]
        with client.messages.stream(
            model=MODEL, max_tokens=100, messages=messages
        ) as stream:
            message = stream.get_final_message()
        if message.stop_reason is None:
            raise StreamCut("cut")
        return message

    yield call
    client.close()


def failure(fake: FakeAnthropic, ask: Callable[[], Any], turn: Turn) -> Exception:
    fake.add(turn)
    with pytest.raises(Exception) as caught:
        ask()
    return caught.value


@pytest.mark.parametrize(
    "turn",
    [
        Turn.error(429, retry_after_ms=1),
        Turn.error(529),
        Turn.error(500),
        Turn.error(503),
        Turn.html(502),
        Turn.disconnect(),
        Turn.drop(after_events=3),
        Turn.error_event("overloaded_error"),
        Turn.error_event("api_error"),
    ],
    ids=["429", "529", "500", "503", "html502", "disconnect", "cut", "event", "apierr"],
)
def test_transient_faults_are_retried_until_a_reply(
    fake: FakeAnthropic, ask: Callable[[], Any], turn: Turn
) -> None:
    fake.add(turn, turn, Turn.say("finally"))
    message = call_with_retry(ask, Settings(), "turn 1")
    assert message.content[0].text == "finally"
    assert len(fake.bodies) == 3


@pytest.mark.parametrize("status", [400, 402, 404, 413])
def test_requests_another_try_cannot_fix_are_not_retried(
    fake: FakeAnthropic, ask: Callable[[], Any], status: int
) -> None:
    fake.add(Turn.error(status, message="no good"), Turn.say("never"))
    with pytest.raises(EngineError, match=f"{status} .*no good"):
        call_with_retry(ask, Settings(), "turn 1")
    assert len(fake.bodies) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_stops_with_a_clear_message(
    fake: FakeAnthropic, ask: Callable[[], Any], status: int
) -> None:
    fake.add(Turn.error(status, message="invalid x-api-key"), Turn.say("never"))
    with pytest.raises(EngineError) as caught:
        call_with_retry(ask, Settings(), "turn 1")
    message = caught.value.message
    assert message.startswith("the API refused the key: ")
    assert "invalid x-api-key" in message
    assert message.endswith("check ANTHROPIC_API_KEY")
    assert len(fake.bodies) == 1


def test_x_should_retry_false_is_respected(
    fake: FakeAnthropic, ask: Callable[[], Any]
) -> None:
    fake.add(Turn.error(500, should_retry="false"), Turn.say("never"))
    with pytest.raises(EngineError, match="internal error"):
        call_with_retry(ask, Settings(), "turn 1")
    assert len(fake.bodies) == 1


def test_other_in_stream_errors_are_not_retried(
    fake: FakeAnthropic, ask: Callable[[], Any]
) -> None:
    fake.add(Turn.error_event("invalid_request_error"), Turn.say("never"))
    with pytest.raises(EngineError, match="error in the reply stream"):
        call_with_retry(ask, Settings(), "turn 1")
    assert len(fake.bodies) == 1


def test_gives_up_after_a_bounded_number_of_tries() -> None:
    with FakeAnthropic(respond=lambda body: Turn.error(529)) as fake:
        client = anthropic.Anthropic(api_key="k", base_url=fake.url, max_retries=0)
        messages = [{"role": "user", "content": "hi"}]

        def call() -> Any:
            return client.messages.create(model=MODEL, max_tokens=5, messages=messages)

        with pytest.raises(EngineError) as caught:
            call_with_retry(call, Settings(), "turn 1")
        client.close()
    assert caught.value.message.startswith(f"gave up after {MAX_TRIES} tries: ")
    assert "overloaded" in caught.value.message
    assert len(fake.bodies) == MAX_TRIES


def test_waits_as_long_as_the_api_asks_and_says_so(
    fake: FakeAnthropic, ask: Callable[[], Any], caplog: pytest.LogCaptureFixture
) -> None:
    fake.add(Turn.error(429, retry_after_ms=300), Turn.error(429, retry_after="0.2"))
    fake.add(Turn.say("ok"))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="ralph"):
        call_with_retry(ask, Settings(), "turn 1")
    assert time.monotonic() - started >= 0.5
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert lines[0].startswith("rate limited; waiting 0.3s as the API asked (retry 1)")
    assert lines[1].startswith("rate limited; waiting 0.2s as the API asked (retry 2)")


def test_max_retry_wait_caps_what_the_api_asks(
    fake: FakeAnthropic, ask: Callable[[], Any], caplog: pytest.LogCaptureFixture
) -> None:
    fake.add(Turn.error(429, retry_after="3600"), Turn.say("ok"))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="ralph"):
        call_with_retry(ask, Settings(max_retry_wait=0.05), "turn 1")
    assert time.monotonic() - started < 5
    assert "the API asked 3600s; max_retry_wait caps it" in caplog.text


def test_retry_after_as_an_http_date(
    fake: FakeAnthropic, ask: Callable[[], Any]
) -> None:
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    exc = failure(fake, ask, Turn.error(429, retry_after=later))
    wait = requested_wait(exc)
    assert wait is not None and 25 <= wait <= 31
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert requested_wait(failure(fake, ask, Turn.error(429, retry_after=past))) == 0
    assert (
        requested_wait(failure(fake, ask, Turn.error(429, retry_after="soon"))) is None
    )
    assert requested_wait(failure(fake, ask, Turn.error(429))) is None


def test_retry_after_ms_wins_over_retry_after(
    fake: FakeAnthropic, ask: Callable[[], Any]
) -> None:
    exc = failure(fake, ask, Turn.error(429, retry_after_ms=1500, retry_after="60"))
    assert requested_wait(exc) == 1.5


def test_the_table_decides_by_status_and_in_stream_type(
    fake: FakeAnthropic, ask: Callable[[], Any]
) -> None:
    for status in (400, 401, 403, 404, 413):
        assert not API_ERRORS[status].retry
    verdicts = {
        status: classify(failure(fake, ask, Turn.error(status)))
        for status in (408, 422, 429, 500, 501, 529)
    }
    assert {status: fault.retry for status, fault in verdicts.items() if fault} == {
        408: True,
        422: False,
        429: True,
        500: True,
        501: True,
        529: True,
    }
    assert classify(KeyError("x")) is None


def test_a_bug_in_the_call_is_not_retried_or_disguised() -> None:
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise KeyError("content")

    with pytest.raises(KeyError):
        call_with_retry(broken, Settings(), "turn 1")
    assert calls == [1]


def test_backoff_grows_is_capped_and_jittered() -> None:
    for retry in range(1, 12):
        ceiling = min(BACKOFF_CAP, 2.0 * 2 ** (retry - 1))
        values = [backoff(retry, 2.0) for _ in range(50)]
        assert all(ceiling * 0.5 <= value <= ceiling for value in values)
        assert len(set(values)) > 1


def test_retry_base_must_be_a_number(
    monkeypatch: pytest.MonkeyPatch, ask: Callable[[], Any]
) -> None:
    monkeypatch.setenv("RALPH_RETRY_BASE", "fast")
    with pytest.raises(InputError, match="RALPH_RETRY_BASE"):
        call_with_retry(ask, Settings(), "turn 1")
