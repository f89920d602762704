"""Trust bundles held by the agent, with the encodings the Workload API sends precomputed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from warden.spiffe import TrustDomain
from warden.spiffe.bundle import JWT_SVID_USE, Bundle


@dataclass(frozen=True, slots=True)
class TrustBundle:
    """A trust domain's bundle and its Workload API encodings."""

    bundle: Bundle
    #: The X.509 authorities as concatenated DER certificates.
    x509_der: bytes = field(repr=False)
    #: The JWT authorities as a JWK Set document (only `use: jwt-svid` keys).
    jwks_json: bytes = field(repr=False)

    @classmethod
    def of(cls, bundle: Bundle) -> TrustBundle:
        document = bundle.to_jwks()
        jwt_keys = [key for key in document["keys"] if key.get("use") == JWT_SVID_USE]
        jwks = json.dumps({"keys": jwt_keys}, separators=(",", ":")).encode()
        return cls(bundle, bundle.x509_authorities_der(), jwks)

    @property
    def trust_domain(self) -> TrustDomain:
        return self.bundle.trust_domain

    @property
    def trust_domain_id(self) -> str:
        """The key of this bundle in Workload API maps: `spiffe://<trust domain>`."""
        return str(self.bundle.trust_domain.id)
