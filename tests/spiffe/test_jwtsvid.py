"""JWT-SVID minting and validation: the JWT-SVID standard's header and claim rules."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from warden.spiffe import (
    Bundle,
    BundleSet,
    JwtAuthority,
    JwtSigner,
    JwtSvidError,
    SpiffeId,
    TrustDomain,
    mint_jwt_svid,
    validate_jwt_svid,
)
from warden.spiffe.jwtsvid import MAX_TOKEN_LENGTH

WORKLOAD = SpiffeId.parse("spiffe://example.org/workload")


@pytest.fixture(scope="module")
def jwt_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


@pytest.fixture
def signer(jwt_key: ec.EllipticCurvePrivateKey) -> JwtSigner:
    return JwtSigner(jwt_key, "key-1")


@pytest.fixture
def jwt_bundle(trust_domain: TrustDomain, signer: JwtSigner) -> Bundle:
    return Bundle(trust_domain, jwt_authorities=(JwtAuthority("key-1", signer.public_key()),))


def _segments(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    decode = lambda part: json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))  # noqa: E731
    return decode(header), decode(payload)


def _encode(
    claims: dict[str, Any], key: Any, headers: dict[str, Any], algorithm: str = "ES256"
) -> str:
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def _claims(now: datetime, **changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "sub": str(WORKLOAD),
        "aud": ["db"],
        "exp": int((now + timedelta(minutes=5)).timestamp()),
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


# Minting.


def test_mint_header_only_alg_kid_typ(signer: JwtSigner, now: datetime) -> None:
    header, _ = _segments(mint_jwt_svid(signer, WORKLOAD, "db", now))

    assert header == {"alg": "ES256", "kid": "key-1", "typ": "JWT"}


def test_mint_claims(signer: JwtSigner, now: datetime) -> None:
    _, claims = _segments(mint_jwt_svid(signer, WORKLOAD, ["db", "cache"], now))

    assert claims == {
        "sub": "spiffe://example.org/workload",
        "aud": ["db", "cache"],
        "exp": int((now + timedelta(minutes=5)).timestamp()),
        "iat": int(now.timestamp()),
    }


def test_mint_default_ttl_five_minutes(
    signer: JwtSigner, jwt_bundle: Bundle, now: datetime
) -> None:
    svid = validate_jwt_svid(mint_jwt_svid(signer, WORKLOAD, "db", now), "db", jwt_bundle, now)

    assert svid.expires_at == now + timedelta(minutes=5)
    assert svid.issued_at == now


def test_mint_caps_exp_at_key_expiry(signer: JwtSigner, now: datetime) -> None:
    token = mint_jwt_svid(
        signer, WORKLOAD, "db", now, timedelta(hours=1), not_after=now + timedelta(minutes=2)
    )

    assert _segments(token)[1]["exp"] == int((now + timedelta(minutes=2)).timestamp())


def test_mint_rejects_expired_key(signer: JwtSigner, now: datetime) -> None:
    with pytest.raises(JwtSvidError, match="signing key expired"):
        mint_jwt_svid(signer, WORKLOAD, "db", now, not_after=now)


def test_mint_adds_issuer_when_given(signer: JwtSigner, now: datetime) -> None:
    token = mint_jwt_svid(signer, WORKLOAD, "db", now, issuer="https://oidc.example.org")

    assert _segments(token)[1]["iss"] == "https://oidc.example.org"


def test_mint_rejects_reserved_extra_claims(signer: JwtSigner, now: datetime) -> None:
    with pytest.raises(JwtSvidError, match="'sub'"):
        mint_jwt_svid(signer, WORKLOAD, "db", now, extra_claims={"sub": "spiffe://example.org/x"})


def test_mint_rejects_empty_audience(signer: JwtSigner, now: datetime) -> None:
    with pytest.raises(JwtSvidError, match="audience"):
        mint_jwt_svid(signer, WORKLOAD, [], now)
    with pytest.raises(JwtSvidError, match="audience"):
        mint_jwt_svid(signer, WORKLOAD, "", now)


def test_signer_rejects_disallowed_algorithm(jwt_key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(JwtSvidError, match="not allowed"):
        JwtSigner(jwt_key, "k", algorithm="HS256")
    with pytest.raises(JwtSvidError, match="does not fit"):
        JwtSigner(jwt_key, "k", algorithm="RS256")


# Validation.


@pytest.mark.parametrize(
    ("curve", "algorithm"),
    [(ec.SECP256R1(), "ES256"), (ec.SECP384R1(), "ES384"), (ec.SECP521R1(), "ES512")],
)
def test_validate_accepts_ec_algorithms(
    trust_domain: TrustDomain, now: datetime, curve: ec.EllipticCurve, algorithm: str
) -> None:
    signer = JwtSigner(ec.generate_private_key(curve), "k")
    bundle = Bundle(trust_domain, jwt_authorities=(JwtAuthority("k", signer.public_key()),))

    svid = validate_jwt_svid(mint_jwt_svid(signer, WORKLOAD, "db", now), "db", bundle, now)

    assert svid.algorithm == algorithm
    assert svid.spiffe_id == WORKLOAD


@pytest.mark.parametrize("algorithm", ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"])
def test_validate_accepts_rsa_algorithms(
    rsa_key: rsa.RSAPrivateKey, trust_domain: TrustDomain, now: datetime, algorithm: str
) -> None:
    signer = JwtSigner(rsa_key, "r", algorithm=algorithm)
    bundle = Bundle(trust_domain, jwt_authorities=(JwtAuthority("r", signer.public_key()),))

    svid = validate_jwt_svid(mint_jwt_svid(signer, WORKLOAD, "db", now), "db", bundle, now)

    assert svid.algorithm == algorithm


def test_validate_rejects_alg_none(jwt_bundle: Bundle, now: datetime) -> None:
    token = jwt.encode(_claims(now), None, algorithm="none", headers={"kid": "key-1"})

    with pytest.raises(JwtSvidError, match="'none' is not allowed"):
        validate_jwt_svid(token, "db", jwt_bundle, now)


def test_validate_rejects_hs256_with_public_key(
    jwt_bundle: Bundle, signer: JwtSigner, now: datetime
) -> None:
    # The classic confusion attack: HMAC keyed with the public key the validator holds.
    secret = signer.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "kid": "key-1"}).encode()).rstrip(
        b"="
    )
    payload = base64.urlsafe_b64encode(json.dumps(_claims(now)).encode()).rstrip(b"=")
    signature = hmac.new(secret, header + b"." + payload, hashlib.sha256).digest()
    token = b".".join([header, payload, base64.urlsafe_b64encode(signature).rstrip(b"=")]).decode()

    with pytest.raises(JwtSvidError, match="'HS256' is not allowed"):
        validate_jwt_svid(token, "db", jwt_bundle, now)


def test_validate_rejects_other_typ(
    jwt_key: ec.EllipticCurvePrivateKey, jwt_bundle: Bundle, now: datetime
) -> None:
    token = _encode(_claims(now), jwt_key, {"kid": "key-1", "typ": "at+jwt"})

    with pytest.raises(JwtSvidError, match="typ 'at\\+jwt'"):
        validate_jwt_svid(token, "db", jwt_bundle, now)


@pytest.mark.parametrize("token_type", [None, "JWT", "JOSE"])
def test_validate_accepts_allowed_typ(
    jwt_key: ec.EllipticCurvePrivateKey, jwt_bundle: Bundle, now: datetime, token_type: str | None
) -> None:
    headers: dict[str, Any] = {"kid": "key-1", "typ": token_type}
    token = _encode(_claims(now), jwt_key, headers)

    assert validate_jwt_svid(token, "db", jwt_bundle, now).spiffe_id == WORKLOAD


def test_validate_rejects_extra_header(
    jwt_key: ec.EllipticCurvePrivateKey, jwt_bundle: Bundle, now: datetime
) -> None:
    token = _encode(_claims(now), jwt_key, {"kid": "key-1", "jku": "https://attacker.example/keys"})

    with pytest.raises(JwtSvidError, match="'jku'"):
        validate_jwt_svid(token, "db", jwt_bundle, now)


def test_validate_rejects_missing_kid(
    jwt_key: ec.EllipticCurvePrivateKey, jwt_bundle: Bundle, now: datetime
) -> None:
    with pytest.raises(JwtSvidError, match="'kid' header is missing"):
        validate_jwt_svid(_encode(_claims(now), jwt_key, {}), "db", jwt_bundle, now)


def test_validate_rejects_unknown_kid(
    jwt_key: ec.EllipticCurvePrivateKey, jwt_bundle: Bundle, now: datetime
) -> None:
    token = _encode(_claims(now), jwt_key, {"kid": "key-2"})

    with pytest.raises(JwtSvidError, match="'key-2' is not in the bundle"):
        validate_jwt_svid(token, "db", jwt_bundle, now)


@pytest.mark.parametrize("claim", ["aud", "exp", "sub"])
def test_validate_rejects_missing_claim(
    jwt_key: ec.EllipticCurvePrivateKey, jwt_bundle: Bundle, now: datetime, claim: str
) -> None:
    token = _encode(_claims(now, **{claim: None}), jwt_key, {"kid": "key-1"})

    with pytest.raises(JwtSvidError, match=f"'{claim}' claim is missing"):
        validate_jwt_svid(token, "db", jwt_bundle, now)


def test_validate_rejects_empty_aud(
    jwt_key: ec.EllipticCurvePrivateKey, jwt_bundle: Bundle, now: datetime
) -> None:
    token = _encode(_claims(now, aud=[]), jwt_key, {"kid": "key-1"})

    with pytest.raises(JwtSvidError, match="'aud' claim is missing"):
        validate_jwt_svid(token, "db", jwt_bundle, now)


def test_validate_rejects_wrong_audience(
    signer: JwtSigner, jwt_bundle: Bundle, now: datetime
) -> None:
    token = mint_jwt_svid(signer, WORKLOAD, ["db", "cache"], now)

    with pytest.raises(JwtSvidError, match="audience 'web' is not in"):
        validate_jwt_svid(token, "web", jwt_bundle, now)


def test_validate_accepts_audience_in_list(
    signer: JwtSigner, jwt_bundle: Bundle, now: datetime
) -> None:
    svid = validate_jwt_svid(
        mint_jwt_svid(signer, WORKLOAD, ["db", "cache"], now), "cache", jwt_bundle, now
    )

    assert svid.audience == ("db", "cache")


def test_validate_requires_expected_audience(
    signer: JwtSigner, jwt_bundle: Bundle, now: datetime
) -> None:
    with pytest.raises(JwtSvidError, match="expected audience"):
        validate_jwt_svid(mint_jwt_svid(signer, WORKLOAD, "db", now), "", jwt_bundle, now)


def test_validate_rejects_expired(signer: JwtSigner, jwt_bundle: Bundle, now: datetime) -> None:
    token = mint_jwt_svid(signer, WORKLOAD, "db", now)
    later = now + timedelta(minutes=5)

    with pytest.raises(JwtSvidError, match="expired"):
        validate_jwt_svid(token, "db", jwt_bundle, later)
    assert validate_jwt_svid(token, "db", jwt_bundle, later, leeway=timedelta(seconds=30))


def test_validate_rejects_future_nbf(
    jwt_key: ec.EllipticCurvePrivateKey, jwt_bundle: Bundle, now: datetime
) -> None:
    token = _encode(
        _claims(now, nbf=int((now + timedelta(minutes=1)).timestamp())), jwt_key, {"kid": "key-1"}
    )

    with pytest.raises(JwtSvidError, match="not valid before"):
        validate_jwt_svid(token, "db", jwt_bundle, now)


def test_validate_rejects_bad_signature(
    signer: JwtSigner, jwt_bundle: Bundle, now: datetime
) -> None:
    token = mint_jwt_svid(signer, WORKLOAD, "db", now)
    header, _, signature = token.split(".")
    other = mint_jwt_svid(signer, SpiffeId.parse("spiffe://example.org/admin"), "db", now)
    forged = ".".join([header, other.split(".")[1], signature])

    with pytest.raises(JwtSvidError, match="signature does not verify"):
        validate_jwt_svid(forged, "db", jwt_bundle, now)


def test_validate_uses_bundle_of_sub_trust_domain(signer: JwtSigner, now: datetime) -> None:
    # The key is trusted for other.org only, so a token claiming example.org is rejected
    # even though the kid matches: bundles are never merged.
    other = Bundle(
        TrustDomain("other.org"), jwt_authorities=(JwtAuthority("key-1", signer.public_key()),)
    )
    mine = Bundle(
        TrustDomain("example.org"),
        jwt_authorities=(
            JwtAuthority("key-1", ec.generate_private_key(ec.SECP256R1()).public_key()),
        ),
    )
    token = mint_jwt_svid(signer, WORKLOAD, "db", now)

    with pytest.raises(JwtSvidError, match="signature does not verify"):
        validate_jwt_svid(token, "db", BundleSet([other, mine]), now)
    with pytest.raises(JwtSvidError, match="no bundle for trust domain"):
        validate_jwt_svid(token, "db", other, now)


def test_validate_rejects_alg_not_matching_key(
    jwt_key: ec.EllipticCurvePrivateKey, jwt_bundle: Bundle, now: datetime
) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    token = _encode(_claims(now), p384, {"kid": "key-1"}, algorithm="ES384")

    with pytest.raises(JwtSvidError, match="does not match key"):
        validate_jwt_svid(token, "db", jwt_bundle, now)


@pytest.mark.parametrize(
    "subject", ["spiffe://Example.org/x", "https://example.org/x", "spiffe://example.org/a//b"]
)
def test_validate_rejects_sub_not_spiffe_id(
    jwt_key: ec.EllipticCurvePrivateKey, jwt_bundle: Bundle, now: datetime, subject: str
) -> None:
    token = _encode(_claims(now, sub=subject), jwt_key, {"kid": "key-1"})

    with pytest.raises(JwtSvidError, match="not a SPIFFE ID"):
        validate_jwt_svid(token, "db", jwt_bundle, now)


@pytest.mark.parametrize(
    "token", ["", "abc", "a.b", "a.b.c.d.e", "eyJhbGciOiJFUzI1NiJ9.e30.", "{}"]
)
def test_validate_rejects_malformed_tokens(jwt_bundle: Bundle, now: datetime, token: str) -> None:
    with pytest.raises(JwtSvidError):
        validate_jwt_svid(token, "db", jwt_bundle, now)


def test_validate_rejects_oversized_token(jwt_bundle: Bundle, now: datetime) -> None:
    with pytest.raises(JwtSvidError, match="maximum"):
        validate_jwt_svid("a." + "b" * MAX_TOKEN_LENGTH + ".c", "db", jwt_bundle, now)
