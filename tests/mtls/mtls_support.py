"""SVIDs issued directly by a local CA, and a source that hands them out, for TLS tests that
need no agent."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from agent_support import LocalCA
from cryptography.hazmat.primitives.asymmetric import ec

from warden.mtls import X509Svid
from warden.spiffe import Bundle, BundleSet, SpiffeId, TrustDomain, build_x509_svid


def issue(ca: LocalCA, spiffe_id: str, ttl: timedelta = timedelta(hours=1)) -> X509Svid:
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = build_x509_svid(
        ca.ca, SpiffeId.parse(spiffe_id), key.public_key(), datetime.now(UTC), ttl
    )
    return X509Svid(SpiffeId.parse(spiffe_id), tuple(ca.ca.chain(leaf)), key)


class StaticSource:
    """An X.509 source with a fixed SVID and bundles; `rotate` replaces the SVID."""

    def __init__(self, svid: X509Svid, *cas: LocalCA) -> None:
        self._svid = svid
        self.bundles = BundleSet(Bundle(ca.trust_domain, (ca.ca.certificate,)) for ca in cas)
        self._callbacks: list[Callable[[], None]] = []

    @property
    def svid(self) -> X509Svid:
        return self._svid

    def get_bundle_for_trust_domain(self, trust_domain: TrustDomain) -> Bundle | None:
        return self.bundles.get_bundle_for_trust_domain(trust_domain)

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback)

    def rotate(self, svid: X509Svid) -> None:
        self._svid = svid
        for callback in list(self._callbacks):
            callback()
