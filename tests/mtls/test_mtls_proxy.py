"""The mTLS proxy: an application without TLS reaches another one over mutual TLS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from agent_support import LocalCA
from mtls_support import StaticSource, issue

from warden.mtls import authorize_id, authorize_member_of
from warden.mtls.proxy import InboundRoute, MtlsProxy, OutboundRoute

SERVER_ID = "spiffe://example.org/backend"
CLIENT_ID = "spiffe://example.org/frontend"


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    """A plain TCP application: answers each line with `echo:<line>`, until EOF."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(b"echo:" + line)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, limit=1 << 20)
    yield server.sockets[0].getsockname()[1]
    server.close()


async def start_pair(
    ca: LocalCA,
    echo_port: int,
    *,
    client_id: str = CLIENT_ID,
    allowed: str = CLIENT_ID,
    expected: str = SERVER_ID,
) -> tuple[MtlsProxy, MtlsProxy, int]:
    inbound = MtlsProxy(
        StaticSource(issue(ca, SERVER_ID), ca),
        inbound=[InboundRoute("127.0.0.1", 0, "127.0.0.1", echo_port, authorize_id(allowed))],
    )
    await inbound.start()
    outbound = MtlsProxy(
        StaticSource(issue(ca, client_id), ca),
        outbound=[
            OutboundRoute("127.0.0.1", 0, "127.0.0.1", inbound.ports[0], authorize_id(expected))
        ],
    )
    await outbound.start()
    return inbound, outbound, outbound.ports[0]


async def talk(port: int, lines: list[bytes]) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for line in lines:
        writer.write(line)
    await writer.drain()
    writer.write_eof()
    reply = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return reply


async def test_plain_client_reaches_plain_server_over_mtls(echo_port: int) -> None:
    ca = LocalCA()
    inbound, outbound, port = await start_pair(ca, echo_port)
    try:
        reply = await talk(port, [b"hello\n", b"again\n"])
    finally:
        await outbound.stop()
        await inbound.stop()

    assert reply == b"echo:hello\necho:again\n"


async def test_large_payload_relayed_intact(echo_port: int) -> None:
    ca = LocalCA()
    inbound, outbound, port = await start_pair(ca, echo_port)
    payload = bytes(range(256)).replace(b"\n", b"") * 2000 + b"\n"
    try:
        reply = await talk(port, [payload])
    finally:
        await outbound.stop()
        await inbound.stop()

    assert reply == b"echo:" + payload


async def test_inbound_rejects_unauthorised_client(echo_port: int) -> None:
    ca = LocalCA()
    inbound, outbound, port = await start_pair(
        ca, echo_port, client_id="spiffe://example.org/intruder"
    )
    try:
        reply = await talk(port, [b"hello\n"])
    finally:
        await outbound.stop()
        await inbound.stop()

    assert reply == b""


async def test_outbound_rejects_unexpected_server(echo_port: int) -> None:
    ca = LocalCA()
    inbound, outbound, port = await start_pair(ca, echo_port, expected="spiffe://example.org/other")
    try:
        reply = await talk(port, [b"hello\n"])
    finally:
        await outbound.stop()
        await inbound.stop()

    assert reply == b""


async def test_inbound_rejects_client_of_other_ca(echo_port: int) -> None:
    ca = LocalCA()
    inbound = MtlsProxy(
        StaticSource(issue(ca, SERVER_ID), ca),
        inbound=[
            InboundRoute("127.0.0.1", 0, "127.0.0.1", echo_port, authorize_member_of("example.org"))
        ],
    )
    await inbound.start()
    foreign = LocalCA()
    outbound = MtlsProxy(
        StaticSource(issue(foreign, CLIENT_ID), ca),
        outbound=[
            OutboundRoute("127.0.0.1", 0, "127.0.0.1", inbound.ports[0], authorize_id(SERVER_ID))
        ],
    )
    await outbound.start()
    try:
        reply = await talk(outbound.ports[0], [b"hello\n"])
    finally:
        await outbound.stop()
        await inbound.stop()

    assert reply == b""


def test_proxy_needs_a_route() -> None:
    ca = LocalCA()

    with pytest.raises(ValueError, match="at least one"):
        MtlsProxy(StaticSource(issue(ca, SERVER_ID), ca))
