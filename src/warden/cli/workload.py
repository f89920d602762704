"""Commands around the Workload API: `warden api ...` (like `spire-agent api`),
`warden helper` (like spiffe-helper) and `warden proxy`.

Flags are single-dash, as spire-agent's are (`-socketPath`). The socket defaults to
`SPIFFE_ENDPOINT_SOCKET`, else SPIRE's `/tmp/spire-agent/public/api.sock`.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from warden.mtls import X509Context

SOCKET_HELP = (
    "Workload API socket: a path or unix:///path; default $SPIFFE_ENDPOINT_SOCKET, "
    "else /tmp/spire-agent/public/api.sock"
)

SocketPath = Annotated[str | None, typer.Option("-socketPath", "--socket-path", help=SOCKET_HELP)]
Output = Annotated[
    str, typer.Option("-output", "--output", help="Output format: text (for people) or json")
]
Timeout = Annotated[
    float, typer.Option("-timeout", "--timeout", help="Seconds to wait for the Workload API")
]

api_app = typer.Typer(
    help="Call the SPIFFE Workload API, as spire-agent api does.", no_args_is_help=True
)
fetch_app = typer.Typer(help="Fetch SVIDs from the Workload API.", no_args_is_help=True)
validate_app = typer.Typer(help="Validate SVIDs through the Workload API.", no_args_is_help=True)
proxy_app = typer.Typer(
    help="Give an application without TLS mutual TLS with its SVID.", no_args_is_help=True
)
api_app.add_typer(fetch_app, name="fetch")
api_app.add_typer(validate_app, name="validate")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _check_output(output: str) -> None:
    if output not in ("text", "json"):
        raise _fail(f"invalid -output {output!r}: use text or json")


def _client(socket_path: str | None, timeout: float) -> Any:
    from warden.mtls import EndpointAddressError, WorkloadApiClient

    try:
        return WorkloadApiClient(socket_path, timeout=timeout)
    except EndpointAddressError as error:
        raise _fail(str(error)) from None


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _context_document(context: X509Context) -> dict[str, Any]:
    return {
        "svids": [
            {
                "spiffe_id": str(svid.spiffe_id),
                "hint": svid.hint,
                "not_before": _time(svid.leaf.not_valid_before_utc),
                "not_after": _time(svid.leaf.not_valid_after_utc),
                "serial": f"{svid.leaf.serial_number:x}",
                "chain_length": len(svid.chain),
            }
            for svid in context.svids
        ],
        "bundles": {
            str(bundle.trust_domain): [
                {
                    "subject": certificate.subject.rfc4514_string(),
                    "not_before": _time(certificate.not_valid_before_utc),
                    "not_after": _time(certificate.not_valid_after_utc),
                }
                for certificate in bundle.x509_authorities
            ]
            for bundle in context.bundles
        },
    }


def _print_context(context: X509Context, elapsed: float) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    count = len(context.svids)
    console.print(f"Received {count} svid{'s' if count != 1 else ''} after {elapsed * 1000:.1f}ms")
    # Columns fold rather than truncate: a shortened SPIFFE ID or serial would mislead.
    table = Table("SPIFFE ID", "Hint", "Valid after", "Valid until", "Serial")
    for column in table.columns:
        column.overflow = "fold"
    for svid in context.svids:
        table.add_row(
            str(svid.spiffe_id),
            svid.hint,
            _time(svid.leaf.not_valid_before_utc),
            _time(svid.leaf.not_valid_after_utc),
            f"{svid.leaf.serial_number:x}",
        )
    console.print(table)
    authorities = Table("Trust domain", "CA", "Valid after", "Valid until")
    for column in authorities.columns:
        column.overflow = "fold"
    for bundle in context.bundles:
        for certificate in bundle.x509_authorities:
            authorities.add_row(
                str(bundle.trust_domain),
                certificate.subject.rfc4514_string(),
                _time(certificate.not_valid_before_utc),
                _time(certificate.not_valid_after_utc),
            )
    console.print(authorities)


def _write_context(context: X509Context, directory: Path) -> list[Path]:
    """Write spire-agent's files: svid.N.pem, svid.N.key, bundle.N.pem, federated_bundle.N.M.pem."""
    from cryptography.hazmat.primitives import serialization

    from warden.mtls.files import write_atomically

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for index, svid in enumerate(context.svids):
        own = context.bundles.get_bundle_for_trust_domain(svid.spiffe_id.trust_domain)
        files = {
            f"svid.{index}.pem": (svid.chain_pem(), 0o644),
            f"svid.{index}.key": (svid.key_pem(), 0o600),
            f"bundle.{index}.pem": (own.to_pem().encode() if own else b"", 0o644),
        }
        others = [b for b in context.bundles if b.trust_domain != svid.spiffe_id.trust_domain]
        for number, bundle in enumerate(others):
            files[f"federated_bundle.{index}.{number}.pem"] = (
                b"".join(
                    c.public_bytes(serialization.Encoding.PEM) for c in bundle.x509_authorities
                ),
                0o644,
            )
        for name, (data, mode) in files.items():
            write_atomically(directory / name, data, mode)
            written.append(directory / name)
    return written


