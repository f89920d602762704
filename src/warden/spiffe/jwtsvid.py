"""JWT-SVIDs: mint them with a held key and validate them against bundles, with PyJWT.

Minted tokens are JWS compact serializations whose header holds only `alg`, `kid` and
`typ: JWT`, and whose claims are `sub` (the SPIFFE ID), `aud`, `exp` and `iat`, plus `iss`
when the issuer is configured. Validation follows the JWT-SVID standard: `alg` must be one of
RS256/384/512, ES256/384/512, PS256/384/512 (so `none` and HS* are rejected), `typ` absent,
`JWT` or `JOSE`, no header other than `alg`, `kid` and `typ`, and `aud`, `exp` and `sub`
present. The key is looked up by `kid` in the bundle of the `sub`'s trust domain only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import get_default_algorithms
from jwt.utils import base64url_encode

from warden.spiffe._time import require_aware, to_unix_seconds
from warden.spiffe._x509 import SigningKey
from warden.spiffe.bundle import BundleSource, PublicKey
from warden.spiffe.errors import InvalidSpiffeIdError, JwtSvidError
from warden.spiffe.id import SpiffeId

#: SPIRE's default lifetime of a JWT-SVID.
DEFAULT_JWT_SVID_TTL = timedelta(minutes=5)
#: The `alg` values the JWT-SVID standard allows (RFC 7518 sections 3.3, 3.4 and 3.5).
ALLOWED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"}
)
#: The only JOSE header parameters a JWT-SVID may carry.
ALLOWED_HEADERS = frozenset({"alg", "kid", "typ"})
ALLOWED_TYPES = frozenset({"JWT", "JOSE"})
#: Tokens longer than this are rejected before any parsing, as a bound on the work a caller
#: can cause. A JWT-SVID with an RS512 signature and a few audiences is under 2 KiB.
MAX_TOKEN_LENGTH = 64 * 1024

_CURVE_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
_ALGORITHMS = get_default_algorithms()


def algorithm_for_key(key: SigningKey | PublicKey) -> str:
    """Return the JWS `alg` Warden uses with a key: ES256/384/512 by curve, RS256 for RSA."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        algorithm = _CURVE_ALGORITHMS.get(key.curve.name)
        if algorithm is None:
            raise JwtSvidError(f"EC curve {key.curve.name} has no JWS algorithm; use P-256")
        return algorithm
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "RS256"
    raise JwtSvidError(f"key type {type(key).__name__} cannot sign JWT-SVIDs; use EC or RSA")


def _key_fits_algorithm(key: PublicKey, algorithm: str) -> bool:
    if algorithm.startswith("ES"):
        return (
            isinstance(key, ec.EllipticCurvePublicKey)
            and _CURVE_ALGORITHMS.get(key.curve.name) == algorithm
        )
    return isinstance(key, rsa.RSAPublicKey)


class JwtSigner:
    """A private key and its key id, ready to sign JWTs.

    The key object is prepared once, so each signature costs one JSON encoding and one
    signing operation. Safe to share between threads.
    """

    __slots__ = ("_algorithm", "_headers", "_key", "algorithm", "key_id")

    def __init__(self, private_key: SigningKey, key_id: str, algorithm: str | None = None) -> None:
        if not key_id:
            raise JwtSvidError("a JWT signer needs a non-empty key id")
        chosen = algorithm or algorithm_for_key(private_key)
        if chosen not in ALLOWED_ALGORITHMS:
            raise JwtSvidError(
                f"algorithm {chosen!r} is not allowed; use one of {sorted(ALLOWED_ALGORITHMS)}"
            )
        if not _key_fits_algorithm(private_key.public_key(), chosen):
            raise JwtSvidError(f"algorithm {chosen} does not fit a {type(private_key).__name__}")
        self.algorithm = chosen
        self.key_id = key_id
        self._algorithm = _ALGORITHMS[chosen]
        self._key = self._algorithm.prepare_key(private_key)
        self._headers = {"alg": chosen, "kid": key_id, "typ": "JWT"}

    def sign(self, claims: Mapping[str, Any]) -> str:
        """Sign `claims` as a compact JWS with the header `alg`, `kid` and `typ: JWT`."""
        header = _b64url(json.dumps(self._headers, separators=(",", ":")).encode())
        payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{header}.{payload}".encode("ascii")
        signature = self._algorithm.sign(signing_input, self._key)
        return f"{header}.{payload}.{_b64url(signature)}"

    def public_key(self) -> PublicKey:
        key = self._key.public_key()
        if isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            return key
        raise JwtSvidError(f"unexpected key type {type(key).__name__}")


