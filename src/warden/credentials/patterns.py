"""SPIFFE ID patterns of the credential policies.

A pattern is either a SPIFFE ID, which matches that ID only, or a SPIFFE ID followed by
`/*`, which matches every ID below it: `spiffe://example.org/billing/*` matches
`spiffe://example.org/billing/api` and `spiffe://example.org/billing/eu/api`, but not
`spiffe://example.org/billing` itself. `spiffe://example.org/*` matches every workload of the
trust domain. No other wildcard exists, so a pattern never matches across trust domains.
"""

from __future__ import annotations

from dataclasses import dataclass

from warden.spiffe import SpiffeError, SpiffeId, TrustDomain

_WILDCARD = "/*"


@dataclass(frozen=True, slots=True)
class SpiffeIdPattern:
    """A parsed pattern: an exact ID, or every ID below `prefix` when `subtree` is true."""

    text: str
    trust_domain: TrustDomain
    prefix: str
    subtree: bool

    @classmethod
    def parse(cls, text: str) -> SpiffeIdPattern:
        """Parse a pattern; raise ValueError naming the pattern when it is invalid."""
        subtree = text.endswith(_WILDCARD)
        base = text[: -len(_WILDCARD)] if subtree else text
        if "*" in base:
            raise ValueError(
                f"invalid SPIFFE ID pattern {text!r}: '*' may only end the pattern as '/*'"
            )
        try:
            if subtree and base.count("/") == 2:
                # "spiffe://example.org/*": every ID of the trust domain.
                trust_domain = TrustDomain.parse(base)
                return cls(text, trust_domain, f"spiffe://{trust_domain.name}", True)
            spiffe_id = SpiffeId.parse(base)
        except SpiffeError as error:
            raise ValueError(f"invalid SPIFFE ID pattern {text!r}: {error}") from None
        if not subtree and not spiffe_id.path:
            raise ValueError(
                f"invalid SPIFFE ID pattern {text!r}: it names a trust domain, not a "
                f"workload; write {text.rstrip('/')}/* to match every workload in it"
            )
        return cls(text, spiffe_id.trust_domain, str(spiffe_id), subtree)

    def matches(self, spiffe_id: SpiffeId | str) -> bool:
        """Tell whether `spiffe_id` (canonical form) matches the pattern."""
        value = str(spiffe_id)
        if not self.subtree:
            return value == self.prefix
        return value.startswith(self.prefix + "/") and len(value) > len(self.prefix) + 1

    def __str__(self) -> str:
        return self.text


def parse_patterns(texts: tuple[str, ...] | list[str]) -> tuple[SpiffeIdPattern, ...]:
    """Parse several patterns; raise ValueError on the first invalid one."""
    return tuple(SpiffeIdPattern.parse(text) for text in texts)


def any_matches(patterns: tuple[SpiffeIdPattern, ...], spiffe_id: SpiffeId | str) -> bool:
    """Tell whether any pattern matches `spiffe_id`."""
    return any(pattern.matches(spiffe_id) for pattern in patterns)
