"""The agent's `health_checks` (`/live`, `/ready`) and Prometheus listeners.

Both are tiny HTTP/1.1 servers on asyncio: each answers one GET and closes the connection,
which is all that a health probe or a Prometheus scrape needs. Metrics are named with
SPIRE's agent keys under the `spire_agent` prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS = 5.0
MAX_REQUEST_BYTES = 8192

# path -> (status, content type, body)
Handler = Callable[[], Awaitable[tuple[int, str, bytes]]]

_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}


@dataclass(frozen=True)
class ListenerSettings:
    host: str
    port: int


class SmallHttpServer:
    """Serves GET requests for a fixed set of paths."""

    def __init__(self, name: str, routes: dict[str, Handler]) -> None:
        self.name = name
        self._routes = routes
        self._server: asyncio.base_events.Server | None = None
        self.port: int | None = None

    async def start(self, settings: ListenerSettings) -> int:
        try:
            self._server = await asyncio.start_server(self._handle, settings.host, settings.port)
        except OSError as error:
            raise OSError(
                error.errno,
                f"{self.name}: cannot listen on {settings.host}:{settings.port}: "
                f"{error.strerror}; choose another bind_address or port",
            ) from error
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("listening", extra={"address": f"{settings.host}:{self.port}", "path": self.name})
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_SECONDS)
        except (
            TimeoutError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
        ):
            writer.close()
            return
        if len(head) > MAX_REQUEST_BYTES:
            writer.close()
            return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        method, path = [*request_line, "", ""][:2]
        route = self._routes.get(path.split("?", 1)[0])
        if route is None:
            status, content_type, body = 404, "text/plain", b"not found\n"
        elif method != "GET":
            status, content_type, body = 405, "text/plain", b"only GET is allowed\n"
        else:
            status, content_type, body = await route()
        writer.write(
            (
                f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            + body
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()


class AgentObservability:
    """The agent's health and metrics listeners, fed by `live()` and `ready()` checks."""

    def __init__(self, ready: Callable[[], tuple[bool, str]]) -> None:
        self._ready = ready
        self._started = time.monotonic()
        self.registry = CollectorRegistry()
        self._started_gauge = Gauge(
            "spire_agent_started", "Unix time at which the agent started", registry=self.registry
        )
        self._uptime = Gauge(
            "spire_agent_uptime_in_ms",
            "Time since the agent started, in milliseconds",
            registry=self.registry,
        )
        self._ready_gauge = Gauge(
            "spire_agent_ready",
            "1 while the agent holds a current SVID and serves the Workload API",
            registry=self.registry,
        )
        self._started_gauge.set(time.time())
        self._servers: list[SmallHttpServer] = []

    async def start(
        self,
        health: ListenerSettings | None,
        live_path: str,
        ready_path: str,
        prometheus: ListenerSettings | None,
    ) -> None:
        if health is not None:
            server = SmallHttpServer(
                "health checks", {live_path: self._live, ready_path: self._readiness}
            )
            await server.start(health)
            self._servers.append(server)
        if prometheus is not None:
            server = SmallHttpServer("metrics", {"/metrics": self._metrics, "/": self._metrics})
            await server.start(prometheus)
            self._servers.append(server)

    async def stop(self) -> None:
        for server in self._servers:
            await server.stop()

    @property
    def ports(self) -> list[int | None]:
        return [server.port for server in self._servers]

    async def _live(self) -> tuple[int, str, bytes]:
        return 200, "application/json", json.dumps({"live": True}).encode()

    async def _readiness(self) -> tuple[int, str, bytes]:
        ready, detail = self._ready()
        body = json.dumps({"ready": ready, "detail": detail}).encode()
        return (200 if ready else 500), "application/json", body

    async def _metrics(self) -> tuple[int, str, bytes]:
        self._uptime.set((time.monotonic() - self._started) * 1000)
        self._ready_gauge.set(1 if self._ready()[0] else 0)
        return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