def _b64url(data: bytes) -> str:
    return base64url_encode(data).decode("ascii")


def _audience_list(audience: str | Iterable[str]) -> list[str]:
    values = [audience] if isinstance(audience, str) else list(audience)
    if not values or any(not isinstance(v, str) or not v for v in values):
        raise JwtSvidError(
            f"invalid audience {values!r}: give at least one non-empty audience string"
        )
    return values


def mint_jwt_svid(
    signer: JwtSigner,
    spiffe_id: SpiffeId,
    audience: str | Iterable[str],
    now: datetime,
    ttl: timedelta = DEFAULT_JWT_SVID_TTL,
    not_after: datetime | None = None,
    issuer: str | None = None,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """Mint a JWT-SVID for `spiffe_id` and `audience`, valid from `now` for `ttl`.

    `exp` is capped at `not_after` (the signing key's expiry) when given. `extra_claims` may
    not override `sub`, `aud`, `exp`, `iat` or `iss`.
    """
    now = require_aware(now)
    if ttl <= timedelta(0):
        raise JwtSvidError(f"cannot mint a JWT-SVID for {spiffe_id}: TTL {ttl} is not positive")
    expires_at = now + ttl
    if not_after is not None:
        expires_at = min(expires_at, require_aware(not_after, "not_after"))
    if expires_at <= now:
        raise JwtSvidError(
            f"cannot mint a JWT-SVID for {spiffe_id}: the signing key expired at "
            f"{expires_at.isoformat()}; rotate the key"
        )
    audiences = _audience_list(audience)
    claims: dict[str, Any] = {}
    if extra_claims:
        reserved = {"sub", "aud", "exp", "iat", "iss"} & set(extra_claims)
        if reserved:
            raise JwtSvidError(
                f"cannot mint a JWT-SVID for {spiffe_id}: extra claims may not set "
                f"{sorted(reserved)}"
            )
        claims.update(extra_claims)
    claims["sub"] = str(spiffe_id)
    # Always an array, as SPIRE writes it, although RFC 7519 also allows a single string.
    claims["aud"] = audiences
    claims["exp"] = to_unix_seconds(expires_at)
    claims["iat"] = to_unix_seconds(now)
    if issuer:
        claims["iss"] = issuer
    return signer.sign(claims)


@dataclass(frozen=True)
class JwtSvid:
    """A validated JWT-SVID: who it names, for which audiences, until when."""

    spiffe_id: SpiffeId
    audience: tuple[str, ...]
    expires_at: datetime
    issued_at: datetime | None
    key_id: str
    algorithm: str
    claims: Mapping[str, Any] = field(repr=False)
    token: str = field(repr=False)


def _numeric_date(claims: Mapping[str, Any], name: str, required: bool) -> datetime | None:
    value = claims.get(name)
    if value is None:
        if required:
            raise JwtSvidError(f"invalid JWT-SVID: the {name!r} claim is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise JwtSvidError(f"invalid JWT-SVID: the {name!r} claim {value!r} is not a number")
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise JwtSvidError(
            f"invalid JWT-SVID: the {name!r} claim {value!r} is out of range"
        ) from None


def _check_header(header: Mapping[str, Any]) -> tuple[str, str]:
    algorithm = header.get("alg")
    if algorithm not in ALLOWED_ALGORITHMS:
        raise JwtSvidError(
            f"invalid JWT-SVID: algorithm {algorithm!r} is not allowed; a JWT-SVID is signed "
            "with RS256/384/512, ES256/384/512 or PS256/384/512"
        )
    token_type = header.get("typ")
    if token_type is not None and token_type not in ALLOWED_TYPES:
        raise JwtSvidError(
            f"invalid JWT-SVID: typ {token_type!r} is not allowed; it must be absent, 'JWT' "
            "or 'JOSE'"
        )
    unexpected = sorted(set(header) - ALLOWED_HEADERS)
    if unexpected:
        raise JwtSvidError(
            f"invalid JWT-SVID: header parameters {unexpected} are not allowed; only alg, kid "
            "and typ may appear"
        )
    key_id = header.get("kid")
    if not isinstance(key_id, str) or not key_id:
        raise JwtSvidError(
            "invalid JWT-SVID: the 'kid' header is missing, so no bundle key can be chosen"
        )
    return algorithm, key_id


def validate_jwt_svid(
    token: str,
    audience: str,
    bundle_source: BundleSource,
    now: datetime,
    leeway: timedelta = timedelta(0),
) -> JwtSvid:
    """Validate a JWT-SVID for `audience` at `now` and return what it asserts.

    `leeway` tolerates clock skew on `exp` and `nbf`. Raises JwtSvidError naming the rule
    broken: a disallowed algorithm or header, a missing `kid`, `sub`, `aud` or `exp`, an
    unknown trust domain or key, a bad signature, expiry, or an audience mismatch.
    """
    now = require_aware(now)
    if not isinstance(token, str) or not token:
        raise JwtSvidError("invalid JWT-SVID: the token is empty")
    if len(token) > MAX_TOKEN_LENGTH:
        raise JwtSvidError(
            f"invalid JWT-SVID: the token is {len(token)} characters long; the maximum is "
            f"{MAX_TOKEN_LENGTH}"
        )
    if not audience:
        raise JwtSvidError("cannot validate a JWT-SVID without an expected audience")
    if token.count(".") != 2:
        raise JwtSvidError(
            "invalid JWT-SVID: expected the JWS compact form header.payload.signature"
        )
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as error:
        raise JwtSvidError(f"invalid JWT-SVID: {error}") from None
    algorithm, key_id = _check_header(header)

    subject = unverified.get("sub")
    if not isinstance(subject, str) or not subject:
        raise JwtSvidError("invalid JWT-SVID: the 'sub' claim is missing")
    try:
        spiffe_id = SpiffeId.parse(subject)
    except InvalidSpiffeIdError as error:
        raise JwtSvidError(
            f"invalid JWT-SVID: the 'sub' claim is not a SPIFFE ID: {error}"
        ) from None

    trust_domain = spiffe_id.trust_domain
    bundle = bundle_source.get_bundle_for_trust_domain(trust_domain)
    if bundle is None:
        raise JwtSvidError(
            f"JWT-SVID for {spiffe_id}: no bundle for trust domain {trust_domain}; add the "
            "trust domain's bundle (federate with it) to accept its tokens"
        )
    authority = bundle.jwt_authority(key_id)
    if authority is None:
        raise JwtSvidError(
            f"JWT-SVID for {spiffe_id}: key id {key_id!r} is not in the bundle of trust "
            f"domain {trust_domain}; the key may have been rotated out, or the bundle is stale"
        )
    if not _key_fits_algorithm(authority.public_key, algorithm):
        raise JwtSvidError(
            f"JWT-SVID for {spiffe_id}: algorithm {algorithm} does not match key {key_id!r} "
            f"({type(authority.public_key).__name__})"
        )

    try:
        claims = jwt.decode(
            token,
            key=authority.public_key,
            algorithms=[algorithm],
            options={
                "verify_signature": True,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_aud": False,
                "verify_iss": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise JwtSvidError(
            f"JWT-SVID for {spiffe_id}: the signature does not verify with key {key_id!r}"
        ) from None
    except jwt.PyJWTError as error:
        raise JwtSvidError(f"JWT-SVID for {spiffe_id}: {error}") from None

    expires_at = _numeric_date(claims, "exp", required=True)
    if expires_at is None:  # Unreachable: a required claim is never None.
        raise JwtSvidError(f"invalid JWT-SVID for {spiffe_id}: the 'exp' claim is missing")
    if now >= expires_at + leeway:
        raise JwtSvidError(
            f"JWT-SVID for {spiffe_id} expired at {expires_at.isoformat()}; fetch a new one"
        )
    not_before = _numeric_date(claims, "nbf", required=False)
    if not_before is not None and now + leeway < not_before:
        raise JwtSvidError(f"JWT-SVID for {spiffe_id} is not valid before {not_before.isoformat()}")
    issued_at = _numeric_date(claims, "iat", required=False)

    audience_claim = claims.get("aud")
    if audience_claim is None or audience_claim == [] or audience_claim == "":
        raise JwtSvidError(f"JWT-SVID for {spiffe_id}: the 'aud' claim is missing")
    audiences = [audience_claim] if isinstance(audience_claim, str) else audience_claim
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise JwtSvidError(
            f"JWT-SVID for {spiffe_id}: the 'aud' claim must be a string or an array of strings"
        )
    if audience not in audiences:
        raise JwtSvidError(
            f"JWT-SVID for {spiffe_id}: audience {audience!r} is not in the token's audience "
            f"{audiences}"
        )

    return JwtSvid(
        spiffe_id=spiffe_id,
        audience=tuple(audiences),
        expires_at=expires_at,
        issued_at=issued_at,
        key_id=key_id,
        algorithm=algorithm,
        claims=MappingProxyType(claims),
        token=token,
    )
