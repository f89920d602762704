"""The node attestor interface, its result, and the registry of attestors by name."""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from warden.spiffe import Selector, SpiffeId, TrustDomain

#: Sends a challenge to the agent and returns its response.
Challenger = Callable[[bytes], Awaitable[bytes]]


class AttestationError(Exception):
    """Attestation failed. `message` is safe to send to the agent and to log."""

    def __init__(self, message: str, *, permission_denied: bool = True) -> None:
        super().__init__(message)
        # False when the request itself was malformed (InvalidArgument) rather than refused.
        self.permission_denied = permission_denied


@dataclass(frozen=True)
class AttestationResult:
    agent_id: SpiffeId
    selectors: tuple[Selector, ...] = ()
    # Whether the node may attest again with the same kind of evidence.
    reattestable: bool = True
    # Who answers for the agent, when the evidence says (a join token's owner).
    owner: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AttestorContext:
    """What every attestor may use: the trust domain, the clock and the datastore."""

    trust_domain: TrustDomain
    now: Callable[[], datetime]
    datastore: Any


class NodeAttestor(Protocol):
    name: str

    async def attest(self, payload: bytes, challenge: Challenger) -> AttestationResult:
        """Verify the evidence in `payload`, challenging the agent when the method needs it."""
        ...


# Plugin name -> "module:Class". One line per attestor.
ATTESTORS: dict[str, str] = {
    "join_token": "warden.server.nodeattest.join_token:JoinTokenAttestor",
    "x509pop": "warden.server.nodeattest.x509pop:X509PopAttestor",
    "aws_iid": "warden.server.nodeattest.aws_iid:AwsIidAttestor",
}


def build_attestor(
    name: str, plugin_data: Mapping[str, Any], context: AttestorContext
) -> NodeAttestor:
    """Build the attestor registered as `name` from its `plugin_data`."""
    target = ATTESTORS.get(name)
    if target is None:
        raise ValueError(
            f"unknown node attestor {name!r}: supported ones are {', '.join(sorted(ATTESTORS))}"
        )
    module_name, class_name = target.split(":")
    attestor_class = getattr(importlib.import_module(module_name), class_name)
    attestor: NodeAttestor = attestor_class(plugin_data, context)
    return attestor


def agent_id(trust_domain: TrustDomain, *segments: str) -> SpiffeId:
    """The agent SPIFFE ID `spiffe://<td>/spire/agent/<segments...>`, as SPIRE forms it."""
    return SpiffeId.from_segments(trust_domain, "spire", "agent", *segments)
