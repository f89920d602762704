"""The SPIFFE core: IDs, selectors, SVIDs and bundles. Pure functions and value types."""

from warden.spiffe.errors import (
    InvalidSelectorError,
    InvalidSpiffeIdError,
    InvalidTrustDomainError,
    SpiffeError,
)
from warden.spiffe.id import SpiffeId, TrustDomain
from warden.spiffe.selector import Selector, parse_selectors

__all__ = [
    "InvalidSelectorError",
    "InvalidSpiffeIdError",
    "InvalidTrustDomainError",
    "Selector",
    "SpiffeError",
    "SpiffeId",
    "TrustDomain",
    "parse_selectors",
]
