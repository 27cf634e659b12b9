"""The house style is checked, not hoped for: ruff and mypy over the code."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "ralph", "tests"],
        ["ruff", "format", "--check", "ralph", "tests"],
        ["mypy"],
    ],
)
def test_style(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
