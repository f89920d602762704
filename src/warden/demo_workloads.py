"""The two workloads of `make demo`: an orders API and a web front end that calls it.

Each runs in a child process forked from the demo. When the demo runs as root, each child
switches to its own uid first, so the agent's unix attestor tells them apart; the Python
interpreter stays the one already loaded, because other users may not be able to read it, and
so every module the children need is imported before they fork.
The API serves mutual TLS and accepts only the web front end's SPIFFE ID; the front end sends
a JWT-SVID inside the TLS connection, which the API validates through the Workload API. A
third process, under a uid with no entry, gets no identity at all.
"""

from __future__ import annotations

import encodings.idna  # noqa: F401 - loaded before the children drop privileges, see below
import logging
import os
import select
import socket
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from warden.demo import API_ID, API_UID, INTRUDER_UID, OPERATOR_ID, WEB_ID, WEB_UID
from warden.mtls import (
    WorkloadApiClient,
    WorkloadApiError,
    X509Source,
    authorize_id,
    client_context,
    dial,
    handshake,
    server_context,
)

TIMEOUT_SECONDS = 30.0


def _say(name: str, message: str) -> None:
    sys.stdout.write(f"  [{name}] {message}\n")
    sys.stdout.flush()


def _become(uid: int | None) -> None:
    if uid is None:
        return
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def _fork(name: str, uid: int | None, body: Callable[[], int]) -> int:
    """Run `body` in a child process (as `uid` when given); return the child's pid."""
    sys.stdout.flush()
    pid = os.fork()
    if pid:
        return pid
    status = 1
    try:
        # The first connection attempts can race the socket's permissions; say only failures.
        logging.getLogger("warden").setLevel(logging.ERROR)
        _become(uid)
        status = body()
    except BaseException as error:
        _say(name, f"failed: {error}")
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        os._exit(status)


def _wait(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _api(address: str, allowed: str, port_writer: int) -> int:
    with (
        X509Source(address, timeout=TIMEOUT_SECONDS) as source,
        WorkloadApiClient(address) as workload_api,
    ):
        _say("orders-api", f"my SPIFFE ID from the Workload API: {source.svid.spiffe_id}")
        context = server_context(source, authorize_id(allowed))
        listener = socket.create_server(("127.0.0.1", 0))
        os.write(port_writer, str(listener.getsockname()[1]).encode())
        os.close(port_writer)
        listener.settimeout(TIMEOUT_SECONDS)
        connection_socket, _ = listener.accept()
        connection_socket.setblocking(True)
        connection = context.connection(connection_socket)
        peer = handshake(connection, TIMEOUT_SECONDS)
        _say("orders-api", f"mutual TLS accepted; the caller is {peer}")
        token = connection.recv(16384).decode()
        validated = workload_api.validate_jwt_svid(token, API_ID)
        _say(
            "orders-api", f"the caller's JWT-SVID is valid for this API: sub={validated.spiffe_id}"
        )
        connection.sendall(f"order accepted for {peer}".encode())
        connection.shutdown()
        connection_socket.close()
        listener.close()
    return 0


def _web(address: str, expected_api: str, port: int) -> int:
    with (
        X509Source(address, timeout=TIMEOUT_SECONDS) as source,
        WorkloadApiClient(address) as workload_api,
    ):
        _say("web", f"my SPIFFE ID from the Workload API: {source.svid.spiffe_id}")
        token = workload_api.fetch_jwt_svid(audience=API_ID).token
        context = client_context(source, authorize_id(expected_api))
        connection, peer = dial("127.0.0.1", port, context, TIMEOUT_SECONDS)
        _say("web", f"connected over mutual TLS; the server is {peer}")
        connection.sendall(token.encode())
        reply = connection.recv(4096).decode()
        _say("web", f"reply: {reply!r}")
        connection.close()
    return 0


def _intruder(address: str) -> int:
    with WorkloadApiClient(address) as workload_api:
        try:
            workload_api.fetch_x509_svid(timeout=10)
        except WorkloadApiError as error:
            _say("intruder", f"no identity, as expected: {error}")
            return 0
    _say("intruder", "received an identity it should not have")
    return 1


def run_workloads(agent_socket: Path, distinct: bool, console: Console) -> bool:
    """Run the API, then the web front end against it, then the intruder; True if all passed."""
    address = f"unix://{agent_socket}"
    web_id, api_id = (WEB_ID, API_ID) if distinct else (OPERATOR_ID, OPERATOR_ID)
    reader, writer = os.pipe()
    api_pid = _fork(
        "orders-api", API_UID if distinct else None, lambda: _api(address, web_id, writer)
    )
    os.close(writer)
    ready, _, _ = select.select([reader], [], [], TIMEOUT_SECONDS + 5)
    port_text = os.read(reader, 16).decode() if ready else ""
    os.close(reader)
    if not port_text:
        console.print("[red]the orders API did not start listening[/]")
        _wait(api_pid)
        return False
    web_pid = _fork(
        "web", WEB_UID if distinct else None, lambda: _web(address, api_id, int(port_text))
    )
    results = [_wait(web_pid), _wait(api_pid)]
    if distinct:
        intruder_pid = _fork("intruder", INTRUDER_UID, lambda: _intruder(address))
        results.append(_wait(intruder_pid))
    return all(status == 0 for status in results)