@fetch_app.command("x509")
def fetch_x509(
    socket_path: SocketPath = None,
    write: Annotated[
        Path | None,
        typer.Option("-write", "--write", help="Directory to write the SVIDs, keys and bundles to"),
    ] = None,
    silent: Annotated[bool, typer.Option("-silent", "--silent", help="Print nothing")] = False,
    output: Output = "text",
    timeout: Timeout = 5.0,
) -> None:
    """Fetch the workload's X509-SVIDs and bundles."""
    from warden.mtls import WorkloadApiError

    _check_output(output)
    client = _client(socket_path, timeout)
    started = time.monotonic()
    try:
        context = client.fetch_x509_context()
    except WorkloadApiError as error:
        raise _fail(str(error)) from None
    finally:
        client.close()
    elapsed = time.monotonic() - started
    try:
        written = _write_context(context, write) if write is not None else []
    except OSError as error:
        raise _fail(
            f"cannot write the SVID files to {write}: {error.strerror or error}; choose a "
            "directory you can write to"
        ) from None
    if silent:
        return
    if output == "json":
        document = _context_document(context)
        document["written"] = [str(path) for path in written]
        typer.echo(json.dumps(document, indent=2))
        return
    _print_context(context, elapsed)
    for path in written:
        typer.echo(f"Writing {path}")


@fetch_app.command("jwt")
def fetch_jwt(
    audience: Annotated[
        list[str],
        typer.Option("-audience", "--audience", help="Audience of the token (repeatable)"),
    ],
    spiffe_id: Annotated[
        str | None,
        typer.Option("-spiffeID", "--spiffe-id", help="Fetch only this SPIFFE ID's token"),
    ] = None,
    socket_path: SocketPath = None,
    output: Output = "text",
    timeout: Timeout = 5.0,
) -> None:
    """Fetch JWT-SVIDs for an audience, and the JWT bundles."""
    from warden.mtls import WorkloadApiError

    _check_output(output)
    client = _client(socket_path, timeout)
    try:
        tokens = client.fetch_jwt_svids(audience, spiffe_id)
        bundles = client.fetch_jwt_bundles()
    except (WorkloadApiError, ValueError) as error:
        raise _fail(str(error)) from None
    finally:
        client.close()
    if output == "json":
        typer.echo(
            json.dumps(
                {
                    "svids": [
                        {"spiffe_id": str(token.spiffe_id), "svid": token.token, "hint": token.hint}
                        for token in tokens
                    ],
                    "bundles": {str(bundle.trust_domain): bundle.to_jwks() for bundle in bundles},
                },
                indent=2,
            )
        )
        return
    for token in tokens:
        typer.echo(f"token({token.spiffe_id}):\n\t{token.token}")
    for bundle in bundles:
        typer.echo(f"bundle({bundle.trust_domain}):\n\t{bundle.to_jwks_json()}")


