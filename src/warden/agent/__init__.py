"""The agent: workload attestation, the SVID cache and the SPIFFE Workload API.

The server connection (node attestation, entry sync, signing) plugs into the manager through
`Signer` and `UsageReporter`; the Workload API serves from the manager's cache.
"""

from warden.agent.attestor import (
    WORKLOAD_ATTESTORS,
    AttestationError,
    CompositeAttestor,
    WorkloadAttestor,
    build_workload_attestor,
)
from warden.agent.caller import Caller, CallerChangedError
from warden.agent.endpoint import DEFAULT_SOCKET_PATH, WorkloadEndpoint
from warden.agent.entries import Entry, EntryChanges, EntrySet
from warden.agent.manager import EntryUpdate, Manager, Subscription, X509Snapshot
from warden.agent.ratelimit import RateLimit
from warden.agent.svid import (
    Delivery,
    SignedJwtSvid,
    Signer,
    SigningError,
    UsageReporter,
    X509Svid,
    X509SvidRequest,
    X509SvidResult,
)
from warden.agent.usage import UsageRecorder

__all__ = [
    "DEFAULT_SOCKET_PATH",
    "WORKLOAD_ATTESTORS",
    "AttestationError",
    "Caller",
    "CallerChangedError",
    "CompositeAttestor",
    "Delivery",
    "Entry",
    "EntryChanges",
    "EntrySet",
    "EntryUpdate",
    "Manager",
    "RateLimit",
    "SignedJwtSvid",
    "Signer",
    "SigningError",
    "Subscription",
    "UsageRecorder",
    "UsageReporter",
    "WorkloadAttestor",
    "WorkloadEndpoint",
    "X509Snapshot",
    "X509Svid",
    "X509SvidRequest",
    "X509SvidResult",
    "build_workload_attestor",
]
