"""The per-user cache of compiled Hyperscan databases and their transfer to workers."""

from __future__ import annotations

import os
import stat

import pytest

from warden.scan import compiled, rule
from warden.scan.engine import Engine, Profile

# A few rules compile in a fraction of the time of the whole catalogue.
RULES = [rule("github-pat"), rule("generic-password")]
_TEXT = b"GITHUB_TOKEN=ghp_0123456789abcdefghijABCDEFGHIJ0123456789\npassword: Tr0ub4dor&3x\n"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("WARDEN_CACHE_DIR", str(folder))
    return folder / "scan"


def _hits(engine: Engine) -> list[tuple[int, int]]:
    return sorted(engine.scan(_TEXT, Profile.TEXT))


def test_store_then_load(cache):
    compiled.store("abc", b"database bytes")
    path = cache / "abc.hsdb"
    assert compiled.load("abc") == b"database bytes"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700


def test_store_keeps_the_newest_databases(cache):
    for number in range(12):
        compiled.store(f"database{number:02d}", b"x")
        os.utime(cache / f"database{number:02d}.hsdb", (number, number))
    compiled.store("latest", b"x")
    names = sorted(path.stem for path in cache.glob("*.hsdb"))
    assert len(names) == 8
    assert "latest" in names
    assert "database00" not in names


def test_load_ignores_a_file_others_can_write(cache):
    compiled.store("abc", b"database bytes")
    os.chmod(cache / "abc.hsdb", 0o666)  # noqa: S103 - the case under test
    assert compiled.load("abc") is None


def test_load_of_missing_database_is_none(cache):
    assert compiled.load("missing") is None


def test_engine_writes_and_reuses_the_cache(cache):
    first = Engine(RULES)
    stored = sorted(cache.glob("*.hsdb"))
    assert len(stored) == len(Profile)
    second = Engine(RULES)
    assert _hits(second) == _hits(first)
    assert sorted(cache.glob("*.hsdb")) == stored


def test_corrupt_cached_database_is_recompiled(cache):
    reference = _hits(Engine(RULES, cache=False))
    Engine(RULES)
    for path in cache.glob("*.hsdb"):
        path.write_bytes(b"not a database")
    assert _hits(Engine(RULES)) == reference


def test_serialized_databases_scan_alike():
    engine = Engine(RULES, cache=False)
    serialized = engine.serialize()
    assert set(serialized) == {profile.value for profile in Profile}
    copy = Engine(RULES, serialized=serialized, cache=False)
    assert _hits(copy) == _hits(engine)
    assert _hits(engine)


def test_unwritable_cache_still_scans(tmp_path, monkeypatch):
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    monkeypatch.setenv("WARDEN_CACHE_DIR", str(blocked))
    assert _hits(Engine(RULES))
