"""One retry policy for every call ralph makes to the model API.

Rate limits, overload, server errors and dropped connections are waited out
with capped exponential backoff and jitter, or for exactly as long as the
API asks through `retry-after-ms` / `retry-after`. Errors that another try
cannot fix (a bad request, a refused key) stop at once with a message that
says what to do. The SDK's own retries are off, so this is the only policy.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import anthropic
import httpx2
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from ralph.config import Settings
from ralph.errors import EngineError, InputError

log = logging.getLogger("ralph")

T = TypeVar("T")

MAX_TRIES = 8
BACKOFF_CAP = 60.0
DEFAULT_BASE = 1.0


class StreamCut(Exception):
    """A reply stream ended before its last event: a transport fault."""


@dataclass(frozen=True)
class Fault:
    """What ralph does about one kind of API error."""

    retry: bool
    hint: str


# Keyed by HTTP status, or by error type for errors sent inside a 200 stream.
API_ERRORS: dict[int | str, Fault] = {
    400: Fault(False, "the API rejected the request"),
    401: Fault(False, "the API refused the key"),
    402: Fault(False, "the API account has a billing problem"),
    403: Fault(False, "the API refused the key"),
    404: Fault(False, "the API has no such model or endpoint"),
    408: Fault(True, "the API timed out"),
    409: Fault(True, "the API reported a conflict"),
    413: Fault(False, "the request is larger than the API accepts"),
    429: Fault(True, "rate limited"),
    500: Fault(True, "the API had an internal error"),
    529: Fault(True, "the API is overloaded"),
    "overloaded_error": Fault(True, "the API is overloaded"),
    "api_error": Fault(True, "the API had an internal error"),
}
SERVER_ERROR = Fault(True, "the API had a server error")
CLIENT_ERROR = Fault(False, "the API rejected the request")
STREAM_ERROR = Fault(False, "the API reported an error in the reply stream")
CUT = Fault(True, "the reply stream was cut")
TIMEOUT = Fault(True, "the request timed out")
UNREACHABLE = Fault(
    True, "the connection to the API failed (check the network and ANTHROPIC_BASE_URL)"
)

KEY_REFUSED = {401, 403}


def classify(exc: BaseException) -> Fault | None:
    """The table's verdict on an exception, or None when it is not an API fault."""
    if isinstance(exc, StreamCut):
        return CUT
    if isinstance(exc, anthropic.APITimeoutError):
        return TIMEOUT
    # httpx errors escape the SDK unwrapped when a stream breaks mid-way.
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        return UNREACHABLE
    if not isinstance(exc, anthropic.APIStatusError):
        return None
    if exc.status_code == 200:
        return API_ERRORS.get(str(exc.type), STREAM_ERROR)
    fault = API_ERRORS.get(exc.status_code)
    if fault is None:
        fault = SERVER_ERROR if exc.status_code >= 500 else CLIENT_ERROR
    if fault.retry and exc.response.headers.get("x-should-retry") == "false":
        return Fault(False, fault.hint)
    return fault


def is_retryable(exc: BaseException) -> bool:
    fault = classify(exc)
    return fault is not None and fault.retry


def requested_wait(exc: BaseException) -> float | None:
    """Seconds the API asked us to wait, from `retry-after-ms` or `retry-after`."""
    if not isinstance(exc, anthropic.APIStatusError):
        return None
    headers = exc.response.headers
    millis = parse_seconds(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    after = headers.get("retry-after")
    seconds = parse_seconds(after)
    if seconds is not None or after is None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(after)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def parse_seconds(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


def retry_base() -> float:
    """The first backoff step in seconds, from RALPH_RETRY_BASE."""
    raw = os.environ.get("RALPH_RETRY_BASE", "")
    if not raw:
        return DEFAULT_BASE
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise InputError(
            f"RALPH_RETRY_BASE must be a number of seconds, not {raw!r}"
        ) from None


def backoff(retry: int, base: float) -> float:
    """Capped exponential backoff with jitter for the n-th retry (1, 2, ...)."""
    ceiling = min(BACKOFF_CAP, base * 2.0 ** (retry - 1))
    return ceiling * random.uniform(0.5, 1.0)


def call_with_retry(call: Callable[[], T], settings: Settings, what: str) -> T:
    """Run `call` under the policy; `what` names it in log lines."""
    base = retry_base()

    def wait(state: RetryCallState) -> float:
        asked = requested_wait(failure_of(state))
        if asked is not None:
            return min(asked, settings.max_retry_wait)
        return min(backoff(state.attempt_number, base), settings.max_retry_wait)

    def announce(state: RetryCallState) -> None:
        log_wait(failure_of(state), state, settings)

    def start(state: RetryCallState) -> None:
        log.debug("%s (retry %d)", what, state.attempt_number - 1)

    retrying = Retrying(
        stop=stop_after_attempt(MAX_TRIES),
        wait=wait,
        retry=retry_if_exception(is_retryable),
        before=start,
        before_sleep=announce,
        reraise=True,
    )
    try:
        return retrying(call)
    except Exception as exc:
        tries = retrying.statistics.get("attempt_number", 1)
        raise translate(exc, tries) from exc


def failure_of(state: RetryCallState) -> BaseException:
    outcome = state.outcome
    exc = outcome.exception() if outcome is not None else None
    if exc is None:
        raise RuntimeError("tenacity asked for a wait without a failure")
    return exc


def log_wait(exc: BaseException, state: RetryCallState, settings: Settings) -> None:
    fault = classify(exc) or SERVER_ERROR
    seconds = state.upcoming_sleep
    asked = requested_wait(exc)
    if asked is None:
        how = ""
    elif asked > settings.max_retry_wait:
        how = f" (the API asked {format_seconds(asked)}; max_retry_wait caps it)"
    else:
        how = " as the API asked"
    log.warning(
        "%s; waiting %s%s (retry %d): %s",
        fault.hint,
        format_seconds(seconds),
        how,
        state.attempt_number,
        describe(exc),
    )


def translate(exc: Exception, tries: int) -> Exception:
    """Turn a final API failure into a RalphError; leave other errors alone."""
    fault = classify(exc)
    if fault is None:
        return exc
    if isinstance(exc, anthropic.APIStatusError) and exc.status_code in KEY_REFUSED:
        return EngineError(
            f"the API refused the key: {describe(exc)}; check ANTHROPIC_API_KEY"
        )
    if fault.retry:
        return EngineError(
            f"gave up after {tries} tries: {fault.hint}: {describe(exc)}"
        )
    return EngineError(f"{fault.hint}: {describe(exc)}")


def describe(exc: BaseException) -> str:
    if isinstance(exc, anthropic.APIStatusError):
        message = exc.api_message or exc.message
        return f"{exc.status_code} {exc.type or 'error'}: {message}"
    return str(exc) or type(exc).__name__


def format_seconds(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
