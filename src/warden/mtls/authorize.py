"""Authorisation of a TLS peer by its SPIFFE ID: any ID, one ID, one of a set, or any member
of a trust domain.

An authorizer is called only after the peer's chain has verified against the bundle of the
peer's own trust domain. `trust_domains` lists the domains it can accept (None: any), which
lets the `ssl`-based contexts trust that one domain's bundle only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from warden.spiffe import SpiffeId, TrustDomain


@dataclass(frozen=True)
class Authorizer:
    """Accepts a peer's SPIFFE ID or not; `describe()` explains what it expects."""

    ids: frozenset[SpiffeId] | None = None
    domains: frozenset[TrustDomain] | None = None

    def __call__(self, spiffe_id: SpiffeId) -> bool:
        if self.ids is not None:
            return spiffe_id in self.ids
        if self.domains is not None:
            return spiffe_id.trust_domain in self.domains
        return True

    @property
    def trust_domains(self) -> frozenset[TrustDomain] | None:
        """The trust domains of acceptable peers, or None when any domain may be."""
        if self.ids is not None:
            return frozenset(spiffe_id.trust_domain for spiffe_id in self.ids)
        return self.domains

    def describe(self) -> str:
        if self.ids is not None:
            names = sorted(str(spiffe_id) for spiffe_id in self.ids)
            return names[0] if len(names) == 1 else "one of " + ", ".join(names)
        if self.domains is not None:
            names = sorted(str(domain) for domain in self.domains)
            return "a member of " + " or ".join(names)
        return "any SPIFFE ID"


def authorize_any() -> Authorizer:
    """Accept any peer whose SVID verifies against its trust domain's bundle."""
    return Authorizer()


def authorize_id(spiffe_id: SpiffeId | str) -> Authorizer:
    """Accept exactly `spiffe_id`."""
    return Authorizer(ids=frozenset({_id(spiffe_id)}))


def authorize_one_of(spiffe_ids: Iterable[SpiffeId | str]) -> Authorizer:
    """Accept any of `spiffe_ids`."""
    ids = frozenset(_id(value) for value in spiffe_ids)
    if not ids:
        raise ValueError("authorize_one_of needs at least one SPIFFE ID")
    return Authorizer(ids=ids)


def authorize_member_of(*trust_domains: TrustDomain | str) -> Authorizer:
    """Accept any SPIFFE ID of the given trust domains."""
    domains = frozenset(
        domain if isinstance(domain, TrustDomain) else TrustDomain.parse(domain)
        for domain in trust_domains
    )
    if not domains:
        raise ValueError("authorize_member_of needs at least one trust domain")
    return Authorizer(domains=domains)


def _id(value: SpiffeId | str) -> SpiffeId:
    return value if isinstance(value, SpiffeId) else SpiffeId.parse(value)