@validate_app.command("jwt")
def validate_jwt(
    audience: Annotated[str, typer.Option("-audience", "--audience", help="The expected audience")],
    svid: Annotated[str, typer.Option("-svid", "--svid", help="The JWT-SVID to validate")],
    socket_path: SocketPath = None,
    output: Output = "text",
    timeout: Timeout = 5.0,
) -> None:
    """Validate a JWT-SVID for an audience through the agent."""
    from warden.mtls import WorkloadApiError
    from warden.mtls.client import claims_json

    _check_output(output)
    client = _client(socket_path, timeout)
    try:
        result = client.validate_jwt_svid(svid, audience)
    except WorkloadApiError as error:
        raise _fail(f"SVID is not valid: {error}") from None
    finally:
        client.close()
    if output == "json":
        typer.echo(
            json.dumps({"spiffe_id": str(result.spiffe_id), "claims": result.claims}, indent=2)
        )
        return
    typer.echo("SVID is valid.")
    typer.echo(f"SPIFFE ID : {result.spiffe_id}")
    typer.echo(f"Claims    : {claims_json(result.claims)}")


@api_app.command("watch")
def watch(socket_path: SocketPath = None) -> None:
    """Print the workload's X509-SVIDs at once and after every change, until interrupted."""
    from warden.mtls import WorkloadApiError

    client = _client(socket_path, 5.0)
    started = time.monotonic()
    try:
        for context in client.stream_x509_contexts():
            _print_context(context, time.monotonic() - started)
            sys.stdout.flush()
            started = time.monotonic()
    except WorkloadApiError as error:
        raise _fail(str(error)) from None
    except KeyboardInterrupt:
        pass
    finally:
        client.close()


@api_app.command("healthcheck")
def healthcheck(
    socket_path: SocketPath = None,
    shallow: Annotated[
        bool, typer.Option("-shallow", "--shallow", help="Accepted for spire-agent compatibility")
    ] = False,
    verbose: Annotated[bool, typer.Option("-verbose", "--verbose", help="Print details")] = False,
    timeout: Timeout = 5.0,
) -> None:
    """Check that the agent serves the Workload API (gRPC health service)."""
    from warden.mtls import WorkloadApiError

    if verbose:
        typer.echo("Checking agent health...")
    client = _client(socket_path, timeout)
    try:
        status = client.health_check()
    except WorkloadApiError as error:
        if verbose:
            typer.echo(f"Failed to check health: {error}", err=True)
        typer.echo("Agent is unhealthy: unable to determine health", err=True)
        raise typer.Exit(1) from None
    finally:
        client.close()
    if status != "SERVING":
        typer.echo(f"Agent is unhealthy: agent returned status {status}", err=True)
        raise typer.Exit(1)
    typer.echo("Agent is healthy.")


def helper(
    config: Annotated[
        Path, typer.Option("-config", "--config", help="Helper configuration file (HCL)")
    ] = Path("helper.conf"),
    exit_when_ready: Annotated[
        bool,
        typer.Option("-exitWhenReady", "--exit-when-ready", help="Write the files once and exit"),
    ] = False,
    log_level: Annotated[
        str, typer.Option("-logLevel", "--log-level", help="debug, info, warn or error")
    ] = "info",
) -> None:
    """Keep SVID, key and bundle files current and reload a program on rotation."""
    import signal

    from warden import logs
    from warden.mtls import WorkloadApiError
    from warden.mtls.helper import Helper, HelperConfigError, load_config

    try:
        logs.configure(log_level)
        settings = load_config(config)
    except (HelperConfigError, ValueError) as error:
        raise _fail(str(error)) from None
    if exit_when_ready:
        settings = settings.model_copy(update={"daemon_mode": False})
    runner = Helper(settings)
    signal.signal(signal.SIGTERM, lambda *_: runner.stop())
    signal.signal(signal.SIGINT, lambda *_: runner.stop())
    try:
        code = runner.run()
    except WorkloadApiError as error:
        raise _fail(str(error)) from None
    raise typer.Exit(code)


def _host_port(value: str, flag: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise _fail(f"invalid {flag} {value!r}: write host:port, such as 127.0.0.1:8443")
    return host.strip("[]"), int(port)


def _run_proxy(socket_path: str | None, build: Any) -> None:
    import asyncio
    import signal

    from warden import logs
    from warden.mtls import WorkloadApiError, X509Source

    logs.configure("info")
    try:
        source = X509Source(socket_path, timeout=30)
    except WorkloadApiError as error:
        raise _fail(str(error)) from None

    async def serve() -> None:
        proxy = build(source)
        await proxy.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, stop.set)
        typer.echo("proxy listening on " + ", ".join(str(port) for port in proxy.ports))
        await stop.wait()
        await proxy.stop()

    try:
        asyncio.run(serve())
    except OSError as error:
        raise _fail(f"cannot start the proxy: {error}") from None
    finally:
        source.close()


