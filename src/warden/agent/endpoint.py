"""The Workload API endpoint: the public Unix socket, the relay and the gRPC server.

The gRPC server listens on a private socket in a fresh mode 0700 directory. The public socket
(mode 0777, in the directory the operator chose) is served by `PeerCredentialListener`, which
identifies each caller and relays its bytes to the private socket. Besides `SpiffeWorkloadAPI`, the
endpoint serves the standard gRPC health service (`grpc.health.v1.Health`), which
`warden api healthcheck` and `spire-agent healthcheck` call.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from warden.agent.attestor import CompositeAttestor
from warden.agent.listener import CallerRegistry, PeerCredentialListener
from warden.agent.manager import Manager
from warden.agent.proc import ProcFS
from warden.agent.ratelimit import RateLimit, RateLimiter
from warden.agent.workload_api import DEFAULT_SVID_WAIT_SECONDS, WorkloadApiHandler
from warden.api import workload_pb2_grpc

log = logging.getLogger(__name__)

#: The socket path SPIRE's agent uses, which Warden's tools also default to.
DEFAULT_SOCKET_PATH = Path("/tmp/spire-agent/public/api.sock")  # noqa: S108 - SPIRE's default
SERVICE_NAME = "SpiffeWorkloadAPI"


class WorkloadEndpoint:
    """Serves the Workload API for `manager` on `socket_path`."""

    def __init__(
        self,
        manager: Manager,
        attestor: CompositeAttestor,
        socket_path: Path | str = DEFAULT_SOCKET_PATH,
        *,
        rate_limit: RateLimit | None = None,
        proc: ProcFS | None = None,
        svid_wait: float = DEFAULT_SVID_WAIT_SECONDS,
    ) -> None:
        self.manager = manager
        self.attestor = attestor
        self.socket_path = Path(socket_path)
        self.callers = CallerRegistry()
        self.handler = WorkloadApiHandler(
            manager, attestor, self.callers, RateLimiter(rate_limit or RateLimit()), svid_wait
        )
        self._proc = proc or ProcFS()
        self._private_dir: Path | None = None
        self._server: grpc.aio.Server | None = None
        self._listener: PeerCredentialListener | None = None
        # grpc-stubs predates grpcio-health-checking's asyncio servicer.
        self._health = health.aio.HealthServicer()  # type: ignore[attr-defined, unused-ignore]

    async def start(self) -> None:
        """Start serving; raises if the socket path is taken by another process."""
        # /tmp keeps the private socket's path short enough for sun_path (108 bytes).
        self._private_dir = Path(tempfile.mkdtemp(prefix="warden-agent-", dir="/tmp"))
        os.chmod(self._private_dir, 0o700)
        upstream = self._private_dir / "workload.sock"
        try:
            self._server = grpc.aio.server()
            workload_pb2_grpc.add_SpiffeWorkloadAPIServicer_to_server(  # type: ignore[no-untyped-call, unused-ignore]
                self.handler, self._server
            )
            health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
            self._server.add_insecure_port(f"unix:{upstream}")
            await self._server.start()
            await self._health.set("", health_pb2.HealthCheckResponse.SERVING)
            await self._health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)

            self._listener = PeerCredentialListener(
                self.socket_path,
                upstream,
                self.callers,
                self._proc,
                open_executable=self.attestor.needs_executable,
            )
            await self._listener.start()
        except BaseException:
            await self.stop()
            raise
        log.info("Workload API serving", extra={"path": str(self.socket_path)})

    async def stop(self, grace: float = 1.0) -> None:
        """Stop accepting, end open streams after `grace` seconds, remove the sockets."""
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        if self._server is not None:
            await self._health.enter_graceful_shutdown()
            await self._server.stop(grace)
            self._server = None
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None
        log.info("Workload API stopped", extra={"path": str(self.socket_path)})

    @property
    def connection_count(self) -> int:
        return 0 if self._listener is None else self._listener.connection_count
