"""Key types and the memory and disk key managers."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from warden.pki import (
    CASettings,
    DiskKeyManager,
    KeyManagerError,
    KeyNotFoundError,
    KeyType,
    MemoryKeyManager,
    open_key_manager,
)
from warden.pki.keys import fingerprint
from warden.spiffe import TrustDomain


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(
    ("key_type", "kind", "size"),
    [
        (KeyType.EC_P256, ec.EllipticCurvePrivateKey, 256),
        (KeyType.EC_P384, ec.EllipticCurvePrivateKey, 384),
        (KeyType.RSA_2048, rsa.RSAPrivateKey, 2048),
        (KeyType.RSA_4096, rsa.RSAPrivateKey, 4096),
    ],
)
def test_key_type_generates_its_key(key_type: KeyType, kind: type, size: int) -> None:
    key = key_type.generate()

    assert isinstance(key, kind)
    assert key.key_size == size
    assert KeyType.of(key) is key_type


def test_key_type_parse() -> None:
    assert KeyType.parse("ec-p256") is KeyType.EC_P256
    assert KeyType.parse(" RSA-2048 ") is KeyType.RSA_2048
    with pytest.raises(KeyManagerError, match="ec-p256, ec-p384, rsa-2048, rsa-4096"):
        KeyType.parse("ed25519")


def test_default_key_type_is_ec_p256() -> None:
    settings = CASettings(TrustDomain("example.org"))

    assert settings.ca_key_type is KeyType.EC_P256
    assert settings.jwt_key_type is KeyType.EC_P256


def test_memory_manager_round_trip() -> None:
    manager = MemoryKeyManager()

    key = manager.generate_key("ca-1", KeyType.EC_P256)

    assert manager.get_key("ca-1") is key
    assert manager.list_keys() == ["ca-1"]
    assert manager.delete_key("ca-1") is True
    assert manager.delete_key("ca-1") is False
    with pytest.raises(KeyNotFoundError, match="'ca-1' not found"):
        manager.get_key("ca-1")


def test_disk_writes_pkcs8_pem_mode_0600(tmp_path: Path) -> None:
    manager = DiskKeyManager(tmp_path / "keys")

    key = manager.generate_key("ca-1", KeyType.EC_P256)

    path = tmp_path / "keys" / "ca-1.pem"
    assert _mode(path) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert loaded.public_key() == key.public_key()  # type: ignore[union-attr]


def test_disk_creates_directory_mode_0700(tmp_path: Path) -> None:
    DiskKeyManager(tmp_path / "a" / "keys")

    assert _mode(tmp_path / "a" / "keys") == 0o700


def test_disk_tightens_loose_directory(tmp_path: Path) -> None:
    directory = tmp_path / "keys"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)

    DiskKeyManager(directory)

    assert _mode(directory) == 0o700


def test_disk_rejects_file_as_directory(tmp_path: Path) -> None:
    (tmp_path / "keys.json").write_text("{}")

    with pytest.raises(KeyManagerError, match="not a directory"):
        DiskKeyManager(tmp_path / "keys.json")


def test_disk_keys_survive_restart(tmp_path: Path) -> None:
    key = DiskKeyManager(tmp_path).generate_key("jwt-1", KeyType.RSA_2048)

    reopened = DiskKeyManager(tmp_path)

    assert reopened.list_keys() == ["jwt-1"]
    assert reopened.get_key("jwt-1").public_key() == key.public_key()


def test_disk_write_failure_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = DiskKeyManager(tmp_path)
    original = manager.generate_key("ca-1", KeyType.EC_P256)

    def fail(source: object, destination: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(KeyManagerError, match="No space left on device"):
        manager.generate_key("ca-1", KeyType.EC_P256)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca-1.pem"]
    assert DiskKeyManager(tmp_path).get_key("ca-1").public_key() == original.public_key()


def test_disk_removes_leftover_temporary_files(tmp_path: Path) -> None:
    (tmp_path / ".tmp-0011-ca-1.pem").write_text("partial")

    manager = DiskKeyManager(tmp_path)

    assert list(tmp_path.iterdir()) == []
    assert manager.list_keys() == []


@pytest.mark.parametrize("key_id", ["../escape", "a/b", ".hidden", "", "x" * 129, "a b"])
def test_key_id_rejects_unsafe_names(tmp_path: Path, key_id: str) -> None:
    manager = DiskKeyManager(tmp_path)

    with pytest.raises(KeyManagerError, match="invalid key id"):
        manager.generate_key(key_id, KeyType.EC_P256)
    with pytest.raises(KeyManagerError, match="invalid key id"):
        MemoryKeyManager().generate_key(key_id, KeyType.EC_P256)


def test_disk_missing_key_not_found(tmp_path: Path) -> None:
    with pytest.raises(KeyNotFoundError, match="does not exist"):
        DiskKeyManager(tmp_path).get_key("absent")


def test_disk_corrupt_key_file_reported(tmp_path: Path) -> None:
    (tmp_path / "ca-1.pem").write_text(
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    )
    (tmp_path / "ca-1.pem").chmod(0o600)

    with pytest.raises(KeyManagerError, match="not an unencrypted PKCS#8 PEM"):
        DiskKeyManager(tmp_path).get_key("ca-1")


def test_disk_tightens_loose_key_file(tmp_path: Path) -> None:
    DiskKeyManager(tmp_path).generate_key("ca-1", KeyType.EC_P256)
    (tmp_path / "ca-1.pem").chmod(0o644)

    DiskKeyManager(tmp_path).get_key("ca-1")

    assert _mode(tmp_path / "ca-1.pem") == 0o600


def test_disk_delete_removes_file(tmp_path: Path) -> None:
    manager = DiskKeyManager(tmp_path)
    manager.generate_key("ca-1", KeyType.EC_P256)

    assert manager.delete_key("ca-1") is True
    assert not (tmp_path / "ca-1.pem").exists()
    assert manager.delete_key("ca-1") is False
    with pytest.raises(KeyNotFoundError):
        manager.get_key("ca-1")


def test_generate_replaces_existing_key(tmp_path: Path) -> None:
    manager = DiskKeyManager(tmp_path)
    first = manager.generate_key("ca-1", KeyType.EC_P256)

    second = manager.generate_key("ca-1", KeyType.EC_P384)

    assert DiskKeyManager(tmp_path).get_key("ca-1").public_key() == second.public_key()
    assert first.public_key() != second.public_key()


def test_disk_concurrent_generation(tmp_path: Path) -> None:
    manager = DiskKeyManager(tmp_path)
    threads = [
        threading.Thread(target=manager.generate_key, args=(f"k{i}", KeyType.EC_P256))
        for i in range(16)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert manager.list_keys() == sorted(f"k{i}" for i in range(16))
    assert all(_mode(path) == 0o600 for path in tmp_path.iterdir())


def test_open_key_manager_by_name(tmp_path: Path) -> None:
    assert isinstance(open_key_manager("memory"), MemoryKeyManager)
    disk = open_key_manager("disk", {"directory": str(tmp_path / "a")})
    spire_style = open_key_manager("disk", {"keys_path": str(tmp_path / "b")})

    assert isinstance(disk, DiskKeyManager)
    assert disk.directory == tmp_path / "a"
    assert isinstance(spire_style, DiskKeyManager)


def test_open_key_manager_errors(tmp_path: Path) -> None:
    with pytest.raises(
        KeyManagerError, match="unknown KeyManager 'aws_kms': Warden supports disk, memory"
    ):
        open_key_manager("aws_kms")
    with pytest.raises(KeyManagerError, match="needs directory"):
        open_key_manager("disk", {})
    with pytest.raises(KeyManagerError, match="does not know"):
        open_key_manager("disk", {"directory": str(tmp_path), "colour": "blue"})
    with pytest.raises(KeyManagerError, match="takes no options"):
        open_key_manager("memory", {"directory": str(tmp_path)})


def test_fingerprint_is_stable_and_public() -> None:
    key = KeyType.EC_P256.generate()

    assert fingerprint(key) == fingerprint(key)
    assert len(fingerprint(key)) == 16
    assert fingerprint(key) != fingerprint(KeyType.EC_P256.generate())
