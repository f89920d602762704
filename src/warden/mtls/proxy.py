"""A small mTLS proxy for applications that do not speak TLS themselves.

- Inbound: accept mutual TLS, verify the client's X509-SVID against its trust domain's
  bundle, and forward the plaintext to a local port only when the client's SPIFFE ID is
  authorised.
- Outbound: accept plain TCP on a local port and originate mutual TLS to a remote peer,
  which must present the expected SPIFFE ID.

The proxy presents the workload's own SVID, from an `X509Source`, and follows its rotation:
each new connection uses the current SVID and bundles.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from warden.mtls.aiotls import TlsStream
from warden.mtls.authorize import Authorizer
from warden.mtls.tls import MtlsContext, TlsSource, client_context, server_context
from warden.mtls.verify import PeerRejectedError

log = logging.getLogger(__name__)

DEFAULT_HANDSHAKE_TIMEOUT_SECONDS = 10.0
ConnectionHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class InboundRoute:
    """Terminate mTLS on `listen` and forward authorised clients to `forward`."""

    listen_host: str
    listen_port: int
    forward_host: str
    forward_port: int
    authorizer: Authorizer


@dataclass(frozen=True)
class OutboundRoute:
    """Accept plain TCP on `listen` and originate mTLS to `remote`, expecting its ID."""

    listen_host: str
    listen_port: int
    remote_host: str
    remote_port: int
    authorizer: Authorizer


async def _plain_to_tls(reader: asyncio.StreamReader, tls: TlsStream) -> None:
    while data := await reader.read(CHUNK_BYTES):
        await tls.write(data)
    # The plaintext side finished sending: tell the TLS peer with close_notify, and keep
    # reading its response in the other direction.
    await tls.close_write()


async def _tls_to_plain(tls: TlsStream, writer: asyncio.StreamWriter) -> None:
    while data := await tls.read(CHUNK_BYTES):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        with contextlib.suppress(OSError):
            writer.write_eof()


async def _relay(
    tls: TlsStream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    tasks = [
        asyncio.create_task(_plain_to_tls(reader, tls)),
        asyncio.create_task(_tls_to_plain(tls, writer)),
    ]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in pending:
            if any(item.exception() for item in done):
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for task in tasks:
            task.cancel()
        writer.close()
        await tls.close()


class MtlsProxy:
    """Serves inbound and outbound routes until `stop()`."""

    def __init__(
        self,
        source: TlsSource,
        inbound: Sequence[InboundRoute] = (),
        outbound: Sequence[OutboundRoute] = (),
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT_SECONDS,
    ) -> None:
        if not inbound and not outbound:
            raise ValueError("the proxy needs at least one inbound or outbound route")
        self.source = source
        self.inbound = tuple(inbound)
        self.outbound = tuple(outbound)
        self.handshake_timeout = handshake_timeout
        self._servers: list[asyncio.Server] = []
        self._contexts: list[MtlsContext] = []
        self._connections: set[asyncio.Task[None]] = set()
        #: The bound port of each route, inbound first, in the order given.
        self.ports: list[int] = []

    async def start(self) -> None:
        try:
            for route in self.inbound:
                context = server_context(self.source, route.authorizer)
                self._contexts.append(context)
                await self._listen(
                    route.listen_host, route.listen_port, self._inbound(route, context)
                )
            for outbound in self.outbound:
                context = client_context(self.source, outbound.authorizer)
                self._contexts.append(context)
                await self._listen(
                    outbound.listen_host, outbound.listen_port, self._outbound(outbound, context)
                )
        except BaseException:
            await self.stop()
            raise

    async def _listen(self, host: str, port: int, handler: ConnectionHandler) -> None:
        server = await asyncio.start_server(handler, host, port)
        self._servers.append(server)
        bound = server.sockets[0].getsockname()[1]
        self.ports.append(bound)
        log.info("proxy listening", extra={"address": f"{host}:{bound}"})

    def _guarded(self, handle: ConnectionHandler) -> ConnectionHandler:
        """Track a connection's task so `stop()` can end it, and end it quietly."""

        async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._connections.add(task)
            try:
                await handle(reader, writer)
            except asyncio.CancelledError:
                # The proxy is stopping. Returning, rather than re-raising, keeps asyncio
                # from reporting the cancelled connection task as an error.
                writer.close()
            finally:
                if task is not None:
                    self._connections.discard(task)

        return guarded

    def _inbound(self, route: InboundRoute, context: MtlsContext) -> ConnectionHandler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            client = writer.get_extra_info("peername")
            tls = TlsStream(reader, writer, context.connection(None))
            try:
                peer = await tls.handshake(self.handshake_timeout)
            except (PeerRejectedError, TimeoutError, ConnectionError) as error:
                log.warning(
                    "inbound connection rejected",
                    extra={"address": str(client), "error": str(error) or "handshake timed out"},
                )
                writer.close()
                return
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(
                    route.forward_host, route.forward_port
                )
            except OSError as error:
                log.error(
                    "cannot reach the local application; closing the inbound connection",
                    extra={
                        "address": f"{route.forward_host}:{route.forward_port}",
                        "error": str(error),
                        "spiffe_id": str(peer),
                    },
                )
                await tls.close()
                return
            log.debug("inbound connection", extra={"spiffe_id": str(peer), "address": str(client)})
            await _relay(tls, upstream_reader, upstream_writer)

        return self._guarded(handle)

    def _outbound(self, route: OutboundRoute, context: MtlsContext) -> ConnectionHandler:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            remote = f"{route.remote_host}:{route.remote_port}"
            try:
                remote_reader, remote_writer = await asyncio.wait_for(
                    asyncio.open_connection(route.remote_host, route.remote_port),
                    self.handshake_timeout,
                )
            except (OSError, TimeoutError) as error:
                log.error(
                    "cannot reach the remote peer; closing the local connection",
                    extra={"address": remote, "error": str(error) or "connect timed out"},
                )
                writer.close()
                return
            tls = TlsStream(remote_reader, remote_writer, context.connection(None))
            try:
                peer = await tls.handshake(self.handshake_timeout)
            except (PeerRejectedError, TimeoutError, ConnectionError) as error:
                log.warning(
                    "outbound connection rejected the remote peer",
                    extra={"address": remote, "error": str(error) or "handshake timed out"},
                )
                remote_writer.close()
                writer.close()
                return
            log.debug("outbound connection", extra={"spiffe_id": str(peer), "address": remote})
            await _relay(tls, reader, writer)

        return self._guarded(handle)

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()
        for context in self._contexts:
            context.close()
        self._contexts.clear()
