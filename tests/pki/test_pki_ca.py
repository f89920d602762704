"""The CA: start, signing, defaults, federation tokens, restart and persistence."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from warden.pki import (
    AuthorityKind,
    AuthorityStatus,
    CAError,
    CASettings,
    CertificateAuthority,
    DiskKeyManager,
    DiskUpstreamAuthority,
    KeyType,
    MemoryBundleStore,
    MemoryJournalStore,
    MemoryKeyManager,
)
from warden.spiffe import (
    JwtSvidError,
    SpiffeId,
    TrustDomain,
    X509SvidError,
    validate_jwt_svid,
    validate_x509_svid,
)

MakeCA = Callable[..., CertificateAuthority]
WORKLOAD = SpiffeId.parse("spiffe://example.org/workload")


@pytest.fixture(scope="module")
def workload_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _entries(
    ca: CertificateAuthority, kind: AuthorityKind, status: AuthorityStatus
) -> list[object]:
    return [e for e in ca.authorities() if e.kind is kind and e.status is status]


def test_defaults_match_spire(trust_domain: TrustDomain) -> None:
    settings = CASettings(trust_domain)

    assert settings.ca_ttl == timedelta(hours=24)
    assert settings.x509_svid_ttl == timedelta(hours=1)
    assert settings.jwt_svid_ttl == timedelta(minutes=5)
    assert settings.federation_key_type is KeyType.RSA_2048
    assert settings.refresh_hint == timedelta(minutes=5)


@pytest.mark.parametrize(
    "field", ["ca_ttl", "x509_svid_ttl", "jwt_svid_ttl", "federation_token_ttl"]
)
def test_settings_reject_non_positive_ttl(trust_domain: TrustDomain, field: str) -> None:
    with pytest.raises(CAError, match=f"invalid {field}"):
        CASettings(trust_domain, **{field: timedelta(0)})  # type: ignore[arg-type]


def test_settings_reject_empty_server_id(trust_domain: TrustDomain) -> None:
    with pytest.raises(CAError, match="server_id"):
        CASettings(trust_domain, server_id=" ")


def test_start_creates_and_publishes(started_ca: CertificateAuthority, now: datetime) -> None:
    bundle = started_ca.bundle()
    ca_entry = _entries(started_ca, AuthorityKind.X509_CA, AuthorityStatus.ACTIVE)
    jwt_entry = _entries(started_ca, AuthorityKind.JWT_KEY, AuthorityStatus.ACTIVE)

    assert len(ca_entry) == 1
    assert len(jwt_entry) == 1
    assert bundle.x509_authorities == (started_ca.x509_ca.certificate,)
    assert len(bundle.jwt_authorities) == 1
    assert bundle.sequence_number == 1
    assert bundle.refresh_hint == timedelta(minutes=5)
    assert started_ca.x509_ca.not_after == now + timedelta(hours=24)


def test_ca_ttl_default_24_hours(make_ca: MakeCA, now: datetime) -> None:
    ca = make_ca()
    ca.start(now)

    assert ca.x509_ca.not_after - now == timedelta(hours=24)


def test_signing_before_start_fails(
    make_ca: MakeCA, workload_key: ec.EllipticCurvePrivateKey, now: datetime
) -> None:
    ca = make_ca()

    with pytest.raises(CAError, match="call start"):
        ca.sign_x509_svid(WORKLOAD, workload_key.public_key(), now=now)
    with pytest.raises(CAError, match="call start"):
        ca.sign_jwt_svid(WORKLOAD, "db", now=now)


def test_sign_x509_svid_verifies_against_bundle(
    started_ca: CertificateAuthority, workload_key: ec.EllipticCurvePrivateKey, now: datetime
) -> None:
    chain = started_ca.sign_x509_svid(
        WORKLOAD, workload_key.public_key(), dns_names=["web.example.org"], now=now
    )

    assert len(chain) == 1
    assert validate_x509_svid(chain, started_ca.bundle(), now) == WORKLOAD
    assert chain[0].not_valid_after_utc == now + timedelta(hours=1)


def test_sign_x509_svid_ttl_override_and_cap(
    started_ca: CertificateAuthority, workload_key: ec.EllipticCurvePrivateKey, now: datetime
) -> None:
    short = started_ca.sign_x509_svid(
        WORKLOAD, workload_key.public_key(), timedelta(minutes=10), now=now
    )
    long = started_ca.sign_x509_svid(
        WORKLOAD, workload_key.public_key(), timedelta(days=7), now=now
    )

    assert short[0].not_valid_after_utc == now + timedelta(minutes=10)
    assert long[0].not_valid_after_utc == started_ca.x509_ca.not_after


def test_sign_x509_svid_rejects_zero_ttl(
    started_ca: CertificateAuthority, workload_key: ec.EllipticCurvePrivateKey, now: datetime
) -> None:
    with pytest.raises(X509SvidError, match="not positive"):
        started_ca.sign_x509_svid(WORKLOAD, workload_key.public_key(), timedelta(0), now=now)


def test_sign_from_csr(
    started_ca: CertificateAuthority, workload_key: ec.EllipticCurvePrivateKey, now: datetime
) -> None:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(workload_key, hashes.SHA256())
    )

    chain = started_ca.sign_x509_svid_from_csr(WORKLOAD, csr, now=now)

    assert chain[0].public_key() == workload_key.public_key()
    assert validate_x509_svid(chain, started_ca.bundle(), now) == WORKLOAD


def test_sign_rejects_foreign_trust_domain(
    started_ca: CertificateAuthority, workload_key: ec.EllipticCurvePrivateKey, now: datetime
) -> None:
    foreign = SpiffeId.parse("spiffe://other.org/workload")

    with pytest.raises(X509SvidError, match=r"signs for trust domain example\.org only"):
        started_ca.sign_x509_svid(foreign, workload_key.public_key(), now=now)
    with pytest.raises(JwtSvidError, match=r"signs for trust domain example\.org only"):
        started_ca.sign_jwt_svid(foreign, "db", now=now)


def test_sign_jwt_svid_validates_with_bundle(make_ca: MakeCA, now: datetime) -> None:
    ca = make_ca(jwt_issuer="https://oidc.example.org")
    ca.start(now)

    token = ca.sign_jwt_svid(WORKLOAD, ["db"], now=now)
    svid = validate_jwt_svid(token, "db", ca.bundle(), now)

    assert svid.spiffe_id == WORKLOAD
    assert svid.expires_at == now + timedelta(minutes=5)
    assert svid.claims["iss"] == "https://oidc.example.org"


@pytest.mark.parametrize(
    ("ca_key_type", "jwt_key_type"), [("rsa-2048", "ec-p384"), ("ec-p384", "rsa-2048")]
)
def test_key_types_configurable(
    make_ca: MakeCA,
    workload_key: ec.EllipticCurvePrivateKey,
    now: datetime,
    ca_key_type: str,
    jwt_key_type: str,
) -> None:
    ca = make_ca(ca_key_type=KeyType(ca_key_type), jwt_key_type=KeyType(jwt_key_type))
    ca.start(now)

    chain = ca.sign_x509_svid(WORKLOAD, workload_key.public_key(), now=now)
    token = ca.sign_jwt_svid(WORKLOAD, "db", now=now)

    assert validate_x509_svid(chain, ca.bundle(), now) == WORKLOAD
    assert validate_jwt_svid(token, "db", ca.bundle(), now).algorithm == (
        "RS256" if jwt_key_type == "rsa-2048" else "ES384"
    )
    assert KeyType.of(ca.x509_ca.private_key).value == ca_key_type


def test_federation_token_rs256_in_federation_jwks(make_ca: MakeCA, now: datetime) -> None:
    ca = make_ca(federation_key_type=KeyType.RSA_2048)
    ca.start(now)

    token = ca.sign_federation_token(
        {"iss": "https://oidc.example.org", "sub": str(WORKLOAD), "aud": "sts.amazonaws.com"},
        now=now,
    )
    jwks = ca.federation_jwks(now)
    header = jwt.get_unverified_header(token)
    key = jwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    claims = jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience="sts.amazonaws.com",
        options={"verify_exp": False, "verify_iat": False},
    )

    assert header["alg"] == "RS256"
    assert jwks["keys"][0]["use"] == "sig"
    assert jwks["keys"][0]["alg"] == "RS256"
    assert claims["exp"] - claims["iat"] == 300
    assert claims["iat"] == int(now.timestamp())


def test_federation_keys_never_in_spiffe_bundle(make_ca: MakeCA, now: datetime) -> None:
    ca = make_ca(federation_key_type=KeyType.RSA_2048)
    ca.start(now)

    published = ca.bundle().to_jwks_json()
    kid = ca.federation_jwks(now)["keys"][0]["kid"]

    assert kid not in published
    assert all(key["kty"] == "EC" for key in ca.bundle().to_jwks()["keys"])


def test_federation_token_rejects_time_claims(make_ca: MakeCA, now: datetime) -> None:
    ca = make_ca(federation_key_type=KeyType.RSA_2048)
    ca.start(now)

    with pytest.raises(CAError, match=r"\['exp'\]"):
        ca.sign_federation_token({"sub": "x", "exp": 1}, now=now)
    with pytest.raises(CAError, match="must be positive"):
        ca.sign_federation_token({"sub": "x"}, timedelta(0), now=now)


def test_federation_keys_can_be_turned_off(started_ca: CertificateAuthority, now: datetime) -> None:
    with pytest.raises(CAError, match="turned off"):
        started_ca.sign_federation_token({"sub": "x"}, now=now)
    assert started_ca.federation_jwks(now) == {"keys": []}


def test_downstream_ca_chain(started_ca: CertificateAuthority, now: datetime) -> None:
    key = ec.generate_private_key(ec.SECP256R1())

    chain = started_ca.sign_downstream_x509_ca(key.public_key(), now=now)

    assert chain[1] == started_ca.x509_ca.certificate
    assert chain[0].extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    chain[0].verify_directly_issued_by(chain[1])


def test_restart_keeps_ca(
    tmp_path: Path, make_ca: MakeCA, workload_key: ec.EllipticCurvePrivateKey, now: datetime
) -> None:
    first = make_ca(DiskKeyManager(tmp_path / "keys"))
    first.start(now)
    token = first.sign_jwt_svid(WORKLOAD, "db", now=now)

    later = now + timedelta(hours=1)
    second = make_ca(DiskKeyManager(tmp_path / "keys"))
    second.start(later)

    assert second.x509_ca.certificate == first.x509_ca.certificate
    assert second.authorities() == first.authorities()
    assert validate_jwt_svid(token, "db", second.bundle(), now).spiffe_id == WORKLOAD
    chain = second.sign_x509_svid(WORKLOAD, workload_key.public_key(), now=later)
    assert validate_x509_svid(chain, first.bundle(), later) == WORKLOAD
    assert second.bundle().sequence_number == 1


def test_restart_without_keys_replaces_ca(make_ca: MakeCA, now: datetime) -> None:
    first = make_ca(MemoryKeyManager())
    first.start(now)

    second = make_ca(MemoryKeyManager())
    second.start(now + timedelta(minutes=1))

    assert second.x509_ca.certificate != first.x509_ca.certificate
    # The old CA still verifies what it signed until it expires.
    assert first.x509_ca.certificate in second.bundle().x509_authorities
    assert second.x509_ca.certificate in second.bundle().x509_authorities
    old = _entries(second, AuthorityKind.X509_CA, AuthorityStatus.OLD)
    assert len(old) == 1


def test_restart_in_other_trust_domain_replaces_ca(
    tmp_path: Path, make_ca: MakeCA, now: datetime
) -> None:
    make_ca(DiskKeyManager(tmp_path)).start(now)

    other = make_ca(DiskKeyManager(tmp_path), trust_domain=TrustDomain("other.org"))
    other.start(now)

    assert other.x509_ca.trust_domain == TrustDomain("other.org")


def test_corrupt_journal_stops_start(
    make_ca: MakeCA, journal_store: MemoryJournalStore, now: datetime
) -> None:
    journal_store.save_journal("server", b"{not json")

    with pytest.raises(
        CAError, match=r"cannot read the CA journal of server .server.: .*delete it"
    ):
        make_ca().start(now)


def test_start_deletes_orphan_keys(tmp_path: Path, make_ca: MakeCA, now: datetime) -> None:
    manager = DiskKeyManager(tmp_path)
    manager.generate_key("server.x509-ca.20290101T000000Z.deadbeef", KeyType.EC_P256)
    manager.generate_key("unrelated-key", KeyType.EC_P256)

    ca = make_ca(manager)
    ca.start(now)

    live = {e.key_id for e in ca.authorities()}
    assert set(manager.list_keys()) == live | {"unrelated-key"}


def test_key_ids_carry_server_id(make_ca: MakeCA, now: datetime) -> None:
    ca = make_ca(server_id="eu-west/1")
    ca.start(now)

    assert all(e.key_id.startswith("eu-west-1.") for e in ca.authorities())


def test_concurrent_signing_during_rotation(
    make_ca: MakeCA, workload_key: ec.EllipticCurvePrivateKey, now: datetime
) -> None:
    ca = make_ca(ca_ttl=timedelta(minutes=2))
    ca.start(now)
    errors: list[BaseException] = []
    moments = [now + timedelta(seconds=s) for s in range(0, 110, 2)]

    def sign() -> None:
        try:
            for moment in moments:
                chain = ca.sign_x509_svid(WORKLOAD, workload_key.public_key(), now=moment)
                ca.sign_jwt_svid(WORKLOAD, "db", now=moment)
                assert chain[0].not_valid_after_utc > moment
        except BaseException as error:  # Collected for the main thread's assertion.
            errors.append(error)

    threads = [threading.Thread(target=sign) for _ in range(4)]
    for thread in threads:
        thread.start()
    for moment in moments:
        ca.rotate(moment)
    for thread in threads:
        thread.join()

    assert errors == []


def test_signing_is_independent_of_stores(
    now: datetime, trust_domain: TrustDomain, workload_key: ec.EllipticCurvePrivateKey
) -> None:
    # Signing reads only the in-memory snapshot, so a datastore outage does not stop it.
    class FailingBundleStore(MemoryBundleStore):
        def get_bundle(self, trust_domain: str) -> bytes | None:
            raise ConnectionError("datastore unreachable")

    ca = CertificateAuthority(
        CASettings(trust_domain, federation_key_type=None),
        MemoryKeyManager(),
        MemoryJournalStore(),
        FailingBundleStore(),
    )
    ca.start(now)

    assert ca.sign_x509_svid(WORKLOAD, workload_key.public_key(), now=now)


def test_failed_creation_leaves_no_keys(tmp_path: Path, make_ca: MakeCA, now: datetime) -> None:
    manager = MemoryKeyManager()
    # The upstream files do not exist, so creating the X.509 CA fails after its key exists.
    ca = make_ca(
        manager, upstream=DiskUpstreamAuthority(tmp_path / "absent.crt", tmp_path / "absent.key")
    )

    with pytest.raises(CAError, match="cannot read cert_file_path"):
        ca.start(now)

    assert manager.list_keys() == []
