"""SVIDs as the agent caches them, and the interfaces to the server that signs them.

The agent generates each workload key itself and sends only a CSR, so private keys never
leave the node. `Signer` and `UsageReporter` are what the manager needs from the server
connection; tests put a local CA behind them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from warden.spiffe import SpiffeId

#: Minimum time an SVID is kept before the agent requests its replacement.
MIN_ROTATION_SECONDS = 1.0


class SigningError(Exception):
    """The server did not sign an SVID. The message gives the reason."""


@dataclass(frozen=True, slots=True)
class X509SvidRequest:
    """A CSR (DER) for the X509-SVID of one entry."""

    entry_id: str
    csr: bytes


@dataclass(frozen=True, slots=True)
class X509SvidResult:
    """The server's result for one entry: a DER chain, leaf first, or an error message."""

    entry_id: str
    chain: tuple[bytes, ...] = ()
    error: str = ""


@dataclass(frozen=True, slots=True)
class SignedJwtSvid:
    """A signed JWT-SVID. Times are Unix seconds."""

    spiffe_id: SpiffeId
    token: str = field(repr=False)
    issued_at: float
    expires_at: float

    def fresh_at(self, now: float) -> bool:
        """Tell whether the token may still be handed out: more than half its life remains."""
        return now < self.issued_at + (self.expires_at - self.issued_at) / 2


class Signer(Protocol):
    """Signs SVIDs for entries the agent is authorised to hold (the server's agent API)."""

    async def sign_x509_svids(
        self, requests: Sequence[X509SvidRequest]
    ) -> Sequence[X509SvidResult]: ...

    async def sign_jwt_svid(self, entry_id: str, audience: Sequence[str]) -> SignedJwtSvid: ...


@dataclass(frozen=True, slots=True)
class Delivery:
    """When a workload last received an entry's SVID (Unix seconds)."""

    entry_id: str
    delivered_at: int


class UsageReporter(Protocol):
    """Receives delivery times in batches (the server records them for governance)."""

    async def report_deliveries(self, deliveries: Sequence[Delivery]) -> None: ...


@dataclass(frozen=True, slots=True)
class X509Svid:
    """A cached X509-SVID with its private key. Times are Unix seconds."""

    entry_id: str
    spiffe_id: SpiffeId
    #: DER certificates, leaf first.
    chain: tuple[bytes, ...] = field(repr=False)
    #: Unencrypted PKCS#8 DER, as the Workload API sends it.
    private_key: bytes = field(repr=False)
    not_before: float
    not_after: float
    #: When the agent received it.
    received_at: float = 0.0
    #: The revision of the entry it was signed for.
    entry_revision: int = 0

    @property
    def rotate_at(self) -> float:
        """When the agent starts replacing the SVID: half of its usable lifetime.

        The lifetime counts from when the SVID became usable here (NotBefore or receipt,
        whichever is later), because servers backdate NotBefore. Counting from a backdated
        NotBefore would rotate a short-lived SVID as soon as it arrives. The SVID is kept
        for at least `MIN_ROTATION_SECONDS`, which bounds how often one entry is re-signed.
        """
        start = max(self.not_before, self.received_at)
        return start + max((self.not_after - start) / 2, MIN_ROTATION_SECONDS)

    def expired_at(self, now: float) -> bool:
        return now >= self.not_after


@dataclass(frozen=True, slots=True)
class PendingKey:
    """A freshly generated key and the CSR that requests its certificate."""

    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    csr: bytes


def new_key_and_csr(spiffe_id: SpiffeId) -> PendingKey:
    """Generate an EC P-256 key and a DER CSR carrying `spiffe_id` as its URI SAN.

    The server takes the SPIFFE ID from the entry, never from the CSR; the SAN only makes
    the request readable in logs and tools.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(spiffe_id))]),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return PendingKey(key, csr.public_bytes(serialization.Encoding.DER))


def accept_chain(
    entry_id: str,
    spiffe_id: SpiffeId,
    revision: int,
    pending: PendingKey,
    chain: Sequence[bytes],
    received_at: float,
) -> X509Svid:
    """Check a signed chain against the request and return the SVID to cache.

    Raises `SigningError` when the leaf is not for our key or not for the entry's SPIFFE ID:
    the agent must never hand a workload a certificate that does not fit its key or names
    another identity.
    """
    if not chain:
        raise SigningError(f"entry {entry_id}: the server returned an empty chain")
    try:
        leaf = x509.load_der_x509_certificate(chain[0])
    except ValueError as error:
        raise SigningError(
            f"entry {entry_id}: the server returned an invalid leaf: {error}"
        ) from None
    public = pending.private_key.public_key()
    if leaf.public_key() != public:
        raise SigningError(
            f"entry {entry_id}: the signed certificate is not for the key the agent sent"
        )
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    if uris != [str(spiffe_id)]:
        raise SigningError(
            f"entry {entry_id}: the signed certificate names {uris or 'no SPIFFE ID'}, "
            f"expected {spiffe_id}"
        )
    key_der = pending.private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return X509Svid(
        entry_id=entry_id,
        spiffe_id=spiffe_id,
        chain=tuple(chain),
        private_key=key_der,
        not_before=leaf.not_valid_before_utc.timestamp(),
        not_after=leaf.not_valid_after_utc.timestamp(),
        received_at=received_at,
        entry_revision=revision,
    )
