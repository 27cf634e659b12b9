"""What must not reach a step's commit: credentials and huge binaries.

A model that writes a `.env` to make a test pass, or drops a key file in
the tree, should not have ralph publish it in the next commit. The runner
asks `secret_files` about the paths a step changed, leaves the ones it
names unstaged, and says so under the step. Names are judged first, then
the first megabyte of content against the formats tokens are issued in.
"""

from __future__ import annotations

import fnmatch
import re
import stat
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from ralph.guard import is_credential

SCAN_BYTES = 1024 * 1024
BINARY_SIZE = 5 * 1024 * 1024
BINARY_PROBE = 8 * 1024

# Examples and templates of environment files are meant to be committed.
ENV_TEMPLATES = frozenset({".env.example", ".env.sample", ".env.template"})
SECRET_NAMES = (
    (".env", "an environment file, where credentials usually live"),
    (".env.*", "an environment file, where credentials usually live"),
    ("*.pem", "a PEM file, which may hold a private key"),
    ("*.key", "a key file"),
    ("id_rsa*", "an SSH private key"),
    ("id_ecdsa*", "an SSH private key"),
    ("id_ed25519*", "an SSH private key"),
    ("*.p12", "a PKCS#12 certificate bundle with its private key"),
    ("*.pfx", "a PKCS#12 certificate bundle with its private key"),
    ("*.kdbx", "a KeePass password database"),
    (".netrc", "a .netrc file, which holds login passwords"),
    (".git-credentials", "git's stored credentials"),
    ("credentials*.json", "a credentials file"),
)
# Files that are harmless by name and a secret only when they hold one.
TOKEN_FILES = {
    ".npmrc": re.compile(rb"_auth(Token)?\s*=|_password\s*="),
    ".pypirc": re.compile(rb"(?m)^\s*password\s*[=:]"),
}
TOKENS = (
    (
        re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"),
        "a private key block",
    ),
    (re.compile(rb"\bsk-ant-[a-z]+\d\d-[A-Za-z0-9_-]{40,}"), "an Anthropic API key"),
    (
        re.compile(rb"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{40,}"),
        "an OpenAI API key",
    ),
    (re.compile(rb"\bgh[pousr]_[A-Za-z0-9]{36}\b"), "a GitHub token"),
    (re.compile(rb"\bgithub_pat_[A-Za-z0-9_]{40,}"), "a GitHub token"),
    (re.compile(rb"\bglpat-[A-Za-z0-9_-]{20,}"), "a GitLab token"),
    (re.compile(rb"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), "an AWS access key id"),
    (
        re.compile(rb"(?i)aws_secret_access_key\s*[=:]\s*['\"]?[A-Za-z0-9/+=]{40}"),
        "an AWS secret access key",
    ),
    (re.compile(rb"\bxox[baprs]-[A-Za-z0-9-]{10,}"), "a Slack token"),
    (re.compile(rb"\bAIza[0-9A-Za-z_-]{35}"), "a Google API key"),
    (re.compile(rb"\b[sr]k_live_[0-9A-Za-z]{24,}"), "a Stripe live key"),
)


def secret_files(root: Path, paths: list[str]) -> list[tuple[str, str]]:
    """The paths (relative to `root`) that look like secrets, each with why.

    Paths that are gone, or are not regular files (a symlink is committed
    as the link, not what it points to), are never secrets.
    """
    found = []
    for path in paths:
        reason = secret_reason(root / path, PurePosixPath(path))
        if reason is not None:
            found.append((path, reason))
    return found


def secret_reason(full: Path, path: PurePosixPath) -> str | None:
    try:
        info = full.lstat()
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    reason = name_reason(path)
    if reason is not None:
        return reason
    with full.open("rb") as handle:
        head = handle.read(SCAN_BYTES)
    if info.st_size > BINARY_SIZE and b"\0" in head[:BINARY_PROBE]:
        return f"a binary file of {info.st_size / 2**20:.0f} MB"
    return content_reason(path.name, head)


def name_reason(path: PurePosixPath) -> str | None:
    """Why the file's name alone marks it as a secret, if it does."""
    name = path.name.lower()
    if name in ENV_TEMPLATES or name.endswith(".pub"):
        return None
    if path.parts[-2:] == (".aws", "credentials"):
        return "AWS credentials"
    for pattern, reason in SECRET_NAMES:
        if fnmatch.fnmatchcase(name, pattern):
            return f"named {path.name}: {reason}"
    return None


def content_reason(name: str, head: bytes) -> str | None:
    """Why the file's first megabyte marks it as a secret, if it does."""
    marker = TOKEN_FILES.get(name)
    if marker is not None and marker.search(head):
        return f"a {name} that holds a token or password"
    for pattern, what in TOKENS:
        if pattern.search(head):
            return f"it holds what looks like {what}"
    return None


# A value this short is too likely to occur in ordinary text to blank it.
MIN_SECRET_VALUE = 8
REDACTED = "[redacted]"
PEM_BLOCK = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END \1PRIVATE KEY-----|\Z)",
    re.DOTALL,
)


def redact_data(value: object, environ: Mapping[str, str]) -> object:
    """Every string inside a JSON-like value redacted, before it is encoded."""
    if isinstance(value, str):
        return redact(value, environ)
    if isinstance(value, dict):
        return {key: redact_data(item, environ) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(item, environ) for item in value]
    return value


def redact(text: str, environ: Mapping[str, str]) -> str:
    """Text with token-shaped strings and the values of secret variables blanked.

    Notes and commit messages quote command output and the model's words;
    either can carry a credential that must not reach the history.
    """
    for name, value in environ.items():
        if is_credential(name) and len(value) >= MIN_SECRET_VALUE:
            text = text.replace(value, REDACTED)
    text = PEM_BLOCK.sub(REDACTED, text)
    raw = text.encode("utf-8", errors="surrogateescape")
    for pattern, _ in TOKENS:
        raw = pattern.sub(REDACTED.encode(), raw)
    return raw.decode("utf-8", errors="surrogateescape")
