"""Verification of a TLS peer's X509-SVID chain, then authorisation of its SPIFFE ID."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from cryptography import x509

from warden.mtls.authorize import Authorizer
from warden.spiffe import BundleSource, SpiffeError, SpiffeId, validate_x509_svid


class PeerRejectedError(Exception):
    """The peer's certificate chain did not verify, or its SPIFFE ID is not authorised."""


def verify_peer(
    chain: Sequence[x509.Certificate],
    bundles: BundleSource,
    authorizer: Authorizer,
    now: datetime | None = None,
) -> SpiffeId:
    """Verify `chain` (leaf first) against the bundle of the leaf's trust domain, authorise.

    Returns the peer's SPIFFE ID; raises `PeerRejectedError` with the reason.
    """
    try:
        spiffe_id = validate_x509_svid(chain, bundles, now or datetime.now(UTC))
    except SpiffeError as error:
        raise PeerRejectedError(f"peer certificate rejected: {error}") from None
    if not authorizer(spiffe_id):
        raise PeerRejectedError(
            f"peer {spiffe_id} is not authorised: expected {authorizer.describe()}"
        )
    return spiffe_id
