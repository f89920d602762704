"""The bundle record that servers share through the `BundleStore`.

The record is the trust domain's SPIFFE bundle in its JWK Set form, with two additions that
only Warden reads:

- each `jwt-svid` key carries `warden_not_after`, its expiry in Unix seconds, so that any
  server can prune expired keys, including those of other servers;
- `warden_federation_keys` lists the public keys that sign OIDC federation tokens, each
  with `kid`, `alg`, `use: "sig"` and `warden_not_after`. They belong in the OIDC JWKS only
  and never in the SPIFFE bundle.

SPIFFE readers ignore both (unknown members are allowed), but the server publishes
`BundleRecord.bundle.to_jwks_json()`, never the stored bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from warden.pki.errors import PkiError
from warden.spiffe import Bundle, BundleError, JwtAuthority, TrustDomain
from warden.spiffe.bundle import EXPIRY_MEMBER, PublicKey, public_key_to_jwk

FEDERATION_MEMBER = "warden_federation_keys"


class BundleRecordError(PkiError):
    """The stored bundle record cannot be decoded."""


@dataclass(frozen=True)
class FederationKey:
    """A public key that verifies OIDC federation tokens, published until `expires_at`."""

    kid: str
    public_key: PublicKey
    algorithm: str
    expires_at: datetime

    def to_jwk(self, include_expiry: bool = False) -> dict[str, Any]:
        """Return the key as a JWK with `kid`, `alg` and `use: "sig"`."""
        jwk = public_key_to_jwk(self.public_key)
        jwk.update({"kid": self.kid, "alg": self.algorithm, "use": "sig"})
        if include_expiry:
            jwk[EXPIRY_MEMBER] = int(self.expires_at.timestamp())
        return jwk


def _federation_key_from_jwk(jwk: Any, index: int) -> FederationKey:
    where = f"federation key {index}"
    if not isinstance(jwk, dict):
        raise BundleRecordError(f"{where}: expected a JSON object")
    kid, algorithm, expiry = jwk.get("kid"), jwk.get("alg"), jwk.get(EXPIRY_MEMBER)
    if not isinstance(kid, str) or not isinstance(algorithm, str) or not isinstance(expiry, int):
        raise BundleRecordError(f"{where}: kid, alg and {EXPIRY_MEMBER} are required")
    members = {k: v for k, v in jwk.items() if k not in ("kid", "alg", "use", EXPIRY_MEMBER)}
    try:
        key = PyJWK(members).key
    except (PyJWTError, ValueError, TypeError, KeyError) as error:
        raise BundleRecordError(f"{where}: invalid key material: {error}") from None
    if not isinstance(key, PublicKey):
        raise BundleRecordError(f"{where}: unsupported key {type(key).__name__}")
    return FederationKey(kid, key, algorithm, datetime.fromtimestamp(expiry, tz=UTC))


@dataclass(frozen=True)
class BundleRecord:
    """The trust domain's bundle and its federation keys, as stored."""

    bundle: Bundle
    federation_keys: tuple[FederationKey, ...] = ()

    @classmethod
    def empty(cls, trust_domain: TrustDomain) -> BundleRecord:
        return cls(Bundle(trust_domain))

    @classmethod
    def decode(cls, trust_domain: TrustDomain, data: bytes | None) -> BundleRecord:
        """Read a stored record; None (nothing stored yet) gives an empty record."""
        if data is None:
            return cls.empty(trust_domain)
        try:
            bundle = Bundle.from_jwks_json(trust_domain, data)
            document = json.loads(data)
        except (BundleError, ValueError) as error:
            raise BundleRecordError(
                f"stored bundle of {trust_domain} is invalid: {error}"
            ) from None
        keys = document.get(FEDERATION_MEMBER, [])
        if not isinstance(keys, list):
            raise BundleRecordError(
                f"stored bundle of {trust_domain}: {FEDERATION_MEMBER} is not an array"
            )
        return cls(bundle, tuple(_federation_key_from_jwk(k, i) for i, k in enumerate(keys)))

    def encode(self) -> bytes:
        """Serialize the record for the `BundleStore`."""
        document = self.bundle.to_jwks(include_expiry=True)
        document[FEDERATION_MEMBER] = [
            key.to_jwk(include_expiry=True) for key in self.federation_keys
        ]
        return json.dumps(document).encode("utf-8")

    def federation_jwks(self) -> dict[str, Any]:
        """Return the federation keys as a public JWK Set, for the OIDC `jwks_uri`."""
        return {"keys": [key.to_jwk() for key in self.federation_keys]}

    def merged(
        self,
        x509_authorities: Iterable[x509.Certificate],
        jwt_authorities: Iterable[JwtAuthority],
        federation_keys: Iterable[FederationKey],
        now: datetime,
        refresh_hint: timedelta | None,
    ) -> BundleRecord:
        """Return the record with the given authorities added and expired ones removed.

        Authorities are removed only when expired at `now`, so that one server never drops
        another server's live authority. The SPIFFE sequence number goes up by one exactly
        when the bundle's contents change.

        NOTE: `now` is this server's clock, so servers that share a datastore need
        synchronized clocks. A server whose clock runs ahead prunes others' authorities early.
        """
        bundle = (
            self.bundle.with_x509_authorities(*x509_authorities)
            .with_jwt_authorities(*jwt_authorities)
            .without_expired(now)
            .with_refresh_hint(refresh_hint)
        )
        by_kid = {key.kid: key for key in self.federation_keys}
        for key in federation_keys:
            by_kid[key.kid] = key
        federation = tuple(key for key in by_kid.values() if key.expires_at > now)

        unchanged = (
            bundle.same_authorities(self.bundle) and refresh_hint == self.bundle.refresh_hint
        )
        sequence = self.bundle.sequence_number or 0
        if not unchanged or self.bundle.sequence_number is None:
            sequence += 1
        return BundleRecord(bundle.with_sequence_number(sequence), federation)
