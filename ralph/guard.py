"""What the model's tools may touch: paths inside the workspace, a clean env.

The editor tool writes files the model names, so every path is resolved
(symlinks included) and must land inside the workspace and outside `.git/`,
the record ralph keeps. Commands get an environment without the API key or
anything else that looks like a credential.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from pathlib import Path

from ralph.errors import RalphError

# ralph's own credentials never reach a command, whatever the allow list says.
NEVER_PASSED = frozenset({"ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"})

CREDENTIAL_PATTERNS = (
    "*_KEY",
    "*_KEY_*",
    "*_TOKEN",
    "*_TOKEN_*",
    "*_SECRET",
    "*_SECRET_*",
    "*SECRET*",
    "*APIKEY*",
    "*API_KEY*",
    "*PRIVATE_KEY*",
    "*PASSPHRASE*",
    "*SECRET_KEY*",
    "*PASSWORD*",
    "*PASSWD*",
    "*CREDENTIALS*",
    "*_PAT",
    "*_DSN",
    "DATABASE_URL",
    "AWS_*",
    "GITHUB_*",
    "GH_*",
    "GITLAB_*",
    "AZURE_*",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "SSH_AUTH_SOCK",
    "DOCKER_AUTH_CONFIG",
)


class GuardError(RalphError):
    """A tool asked for something outside what the workspace allows."""


def resolve_inside(workspace: Path, path: str) -> Path:
    """Resolve `path` the way the editor will use it, or refuse it.

    Relative paths start at the workspace; absolute ones must already be
    inside it. Symlinks are followed before the check, so a link that points
    out is refused like `..` is.
    """
    if not path.strip():
        raise GuardError("refused: the path is empty")
    root = workspace.resolve()
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = root / candidate
    try:
        resolved = candidate.resolve()
    except (OSError, ValueError) as exc:
        raise GuardError(f"refused: `{path}` cannot be resolved ({exc})") from exc

    if resolved != root and root not in resolved.parents:
        raise GuardError(
            f"refused: `{path}` resolves to {resolved}, outside the workspace {root}"
        )
    inside = resolved.relative_to(root).parts
    if any(part.lower() == ".git" for part in inside):
        raise GuardError(
            f"refused: `{path}` is inside .git/, which only git itself may change"
        )
    return resolved


def check_single_link(path: Path) -> None:
    """Refuse to write a file with other hard links: one may lie outside.

    A hard link has no target to resolve, so `resolve_inside` cannot see
    where its other names are; writing through it would change them all.
    """
    try:
        links = path.stat().st_nlink
    except FileNotFoundError:
        return
    if links > 1:
        raise GuardError(
            f"refused: `{path.name}` has {links} hard links, and writing it would "
            "change the file under every name, perhaps outside the workspace; "
            "copy it to a new file instead"
        )


def is_credential(name: str) -> bool:
    """Whether an environment variable's name looks like it holds a secret."""
    upper = name.upper()
    return upper in NEVER_PASSED or any(
        fnmatch.fnmatchcase(upper, pattern) for pattern in CREDENTIAL_PATTERNS
    )


def scrub_env(environ: Mapping[str, str], allow: Iterable[str] = ()) -> dict[str, str]:
    """Copy `environ` without credentials; names in `allow` are kept anyway."""
    allowed = set(allow) - NEVER_PASSED
    return {
        name: value
        for name, value in environ.items()
        if name in allowed or not is_credential(name)
    }
