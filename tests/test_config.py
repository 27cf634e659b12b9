"""Settings from defaults, the plan's front matter and the command line."""

from __future__ import annotations

import json
import os
from dataclasses import fields
from importlib import resources
from pathlib import Path

import pytest

from ralph.config import SETTING_NAMES, Settings, load_settings
from ralph.errors import InputError
from ralph.plan import Plan, load_plan, parse_plan

CORPUS = Path(
    os.environ.get("RALPH_CORPUS")
    or Path(__file__).resolve().parents[2] / "shared" / "corpus"
)


def plan_with(front: str) -> Plan:
    return parse_plan(
        f"---\n{front}---\n# Plan\n\n- [ ] Step\n".encode(), Path("plan.md")
    )


def settings_of(front: str, **overrides: object) -> Settings:
    settings, warnings = load_settings(plan_with(front), dict(overrides))
    assert warnings == []
    return settings


def test_defaults_without_front_matter() -> None:
    plan = parse_plan(b"- [ ] Step\n", Path("plan.md"))

    assert load_settings(plan, {}) == (Settings(), [])


def test_front_matter_sets_values_and_numbers_become_floats() -> None:
    settings = settings_of(
        "engine: shell\nverify: pytest -q\nmax_attempts: 5\nverify_timeout: 30\n"
        "protect: [src/*.py, .env]\nnetwork: true\nbudget_usd: 2\n"
    )

    assert settings.engine == "shell"
    assert settings.verify == "pytest -q"
    assert settings.max_attempts == 5
    assert settings.verify_timeout == 30.0 and isinstance(
        settings.verify_timeout, float
    )
    assert settings.budget_usd == 2.0 and isinstance(settings.budget_usd, float)
    assert settings.protect == ["src/*.py", ".env"]
    assert settings.network is True


def test_settings_under_ralph_win_over_the_top_level() -> None:
    settings = settings_of("model: sonnet\nralph:\n  model: claude-opus-4-1\n")

    assert settings.model == "claude-opus-4-1"


def test_the_command_line_wins_and_none_means_not_given() -> None:
    settings = settings_of(
        "engine: shell\nmax_attempts: 5\n", engine="codex", max_attempts=None
    )

    assert settings.engine == "codex"
    assert settings.max_attempts == 5


def test_repeated_options_arrive_as_tuples() -> None:
    assert settings_of("", protect=("a", "b")).protect == ["a", "b"]


