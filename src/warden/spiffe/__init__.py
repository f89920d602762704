"""The SPIFFE core: IDs, selectors, SVIDs and bundles. Pure functions and value types.

Nothing here performs I/O or logs. Functions whose result depends on time take `now`, an
aware datetime, so that callers inject their clock.
"""

from warden.spiffe.bundle import Bundle, BundleSet, BundleSource, JwtAuthority
from warden.spiffe.errors import (
    BundleError,
    InvalidSelectorError,
    InvalidSpiffeIdError,
    InvalidTrustDomainError,
    JwtSvidError,
    SpiffeError,
    X509SvidError,
)
from warden.spiffe.id import SpiffeId, TrustDomain
from warden.spiffe.jwtsvid import (
    DEFAULT_JWT_SVID_TTL,
    JwtSigner,
    JwtSvid,
    mint_jwt_svid,
    validate_jwt_svid,
)
from warden.spiffe.selector import Selector, parse_selectors
from warden.spiffe.x509ca import (
    DEFAULT_CA_TTL,
    X509CA,
    build_intermediate_ca,
    build_self_signed_ca,
)
from warden.spiffe.x509svid import (
    DEFAULT_X509_SVID_TTL,
    build_x509_svid,
    build_x509_svid_from_csr,
    check_x509_svid_leaf,
    load_csr,
    validate_x509_svid,
    validate_x509svid,
)

__all__ = [
    "DEFAULT_CA_TTL",
    "DEFAULT_JWT_SVID_TTL",
    "DEFAULT_X509_SVID_TTL",
    "X509CA",
    "Bundle",
    "BundleError",
    "BundleSet",
    "BundleSource",
    "InvalidSelectorError",
    "InvalidSpiffeIdError",
    "InvalidTrustDomainError",
    "JwtAuthority",
    "JwtSigner",
    "JwtSvid",
    "JwtSvidError",
    "Selector",
    "SpiffeError",
    "SpiffeId",
    "TrustDomain",
    "X509SvidError",
    "build_intermediate_ca",
    "build_self_signed_ca",
    "build_x509_svid",
    "build_x509_svid_from_csr",
    "check_x509_svid_leaf",
    "load_csr",
    "mint_jwt_svid",
    "parse_selectors",
    "validate_jwt_svid",
    "validate_x509_svid",
    "validate_x509svid",
]