@proxy_app.command("inbound")
def proxy_inbound(
    listen: Annotated[str, typer.Option("-listen", "--listen", help="host:port to accept mTLS on")],
    forward: Annotated[
        str, typer.Option("-forward", "--forward", help="host:port of the local application")
    ],
    allow: Annotated[
        list[str] | None,
        typer.Option("-allow", "--allow", help="A client SPIFFE ID to accept (repeatable)"),
    ] = None,
    allow_trust_domain: Annotated[
        list[str] | None,
        typer.Option(
            "-allowTrustDomain",
            "--allow-trust-domain",
            help="Accept any client of this trust domain",
        ),
    ] = None,
    socket_path: SocketPath = None,
) -> None:
    """Terminate mTLS and forward clients with an allowed SPIFFE ID to a local port."""
    from warden.mtls import authorize_member_of, authorize_one_of
    from warden.mtls.proxy import InboundRoute, MtlsProxy
    from warden.spiffe import SpiffeError

    if bool(allow) == bool(allow_trust_domain):
        raise _fail("give either -allow (SPIFFE IDs) or -allowTrustDomain, not both or neither")
    try:
        authorizer = (
            authorize_one_of(allow) if allow else authorize_member_of(*(allow_trust_domain or []))
        )
    except (SpiffeError, ValueError) as error:
        raise _fail(str(error)) from None
    listen_host, listen_port = _host_port(listen, "-listen")
    forward_host, forward_port = _host_port(forward, "-forward")
    route = InboundRoute(listen_host, listen_port, forward_host, forward_port, authorizer)
    _run_proxy(socket_path, lambda source: MtlsProxy(source, inbound=[route]))


@proxy_app.command("outbound")
def proxy_outbound(
    listen: Annotated[
        str, typer.Option("-listen", "--listen", help="Local host:port the application connects to")
    ],
    connect: Annotated[
        str, typer.Option("-connect", "--connect", help="host:port of the remote peer")
    ],
    expect: Annotated[
        list[str],
        typer.Option("-expect", "--expect", help="SPIFFE ID the remote must present (repeatable)"),
    ],
    socket_path: SocketPath = None,
) -> None:
    """Accept plain TCP locally and originate mTLS to a remote peer with an expected ID."""
    from warden.mtls import authorize_one_of
    from warden.mtls.proxy import MtlsProxy, OutboundRoute
    from warden.spiffe import SpiffeError

    try:
        authorizer = authorize_one_of(expect)
    except (SpiffeError, ValueError) as error:
        raise _fail(str(error)) from None
    listen_host, listen_port = _host_port(listen, "-listen")
    remote_host, remote_port = _host_port(connect, "-connect")
    route = OutboundRoute(listen_host, listen_port, remote_host, remote_port, authorizer)
    _run_proxy(socket_path, lambda source: MtlsProxy(source, outbound=[route]))


def dev(
    trust_domain: Annotated[
        str, typer.Option("-trustDomain", "--trust-domain", help="Trust domain of the dev stack")
    ] = "dev.example.org",
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "-dataDir",
            "--data-dir",
            help="Directory for the server's and agent's data (default: a new temporary one)",
        ),
    ] = None,
) -> None:
    """Run a server and an agent on this machine with development defaults, until Ctrl-C."""
    import asyncio

    from warden import logs

    logs.configure("warn")
    try:
        asyncio.run(_run_dev(trust_domain, data_dir))
    except KeyboardInterrupt:
        pass
    except (OSError, ValueError) as error:
        raise _fail(f"the dev stack failed: {error}") from None


