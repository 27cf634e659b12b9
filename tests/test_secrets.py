"""Files that look like credentials or huge binaries stay out of step commits."""

from __future__ import annotations

from pathlib import Path

import pytest

from ralph.secrets import BINARY_SIZE, SCAN_BYTES, secret_files


def token(*parts: str) -> str:
    """A token built at run time, so this file itself holds none to be flagged."""
    return "".join(parts)


PRIVATE_KEY = token("-----BEGIN ", "OPENSSH PRIVATE KEY-----\nb3BlbnNzaA==\n")
TOKENS = {
    "an Anthropic API key": token("sk-", "ant-api03-", "A1b2" * 24),
    "an OpenAI API key": token("sk-", "proj-", "x9Y8" * 12),
    "a GitHub token": token("gh", "p_", "a1B2" * 9),
    "a GitLab token": token("gl", "pat-", "Zz9_" * 5),
    "an AWS access key id": token("AK", "IA", "ABCDEFGH23456789"),
    "a Slack token": token("xo", "xb-", "1234567890-abcdef"),
    "a Google API key": token("AI", "za", "S" * 35),
    "a Stripe live key": token("sk", "_live_", "4eC39HqLyjWDarjtT1zdp7dc"),
}


def write(root: Path, name: str, content: str | bytes = "x = 1\n") -> str:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return name


@pytest.mark.parametrize(
    "name",
    [
        ".env",
        ".env.local",
        "config/.env.production",
        "server.pem",
        "tls/server.key",
        "id_rsa",
        "keys/id_ed25519",
        "id_ecdsa_work",
        "cert.p12",
        "cert.PFX",
        "passwords.kdbx",
        ".netrc",
        ".git-credentials",
        "credentials.json",
        "credentials-prod.json",
        "home/.aws/credentials",
    ],
)
def test_secret_names_are_flagged_whatever_they_hold(tmp_path: Path, name: str) -> None:
    write(tmp_path, name)
    [(path, reason)] = secret_files(tmp_path, [name])
    assert path == name
    assert reason


@pytest.mark.parametrize(
    "name",
    [
        ".env.example",
        ".env.sample",
        ".env.template",
        "id_rsa.pub",
        "environment.py",
        "src/keys.py",
        "credentials.md",
        "docs/aws-credentials.txt",
        ".npmrc",
        ".pypirc",
    ],
)
def test_ordinary_names_with_ordinary_content_pass(tmp_path: Path, name: str) -> None:
    write(tmp_path, name, "registry=https://registry.npmjs.org/\n")
    assert secret_files(tmp_path, [name]) == []


@pytest.mark.parametrize("what", sorted(TOKENS))
def test_tokens_in_content_are_flagged(tmp_path: Path, what: str) -> None:
    name = write(tmp_path, "src/settings.py", f'KEY = "{TOKENS[what]}"\n')
    assert secret_files(tmp_path, [name]) == [
        (name, f"it holds what looks like {what}")
    ]


def test_a_private_key_block_is_flagged_in_any_file(tmp_path: Path) -> None:
    name = write(tmp_path, "deploy/notes.txt", f"the key:\n{PRIVATE_KEY}")
    assert secret_files(tmp_path, [name]) == [
        (name, "it holds what looks like a private key block")
    ]


def test_token_lookalikes_in_tests_and_prose_pass(tmp_path: Path) -> None:
    text = (
        "KEY = 'sk-ant-test-0123456789abcdef'\n"
        "see the task-runner-for-long-builds docs, AKIA is a prefix\n"
        "ghp_short\n"
    )
    name = write(tmp_path, "tests/test_api.py", text)
    assert secret_files(tmp_path, [name]) == []


@pytest.mark.parametrize(
    ("name", "content"),
    [
        (".npmrc", "//registry.npmjs.org/:_authToken=abc123\n"),
        (".pypirc", "[pypi]\nusername = me\npassword = hunter2\n"),
    ],
)
def test_config_files_are_flagged_when_they_hold_a_token(
    tmp_path: Path, name: str, content: str
) -> None:
    write(tmp_path, name, content)
    assert secret_files(tmp_path, [name]) == [
        (name, f"a {name} that holds a token or password")
    ]


def test_only_the_first_megabyte_is_read(tmp_path: Path) -> None:
    late = "a" * SCAN_BYTES + "\n" + TOKENS["a GitHub token"]
    early = TOKENS["a GitHub token"] + "\n" + "a" * SCAN_BYTES
    names = [write(tmp_path, "late.txt", late), write(tmp_path, "early.txt", early)]
    assert [path for path, _ in secret_files(tmp_path, names)] == ["early.txt"]


def test_huge_binaries_are_flagged_but_huge_text_is_not(tmp_path: Path) -> None:
    size = BINARY_SIZE + 1024
    names = [
        write(tmp_path, "model.bin", b"\0\1\2" + b"\xff" * size),
        write(tmp_path, "small.bin", b"\0\1\2" * 1024),
        write(tmp_path, "big.csv", b"1,2,3\n" * (size // 6 + 1)),
    ]
    [(path, reason)] = secret_files(tmp_path, names)
    assert path == "model.bin"
    assert reason == "a binary file of 5 MB"


def test_missing_files_folders_and_symlinks_are_not_secrets(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text(PRIVATE_KEY)
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "link.txt").symlink_to(target)
    (tmp_path / "tree" / ".env").mkdir()
    paths = ["gone.pem", "link.txt", ".env"]
    assert secret_files(tmp_path / "tree", paths) == []


def test_every_flagged_path_is_reported_in_order(tmp_path: Path) -> None:
    names = [
        write(tmp_path, ".env", "API_TOKEN=abc\n"),
        write(tmp_path, "README.md", "# readme\n"),
        write(tmp_path, "key.pem", PRIVATE_KEY),
    ]
    assert secret_files(tmp_path, names) == [
        (".env", "named .env: an environment file, where credentials usually live"),
        ("key.pem", "named key.pem: a PEM file, which may hold a private key"),
    ]
