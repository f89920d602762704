"""The CA of warden.pki persisting through the datastore: two servers, one bundle, restarts."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from warden.pki import CASettings, CertificateAuthority, DiskKeyManager
from warden.spiffe import TrustDomain
from warden.store import Datastore

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
DOMAIN = TrustDomain("example.org")


def start_ca(url: str, server_id: str, keys: Path) -> tuple[CertificateAuthority, Datastore]:
    store = Datastore.open(url, server_id=server_id)
    authority = CertificateAuthority(
        CASettings(trust_domain=DOMAIN, server_id=server_id, federation_key_type=None),
        DiskKeyManager(keys),
        store,
        store,
    )
    authority.start(NOW)
    return authority, store


def test_ca_shares_bundle_and_restores(datastore_url: str, tmp_path: Path) -> None:
    first, first_store = start_ca(datastore_url, "server-1", tmp_path / "keys-1")
    second, second_store = start_ca(datastore_url, "server-2", tmp_path / "keys-2")
    try:
        bundle = second.bundle()
        first_ca = first.x509_ca.certificate
        second_ca = second.x509_ca.certificate
        assert first_ca != second_ca
        assert first_ca in bundle.x509_authorities
        assert second_ca in bundle.x509_authorities
        assert first_store.load_journal("server-1") is not None
        assert first_store.load_journal("server-2") is not None
    finally:
        first_store.close()
        second_store.close()

    restarted, store = start_ca(datastore_url, "server-1", tmp_path / "keys-1")
    try:
        assert restarted.x509_ca.certificate == first_ca
    finally:
        store.close()
