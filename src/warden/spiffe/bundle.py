"""SPIFFE bundles: the X.509 and JWT authorities of one trust domain.

A bundle is published as a JWK Set (RFC 7517) in the SPIFFE bundle format. Each X.509
authority is a JWK with `use: "x509-svid"`, an `x5c` of exactly one certificate and no
`kid`. Each JWT authority is a JWK with `use: "jwt-svid"` and a `kid`. The set carries
`spiffe_sequence` and `spiffe_refresh_hint` (seconds). Readers ignore JWKs with an unknown
`kty` or `use` and x509-svid JWKs without `x5c`, as the standard requires. Bundles of
different trust domains are never merged: a `BundleSet` keeps one per trust domain.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from warden.spiffe._time import require_aware, to_unix_seconds
from warden.spiffe.errors import BundleError
from warden.spiffe.id import TrustDomain

#: Public keys a bundle can carry.
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

X509_SVID_USE = "x509-svid"
JWT_SVID_USE = "jwt-svid"
#: Private JWK member in which Warden's datastore keeps a JWT authority's expiry (Unix
#: seconds), so that expired keys can be pruned. Published bundles never carry it.
EXPIRY_MEMBER = "warden_not_after"

_KNOWN_KEY_TYPES = ("EC", "RSA", "OKP")
_EC_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64url_fixed(value: int, length: int) -> str:
    return base64.urlsafe_b64encode(value.to_bytes(length, "big")).rstrip(b"=").decode("ascii")


def public_key_to_jwk(public_key: PublicKey) -> dict[str, Any]:
    """Return the JWK members (RFC 7518 section 6) of a public key, without `use` or `kid`."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        curve = _EC_CURVES.get(public_key.curve.name)
        if curve is None:
            raise BundleError(f"EC curve {public_key.curve.name} has no JWK name; use P-256")
        numbers = public_key.public_numbers()
        size = (public_key.curve.key_size + 7) // 8
        return {
            "kty": "EC",
            "crv": curve,
            "x": _b64url_fixed(numbers.x, size),
            "y": _b64url_fixed(numbers.y, size),
        }
    if isinstance(public_key, rsa.RSAPublicKey):
        rsa_numbers = public_key.public_numbers()
        return {"kty": "RSA", "n": _b64url_uint(rsa_numbers.n), "e": _b64url_uint(rsa_numbers.e)}
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii"),
        }
    raise BundleError(f"key type {type(public_key).__name__} cannot be written as a JWK")


