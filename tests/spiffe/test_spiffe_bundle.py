"""SPIFFE bundles: the JWK Set format, PEM, pruning and bundle sets."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from warden.spiffe import (
    X509CA,
    Bundle,
    BundleError,
    BundleSet,
    JwtAuthority,
    TrustDomain,
    build_self_signed_ca,
)
from warden.spiffe.bundle import EXPIRY_MEMBER


@pytest.fixture(scope="module")
def jwt_public_key() -> ec.EllipticCurvePublicKey:
    return ec.generate_private_key(ec.SECP256R1()).public_key()


@pytest.fixture
def full_bundle(
    ca: X509CA, trust_domain: TrustDomain, jwt_public_key: ec.EllipticCurvePublicKey, now: datetime
) -> Bundle:
    return Bundle(
        trust_domain,
        (ca.certificate,),
        (JwtAuthority("jwt-1", jwt_public_key, now + timedelta(hours=1)),),
        sequence_number=7,
        refresh_hint=timedelta(minutes=5),
    )


def _der_b64(ca: X509CA) -> str:
    return base64.b64encode(ca.certificate.public_bytes(serialization.Encoding.DER)).decode()


def test_jwks_x509_entry_format(full_bundle: Bundle, ca: X509CA) -> None:
    entry = full_bundle.to_jwks()["keys"][0]

    assert entry["use"] == "x509-svid"
    assert entry["x5c"] == [_der_b64(ca)]
    assert "kid" not in entry
    assert entry["kty"] == "EC"
    assert entry["crv"] == "P-256"


def test_jwks_jwt_entry_format(full_bundle: Bundle) -> None:
    entry = full_bundle.to_jwks()["keys"][1]

    assert entry["use"] == "jwt-svid"
    assert entry["kid"] == "jwt-1"
    assert entry["kty"] == "EC"
    assert set(entry) == {"kty", "crv", "x", "y", "use", "kid"}


def test_jwks_sequence_and_refresh_hint(full_bundle: Bundle) -> None:
    document = json.loads(full_bundle.to_jwks_json())

    assert document["spiffe_sequence"] == 7
    assert document["spiffe_refresh_hint"] == 300


def test_jwks_round_trip(full_bundle: Bundle, trust_domain: TrustDomain) -> None:
    stored = Bundle.from_jwks_json(trust_domain, full_bundle.to_jwks_json(include_expiry=True))

    assert stored == full_bundle


def test_published_jwks_omit_expiry(full_bundle: Bundle, trust_domain: TrustDomain) -> None:
    published = full_bundle.to_jwks_json()
    parsed = Bundle.from_jwks_json(trust_domain, published)

    assert EXPIRY_MEMBER not in published
    assert parsed.jwt_authorities[0].expires_at is None
    assert parsed.jwt_authorities[0].public_key == full_bundle.jwt_authorities[0].public_key


def test_jwks_rsa_keys(trust_domain: TrustDomain, now: datetime) -> None:
    key = rsa.generate_private_key(65537, 2048)
    ca = build_self_signed_ca(key, trust_domain, now)
    bundle = Bundle(trust_domain, (ca.certificate,), (JwtAuthority("r", key.public_key()),))

    parsed = Bundle.from_jwks_json(trust_domain, bundle.to_jwks_json())

    assert parsed == bundle
    assert bundle.to_jwks()["keys"][1]["kty"] == "RSA"


def test_from_jwks_requires_keys(trust_domain: TrustDomain) -> None:
    with pytest.raises(BundleError, match="'keys' member is missing"):
        Bundle.from_jwks_json(trust_domain, '{"spiffe_sequence": 1}')


def test_from_jwks_accepts_empty_keys(trust_domain: TrustDomain) -> None:
    bundle = Bundle.from_jwks_json(trust_domain, '{"keys": []}')

    assert bundle.is_empty


def _document(full_bundle: Bundle) -> dict[str, Any]:
    return full_bundle.to_jwks()


@pytest.mark.parametrize("use", [None, "sig", "X509-SVID", "wit-svid"])
def test_from_jwks_ignores_unknown_use(
    full_bundle: Bundle, trust_domain: TrustDomain, use: str | None
) -> None:
    document = _document(full_bundle)
    for entry in document["keys"]:
        entry.pop("use")
        if use is not None:
            entry["use"] = use

    assert Bundle.from_jwks(trust_domain, document).is_empty


def test_from_jwks_ignores_unknown_kty(full_bundle: Bundle, trust_domain: TrustDomain) -> None:
    document = _document(full_bundle)
    document["keys"].append({"kty": "oct", "use": "jwt-svid", "kid": "h", "k": "c2VjcmV0"})
    document["keys"].append({"use": "jwt-svid", "kid": "none"})

    bundle = Bundle.from_jwks(trust_domain, document)

    assert [a.key_id for a in bundle.jwt_authorities] == ["jwt-1"]


@pytest.mark.parametrize("x5c", [None, []])
def test_from_jwks_ignores_x509_entry_without_x5c(
    full_bundle: Bundle, trust_domain: TrustDomain, x5c: list[str] | None
) -> None:
    document = _document(full_bundle)
    if x5c is None:
        del document["keys"][0]["x5c"]
    else:
        document["keys"][0]["x5c"] = x5c

    assert Bundle.from_jwks(trust_domain, document).x509_authorities == ()


def test_from_jwks_uses_only_first_x5c(
    full_bundle: Bundle, trust_domain: TrustDomain, ca: X509CA, now: datetime
) -> None:
    other = build_self_signed_ca(ec.generate_private_key(ec.SECP256R1()), trust_domain, now)
    document = _document(full_bundle)
    document["keys"][0]["x5c"].append(_der_b64(other))

    assert Bundle.from_jwks(trust_domain, document).x509_authorities == (ca.certificate,)


def test_from_jwks_rejects_jwt_key_without_kid(
    full_bundle: Bundle, trust_domain: TrustDomain
) -> None:
    document = _document(full_bundle)
    del document["keys"][1]["kid"]

    with pytest.raises(BundleError, match="key 1: a jwt-svid key must have a non-empty kid"):
        Bundle.from_jwks(trust_domain, document)


def test_from_jwks_rejects_duplicate_member_names(trust_domain: TrustDomain) -> None:
    with pytest.raises(BundleError, match="duplicate member name 'keys'"):
        Bundle.from_jwks_json(trust_domain, '{"keys": [], "keys": []}')


def test_from_jwks_rejects_key_not_matching_certificate(
    full_bundle: Bundle, trust_domain: TrustDomain
) -> None:
    document = _document(full_bundle)
    for name in ("x", "y"):
        document["keys"][0][name] = document["keys"][1][name]

    with pytest.raises(BundleError, match="does not match the public key of its x5c"):
        Bundle.from_jwks(trust_domain, document)


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("spiffe_sequence", -1),
        ("spiffe_sequence", "3"),
        ("spiffe_refresh_hint", 1.5),
        ("spiffe_sequence", True),
    ],
)
def test_from_jwks_rejects_bad_metadata(
    full_bundle: Bundle, trust_domain: TrustDomain, member: str, value: object
) -> None:
    document = _document(full_bundle)
    document[member] = value

    with pytest.raises(BundleError, match=member):
        Bundle.from_jwks(trust_domain, document)


@pytest.mark.parametrize("data", ["", "[]", "{", '{"keys": {}}', '{"keys": [1]}', b"\xff"])
def test_from_jwks_rejects_malformed_json(trust_domain: TrustDomain, data: str | bytes) -> None:
    with pytest.raises(BundleError):
        Bundle.from_jwks_json(trust_domain, data)


def test_from_jwks_rejects_bad_certificate(full_bundle: Bundle, trust_domain: TrustDomain) -> None:
    document = _document(full_bundle)
    document["keys"][0]["x5c"] = [base64.b64encode(b"not a certificate").decode()]

    with pytest.raises(BundleError, match="not a base64 DER certificate"):
        Bundle.from_jwks(trust_domain, document)


def test_pem_round_trip(full_bundle: Bundle, trust_domain: TrustDomain, ca: X509CA) -> None:
    pem = full_bundle.to_pem()

    assert pem.startswith("-----BEGIN CERTIFICATE-----")
    assert Bundle.from_pem(trust_domain, pem).x509_authorities == (ca.certificate,)


def test_from_pem_rejects_garbage(trust_domain: TrustDomain) -> None:
    with pytest.raises(BundleError, match="no PEM certificate"):
        Bundle.from_pem(trust_domain, "hello")


def test_der_concatenation(full_bundle: Bundle, ca: X509CA) -> None:
    assert full_bundle.x509_authorities_der() == ca.certificate.public_bytes(
        serialization.Encoding.DER
    )


def test_without_expired_drops_only_expired(
    trust_domain: TrustDomain, jwt_public_key: ec.EllipticCurvePublicKey, now: datetime
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    old = build_self_signed_ca(key, trust_domain, now - timedelta(hours=2), timedelta(hours=1))
    current = build_self_signed_ca(key, trust_domain, now - timedelta(hours=1), timedelta(hours=2))
    bundle = Bundle(
        trust_domain,
        (old.certificate, current.certificate),
        (
            JwtAuthority("old", jwt_public_key, now - timedelta(seconds=1)),
            JwtAuthority("current", jwt_public_key, now + timedelta(hours=1)),
            JwtAuthority("peer", jwt_public_key),
        ),
    )

    pruned = bundle.without_expired(now)

    assert pruned.x509_authorities == (current.certificate,)
    assert [a.key_id for a in pruned.jwt_authorities] == ["current", "peer"]


def test_duplicate_authorities_collapse(
    ca: X509CA, trust_domain: TrustDomain, jwt_public_key: ec.EllipticCurvePublicKey
) -> None:
    bundle = Bundle(trust_domain, (ca.certificate, ca.certificate)).with_jwt_authorities(
        JwtAuthority("k", jwt_public_key), JwtAuthority("k", jwt_public_key)
    )

    assert bundle.x509_authorities == (ca.certificate,)
    assert len(bundle.jwt_authorities) == 1


def test_same_kid_different_keys_rejected(
    trust_domain: TrustDomain, jwt_public_key: ec.EllipticCurvePublicKey
) -> None:
    other = ec.generate_private_key(ec.SECP256R1()).public_key()

    with pytest.raises(BundleError, match="share key id 'k'"):
        Bundle(
            trust_domain,
            jwt_authorities=(JwtAuthority("k", jwt_public_key), JwtAuthority("k", other)),
        )


def test_jwt_authority_requires_kid(jwt_public_key: ec.EllipticCurvePublicKey) -> None:
    with pytest.raises(BundleError, match="key id"):
        JwtAuthority("", jwt_public_key)


def test_same_authorities_ignores_order_and_metadata(
    full_bundle: Bundle, ca: X509CA, trust_domain: TrustDomain
) -> None:
    reordered = Bundle(
        trust_domain, (ca.certificate,), full_bundle.jwt_authorities, sequence_number=9
    )

    assert reordered.same_authorities(full_bundle)
    assert not Bundle(trust_domain).same_authorities(full_bundle)


def test_bundle_set_one_per_trust_domain(full_bundle: Bundle, trust_domain: TrustDomain) -> None:
    with pytest.raises(BundleError, match=r"two bundles for trust domain example\.org"):
        BundleSet([full_bundle, Bundle(trust_domain)])


def test_bundle_set_lookup_and_replace(full_bundle: Bundle, trust_domain: TrustDomain) -> None:
    other = Bundle(TrustDomain("other.org"))
    bundles = BundleSet([full_bundle, other])

    replaced = bundles.with_bundle(Bundle(trust_domain))

    assert bundles.get_bundle_for_trust_domain(trust_domain) is full_bundle
    assert replaced.get_bundle_for_trust_domain(trust_domain) == Bundle(trust_domain)
    assert replaced.get_bundle_for_trust_domain(TrustDomain("other.org")) is other
    assert bundles.without(trust_domain).trust_domains == (TrustDomain("other.org"),)
    assert len(bundles) == 2
    assert trust_domain in bundles
    assert bundles.get_bundle_for_trust_domain(TrustDomain("missing.org")) is None


def test_bundle_is_its_own_source(full_bundle: Bundle, trust_domain: TrustDomain) -> None:
    assert full_bundle.get_bundle_for_trust_domain(trust_domain) is full_bundle
    assert full_bundle.get_bundle_for_trust_domain(TrustDomain("other.org")) is None
