"""Fixtures for the scanner tests: a fixed HMAC key and fake credentials made at test time.

The fake credentials follow each provider's documented format (prefix, length, alphabet,
checksum), written here from those documents and not from Warden's rules, so the tests check
the rules against the formats rather than against themselves. Nothing literal that looks like
a live secret sits in the test files.
"""

from __future__ import annotations

import base64
import os
import random
import re
import string
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from warden.scan import Keyring

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


class FakeCredentials:
    """Deterministic, format-valid fake credentials."""

    def __init__(self, seed: int = 20240501) -> None:
        self.random = random.Random(seed)

    def chars(self, alphabet: str, count: int) -> str:
        # Varied content, as a random token has: no long runs, many distinct characters.
        for _ in range(1000):
            text = "".join(self.random.choice(alphabet) for _ in range(count))
            if len(set(text)) > min(count // 2, 12) and not re.search(r"(.)\1{3}", text):
                return text
        raise AssertionError(f"cannot draw {count} varied characters from {alphabet!r}")

    def github(self, prefix: str = "ghp") -> str:
        # GitHub: prefix_, 30 base62 characters, then CRC32 of those 30 in base62, 6 wide.
        body = self.chars(BASE62, 30)
        number = zlib.crc32(body.encode())
        checksum = ""
        while number:
            number, digit = divmod(number, 62)
            checksum = BASE62[digit] + checksum
        return f"{prefix}_{body}{checksum.rjust(6, '0')}"

    def aws_key_id(self, prefix: str = "AKIA") -> str:
        return prefix + self.chars("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)

    def aws_secret(self) -> str:
        return self.chars(string.ascii_letters + string.digits + "+/", 40)

    def slack_bot(self) -> str:
        return f"xoxb-{self.chars(string.digits, 12)}-{self.chars(string.digits, 13)}-{self.chars(string.ascii_letters + string.digits, 24)}"

    def stripe_live(self) -> str:
        return "sk_live_" + self.chars(string.ascii_letters + string.digits, 24)

    def sendgrid(self) -> str:
        alphabet = string.ascii_letters + string.digits + "_-"
        return f"SG.{self.chars(alphabet, 22)}.{self.chars(alphabet, 43)}"

    def gitlab(self) -> str:
        return "glpat-" + self.chars(string.ascii_letters + string.digits, 20)

    def npm(self) -> str:
        return self.github("npm")

    def anthropic(self) -> str:
        return "sk-ant-api03-" + self.chars(string.ascii_letters + string.digits, 93) + "AA"

    def google_api_key(self) -> str:
        return "AIza" + self.chars(string.ascii_letters + string.digits, 35)

    def password(self) -> str:
        return self.chars(string.ascii_letters + string.digits, 10) + "7!#"

    def jwt(self, claims: str) -> str:
        def encode(text: str) -> str:
            return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

        header = encode('{"alg":"RS256","kid":"k1"}')
        signature = self.chars(string.ascii_letters + string.digits, 43)
        return f"{header}.{encode(claims)}.{signature}"


@pytest.fixture(scope="session", autouse=True)
def compiled_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep compiled Hyperscan databases in a folder of this test session, not the user's
    cache; commands the tests start inherit the setting."""
    folder = tmp_path_factory.mktemp("compiled-cache")
    saved = os.environ.get("WARDEN_CACHE_DIR")
    os.environ["WARDEN_CACHE_DIR"] = str(folder)
    yield folder
    if saved is None:
        os.environ.pop("WARDEN_CACHE_DIR", None)
    else:
        os.environ["WARDEN_CACHE_DIR"] = saved


@pytest.fixture
def fake() -> FakeCredentials:
    return FakeCredentials()


@pytest.fixture
def keyring() -> Keyring:
    return Keyring(bytes(range(32)))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return tmp_path / "workspace"


def git(repository: Path, *arguments: str) -> str:
    completed = subprocess.run(
        ["git", "-C", str(repository), *arguments], capture_output=True, text=True, check=True
    )
    return completed.stdout.strip()


def init_repository(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", "Warden Tests")
    git(path, "config", "user.email", "tests@warden.invalid")
    git(path, "config", "commit.gpgsign", "false")
    return path


def commit_all(repository: Path, message: str) -> str:
    git(repository, "add", "-A")
    git(repository, "commit", "-q", "-m", message)
    return git(repository, "rev-parse", "HEAD")
