"""Planning: an idea becomes a plan in a fresh context that has no hands.

The planning call is offered exactly one tool, `write_plan`, and no bash or
editor, so it cannot start implementing. Its input is validated against a
schema; an invalid plan goes back to the model as an error it can fix.
"""

from __future__ import annotations

import json
import logging
import os
import re
from functools import cache
from importlib import resources
from typing import Any

import anthropic
import yaml
from jsonschema import Draft202012Validator

from ralph.config import Settings
from ralph.context import template
from ralph.engines import Usage
from ralph.errors import InputError, RalphError
from ralph.pricing import cost_usd
from ralph.retry import StreamCut, call_with_retry

log = logging.getLogger("ralph")

PLAN_TOOL = "write_plan"
MAX_TRIES = 3
# Lines of prose that markdown would read as structure: a task item, a
# heading, a setext underline, or a `Verify:` line of the step's own.
STRUCTURAL = re.compile(
    r"^(?P<indent>[ \t]*)(?P<mark>(?:[-*+]|\d+[.)])[ \t]+\[[ xX]\]|#|=+[ \t]*$"
    r"|-+[ \t]*$|verify:)",
    re.IGNORECASE,
)
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@cache
def plan_schema() -> dict[str, Any]:
    text = resources.files("ralph").joinpath("schemas/write_plan.schema.json")
    return dict(json.loads(text.read_text("utf-8")))


def plan_tool() -> dict[str, Any]:
    schema = plan_schema()
    return {
        "name": PLAN_TOOL,
        "description": schema["description"],
        "input_schema": {k: v for k, v in schema.items() if not k.startswith("$")},
    }


def plan_errors(data: object) -> list[str]:
    """What is wrong with a write_plan input, one line each; empty if nothing."""
    validator = Draft202012Validator(plan_schema())
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
        for error in sorted(validator.iter_errors(data), key=lambda e: e.path)
    ]


def plan_idea(idea: str, model: str | None, engine: str | None) -> bytes:
    """The plan for an idea, as the markdown ralph will run."""
    from ralph.engines.anthropic import AnthropicEngine

    settings = Settings()
    settings.model = model or os.environ.get("RALPH_MODEL") or settings.model
    try:
        planner = AnthropicEngine.from_settings(settings)
    except InputError:
        raise InputError(
            "ralph new asks the model for a plan, so it needs ANTHROPIC_API_KEY; "
            "export it, or start from a plan of your own with --plan FILE"
        ) from None
    log.info("planning with %s", settings.model)
    with planner.connect() as client:
        data, usage = request_plan(client, idea, settings)
    steps = sum(len(phase["steps"]) for phase in data["phases"])
    log.info("planned %d steps for $%.4f", steps, usage.cost_usd)
    front = {"engine": engine or "anthropic", "model": settings.model}
    return render_plan(data, front).encode("utf-8")


def request_plan(
    client: anthropic.Anthropic, idea: str, settings: Settings
) -> tuple[dict[str, Any], Usage]:
    """Ask the model for a plan; return the valid write_plan input and the spend."""
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": f"The idea:\n\n{idea.strip()}"}
    ]
    usage = Usage()
    problems = ["no reply"]
    for number in range(1, MAX_TRIES + 1):
        reply = call_with_retry(
            lambda: stream_reply(client, messages, settings), settings, "planning"
        )
        usage.add(usage_of(reply, settings.model))
        calls = [b for b in reply.content if b.type == "tool_use"]
        plans = [b for b in calls if b.name == PLAN_TOOL]
        problems = (
            plan_errors(plans[0].input)
            if plans
            else ["answer with one call of write_plan"]
        )
        if not problems:
            return dict(plans[0].input), usage

        log.warning("plan %d of %d was not valid: %s", number, MAX_TRIES, problems[0])
        messages.append(
            {
                "role": "assistant",
                "content": [
                    block.model_dump(exclude_none=True) for block in reply.content
                ],
            }
        )
        messages.append({"role": "user", "content": answers(calls, problems)})
    raise RalphError(
        f"the model gave no valid plan in {MAX_TRIES} tries; the last problem: "
        f"{problems[0]}. Try again, or write the plan yourself and use --plan"
    )


def stream_reply(
    client: anthropic.Anthropic, messages: list[dict[str, Any]], settings: Settings
) -> anthropic.types.Message:
    with client.messages.stream(
        model=settings.model,
        max_tokens=settings.max_tokens,
        system=template("plan.md").template,
        messages=messages,  # type: ignore[arg-type]
        tools=[plan_tool()],  # type: ignore[list-item]
        tool_choice={"type": "tool", "name": PLAN_TOOL},
    ) as stream:
        reply = stream.get_final_message()
    if reply.stop_reason is None:
        raise StreamCut("the planning reply stopped before its end")
    return reply


def answers(calls: list[Any], problems: list[str]) -> list[dict[str, Any]]:
    """Every tool call gets its result; the text says what to fix."""
    text = "The plan is not valid:\n" + "\n".join(f"- {p}" for p in problems[:20])
    results: list[dict[str, Any]] = [
        {
            "type": "tool_result",
            "tool_use_id": call.id,
            "content": text,
            "is_error": True,
        }
        for call in calls
    ]
    if not results:
        results.append({"type": "text", "text": text})
    return results


def usage_of(reply: anthropic.types.Message, model: str) -> Usage:
    raw = reply.usage
    usage = Usage(
        input_tokens=raw.input_tokens,
        output_tokens=raw.output_tokens,
        cache_write_tokens=raw.cache_creation_input_tokens or 0,
        cache_read_tokens=raw.cache_read_input_tokens or 0,
    )
    usage.cost_usd = cost_usd(model, usage)
    return usage


def render_plan(data: dict[str, Any], front: dict[str, Any]) -> str:
    """The markdown of a write_plan input; it parses back to exactly its steps."""
    lines = ["---", *render_front(front), "---", f"# {data['title'].strip()}", ""]
    if data["context"].strip():
        lines += [escape_line(line) for line in data["context"].strip().splitlines()]
        lines.append("")
    for phase in data["phases"]:
        lines += [f"## {phase['name'].strip()}", ""]
        for step in phase["steps"]:
            lines += render_step(step)
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def render_front(front: dict[str, Any]) -> list[str]:
    return yaml.safe_dump(front, sort_keys=False, allow_unicode=True).splitlines()


def render_step(step: dict[str, Any]) -> list[str]:
    lines = [f"- [ ] {step['title'].strip()}"]
    for line in step["details"].strip().splitlines():
        lines.append(f"  {escape_line(line)}".rstrip())
    verify = step["verify"].strip()
    if verify:
        lines.append(
            f"  Verify: `{verify}`" if "`" not in verify else f"  Verify: {verify}"
        )
    return lines


def escape_line(line: str) -> str:
    """Keep a line of prose from turning into a step, a heading or a check."""
    line = CONTROL.sub("", line)
    return STRUCTURAL.sub(lambda m: f"{m['indent']}\\{m['mark']}", line, count=1)
