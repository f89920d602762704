"""pyOpenSSL connections over asyncio streams, through OpenSSL memory BIOs.

asyncio's own TLS accepts only `ssl.SSLContext`, which cannot keep trust domains apart (see
`warden.mtls.tls`). `TlsStream` runs a pyOpenSSL connection created without a socket: bytes
from the peer are fed into its input BIO and whatever OpenSSL produces is written out.
"""

from __future__ import annotations

import asyncio
import contextlib

from OpenSSL import SSL

from warden.mtls.tls import peer_spiffe_id
from warden.mtls.verify import PeerRejectedError
from warden.spiffe import SpiffeId

CHUNK_BYTES = 64 * 1024


class TlsStream:
    """A TLS connection over an asyncio reader and writer."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        connection: SSL.Connection,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.connection = connection
        self.peer: SpiffeId | None = None

    async def _flush(self) -> None:
        while True:
            try:
                data = self.connection.bio_read(CHUNK_BYTES)
            except SSL.WantReadError:
                break
            self.writer.write(data)
        await self.writer.drain()

    async def _fill(self) -> bool:
        data = await self.reader.read(CHUNK_BYTES)
        if not data:
            self.connection.bio_shutdown()
            return False
        self.connection.bio_write(data)
        return True

    async def handshake(self, timeout: float) -> SpiffeId:
        """Complete the handshake within `timeout` seconds; return the verified peer."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    self.connection.do_handshake()
                    break
                except SSL.WantReadError:
                    await self._flush()
                    if not await self._fill():
                        raise PeerRejectedError(
                            "the peer closed the connection during the handshake"
                        ) from None
                except SSL.Error as error:
                    # Send the alert OpenSSL prepared, so the peer learns why.
                    with contextlib.suppress(ConnectionError):
                        await self._flush()
                    try:
                        peer_spiffe_id(self.connection)
                    except PeerRejectedError:
                        raise
                    raise PeerRejectedError(f"TLS handshake failed: {error}") from None
            await self._flush()
        self.peer = peer_spiffe_id(self.connection)
        return self.peer

    async def read(self, size: int = CHUNK_BYTES) -> bytes:
        """Return up to `size` bytes of plaintext; b"" at the end of the stream."""
        while True:
            try:
                return bytes(self.connection.recv(size))
            except SSL.WantReadError:
                await self._flush()
                if not await self._fill():
                    try:
                        return bytes(self.connection.recv(size))
                    except (SSL.ZeroReturnError, SSL.SysCallError, SSL.WantReadError):
                        return b""
            except (SSL.ZeroReturnError, SSL.SysCallError):
                return b""

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self.connection.send(view[:CHUNK_BYTES].tobytes())
            view = view[written:]
            await self._flush()

    async def close_write(self) -> None:
        """Send close_notify: this side sends no more data, and may still read."""
        with contextlib.suppress(SSL.Error, ConnectionError):
            self.connection.shutdown()
            await self._flush()

    async def close(self) -> None:
        """Send close_notify when possible and close the transport."""
        with contextlib.suppress(SSL.Error, ConnectionError):
            self.connection.shutdown()
            await self._flush()
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
