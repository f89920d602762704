"""A synchronous client of the server's admin API, for the CLI and for scripts.

It talks to the local admin socket by default; with `ClientCredentials` it goes over mutual
TLS to `bind_address:bind_port` instead, for callers whose SPIFFE ID is in `admin_ids`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from warden.api.server.v1 import admin_pb2, admin_pb2_grpc, types_pb2

#: SPIRE's default path of the server's admin socket, kept so that habits carry over.
DEFAULT_SOCKET_PATH = "/tmp/spire-server/private/api.sock"  # noqa: S108 - SPIRE's default


class AdminError(Exception):
    """An admin call failed; the message says why and what to do."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


def default_socket_path() -> str:
    return os.environ.get("WARDEN_SERVER_SOCKET", DEFAULT_SOCKET_PATH)


class AdminClient:
    """Calls the admin services; every method raises `AdminError` with a readable message."""

    def __init__(self, socket_path: str | None = None, timeout: float = 30.0) -> None:
        self.socket_path = socket_path or default_socket_path()
        self.timeout = timeout
        self._channel = grpc.insecure_channel(
            f"unix:{self.socket_path}",
            options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)],
        )
        self.entries = admin_pb2_grpc.EntriesStub(self._channel)
        self.agents = admin_pb2_grpc.AgentsStub(self._channel)
        self.bundles = admin_pb2_grpc.BundlesStub(self._channel)
        self.svids = admin_pb2_grpc.SVIDsStub(self._channel)
        self.audit = admin_pb2_grpc.AuditLogStub(self._channel)
        self.status = admin_pb2_grpc.ServerStatusStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: Any, request: Any) -> Any:
        """Call a unary admin method, turning gRPC failures into `AdminError`."""
        if not Path(self.socket_path).exists():
            raise AdminError(
                f"the server's admin socket {self.socket_path} does not exist: start the server "
                "with 'warden server run -config FILE', or pass -socketPath",
                grpc.StatusCode.UNAVAILABLE,
            )
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise _admin_error(error, self.socket_path) from None

    def stream(self, method: Any, request: Any) -> Iterator[Any]:
        try:
            yield from method(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise _admin_error(error, self.socket_path) from None

    # Convenience wrappers used by the CLI and the demo.

    def create_entries(self, entries: list[types_pb2.Entry]) -> admin_pb2.BatchCreateEntryResponse:
        return self.call(
            self.entries.BatchCreateEntry, admin_pb2.BatchCreateEntryRequest(entries=entries)
        )

    def list_entries(
        self, entry_filter: admin_pb2.EntryFilter | None = None
    ) -> list[types_pb2.Entry]:
        result: list[types_pb2.Entry] = []
        token = ""
        while True:
            response = self.call(
                self.entries.ListEntries,
                admin_pb2.ListEntriesRequest(filter=entry_filter, page_size=1000, page_token=token),
            )
            result.extend(response.entries)
            token = response.next_page_token
            if not token:
                return result

    def create_join_token(self, ttl: int, owner: str, alias: str = "") -> admin_pb2.JoinToken:
        return self.call(
            self.agents.CreateJoinToken,
            admin_pb2.CreateJoinTokenRequest(ttl=ttl, owner=owner, alias_spiffe_id=alias),
        )

    def get_bundle(self) -> types_pb2.Bundle:
        return self.call(self.bundles.GetBundle, admin_pb2.GetBundleRequest())

    def get_status(self) -> admin_pb2.GetStatusResponse:
        return self.call(self.status.GetStatus, admin_pb2.GetStatusRequest())


def _admin_error(error: grpc.RpcError, socket_path: str) -> AdminError:
    code = error.code() if hasattr(error, "code") else None
    details = error.details() if hasattr(error, "details") else str(error)
    if code == grpc.StatusCode.UNAVAILABLE:
        return AdminError(
            f"cannot reach the Warden server at {socket_path}: {details}; is "
            "'warden server run' running, and is -socketPath right?",
            code,
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return AdminError(f"the server at {socket_path} did not answer in time: {details}", code)
    return AdminError(details or str(code), code)
