"""Rotation as SPIRE does it: prepare at half-life, activate when a sixth remains, prune at expiry.

A CA TTL of two minutes and an injected clock walk through several rotations in
milliseconds of test time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from warden.pki import (
    AuthorityKind,
    AuthorityStatus,
    CAError,
    CASettings,
    CertificateAuthority,
    JournalEntry,
    KeyType,
    MemoryBundleStore,
    MemoryJournalStore,
    MemoryKeyManager,
)
from warden.pki.rotation import activation_time, default_refresh_hint, preparation_time
from warden.spiffe import SpiffeId, TrustDomain, validate_jwt_svid, validate_x509_svid

MakeCA = Callable[..., CertificateAuthority]
WORKLOAD = SpiffeId.parse("spiffe://example.org/workload")
TTL = timedelta(minutes=2)
BACKDATE = timedelta(seconds=10)


@pytest.fixture(scope="module")
def workload_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _entry(
    ca: CertificateAuthority, kind: AuthorityKind, status: AuthorityStatus
) -> JournalEntry | None:
    found = [e for e in ca.authorities() if e.kind is kind and e.status is status]
    assert len(found) <= 1
    return found[0] if found else None


def test_thresholds_half_and_five_sixths(now: datetime) -> None:
    not_after = now + timedelta(hours=24)

    assert preparation_time(now, not_after) == now + timedelta(hours=12)
    assert activation_time(now, not_after) == now + timedelta(hours=20)


def test_default_refresh_hint() -> None:
    assert default_refresh_hint(timedelta(hours=24)) == timedelta(minutes=5)
    assert default_refresh_hint(timedelta(minutes=2)) == timedelta(seconds=12)
    assert default_refresh_hint(timedelta(seconds=5)) == timedelta(seconds=1)


def test_next_prepared_at_half_life(make_ca: MakeCA, now: datetime) -> None:
    ca = make_ca(ca_ttl=TTL)
    ca.start(now)
    current = ca.x509_ca
    half = preparation_time(current.not_before, current.not_after)

    assert ca.rotate(half - timedelta(seconds=1)) is False
    assert _entry(ca, AuthorityKind.X509_CA, AuthorityStatus.PREPARED) is None

    assert ca.rotate(half) is True
    prepared = _entry(ca, AuthorityKind.X509_CA, AuthorityStatus.PREPARED)
    assert prepared is not None
    assert prepared.certificate in ca.bundle().x509_authorities
    assert ca.x509_ca.certificate == current.certificate
    assert _entry(ca, AuthorityKind.JWT_KEY, AuthorityStatus.PREPARED) is not None


def test_next_activated_when_sixth_remains(make_ca: MakeCA, now: datetime) -> None:
    ca = make_ca(ca_ttl=TTL)
    ca.start(now)
    first = ca.x509_ca
    ca.rotate(preparation_time(first.not_before, first.not_after))
    prepared = _entry(ca, AuthorityKind.X509_CA, AuthorityStatus.PREPARED)
    activation = activation_time(first.not_before, first.not_after)

    ca.rotate(activation - timedelta(seconds=1))
    assert ca.x509_ca.certificate == first.certificate

    ca.rotate(activation)
    assert prepared is not None
    assert ca.x509_ca.certificate == prepared.certificate
    old = _entry(ca, AuthorityKind.X509_CA, AuthorityStatus.OLD)
    assert old is not None
    assert old.certificate == first.certificate
    assert first.certificate in ca.bundle().x509_authorities


def test_old_authority_pruned_at_expiry(make_ca: MakeCA, now: datetime) -> None:
    ca = make_ca(ca_ttl=TTL)
    ca.start(now)
    first = ca.x509_ca
    ca.rotate(preparation_time(first.not_before, first.not_after))
    ca.rotate(activation_time(first.not_before, first.not_after))

    # A certificate is valid through its NotAfter second, so the bundle keeps it until then.
    ca.rotate(first.not_after)
    assert first.certificate in ca.bundle().x509_authorities

    ca.rotate(first.not_after + timedelta(seconds=1))
    assert first.certificate not in ca.bundle().x509_authorities
    assert all(e.not_after > first.not_after for e in ca.authorities())


def test_retired_private_keys_deleted(make_ca: MakeCA, now: datetime) -> None:
    manager = MemoryKeyManager()
    ca = make_ca(manager, ca_ttl=TTL)
    ca.start(now)
    first_key = ca.x509_ca

    for second in range(0, 200, 5):
        ca.rotate(now + timedelta(seconds=second))

    live = {e.key_id for e in ca.authorities() if e.status is not AuthorityStatus.OLD}
    assert set(manager.list_keys()) == live
    assert ca.x509_ca.private_key is not first_key.private_key


def test_svids_keep_verifying_across_rotations(
    make_ca: MakeCA, workload_key: ec.EllipticCurvePrivateKey, now: datetime
) -> None:
    # Sign every 5 s for five CA lifetimes. At every step, each SVID and JWT-SVID issued so
    # far that has not expired must verify against the bundle of that moment.
    ca = make_ca(
        ca_ttl=TTL, x509_svid_ttl=timedelta(seconds=40), jwt_svid_ttl=timedelta(seconds=20)
    )
    ca.start(now)
    issued: list[tuple[list[x509.Certificate], str, datetime]] = []
    cas_seen = set()

    for second in range(0, 600, 5):
        moment = now + timedelta(seconds=second)
        ca.rotate(moment)
        cas_seen.add(ca.x509_ca.certificate.serial_number)
        chain = ca.sign_x509_svid(WORKLOAD, workload_key.public_key(), now=moment)
        token = ca.sign_jwt_svid(WORKLOAD, "db", now=moment)
        issued.append((chain, token, moment))
        bundle = ca.bundle()
        for old_chain, old_token, signed_at in issued:
            if old_chain[0].not_valid_after_utc >= moment:
                assert validate_x509_svid(old_chain, bundle, moment) == WORKLOAD
            if signed_at + timedelta(seconds=20) > moment:
                assert validate_jwt_svid(old_token, "db", bundle, moment).spiffe_id == WORKLOAD

    assert len(cas_seen) >= 5
    assert len(ca.bundle().x509_authorities) <= 3


def test_svid_lifetime_never_outlives_ca(
    make_ca: MakeCA, workload_key: ec.EllipticCurvePrivateKey, now: datetime
) -> None:
    ca = make_ca(ca_ttl=TTL)
    ca.start(now)

    for second in range(0, 300, 10):
        moment = now + timedelta(seconds=second)
        ca.rotate(moment)
        chain = ca.sign_x509_svid(WORKLOAD, workload_key.public_key(), now=moment)
        assert chain[0].not_valid_after_utc <= ca.x509_ca.not_after
        # With a 1 h SVID TTL and a 2 min CA, the CA's expiry is the cap.
        assert chain[0].not_valid_after_utc == ca.x509_ca.not_after


def test_jwt_keys_rotate_and_old_kid_stays(make_ca: MakeCA, now: datetime) -> None:
    ca = make_ca(ca_ttl=TTL)
    ca.start(now)
    token = ca.sign_jwt_svid(WORKLOAD, "db", now=now)
    first_kid = jwt.get_unverified_header(token)["kid"]
    entry = _entry(ca, AuthorityKind.JWT_KEY, AuthorityStatus.ACTIVE)
    assert entry is not None

    ca.rotate(preparation_time(entry.not_before, entry.not_after))
    ca.rotate(activation_time(entry.not_before, entry.not_after))
    later = activation_time(entry.not_before, entry.not_after)
    new_token = ca.sign_jwt_svid(WORKLOAD, "db", now=later)

    assert jwt.get_unverified_header(new_token)["kid"] != first_kid
    assert ca.bundle().jwt_authority(first_kid) is not None
    ca.rotate(entry.not_after)
    assert ca.bundle().jwt_authority(first_kid) is None


def test_jwt_svid_expiry_capped_at_key_expiry(make_ca: MakeCA, now: datetime) -> None:
    ca = make_ca(ca_ttl=TTL, jwt_svid_ttl=timedelta(hours=1))
    ca.start(now)

    svid = validate_jwt_svid(ca.sign_jwt_svid(WORKLOAD, "db", now=now), "db", ca.bundle(), now)

    assert svid.expires_at == now + TTL


def test_federation_keys_rotate_and_stay_until_expiry(make_ca: MakeCA, now: datetime) -> None:
    ca = make_ca(ca_ttl=TTL, federation_key_type=KeyType.EC_P256)
    ca.start(now)
    token = ca.sign_federation_token({"sub": "x", "aud": "sts"}, timedelta(hours=1), now=now)
    kid = jwt.get_unverified_header(token)["kid"]
    entry = _entry(ca, AuthorityKind.FEDERATION_KEY, AuthorityStatus.ACTIVE)
    assert entry is not None

    # By 105 s the second key signs and the third is not prepared yet.
    for second in range(0, 110, 5):
        ca.rotate(now + timedelta(seconds=second))
    kids = [k["kid"] for k in ca.federation_jwks(now + timedelta(seconds=105))["keys"]]
    assert kid in kids
    assert len(kids) == 2
    # A token never outlives its key, so once the key is gone no valid token needs it.
    assert jwt.decode(token, options={"verify_signature": False})["exp"] == int(
        entry.not_after.timestamp()
    )

    ca.rotate(entry.not_after)
    assert kid not in [k["kid"] for k in ca.federation_jwks(entry.not_after)["keys"]]


def test_downtime_past_expiry_creates_new_ca(
    make_ca: MakeCA, workload_key: ec.EllipticCurvePrivateKey, now: datetime
) -> None:
    ca = make_ca(ca_ttl=TTL)
    ca.start(now)
    first = ca.x509_ca

    later = now + timedelta(hours=5)
    assert ca.rotate(later) is True

    assert ca.x509_ca.certificate != first.certificate
    assert ca.x509_ca.not_before == later - BACKDATE
    assert ca.bundle().x509_authorities == (ca.x509_ca.certificate,)
    chain = ca.sign_x509_svid(WORKLOAD, workload_key.public_key(), now=later)
    assert validate_x509_svid(chain, ca.bundle(), later) == WORKLOAD


def test_restart_after_downtime_resumes_prepared(make_ca: MakeCA, now: datetime) -> None:
    manager = MemoryKeyManager()
    ca = make_ca(manager, ca_ttl=TTL)
    ca.start(now)
    first = ca.x509_ca
    ca.rotate(preparation_time(first.not_before, first.not_after))
    prepared = _entry(ca, AuthorityKind.X509_CA, AuthorityStatus.PREPARED)

    restarted = make_ca(manager, ca_ttl=TTL)
    restarted.start(first.not_after + timedelta(seconds=1))

    assert prepared is not None
    assert restarted.x509_ca.certificate == prepared.certificate


def test_sequence_number_moves_only_on_change(make_ca: MakeCA, now: datetime) -> None:
    ca = make_ca(ca_ttl=TTL)
    ca.start(now)
    first = ca.x509_ca

    ca.rotate(now + timedelta(seconds=1))
    assert ca.bundle().sequence_number == 1

    ca.rotate(preparation_time(first.not_before, first.not_after))
    assert ca.bundle().sequence_number == 2
    ca.rotate(activation_time(first.not_before, first.not_after))
    assert ca.bundle().sequence_number == 2
    ca.rotate(first.not_after + timedelta(seconds=1))
    assert ca.bundle().sequence_number == 3


class _FlakyBundleStore(MemoryBundleStore):
    def __init__(self) -> None:
        super().__init__()
        self.failing = False

    def update_bundle(self, trust_domain: str, mutate: Callable[[bytes | None], bytes]) -> bytes:
        if self.failing:
            raise ConnectionError("datastore unreachable")
        return super().update_bundle(trust_domain, mutate)


def test_failed_publication_keeps_state(now: datetime, trust_domain: TrustDomain) -> None:
    store = _FlakyBundleStore()
    manager = MemoryKeyManager()
    ca = CertificateAuthority(
        CASettings(trust_domain, ca_ttl=TTL, federation_key_type=None),
        manager,
        MemoryJournalStore(),
        store,
    )
    ca.start(now)
    before = ca.authorities()
    keys_before = manager.list_keys()
    half = preparation_time(ca.x509_ca.not_before, ca.x509_ca.not_after)

    store.failing = True
    with pytest.raises(
        CAError, match=r"failed: datastore unreachable; .* retries at the next rotation"
    ):
        ca.rotate(half)

    assert ca.authorities() == before
    assert manager.list_keys() == keys_before
    store.failing = False
    assert ca.rotate(half) is True
    assert _entry(ca, AuthorityKind.X509_CA, AuthorityStatus.PREPARED) is not None


def test_rotate_restores_missing_authorities_in_bundle(
    make_ca: MakeCA, bundle_store: MemoryBundleStore, now: datetime
) -> None:
    ca = make_ca(ca_ttl=TTL)
    ca.start(now)
    # The stored bundle is emptied behind the CA's back. The next rotation restores it.
    bundle_store.update_bundle("example.org", lambda data: b'{"keys": [], "spiffe_sequence": 9}')

    assert ca.rotate(now + timedelta(seconds=1)) is False

    assert ca.x509_ca.certificate in ca.bundle().x509_authorities
    assert ca.bundle().sequence_number == 10


def test_thresholds_capped_for_long_lifetimes(now: datetime) -> None:
    not_after = now + timedelta(days=365)

    assert preparation_time(now, not_after) == not_after - timedelta(days=30)
    assert activation_time(now, not_after) == not_after - timedelta(days=7)


def test_long_svid_ttl_warns(make_ca: MakeCA, caplog: pytest.LogCaptureFixture) -> None:
    # The handler goes on the module's logger itself: another test may have configured the
    # `warden` logger not to propagate to the root logger that caplog watches.
    logger = logging.getLogger("warden.pki.ca")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger="warden.pki.ca"):
            make_ca(ca_ttl=timedelta(hours=1), x509_svid_ttl=timedelta(hours=1))
    finally:
        logger.removeHandler(caplog.handler)

    assert "x509_svid_ttl 1:00:00 exceeds 0:10:00" in caplog.text
