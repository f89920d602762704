"""Several servers sharing one datastore: one bundle, one journal per server."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from warden.pki import (
    BundleRecord,
    CASettings,
    CertificateAuthority,
    KeyType,
    MemoryBundleStore,
    MemoryJournalStore,
    MemoryKeyManager,
)
from warden.pki.rotation import activation_time
from warden.spiffe import SpiffeId, TrustDomain, validate_jwt_svid, validate_x509_svid

MakeCA = Callable[..., CertificateAuthority]
WORKLOAD = SpiffeId.parse("spiffe://example.org/workload")


@pytest.fixture(scope="module")
def workload_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def test_servers_share_one_bundle(
    make_ca: MakeCA, workload_key: ec.EllipticCurvePrivateKey, now: datetime
) -> None:
    first = make_ca(server_id="server-a")
    second = make_ca(server_id="server-b")
    first.start(now)
    second.start(now)

    bundle = first.bundle()
    chain_a = first.sign_x509_svid(WORKLOAD, workload_key.public_key(), now=now)
    chain_b = second.sign_x509_svid(WORKLOAD, workload_key.public_key(), now=now)
    token_a = first.sign_jwt_svid(WORKLOAD, "db", now=now)
    token_b = second.sign_jwt_svid(WORKLOAD, "db", now=now)

    assert set(bundle.x509_authorities) == {first.x509_ca.certificate, second.x509_ca.certificate}
    assert validate_x509_svid(chain_a, bundle, now) == WORKLOAD
    assert validate_x509_svid(chain_b, bundle, now) == WORKLOAD
    assert validate_jwt_svid(token_a, "db", bundle, now).spiffe_id == WORKLOAD
    assert validate_jwt_svid(token_b, "db", bundle, now).spiffe_id == WORKLOAD
    assert bundle.sequence_number == 2


def test_each_server_keeps_its_journal(
    make_ca: MakeCA, journal_store: MemoryJournalStore, now: datetime
) -> None:
    make_ca(server_id="server-a").start(now)
    make_ca(server_id="server-b").start(now)

    journal_a = journal_store.load_journal("server-a")
    journal_b = journal_store.load_journal("server-b")

    assert journal_a is not None
    assert journal_b is not None
    assert journal_a != journal_b
    assert all(e["key_id"].startswith("server-a.") for e in json.loads(journal_a)["entries"])


def test_pruning_keeps_other_servers_live_authorities(
    make_ca: MakeCA, workload_key: ec.EllipticCurvePrivateKey, now: datetime
) -> None:
    # Server A runs short-lived CAs and prunes often; server B's long-lived CA started
    # earlier must survive every one of A's updates.
    long_lived = make_ca(server_id="server-b", ca_ttl=timedelta(hours=24))
    long_lived.start(now - timedelta(hours=1))
    short_lived = make_ca(server_id="server-a", ca_ttl=timedelta(minutes=2))
    short_lived.start(now)
    chain_b = long_lived.sign_x509_svid(WORKLOAD, workload_key.public_key(), now=now)

    for second in range(0, 600, 10):
        short_lived.rotate(now + timedelta(seconds=second))

    later = now + timedelta(seconds=600)
    bundle = short_lived.bundle()
    assert long_lived.x509_ca.certificate in bundle.x509_authorities
    assert validate_x509_svid(chain_b, bundle, later) == WORKLOAD
    assert len(bundle.jwt_authorities) <= 1 + 3  # B's key and at most A's current, next and old.


def test_expired_authorities_of_stopped_server_pruned(make_ca: MakeCA, now: datetime) -> None:
    stopped = make_ca(server_id="server-b", ca_ttl=timedelta(minutes=2))
    stopped.start(now)
    running = make_ca(server_id="server-a", ca_ttl=timedelta(hours=1))
    running.start(now)
    expired_ca = stopped.x509_ca

    running.rotate(expired_ca.not_after + timedelta(seconds=1))

    assert expired_ca.certificate not in running.bundle().x509_authorities
    assert running.x509_ca.certificate in running.bundle().x509_authorities


def test_concurrent_starts_lose_no_authority(now: datetime, trust_domain: TrustDomain) -> None:
    bundle_store = MemoryBundleStore()
    journal_store = MemoryJournalStore()
    servers = [
        CertificateAuthority(
            CASettings(trust_domain, server_id=f"server-{i}", federation_key_type=None),
            MemoryKeyManager(),
            journal_store,
            bundle_store,
        )
        for i in range(6)
    ]
    threads = [threading.Thread(target=server.start, args=(now,)) for server in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    bundle = servers[0].bundle()
    assert set(bundle.x509_authorities) == {s.x509_ca.certificate for s in servers}
    assert len(bundle.jwt_authorities) == 6
    assert bundle.sequence_number == 6


def test_federation_keys_of_all_servers_published(make_ca: MakeCA, now: datetime) -> None:
    first = make_ca(server_id="server-a", federation_key_type=KeyType.EC_P256)
    second = make_ca(server_id="server-b", federation_key_type=KeyType.EC_P256)
    first.start(now)
    second.start(now)

    jwks = first.federation_jwks(now)

    assert len(jwks["keys"]) == 2
    assert {k["alg"] for k in jwks["keys"]} == {"ES256"}


def test_rotation_of_one_server_keeps_the_other_signing(
    make_ca: MakeCA, workload_key: ec.EllipticCurvePrivateKey, now: datetime
) -> None:
    first = make_ca(server_id="server-a", ca_ttl=timedelta(minutes=2))
    second = make_ca(server_id="server-b", ca_ttl=timedelta(minutes=2))
    first.start(now)
    second.start(now)
    end = activation_time(first.x509_ca.not_before, first.x509_ca.not_after) + timedelta(seconds=30)

    moment = now
    while moment <= end:
        first.rotate(moment)
        second.rotate(moment)
        for server in (first, second):
            chain = server.sign_x509_svid(WORKLOAD, workload_key.public_key(), now=moment)
            assert validate_x509_svid(chain, first.bundle(), moment) == WORKLOAD
        moment += timedelta(seconds=5)


def test_bundle_record_round_trip(
    make_ca: MakeCA, bundle_store: MemoryBundleStore, trust_domain: TrustDomain, now: datetime
) -> None:
    ca = make_ca(federation_key_type=KeyType.EC_P256)
    ca.start(now)
    stored = bundle_store.get_bundle("example.org")
    assert stored is not None

    record = BundleRecord.decode(trust_domain, stored)

    assert record.encode() == stored
    assert record.bundle == ca.bundle()
    assert len(record.federation_keys) == 1
    assert "warden_not_after" in stored.decode()
    assert "warden_not_after" not in ca.bundle().to_jwks_json()
