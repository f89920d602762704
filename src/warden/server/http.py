"""HTTP listeners of the server process (health checks, metrics, later the HTTP API),
served by uvicorn inside the server's own event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Generator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger(__name__)


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the process that embeds it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpListener:
    """One HTTP(S) listener serving an ASGI application."""

    def __init__(self, app: Starlette, host: str, port: int, name: str) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.name = name
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> int:
        """Bind and start serving; return the bound port (useful with port 0)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # With IPPROTO_TCP asyncio sets TCP_NODELAY on each connection; with protocol 0 it
        # does not, and small responses wait about 40 ms for the client's delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as error:
            sock.close()
            raise OSError(
                error.errno,
                f"{self.name}: cannot listen on {self.host}:{self.port}: {error.strerror}; "
                "choose another bind_address or bind_port",
            ) from error
        sock.listen(1024)
        sock.setblocking(False)
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="off", access_log=False, loop="none"
        )
        if ssl_context is not None:
            config.ssl = ssl_context
        self._server = _EmbeddedServer(config)
        if ssl_context is not None:
            config.load()
            config.ssl = ssl_context
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        for _ in range(200):
            if self._server.started or self._task.done():
                break
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()
        log.info(f"{self.name} listening", extra={"address": f"{self.host}:{self.port}"})
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5)
        if self._socket is not None:
            self._socket.close()


def health_app(live_path: str, ready_path: str, status: HealthStatus) -> Starlette:
    """Build the `/live` and `/ready` endpoints, in SPIRE's shape (200 when healthy, 500 if not)."""

    async def live(request: Request) -> Response:
        live_now, detail = status.live()
        return JSONResponse(
            {"live": live_now, "detail": detail}, status_code=200 if live_now else 500
        )

    async def ready(request: Request) -> Response:
        ready_now, detail = status.ready()
        return JSONResponse(
            {"ready": ready_now, "detail": detail}, status_code=200 if ready_now else 500
        )

    return Starlette(routes=[Route(live_path, live), Route(ready_path, ready)])


class HealthStatus:
    """The state the health endpoints report, which the server updates."""

    def __init__(self) -> None:
        self._live = True
        self._ready = False
        self._detail: dict[str, object] = {}

    def set(self, *, live: bool | None = None, ready: bool | None = None, **detail: object) -> None:
        if live is not None:
            self._live = live
        if ready is not None:
            self._ready = ready
        self._detail.update(detail)

    def live(self) -> tuple[bool, dict[str, object]]:
        return self._live, dict(self._detail)

    def ready(self) -> tuple[bool, dict[str, object]]:
        return self._live and self._ready, dict(self._detail)


def metrics_app(registry: Any) -> Starlette:
    """Prometheus metrics in the text exposition format, at `/metrics` (and `/`)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/metrics", metrics), Route("/", metrics)])
