"""Key managers and the server's CA: signing, rotation, persistence, upstream authorities."""

from warden.pki.bundlerecord import BundleRecord, BundleRecordError, FederationKey
from warden.pki.ca import DEFAULT_FEDERATION_TOKEN_TTL, CASettings, CertificateAuthority
from warden.pki.errors import (
    CAError,
    JournalError,
    KeyManagerError,
    KeyNotFoundError,
    PkiError,
    UpstreamAuthorityError,
)
from warden.pki.journal import AuthorityKind, AuthorityStatus, JournalEntry
from warden.pki.keys import (
    KEY_MANAGERS,
    DiskKeyManager,
    KeyManager,
    KeyType,
    MemoryKeyManager,
    open_key_manager,
)
from warden.pki.stores import BundleStore, JournalStore, MemoryBundleStore, MemoryJournalStore
from warden.pki.upstream import (
    UPSTREAM_AUTHORITIES,
    DiskUpstreamAuthority,
    UpstreamAuthority,
    UpstreamSignedCA,
    open_upstream_authority,
)

__all__ = [
    "DEFAULT_FEDERATION_TOKEN_TTL",
    "KEY_MANAGERS",
    "UPSTREAM_AUTHORITIES",
    "AuthorityKind",
    "AuthorityStatus",
    "BundleRecord",
    "BundleRecordError",
    "BundleStore",
    "CAError",
    "CASettings",
    "CertificateAuthority",
    "DiskKeyManager",
    "DiskUpstreamAuthority",
    "FederationKey",
    "JournalEntry",
    "JournalError",
    "JournalStore",
    "KeyManager",
    "KeyManagerError",
    "KeyNotFoundError",
    "KeyType",
    "MemoryBundleStore",
    "MemoryJournalStore",
    "MemoryKeyManager",
    "PkiError",
    "UpstreamAuthority",
    "UpstreamAuthorityError",
    "UpstreamSignedCA",
    "open_key_manager",
    "open_upstream_authority",
]