async def _run_dev(trust_domain_name: str, data_dir: Path | None) -> None:
    import asyncio
    import os
    import signal
    import socket
    import tempfile

    from prometheus_client import CollectorRegistry

    from warden.agent.attestor import UnixAttestor
    from warden.agent.nodeattest import JoinTokenAttestor
    from warden.agent.runtime import Agent, AgentOptions
    from warden.api.server.v1 import types_pb2
    from warden.pki.keys import DiskKeyManager
    from warden.server.app import WardenServer
    from warden.server.client import AdminClient
    from warden.server.metrics import Metrics
    from warden.server.options import ServerOptions
    from warden.spiffe import Bundle, TrustDomain

    loop_time = asyncio.get_running_loop().time
    trust_domain = TrustDomain.parse(trust_domain_name)
    # Short paths under /tmp keep the sockets within sun_path's 108 bytes. A directory the
    # command created is removed when it stops; one the user named is kept.
    temporary = data_dir is None
    root = data_dir or Path(tempfile.mkdtemp(prefix="warden-dev-", dir="/tmp"))
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # workloads of every user reach the agent socket inside
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    options = ServerOptions(
        trust_domain=trust_domain,
        data_dir=root / "server",
        bind_address="127.0.0.1",
        bind_port=port,
        socket_path=root / "server" / "api.sock",
        node_attestors={"join_token": {}},
    )
    server = WardenServer(options, metrics=Metrics(CollectorRegistry()))
    await server.start()
    agent: Agent | None = None
    run: asyncio.Task[int] | None = None
    try:
        admin = AdminClient(str(options.socket_path))
        token = await asyncio.to_thread(admin.create_join_token, 600, "warden-dev")
        bundle_message = await asyncio.to_thread(admin.get_bundle)
        agent_socket = root / "agent.sock"
        agent = Agent(
            AgentOptions(
                trust_domain=trust_domain,
                server_host="127.0.0.1",
                server_port=port,
                socket_path=agent_socket,
                data_dir=root / "agent",
                node_attestor=JoinTokenAttestor(token.value),
                key_manager=DiskKeyManager(root / "agent" / "keys"),
                workload_attestors=[UnixAttestor()],
                bootstrap_bundle=Bundle.from_jwks_json(trust_domain, bundle_message.spiffe_json),
            )
        )
        run = asyncio.create_task(agent.run())
        while agent.identity is None and not run.done():
            await asyncio.sleep(0.05)
        if run.done():
            raise ValueError(f"the agent did not start: {agent.stop_reason}")
        agent_id = str(agent.identity.spiffe_id)  # type: ignore[union-attr]
        uid = os.getuid()
        own_id = f"spiffe://{trust_domain}/dev/uid-{uid}"
        entry = types_pb2.Entry(
            spiffe_id=own_id,
            parent_id=agent_id,
            selectors=[types_pb2.Selector(type="unix", value=f"uid:{uid}")],
            owner="warden-dev",
            description="created by warden dev for the user who started it",
        )
        created = await asyncio.to_thread(admin.create_entries, [entry])
        admin.close()
        entry_id = created.results[0].entry.id
        # Print the banner once the agent can serve the entry, so the commands work at once.
        deadline = loop_time() + 30
        while agent.manager.cached_svid(entry_id) is None and loop_time() < deadline:
            await asyncio.sleep(0.05)

        typer.echo(
            f"""Warden dev stack is running; stop it with Ctrl-C. Data: {root}

  Trust domain       {trust_domain}
  Workload API       unix://{agent_socket}
  Server admin API   {options.socket_path}
  Agent              {agent_id}
  Your identity      {own_id} (entry for unix:uid:{uid})

Try:
  export SPIFFE_ENDPOINT_SOCKET=unix://{agent_socket}
  export WARDEN_SERVER_SOCKET={options.socket_path}
  warden api fetch x509
  warden api fetch jwt -audience demo
  warden entry create -parentID {agent_id} -spiffeID spiffe://{trust_domain}/app \\
      -selector unix:uid:1000 -owner you
  warden api watch
"""
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, stop.set)
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, run}, return_when=asyncio.FIRST_COMPLETED)
        agent.stop("the dev stack is stopping")
        await run
        typer.echo("Warden dev stack stopped.")
    finally:
        if agent is not None and run is not None and not run.done():
            agent.stop("the dev stack is stopping")
            await run
        await server.stop()
        if temporary:
            import shutil

            shutil.rmtree(root, ignore_errors=True)


def register(app: typer.Typer) -> None:
    """Add this family's commands to `app`."""
    app.add_typer(api_app, name="api")
    app.command("helper")(helper)
    app.add_typer(proxy_app, name="proxy")
    app.command("dev")(dev)
