"""Server-side node attestors: prove a node's identity and derive its agent SPIFFE ID.

Each attestor is a class registered by name in `ATTESTORS`; the server builds the ones named
in its configuration's `NodeAttestor` blocks.
"""

from warden.server.nodeattest.base import (
    ATTESTORS,
    AttestationError,
    AttestationResult,
    Challenger,
    NodeAttestor,
    build_attestor,
)

__all__ = [
    "ATTESTORS",
    "AttestationError",
    "AttestationResult",
    "Challenger",
    "NodeAttestor",
    "build_attestor",
]
