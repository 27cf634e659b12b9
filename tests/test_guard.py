"""Paths the editor may touch and the environment commands get."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ralph.guard import GuardError, is_credential, resolve_inside, scrub_env


def test_relative_and_absolute_paths_inside_resolve(repo: Path) -> None:
    assert resolve_inside(repo, "src/app.py") == repo.resolve() / "src" / "app.py"
    inside = str(repo.resolve() / "README.md")
    assert resolve_inside(repo, inside) == repo.resolve() / "README.md"
    assert resolve_inside(repo, ".") == repo.resolve()


@pytest.mark.parametrize("path", ["../x", "sub/../../x", "/etc/passwd", "/"])
def test_paths_outside_are_refused(repo: Path, path: str) -> None:
    with pytest.raises(GuardError, match="outside the workspace"):
        resolve_inside(repo, path)


def test_symlink_pointing_out_is_refused(repo: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("secret\n")
    (repo / "link").symlink_to(secret)
    (repo / "dirlink").symlink_to(tmp_path)

    with pytest.raises(GuardError, match="outside the workspace"):
        resolve_inside(repo, "link")
    with pytest.raises(GuardError, match="outside the workspace"):
        resolve_inside(repo, "dirlink/secret.txt")


def test_symlink_inside_the_workspace_is_followed(repo: Path) -> None:
    (repo / "alias.md").symlink_to(repo / "README.md")
    assert resolve_inside(repo, "alias.md") == repo.resolve() / "README.md"


@pytest.mark.parametrize(
    "path", [".git/config", ".git", "sub/../.git/HEAD", ".GIT/config", "vendor/.git/x"]
)
def test_git_folder_is_refused(repo: Path, path: str) -> None:
    with pytest.raises(GuardError, match=r"inside \.git/"):
        resolve_inside(repo, path)


def test_symlink_into_git_is_refused(repo: Path) -> None:
    (repo / "hooks").symlink_to(repo / ".git" / "hooks")
    with pytest.raises(GuardError, match=r"inside \.git/"):
        resolve_inside(repo, "hooks/pre-commit")


def test_empty_and_unresolvable_paths_are_refused(repo: Path) -> None:
    with pytest.raises(GuardError, match="empty"):
        resolve_inside(repo, "  ")
    with pytest.raises(GuardError, match="cannot be resolved"):
        resolve_inside(repo, "bad\0name")


SEGMENTS = st.sampled_from(["..", ".", "a", "b", ".git", "link", "/", "c.txt"])


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(SEGMENTS, min_size=1, max_size=6))
def test_whatever_resolves_stays_inside_and_out_of_git(
    repo: Path, tmp_path: Path, parts: list[str]
) -> None:
    link = repo / "link"
    if not link.is_symlink():
        link.symlink_to(tmp_path)
    path = "/".join(parts)
    root = repo.resolve()

    try:
        resolved = resolve_inside(repo, path)
    except GuardError:
        return
    assert resolved == root or root in resolved.parents
    assert ".git" not in resolved.relative_to(root).parts


def test_scrub_drops_the_key_and_credentials() -> None:
    environ = {
        "ANTHROPIC_API_KEY": "sk-ant-secret",
        "ANTHROPIC_AUTH_TOKEN": "tok",
        "OPENAI_API_KEY": "sk-other",
        "GITHUB_TOKEN": "ghp",
        "GH_HOST": "example",
        "GITLAB_URL": "x",
        "AWS_SECRET_ACCESS_KEY": "aws",
        "AZURE_CLIENT_ID": "az",
        "GOOGLE_APPLICATION_CREDENTIALS": "/k.json",
        "DB_PASSWORD": "pw",
        "app_secret": "lower",
        "NPM_TOKEN": "npm",
        "SSH_AUTH_SOCK": "/tmp/agent",
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "LANG": "C.UTF-8",
        "KEYBOARD": "us",
    }
    kept = scrub_env(environ)
    assert kept == {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "LANG": "C.UTF-8",
        "KEYBOARD": "us",
    }


def test_allow_keeps_named_variables_but_never_the_api_key() -> None:
    environ = {"NPM_TOKEN": "npm", "ANTHROPIC_API_KEY": "sk", "PATH": "/bin"}
    kept = scrub_env(environ, allow=["NPM_TOKEN", "ANTHROPIC_API_KEY"])
    assert kept == {"NPM_TOKEN": "npm", "PATH": "/bin"}


def test_real_environment_scrubbed_holds_no_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env")
    kept = scrub_env(os.environ)
    assert "ANTHROPIC_API_KEY" not in kept
    assert not any(is_credential(name) for name in kept)
    assert "sk-ant-from-env" not in kept.values()