def _as_public_key(value: object, where: str) -> PublicKey:
    if isinstance(value, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        return value
    raise BundleError(f"{where}: key type {type(value).__name__} is not supported")


@dataclass(frozen=True)
class JwtAuthority:
    """A JWT-SVID signing key of a trust domain, found by its key id.

    `expires_at` is when the issuer stops relying on the key (every token it signed has
    expired by then). The SPIFFE bundle format has no place for it, so published bundles
    omit it and bundles read from a peer have None.
    """

    key_id: str
    public_key: PublicKey
    expires_at: datetime | None = None

    def __post_init__(self) -> None:
        if not self.key_id:
            raise BundleError("a JWT authority must have a non-empty key id (kid)")
        if self.expires_at is not None:
            # Whole seconds, as the datastore keeps them, so a stored bundle reads back equal.
            expires_at = require_aware(self.expires_at, "expires_at").replace(microsecond=0)
            object.__setattr__(self, "expires_at", expires_at)


class BundleSource(Protocol):
    """Anything that returns the bundle of a trust domain: a Bundle, a BundleSet, a cache."""

    def get_bundle_for_trust_domain(self, trust_domain: TrustDomain) -> Bundle | None:
        """Return the bundle of `trust_domain`, or None when there is none."""
        ...


def _dedupe_certificates(certificates: Iterable[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    unique: list[x509.Certificate] = []
    for certificate in certificates:
        if certificate not in unique:
            unique.append(certificate)
    return tuple(unique)


@dataclass(frozen=True)
class Bundle:
    """The X.509 and JWT authorities of one trust domain, with the SPIFFE bundle metadata.

    Values are immutable: the `with_*` and `without_*` methods return new bundles. Duplicate
    X.509 authorities collapse into one; two JWT authorities with the same key id and
    different keys are an error.
    """

    trust_domain: TrustDomain
    x509_authorities: tuple[x509.Certificate, ...] = ()
    jwt_authorities: tuple[JwtAuthority, ...] = ()
    sequence_number: int | None = None
    refresh_hint: timedelta | None = None
    _by_key_id: Mapping[str, JwtAuthority] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "x509_authorities", _dedupe_certificates(self.x509_authorities))
        by_key_id: dict[str, JwtAuthority] = {}
        unique: list[JwtAuthority] = []
        for authority in self.jwt_authorities:
            existing = by_key_id.get(authority.key_id)
            if existing is None:
                by_key_id[authority.key_id] = authority
                unique.append(authority)
            elif existing.public_key != authority.public_key:
                raise BundleError(
                    f"bundle of {self.trust_domain}: two different JWT authorities share key "
                    f"id {authority.key_id!r}; key ids must be unique"
                )
        object.__setattr__(self, "jwt_authorities", tuple(unique))
        object.__setattr__(self, "_by_key_id", by_key_id)
        if self.sequence_number is not None and self.sequence_number < 0:
            raise BundleError(
                f"bundle of {self.trust_domain}: sequence number {self.sequence_number} is negative"
            )
        if self.refresh_hint is not None and self.refresh_hint < timedelta(0):
            raise BundleError(
                f"bundle of {self.trust_domain}: refresh hint {self.refresh_hint} is negative"
            )

    # Lookups.

    def jwt_authority(self, key_id: str) -> JwtAuthority | None:
        """Return the JWT authority with key id `key_id`, or None."""
        return self._by_key_id.get(key_id)

    def get_bundle_for_trust_domain(self, trust_domain: TrustDomain) -> Bundle | None:
        """Return this bundle when it is the bundle of `trust_domain`, else None."""
        return self if trust_domain == self.trust_domain else None

    @property
    def is_empty(self) -> bool:
        return not self.x509_authorities and not self.jwt_authorities

    # Changes; each returns a new bundle.

    def with_x509_authorities(self, *certificates: x509.Certificate) -> Bundle:
        """Return a bundle that also contains `certificates`."""
        return self._replace(x509_authorities=(*self.x509_authorities, *certificates))

    def with_jwt_authorities(self, *authorities: JwtAuthority) -> Bundle:
        """Return a bundle that also contains `authorities`, replacing any with their key ids."""
        replaced = {authority.key_id for authority in authorities}
        remaining = tuple(a for a in self.jwt_authorities if a.key_id not in replaced)
        return self._replace(jwt_authorities=(*remaining, *authorities))

    def without_expired(self, now: datetime) -> Bundle:
        """Return a bundle without the authorities that have expired at `now`.

        An X.509 authority is valid through its NotAfter second (RFC 5280), so it goes once
        `now` is past it. A JWT authority goes at `expires_at`, because tokens are rejected
        from their `exp` on (RFC 7519); one with no known expiry is kept.
        """
        now = require_aware(now)
        return self._replace(
            x509_authorities=tuple(
                c for c in self.x509_authorities if c.not_valid_after_utc >= now
            ),
            jwt_authorities=tuple(
                a for a in self.jwt_authorities if a.expires_at is None or a.expires_at > now
            ),
        )

    def with_sequence_number(self, sequence_number: int) -> Bundle:
        return self._replace(sequence_number=sequence_number)

    def with_refresh_hint(self, refresh_hint: timedelta | None) -> Bundle:
        return self._replace(refresh_hint=refresh_hint)

    def same_authorities(self, other: Bundle) -> bool:
        """Tell whether both bundles hold the same authorities, ignoring order and metadata."""
        if self.trust_domain != other.trust_domain:
            return False
        if len(self.x509_authorities) != len(other.x509_authorities) or any(
            c not in other.x509_authorities for c in self.x509_authorities
        ):
            return False
        if set(self._by_key_id) != set(other._by_key_id):
            return False
        return all(
            other._by_key_id[kid].public_key == authority.public_key
            and other._by_key_id[kid].expires_at == authority.expires_at
            for kid, authority in self._by_key_id.items()
        )

    def _replace(self, **changes: Any) -> Bundle:
        values: dict[str, Any] = {
            "trust_domain": self.trust_domain,
            "x509_authorities": self.x509_authorities,
            "jwt_authorities": self.jwt_authorities,
            "sequence_number": self.sequence_number,
            "refresh_hint": self.refresh_hint,
        }
        values.update(changes)
        return Bundle(**values)

    # The SPIFFE bundle format (JWK Set).

    def to_jwks(self, include_expiry: bool = False) -> dict[str, Any]:
        """Return the bundle as a SPIFFE bundle JWK Set (a JSON-ready dict).

        `include_expiry` adds the private `warden_not_after` member to JWT authorities whose
        expiry is known; only Warden's own datastore copy uses it.
        """
        keys: list[dict[str, Any]] = []
        for certificate in self.x509_authorities:
            jwk = public_key_to_jwk(
                _as_public_key(certificate.public_key(), f"bundle of {self.trust_domain}")
            )
            jwk["use"] = X509_SVID_USE
            der = certificate.public_bytes(serialization.Encoding.DER)
            jwk["x5c"] = [base64.b64encode(der).decode("ascii")]
            keys.append(jwk)
        for authority in self.jwt_authorities:
            jwk = public_key_to_jwk(authority.public_key)
            jwk["use"] = JWT_SVID_USE
            jwk["kid"] = authority.key_id
            if include_expiry and authority.expires_at is not None:
                jwk[EXPIRY_MEMBER] = to_unix_seconds(authority.expires_at)
            keys.append(jwk)
        document: dict[str, Any] = {"keys": keys}
        if self.sequence_number is not None:
            document["spiffe_sequence"] = self.sequence_number
        if self.refresh_hint is not None:
            document["spiffe_refresh_hint"] = int(self.refresh_hint.total_seconds())
        return document

    def to_jwks_json(self, include_expiry: bool = False, indent: int | None = None) -> str:
        """Return the bundle in the SPIFFE bundle format as JSON text."""
        return json.dumps(self.to_jwks(include_expiry), indent=indent)

    @classmethod
    def from_jwks(cls, trust_domain: TrustDomain, document: Mapping[str, Any]) -> Bundle:
        """Read a SPIFFE bundle JWK Set already decoded from JSON."""
        return _parse_jwks(trust_domain, document)

    @classmethod
    def from_jwks_json(cls, trust_domain: TrustDomain, data: str | bytes) -> Bundle:
        """Read a SPIFFE bundle from JSON text, rejecting duplicate member names."""
        try:
            document = json.loads(data, object_pairs_hook=_reject_duplicate_names)
        except (ValueError, UnicodeDecodeError) as error:
            raise BundleError(f"bundle of {trust_domain} is not valid JSON: {error}") from None
        if not isinstance(document, dict):
            raise BundleError(f"bundle of {trust_domain} is not a JSON object")
        return _parse_jwks(trust_domain, document)

    # PEM: the X.509 authorities only, for openssl, nginx and files on disk.

    def to_pem(self) -> str:
        """Return the X.509 authorities as concatenated PEM certificates."""
        return "".join(
            certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
            for certificate in self.x509_authorities
        )

    def x509_authorities_der(self) -> bytes:
        """Return the X.509 authorities as concatenated DER, as the Workload API sends them."""
        return b"".join(
            certificate.public_bytes(serialization.Encoding.DER)
            for certificate in self.x509_authorities
        )

    @classmethod
    def from_pem(cls, trust_domain: TrustDomain, data: str | bytes) -> Bundle:
        """Read a bundle of X.509 authorities from PEM certificates."""
        raw = data.encode("ascii") if isinstance(data, str) else data
        if b"-----BEGIN" not in raw:
            raise BundleError(f"bundle of {trust_domain}: no PEM certificate found")
        try:
            certificates = x509.load_pem_x509_certificates(raw)
        except ValueError as error:
            raise BundleError(
                f"bundle of {trust_domain}: invalid PEM certificate: {error}"
            ) from None
        return cls(trust_domain, tuple(certificates))


def _reject_duplicate_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for name, value in pairs:
        if name in document:
            raise ValueError(f"duplicate member name {name!r}")
        document[name] = value
    return document


def _parse_expiry(jwk: Mapping[str, Any], where: str) -> datetime | None:
    value = jwk.get(EXPIRY_MEMBER)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise BundleError(f"{where}: {EXPIRY_MEMBER} must be an integer (Unix seconds)")
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise BundleError(f"{where}: {EXPIRY_MEMBER} {value} is out of range") from None


def _jwk_public_key(jwk: Mapping[str, Any], where: str) -> PublicKey:
    members = {k: v for k, v in jwk.items() if k not in ("use", "x5c", "kid", EXPIRY_MEMBER)}
    try:
        key = PyJWK(members).key
    except (PyJWTError, ValueError, TypeError, KeyError) as error:
        raise BundleError(f"{where}: invalid key material: {error}") from None
    return _as_public_key(key, where)


def _parse_x509_entry(jwk: Mapping[str, Any], where: str) -> x509.Certificate | None:
    chain = jwk.get("x5c")
    if chain is None or chain == []:
        return None  # The standard says to ignore such an entry.
    if not isinstance(chain, list) or not isinstance(chain[0], str):
        raise BundleError(f"{where}: x5c must be an array of base64 strings")
    # Only the first certificate counts; the standard says to ignore the others.
    try:
        der = base64.b64decode(chain[0], validate=True)
        certificate = x509.load_der_x509_certificate(der)
    except ValueError as error:
        raise BundleError(f"{where}: x5c[0] is not a base64 DER certificate: {error}") from None
    if any(name in jwk for name in ("n", "x", "crv")):
        declared = _jwk_public_key(jwk, where)
        if declared != certificate.public_key():
            raise BundleError(
                f"{where}: the JWK's key does not match the public key of its x5c certificate"
            )
    return certificate


def _parse_jwks(trust_domain: TrustDomain, document: Mapping[str, Any]) -> Bundle:
    keys = document.get("keys")
    if keys is None:
        raise BundleError(f"bundle of {trust_domain}: the 'keys' member is missing")
    if not isinstance(keys, list):
        raise BundleError(f"bundle of {trust_domain}: 'keys' must be an array")

    sequence = document.get("spiffe_sequence")
    if sequence is not None and (
        not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 0
    ):
        raise BundleError(
            f"bundle of {trust_domain}: spiffe_sequence {sequence!r} is not a non-negative integer"
        )
    hint = document.get("spiffe_refresh_hint")
    if hint is not None and (not isinstance(hint, int) or isinstance(hint, bool) or hint < 0):
        raise BundleError(
            f"bundle of {trust_domain}: spiffe_refresh_hint {hint!r} is not a non-negative "
            "integer number of seconds"
        )

    certificates: list[x509.Certificate] = []
    authorities: list[JwtAuthority] = []
    for index, jwk in enumerate(keys):
        where = f"bundle of {trust_domain}, key {index}"
        if not isinstance(jwk, dict):
            raise BundleError(f"{where}: a JWK must be a JSON object")
        if jwk.get("kty") not in _KNOWN_KEY_TYPES:
            continue  # Unknown key types are ignored, as the standard requires.
        use = jwk.get("use")
        if use == X509_SVID_USE:
            certificate = _parse_x509_entry(jwk, where)
            if certificate is not None:
                certificates.append(certificate)
        elif use == JWT_SVID_USE:
            key_id = jwk.get("kid")
            if not isinstance(key_id, str) or not key_id:
                raise BundleError(f"{where}: a jwt-svid key must have a non-empty kid")
            authorities.append(
                JwtAuthority(key_id, _jwk_public_key(jwk, where), _parse_expiry(jwk, where))
            )
        # Any other use, or none, is ignored, as the standard requires.

    return Bundle(
        trust_domain,
        tuple(certificates),
        tuple(authorities),
        sequence_number=sequence,
        refresh_hint=timedelta(seconds=hint) if hint is not None else None,
    )


class BundleSet:
    """Bundles keyed by trust domain, one each, for validators: never merged across domains.

    Immutable: `with_bundle` returns a new set, so a change never reaches a reader half-applied.
    """

    __slots__ = ("_bundles",)

    def __init__(self, bundles: Iterable[Bundle] = ()) -> None:
        by_domain: dict[TrustDomain, Bundle] = {}
        for bundle in bundles:
            if bundle.trust_domain in by_domain:
                raise BundleError(
                    f"two bundles for trust domain {bundle.trust_domain}; a set contains one per "
                    "trust domain"
                )
            by_domain[bundle.trust_domain] = bundle
        self._bundles: Mapping[TrustDomain, Bundle] = by_domain

    def get_bundle_for_trust_domain(self, trust_domain: TrustDomain) -> Bundle | None:
        """Return the bundle of `trust_domain`, or None."""
        return self._bundles.get(trust_domain)

    def with_bundle(self, bundle: Bundle) -> BundleSet:
        """Return a set in which `bundle` replaces any bundle of its trust domain."""
        others = [b for td, b in self._bundles.items() if td != bundle.trust_domain]
        return BundleSet([*others, bundle])

    def without(self, trust_domain: TrustDomain) -> BundleSet:
        """Return a set without the bundle of `trust_domain`."""
        return BundleSet(b for td, b in self._bundles.items() if td != trust_domain)

    @property
    def trust_domains(self) -> tuple[TrustDomain, ...]:
        return tuple(sorted(self._bundles))

    def __iter__(self) -> Iterator[Bundle]:
        return iter([self._bundles[td] for td in sorted(self._bundles)])

    def __len__(self) -> int:
        return len(self._bundles)

    def __contains__(self, trust_domain: object) -> bool:
        return trust_domain in self._bundles

    def __repr__(self) -> str:
        names = ", ".join(td.name for td in self.trust_domains)
        return f"BundleSet([{names}])"
