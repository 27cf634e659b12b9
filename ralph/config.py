"""Settings of a run: defaults, then the plan's front matter, then the command line.

ralph's keys sit at the top of the front matter or under a `ralph:` mapping,
and `schemas/plan.schema.json` says what each may hold. Plans often carry
other tools' front matter as well, so an unknown top-level key is an error
only when it looks like a misspelling of one of ralph's; everything under
`ralph:` is checked strictly.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, field, fields
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import jsonschema
from jsonschema.protocols import Validator

from ralph.errors import InputError

if TYPE_CHECKING:
    from ralph.plan import Plan

SECTION = "ralph"
# Keys of other tools' front matter that sit close to one of ralph's names.
_FOREIGN_KEYS = frozenset({"mode"})
_TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
}


@dataclass
class Settings:
    engine: str = "anthropic"
    command: str | None = None
    model: str = "claude-sonnet-4-6"
    verify: str | None = None
    max_attempts: int = 3
    max_turns: int = 50
    max_tokens: int = 16000
    verify_timeout: float = 600.0
    command_timeout: float = 300.0
    attempt_timeout: float = 3600.0
    max_steps: int | None = None
    budget_usd: float | None = None
    budget_tokens: int | None = None
    max_retry_wait: float = 900.0
    protect: list[str] = field(default_factory=list)
    sandbox: str = "auto"
    network: bool = False
    env_allow: list[str] = field(default_factory=list)
    read_only: bool = False


SETTING_NAMES = tuple(f.name for f in fields(Settings))


def load_settings(plan: Plan, overrides: dict[str, Any]) -> tuple[Settings, list[str]]:
    """Settings for a run of `plan`, and warning lines for the caller to print.

    Defaults, then the front matter (a `ralph:` mapping over the top level),
    then `overrides` from the command line, whose None values mean "not
    given".
    """
    chosen, warnings = _front_settings(plan)
    given = {
        key: _plain(value) for key, value in overrides.items() if value is not None
    }
    unknown = sorted(set(given) - set(SETTING_NAMES))
    if unknown:
        raise ValueError(f"not settings of ralph: {', '.join(unknown)}")
    problems = [message for _, message in _schema_problems(given, None)]
    if problems:
        raise InputError("\n".join(problems))

    return _settings({**chosen, **given}), warnings


def _front_settings(plan: Plan) -> tuple[dict[str, Any], list[str]]:
    front = plan.front
    section = front.get(SECTION) or {}
    top = {key: value for key, value in front.items() if key in SETTING_NAMES}
    foreign = [key for key in front if key not in SETTING_NAMES and key != SECTION]

    problems = [_misspelt(plan, (key,)) for key in foreign if _suggestion(key)]
    if isinstance(section, dict):
        problems += [
            _misspelt(plan, (SECTION, str(k)))
            for k in section
            if k not in SETTING_NAMES
        ]
    checked = {**top, SECTION: section} if SECTION in front else top
    problems += _schema_problems(checked, plan)
    if problems:
        messages = dict.fromkeys(message for _, message in sorted(problems))
        raise InputError("\n".join(messages))

    ignored = [key for key in foreign if not _suggestion(key)]
    warnings = []
    if ignored:
        warnings.append(
            f"{plan.path}: front matter keys ralph does not use, left alone: "
            + ", ".join(ignored)
        )
    return {**top, **section}, warnings


def _suggestion(key: str) -> str | None:
    """The setting `key` looks like a misspelling of, if any."""
    if key in _FOREIGN_KEYS:
        return None
    spelt = key.lower().replace("-", "_")
    if spelt in SETTING_NAMES:
        return spelt
    close = difflib.get_close_matches(spelt, SETTING_NAMES, n=1, cutoff=0.8)
    return close[0] if close else None


def _misspelt(plan: Plan, path: tuple[str, ...]) -> tuple[int, str]:
    line = _line_of(plan, path)
    where = f"{plan.path}:{line}: {'.'.join(path)} is not a setting of ralph"
    suggestion = _suggestion(path[-1])
    if suggestion:
        return line, f"{where}; did you mean {suggestion}?"
    return line, f"{where}; the settings are {', '.join(SETTING_NAMES)}"


def _schema_problems(
    values: dict[str, Any], plan: Plan | None
) -> list[tuple[int, str]]:
    """Each value that breaks the schema, with the plan line it sits on.

    Without a plan the values come from the command line.
    """
    problems = []
    for error in _validator().iter_errors(values):
        if error.validator == "unevaluatedProperties":
            continue  # unknown keys under `ralph:`, reported with a suggestion
        path = [str(part) for part in error.absolute_path if isinstance(part, str)]
        name = ".".join(path) + "".join(
            f"[{part}]" for part in error.absolute_path if isinstance(part, int)
        )
        line = _line_of(plan, tuple(path)) if plan else 0
        place = f"{plan.path}:{line}" if plan else "command line"
        problems.append(
            (line, f"{place}: {name} {_reason(error)}, got {error.instance!r}")
        )
    return problems


def _reason(error: jsonschema.ValidationError) -> str:
    expected: Any = error.validator_value
    if error.validator == "type":
        kinds = [expected] if isinstance(expected, str) else list(expected)
        if "number" in kinds and _is_not_finite(error.instance):
            return "must be a finite number"
        words = [_TYPE_WORDS[kind] for kind in kinds if kind != "null"]
        return "must be " + " or ".join(words)
    if error.validator == "enum":
        return "must be one of " + ", ".join(str(choice) for choice in expected)
    if error.validator == "minimum":
        return f"must be at least {expected}"
    if error.validator == "exclusiveMinimum":
        return f"must be more than {expected}"
    if error.validator == "maximum":
        return f"must be at most {expected}"
    if error.validator == "minLength":
        return "must not be empty"
    return f"is not allowed ({error.message})"


def _line_of(plan: Plan, path: tuple[str, ...]) -> int:
    while path and path not in plan.front_lines:
        path = path[:-1]
    return plan.front_lines.get(path, 1)


def _plain(value: Any) -> Any:
    # The command line hands over tuples for repeated options.
    return list(value) if isinstance(value, tuple) else value


def _settings(values: dict[str, Any]) -> Settings:
    floats = {f.name for f in fields(Settings) if str(f.type).startswith("float")}
    for name in floats & values.keys():
        if isinstance(values[name], int):
            values[name] = float(values[name])
    for name, value in values.items():
        if isinstance(value, list):
            values[name] = list(value)
    return Settings(**values)


def _is_not_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _is_finite_number(checker: jsonschema.TypeChecker, value: Any) -> bool:
    # YAML reads `.inf` and `.nan` as floats, and JSON Schema's numbers take
    # them; a NaN passes every bound, since it compares false to all.
    number = jsonschema.Draft202012Validator.TYPE_CHECKER.is_type(value, "number")
    return number and not _is_not_finite(value)


@cache
def _validator() -> Validator:
    text = resources.files("ralph").joinpath("schemas/plan.schema.json").read_text()
    schema = json.loads(text)
    base = jsonschema.Draft202012Validator
    base.check_schema(schema)
    finite = base.TYPE_CHECKER.redefine("number", _is_finite_number)
    return jsonschema.validators.extend(base, type_checker=finite)(schema)
