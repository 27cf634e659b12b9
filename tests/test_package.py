"""The package as users get it: a built wheel, installed, finds its prompts."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, ralph_commits


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    [built] = out.glob("ralph-*.whl")
    return built


def test_the_wheel_ships_prompts_schemas_and_prices(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in [
        "system.md",
        "step.md",
        "handoff.md",
        "resume.md",
        "plan.md",
        "agent.md",
    ]:
        assert f"ralph/prompts/{name}" in names
    assert "ralph/schemas/plan.schema.json" in names
    assert "ralph/schemas/write_plan.schema.json" in names
    assert "ralph/data/prices.json" in names


def test_an_installed_wheel_runs_the_demo(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # The new venv borrows this one's dependencies, but not its ralph.
    site = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps"]
    subprocess.run([*pip, str(wheel)], check=True, capture_output=True)
    demo = tmp_path / "demo"

    # Run from an unrelated folder so the source checkout cannot be imported.
    result = subprocess.run(
        [
            str(venv / "bin" / "ralph"),
            "new",
            "--plan",
            str(ROOT / "tasks" / "demo.md"),
            str(demo),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)},
    )

    assert result.returncode == 0, result.stderr
    assert len(ralph_commits(demo)) == 5
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import ralph; print(ralph.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert str(venv) in where.stdout
