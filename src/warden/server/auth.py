"""Who may call what: agents over mutual TLS with a current agent SVID, admins over the local
socket or with an admin SPIFFE ID."""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import grpc
from cryptography import x509

from warden.server.transport import Peer

if TYPE_CHECKING:
    from warden.server.app import WardenServer


async def abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("unreachable: context.abort raises")


async def peer_of(server: WardenServer, context: grpc.aio.ServicerContext) -> Peer:
    peer = server.peers.lookup(context)
    if peer is None:
        await abort(
            context,
            grpc.StatusCode.UNAUTHENTICATED,
            "the call did not come through the server's TLS listener or admin socket",
        )
    return peer


def certificate_expired(server: WardenServer, peer: Peer) -> bool:
    """Tell whether the peer's client certificate has expired since its handshake."""
    return peer.not_after is not None and server.clock().timestamp() >= peer.not_after


async def require_admin(server: WardenServer, context: grpc.aio.ServicerContext) -> str:
    """Return the actor for the audit log, or abort unless the caller may administer."""
    peer = await peer_of(server, context)
    if peer.kind == "local":
        return peer.describe()
    if certificate_expired(server, peer):
        await abort(
            context,
            grpc.StatusCode.UNAUTHENTICATED,
            f"the client certificate of {peer.describe()} has expired; reconnect with a current SVID",
        )
    if peer.spiffe_id is not None:
        if peer.spiffe_id in server.options.admin_ids:
            return str(peer.spiffe_id)
        if server.is_admin_spiffe_id(str(peer.spiffe_id)):
            return str(peer.spiffe_id)
    await abort(
        context,
        grpc.StatusCode.PERMISSION_DENIED,
        f"caller {peer.describe()} may not administer this server: use the local admin socket, "
        "or add its SPIFFE ID to admin_ids",
    )


def certificate_serial(peer: Peer) -> str:
    if peer.certificate_der is None:
        return ""
    return format(x509.load_der_x509_certificate(peer.certificate_der).serial_number, "x")