@pytest.mark.parametrize(
    ("front", "message"),
    [
        ("model: x\nmax_attempts: three\n",
         "plan.md:3: max_attempts must be an integer, got 'three'"),
        ("max_attempts: 0\n", "plan.md:2: max_attempts must be at least 1, got 0"),
        ("verify_timeout: 0\n", "plan.md:2: verify_timeout must be more than 0, got 0"),
        ("max_steps: 1.5\n", "plan.md:2: max_steps must be an integer, got 1.5"),
        ("network: yes please\n",
         "plan.md:2: network must be true or false, got 'yes please'"),
        ("engine: gpt\n", "plan.md:2: engine must be one of anthropic, shell, claude, "
         "codex, command, got 'gpt'"),
        ("sandbox: docker\n", "plan.md:2: sandbox must be one of auto, bwrap, none"),
        ("protect: .env\n", "plan.md:2: protect must be a list, got '.env'"),
        ("protect:\n  - a\n  - 5\n", "plan.md:2: protect[1] must be a string, got 5"),
        ("max_turns: true\n", "plan.md:2: max_turns must be an integer, got True"),
        ("ralph:\n  max_turns: -1\n",
         "plan.md:3: ralph.max_turns must be at least 1, got -1"),
        ("ralph: [a]\n", "plan.md:2: ralph must be a mapping, got ['a']"),
        ("command_timeout: .inf\n",
         "plan.md:2: command_timeout must be a finite number, got inf"),
        ("command_timeout: 99999999999999999999999\n",
         "plan.md:2: command_timeout must be at most 604800, got 9999999999999999"),
        ("budget_usd: .nan\n",
         "plan.md:2: budget_usd must be a finite number, got nan"),
        ("ralph:\n  budget_usd: -.inf\n",
         "plan.md:3: ralph.budget_usd must be a finite number, got -inf"),
        ("max_retry_wait: 1.0e+999\n",
         "plan.md:2: max_retry_wait must be a finite number, got inf"),
        ("verify_timeout: 604801\n",
         "plan.md:2: verify_timeout must be at most 604800, got 604801"),
        ("attempt_timeout: 1.0e+9\n",
         "plan.md:2: attempt_timeout must be at most 604800, got 1000000000.0"),
        ("max_attempts: .nan\n", "plan.md:2: max_attempts must be an integer, got nan"),
        ("max_tokens: 1000001\n", "plan.md:2: max_tokens must be at most 1000000"),
        ("max_turns: 10000000\n", "plan.md:2: max_turns must be at most 1000000"),
        ("max_steps: 1000001\n", "plan.md:2: max_steps must be at most 1000000"),
        ("budget_tokens: 1000000000001\n",
         "plan.md:2: budget_tokens must be at most 1000000000000"),
    ],
)  # fmt: skip
def test_a_wrong_type_names_the_key_and_the_line(front: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        load_settings(plan_with(front), {})

    assert message in caught.value.message
    assert caught.value.exit_code == 2


def test_a_misspelt_key_is_an_error_with_a_suggestion() -> None:
    with pytest.raises(InputError) as caught:
        load_settings(plan_with("title: x\nmax_attemps: 3\nMax-Turns: 9\n"), {})

    assert caught.value.message.splitlines() == [
        "plan.md:3: max_attemps is not a setting of ralph; did you mean max_attempts?",
        "plan.md:4: Max-Turns is not a setting of ralph; did you mean max_turns?",
    ]


def test_every_key_under_ralph_must_be_a_setting() -> None:
    with pytest.raises(InputError) as caught:
        load_settings(plan_with("ralph:\n  engine: shell\n  colour: blue\n"), {})

    assert caught.value.message.startswith(
        "plan.md:4: ralph.colour is not a setting of ralph; the settings are engine,"
    )


def test_foreign_keys_are_ignored_with_one_warning() -> None:
    plan = plan_with("title: Plan\nlayout: post\nmode: subagent\nmodel: m\n")

    settings, warnings = load_settings(plan, {})

    assert settings.model == "m"
    assert warnings == [
        "plan.md: front matter keys ralph does not use, left alone: title, layout, mode"
    ]


@pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared plan corpus is absent")
def test_backlog_md_front_matter_loads_with_a_warning() -> None:
    plan = load_plan(CORPUS / "01-backlogmd-task-frontmatter.md")

    settings, warnings = load_settings(plan, {})

    assert settings == Settings()
    assert len(warnings) == 1
    assert warnings[0].endswith(
        "left alone: id, title, status, assignee, created_date, updated_date, "
        "labels, dependencies, parent_task_id, ordinal"
    )


def test_the_largest_allowed_values_load() -> None:
    settings = settings_of(
        "command_timeout: 604800\nmax_retry_wait: 604800.0\nmax_tokens: 1000000\n"
        "max_attempts: 1000000\nbudget_tokens: 1000000000000\nbudget_usd: 1.0e+300\n"
    )

    assert settings.command_timeout == 604800.0
    assert settings.max_tokens == settings.max_attempts == 1_000_000
    assert settings.budget_usd == 1e300


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"command_timeout": float("inf")},
         "command line: command_timeout must be a finite number, got inf"),
        ({"budget_usd": float("nan")},
         "command line: budget_usd must be a finite number, got nan"),
        ({"max_attempts": 10**7}, "command line: max_attempts must be at most 1000000"),
    ],
)  # fmt: skip
def test_command_line_numbers_must_be_finite_and_bounded(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(InputError) as caught:
        load_settings(plan_with(""), overrides)

    assert message in caught.value.message


def test_command_line_values_are_checked_too() -> None:
    with pytest.raises(
        InputError, match="command line: max_attempts must be at least 1"
    ):
        load_settings(plan_with(""), {"max_attempts": 0})
    with pytest.raises(ValueError, match="not settings of ralph: colour"):
        load_settings(plan_with(""), {"colour": "blue"})


def test_the_schema_ships_in_the_package_and_names_every_setting() -> None:
    text = resources.files("ralph").joinpath("schemas/plan.schema.json").read_text()
    properties = json.loads(text)["$defs"]["settings"]["properties"]

    assert sorted(properties) == sorted(SETTING_NAMES)
    assert [f.name for f in fields(Settings)] == list(SETTING_NAMES)
