"""Credential commands: `warden cloud-trust aws|gcp|azure` and `warden creds ...`.

`cloud-trust` prints what an operator creates in a cloud so that it accepts Warden's
federation tokens. `creds token` and `creds db` run as a workload: they take the workload's
identity from the Workload API and call the server's HTTP API. The operator commands
(`creds db list`, `revoke -prefix`, `rotate-root`) read the server's configuration file and
work on its datastore and databases directly, so they need no running server.

Flags are single-dash, like the other commands (`-spiffeID`, `-socketPath`).
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import typer

from warden.cli._common import (
    check_output_format,
    console,
    fail,
    operating_system_user,
    print_json,
    table,
)

if TYPE_CHECKING:
    from warden.credentials.cloudtrust import TrustPlan

#: Environment variable naming the server's HTTP API for workload commands.
SERVER_VARIABLE = "WARDEN_HTTP_API"
DEFAULT_SERVER = "https://127.0.0.1:8443"

Output = Annotated[str, typer.Option("-output", "--output", help="pretty (for people) or json")]
SpiffeIdOpt = Annotated[
    str, typer.Option("-spiffeID", "--spiffeID", help="SPIFFE ID of the workload to trust")
]
IssuerOpt = Annotated[
    str,
    typer.Option(
        "-issuer", "--issuer", help="Warden's public OIDC issuer URL; default: from -config"
    ),
]
ConfigOpt = Annotated[
    str, typer.Option("-config", "--config", help="Path to the server's HCL configuration")
]
ServerOpt = Annotated[
    str,
    typer.Option(
        "-server",
        "--server",
        help=f"URL of the server's HTTP API; default ${SERVER_VARIABLE}, else {DEFAULT_SERVER}",
    ),
]
SocketOpt = Annotated[
    str,
    typer.Option(
        "-socketPath",
        "--socketPath",
        help="Workload API socket; default $SPIFFE_ENDPOINT_SOCKET, else SPIRE's path",
    ),
]
CaFileOpt = Annotated[
    str,
    typer.Option(
        "-caFile",
        "--caFile",
        help="PEM file of the CA that signed the HTTP API's certificate; default: system CAs",
    ),
]


# -- cloud-trust ----------------------------------------------------------------------------

cloud_app = typer.Typer(
    help="Print what a cloud needs to accept Warden's federation tokens.", no_args_is_help=True
)


def _issuer(issuer: str, config: str) -> str:
    if issuer:
        return issuer
    if not config:
        fail("pass -issuer https://… (Warden's jwt_issuer) or -config server.conf")
    from warden.config import ConfigError, load_server_config

    try:
        loaded = load_server_config(config)
    except (ConfigError, OSError) as error:
        fail(f"cannot load {config}: {error}")
    if not loaded.server.jwt_issuer:
        fail(
            f"{config} sets no server.jwt_issuer; set it to the public https:// URL of the HTTP API"
        )
    return loaded.server.jwt_issuer


def _render_plan(plan: TrustPlan, output: str) -> None:
    if output == "json":
        print_json(plan.to_json())
        return
    console.print(
        f"[bold]{plan.cloud.upper()}[/] trusts [cyan]{plan.spiffe_id}[/] from issuer "
        f"{plan.issuer}, audience [cyan]{plan.audience}[/]",
        markup=True,
    )
    for number, step in enumerate(plan.steps, 1):
        console.print(f"\n[bold]{number}. {step.title}[/]", markup=True)
        # Commands and documents are printed as plain text, never wrapped or cut, so that
        # they can be copied.
        if step.command:
            console.print(step.command, markup=False, highlight=False, soft_wrap=True)
        if step.document is not None:
            console.print(json.dumps(step.document, indent=2), markup=False, soft_wrap=True)
        if step.note:
            console.print(step.note, markup=False)
    console.print("\n[bold]Warden's server configuration[/]", markup=True)
    console.print(plan.warden_rule, markup=False, highlight=False, soft_wrap=True)
    for note in plan.notes:
        console.print(f"Note: {note}", markup=False)


def _plan_or_fail(build: Any, *args: Any, **kwargs: Any) -> TrustPlan:
    try:
        plan: TrustPlan = build(*args, **kwargs)
    except ValueError as error:
        fail(str(error))
    return plan


@cloud_app.command("aws")
def cloud_trust_aws(
    role_arn: Annotated[
        str, typer.Option("-role-arn", "--role-arn", help="ARN of the IAM role to assume")
    ] = "",
    spiffe_id: SpiffeIdOpt = "",
    audience: Annotated[
        str, typer.Option("-audience", "--audience", help="Audience (client ID) of the tokens")
    ] = "sts.amazonaws.com",
    issuer: IssuerOpt = "",
    config: ConfigOpt = "",
    output: Output = "pretty",
) -> None:
    """Print the IAM OIDC provider and the role trust policy pinning aud and sub."""
    from warden.credentials.cloudtrust import aws_plan

    check_output_format(output)
    if not role_arn or not spiffe_id:
        fail("pass -role-arn arn:aws:iam::<account>:role/<name> and -spiffeID spiffe://…")
    plan = _plan_or_fail(aws_plan, _issuer(issuer, config), role_arn, spiffe_id, audience)
    _render_plan(plan, output)


@cloud_app.command("gcp")
def cloud_trust_gcp(
    project_number: Annotated[
        str, typer.Option("-project-number", "--project-number", help="GCP project number")
    ] = "",
    pool: Annotated[
        str, typer.Option("-pool", "--pool", help="Workload identity pool ID")
    ] = "warden",
    provider: Annotated[
        str, typer.Option("-provider", "--provider", help="Pool provider ID")
    ] = "warden",
    spiffe_id: SpiffeIdOpt = "",
    service_account: Annotated[
        str,
        typer.Option(
            "-service-account", "--service-account", help="Service account to impersonate"
        ),
    ] = "",
    issuer: IssuerOpt = "",
    config: ConfigOpt = "",
    output: Output = "pretty",
) -> None:
    """Print the workload identity pool provider and the principal binding."""
    from warden.credentials.cloudtrust import gcp_plan

    check_output_format(output)
    if not project_number or not spiffe_id:
        fail("pass -project-number <number> and -spiffeID spiffe://…")
    plan = _plan_or_fail(
        gcp_plan,
        _issuer(issuer, config),
        project_number,
        pool,
        provider,
        spiffe_id,
        service_account or None,
    )
    _render_plan(plan, output)


@cloud_app.command("azure")
def cloud_trust_azure(
    spiffe_id: SpiffeIdOpt = "",
    identity: Annotated[
        str, typer.Option("-identity", "--identity", help="User-assigned managed identity")
    ] = "",
    resource_group: Annotated[
        str,
        typer.Option(
            "-resource-group", "--resource-group", help="Resource group of the managed identity"
        ),
    ] = "",
    app_id: Annotated[
        str, typer.Option("-app-id", "--app-id", help="App registration, instead of an identity")
    ] = "",
    name: Annotated[
        str, typer.Option("-name", "--name", help="Name of the federated credential")
    ] = "warden",
    issuer: IssuerOpt = "",
    config: ConfigOpt = "",
    output: Output = "pretty",
) -> None:
    """Print the federated identity credential matching iss and sub exactly."""
    from warden.credentials.cloudtrust import azure_plan

    check_output_format(output)
    if not spiffe_id:
        fail("pass -spiffeID spiffe://…")
    plan = _plan_or_fail(
        azure_plan,
        _issuer(issuer, config),
        spiffe_id,
        identity=identity or None,
        resource_group=resource_group or None,
        app_id=app_id or None,
        name=name,
    )
    _render_plan(plan, output)


# -- workload calls -------------------------------------------------------------------------


def _server_url(server: str) -> str:
    return (server or os.environ.get(SERVER_VARIABLE) or DEFAULT_SERVER).rstrip("/")


@contextmanager
def _workload_tls(socket_path: str, ca_file: str) -> Iterator[ssl.SSLContext]:
    """Yield a TLS client context presenting the workload's X509-SVID.

    `ssl` loads keys only from files, so the key is written to a private temporary directory
    (mode 0700, the file 0600) and deleted once loaded.
    """
    from warden.mtls import WorkloadApiClient, WorkloadApiError

    try:
        with WorkloadApiClient(socket_path or None) as client:
            svid = client.fetch_x509_svid()
    except (WorkloadApiError, ValueError) as error:
        fail(f"cannot fetch an X509-SVID from the Workload API: {error}")
    context = ssl.create_default_context(cafile=ca_file or None)
    with tempfile.TemporaryDirectory(prefix="warden-creds-") as directory:
        cert_path = Path(directory) / "svid.pem"
        key_path = Path(directory) / "svid-key.pem"
        cert_path.write_bytes(svid.chain_pem())
        descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(svid.key_pem())
        context.load_cert_chain(cert_path, key_path)
    yield context


def _call(method: str, url: str, context: ssl.SSLContext | None, **kwargs: Any) -> dict[str, Any]:
    import httpx

    try:
        response = httpx.request(method, url, verify=context or True, timeout=30, **kwargs)
    except httpx.HTTPError as error:
        fail(f"{method} {url} failed: {error}; check -server and that the HTTP API is running")
    try:
        document: dict[str, Any] = response.json()
    except ValueError:
        fail(f"{method} {url}: HTTP {response.status_code} with a body that is not JSON")
    if response.status_code >= 400:
        code = document.get("error", "error")
        fail(
            f"{method} {url}: HTTP {response.status_code} {code}: {document.get('error_description', '')}"
        )
    return document


def _workload_call(
    method: str, path: str, server: str, socket_path: str, ca_file: str, body: dict[str, Any]
) -> dict[str, Any]:
    url = _server_url(server) + path
    with _workload_tls(socket_path, ca_file) as context:
        return _call(method, url, context, json=body)


def _workload_leases(server: str, socket_path: str, ca_file: str, prefix: str) -> list[Any]:
    """Return the workload's leases from `GET /v1/leases`, page after page."""
    url = _server_url(server) + "/v1/leases"
    leases: list[Any] = []
    params = {"prefix": prefix} if prefix else {}
    with _workload_tls(socket_path, ca_file) as context:
        while True:
            # httpx encodes the parameters, so a prefix may contain '&', '#' or '%'.
            document = _call("GET", url, context, params=params)
            leases += document["leases"]
            following = document.get("next_after")
            if not document.get("truncated") or not isinstance(following, str):
                return leases
            params = {**params, "after": following}


def discovered_subject_audience(server: str, document: Mapping[str, Any]) -> str:
    """Return the issuer of a discovery document as the audience of the subject token.

    The JWT-SVID sent as the subject token is a bearer token for its audience. A server
    could name another service as its issuer and replay the JWT-SVIDs it receives to that
    service, so the issuer is accepted only on the host of `server`, the URL that receives
    the token. Raises ValueError otherwise.
    """
    issuer = document.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        raise ValueError(
            f"the discovery document of {server} has no issuer; pass -subjectAudience with "
            "the audience of the server's token endpoint"
        )
    server_host = urlsplit(server).hostname
    if server_host is None or urlsplit(issuer).hostname != server_host:
        raise ValueError(
            f"{server} names issuer {issuer!r}, on another host than {server_host}, and a "
            "JWT-SVID for that audience could be replayed to it; pass -subjectAudience with "
            "the audience of the server's token endpoint (its jwt_issuer, unless "
            "token_exchange sets audience) if you trust this server"
        )
    return issuer


def _seconds(value: str, flag: str) -> int | None:
    if not value:
        return None
    from warden.cli._common import parse_ttl

    return parse_ttl(value, flag) or None


creds_app = typer.Typer(
    help="Short-lived credentials from the workload's identity.", no_args_is_help=True
)


@creds_app.command("token")
def creds_token(
    audience: Annotated[
        str,
        typer.Option(
            "-audience", "--audience", help="Audience of the token, such as sts.amazonaws.com"
        ),
    ] = "",
    subject_audience: Annotated[
        str,
        typer.Option(
            "-subjectAudience",
            "--subjectAudience",
            help="Audience of the JWT-SVID sent as the subject token: the server's jwt_issuer, "
            "or its token_exchange audience; default: the issuer of the server's discovery "
            "document, accepted only on the -server host",
        ),
    ] = "",
    server: ServerOpt = "",
    socket_path: SocketOpt = "",
    ca_file: CaFileOpt = "",
    output: Output = "pretty",
) -> None:
    """Exchange the workload's JWT-SVID for a federation token (RFC 8693) and print it."""
    from warden.mtls import WorkloadApiClient, WorkloadApiError

    check_output_format(output)
    if not audience:
        fail("pass -audience, the service the token is for (for example sts.amazonaws.com)")
    base = _server_url(server)
    context = ssl.create_default_context(cafile=ca_file or None)
    if not subject_audience:
        discovery = _call("GET", base + "/.well-known/openid-configuration", context)
        try:
            subject_audience = discovered_subject_audience(base, discovery)
        except ValueError as error:
            fail(str(error))
    try:
        with WorkloadApiClient(socket_path or None) as client:
            subject = client.fetch_jwt_svid([subject_audience])
    except (WorkloadApiError, ValueError) as error:
        fail(f"cannot fetch a JWT-SVID from the Workload API: {error}")
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": subject.token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "audience": audience,
    }
    response = _call("POST", base + "/v1/token", context, data=form)
    if output == "json":
        print_json(response)
    else:
        # Only the token, so that $(warden creds token -audience …) works in scripts.
        typer.echo(response["access_token"])


db_app = typer.Typer(
    help="Database credentials that expire: lease, renew, revoke, and operator commands.",
    invoke_without_command=True,
)


@db_app.callback()
def creds_db(
    context: typer.Context,
    role: Annotated[str, typer.Option("-role", "--role", help="Database role to lease")] = "",
    ttl: Annotated[
        str, typer.Option("-ttl", "--ttl", help="Lease lifetime, such as 30m; default: the role's")
    ] = "",
    server: ServerOpt = "",
    socket_path: SocketOpt = "",
    ca_file: CaFileOpt = "",
    output: Output = "pretty",
) -> None:
    """Lease a database user for the workload: `warden creds db -role reader`."""
    if context.invoked_subcommand is not None:
        return
    check_output_format(output)
    if not role:
        fail("pass -role <name> to lease a user, or a subcommand (see --help)")
    body: dict[str, Any] = {}
    seconds = _seconds(ttl, "-ttl")
    if seconds:
        body["ttl"] = seconds
    document = _workload_call(
        "POST", f"/v1/database/creds/{role}", server, socket_path, ca_file, body
    )
    if output == "json":
        print_json(document)
        return
    console.print(
        table(
            None,
            ["lease_id", "username", "password", "expires_at"],
            [
                [
                    document["lease_id"],
                    document["data"]["username"],
                    document["data"]["password"],
                    document["expires_at"],
                ]
            ],
        )
    )


@db_app.command("renew")
def creds_db_renew(
    lease_id: Annotated[str, typer.Option("-leaseID", "--leaseID", help="Lease to renew")] = "",
    increment: Annotated[
        str, typer.Option("-increment", "--increment", help="New lifetime from now, such as 1h")
    ] = "",
    server: ServerOpt = "",
    socket_path: SocketOpt = "",
    ca_file: CaFileOpt = "",
    output: Output = "pretty",
) -> None:
    """Renew one of the workload's leases, counting from now, within the role's max_ttl."""
    check_output_format(output)
    if not lease_id:
        fail("pass -leaseID database/<connection>/<role>/<id>")
    body: dict[str, Any] = {"lease_id": lease_id}
    seconds = _seconds(increment, "-increment")
    if seconds:
        body["increment"] = seconds
    document = _workload_call("POST", "/v1/leases/renew", server, socket_path, ca_file, body)
    _print_leases([document], output)


@db_app.command("revoke")
def creds_db_revoke(
    lease_id: Annotated[str, typer.Option("-leaseID", "--leaseID", help="Lease to revoke")] = "",
    prefix: Annotated[
        str,
        typer.Option(
            "-prefix", "--prefix", help="Revoke every lease whose id starts with this (operator)"
        ),
    ] = "",
    config: ConfigOpt = "",
    server: ServerOpt = "",
    socket_path: SocketOpt = "",
    ca_file: CaFileOpt = "",
    output: Output = "pretty",
) -> None:
    """Revoke a lease now: the workload's own, or, with -config, any lease or prefix."""
    check_output_format(output)
    if bool(lease_id) == bool(prefix):
        fail("pass either -leaseID or -prefix")
    if prefix and not config:
        fail("-prefix is an operator command: pass -config with the server's configuration")
    if not config:
        document = _workload_call(
            "POST", "/v1/leases/revoke", server, socket_path, ca_file, {"lease_id": lease_id}
        )
        _print_leases([document], output)
        return

    async def revoke(broker: Any, actor: str) -> dict[str, Any]:
        if prefix:
            summary = await broker.revoke_prefix(prefix, actor=actor)
            return {"revoked": list(summary.revoked), "failed": list(summary.failed)}
        lease = await broker.revoke(lease_id, actor=actor)
        return {"revoked": [lease.lease_id], "failed": []}

    result = _operator_run(config, revoke)
    if output == "json":
        print_json(result)
    else:
        revoked = len(result["revoked"])
        console.print(f"revoked {revoked} {'lease' if revoked == 1 else 'leases'}")
        for failed in result["failed"]:
            console.print(
                f"[red]failed[/] {failed} (retried by the servers' sweepers)", markup=True
            )
    if result["failed"]:
        raise typer.Exit(1)


@db_app.command("list")
def creds_db_list(
    prefix: Annotated[str, typer.Option("-prefix", "--prefix", help="Lease id prefix")] = "",
    include_revoked: Annotated[
        bool, typer.Option("-revoked", "--revoked", help="Include revoked leases")
    ] = False,
    config: ConfigOpt = "",
    server: ServerOpt = "",
    socket_path: SocketOpt = "",
    ca_file: CaFileOpt = "",
    output: Output = "pretty",
) -> None:
    """List leases: the workload's own, or, with -config, every lease in the datastore."""
    check_output_format(output)
    if not config:
        _print_leases(_workload_leases(server, socket_path, ca_file, prefix), output)
        return
    from datetime import UTC, datetime

    datastore = _open_datastore(config)
    try:
        leases = datastore.list_leases(prefix=prefix or None, include_revoked=include_revoked)
    finally:
        datastore.close()
    now = datetime.now(UTC)
    documents = [
        {
            "lease_id": lease.lease_id,
            "spiffe_id": lease.spiffe_id,
            "owners": list(lease.owners),
            "state": lease.state(now),
            "expires_at": lease.expires_at.isoformat(),
            "revoked_at": lease.revoked_at.isoformat() if lease.revoked_at else None,
            "details": dict(lease.details),
        }
        for lease in leases
    ]
    _print_leases(documents, output)


@db_app.command("rotate-root")
def creds_db_rotate_root(
    connection: Annotated[
        str, typer.Option("-connection", "--connection", help="Database connection name")
    ] = "",
    config: ConfigOpt = "server.conf",
) -> None:
    """Replace a connection's management password and write the new one to its password_file."""
    if not connection:
        fail("pass -connection <name> (a connection of the database block)")

    async def rotate(broker: Any, actor: str) -> dict[str, Any]:
        event = await broker.rotate_root(connection, actor=actor)
        return {"event": event}

    _operator_run(config, rotate, record_event=True)
    console.print(f"rotated the management password of connection {connection!r}")


def _print_leases(documents: list[dict[str, Any]], output: str) -> None:
    if output == "json":
        print_json(documents)
        return
    console.print(
        table(
            None,
            ["lease_id", "spiffe_id", "state", "expires_at"],
            [
                [d["lease_id"], d.get("spiffe_id", ""), d.get("state", ""), d["expires_at"]]
                for d in documents
            ],
        )
    )


# -- operator commands on the server's configuration ---------------------------------------------


def _load_options(config: str) -> Any:
    from warden.config import ConfigError
    from warden.server.main import load_options

    try:
        options, _ = load_options(config)
    except ConfigError as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot read configuration {config}: {error.strerror}")
    return options


def _open_datastore(config: str, options: Any = None) -> Any:
    from warden.store import Datastore, StoreError

    options = options or _load_options(config)
    try:
        return Datastore.open(
            options.datastore_url, migrate=False, server_id=f"cli-{operating_system_user()}"
        )
    except StoreError as error:
        fail(str(error))


def _operator_run(config: str, action: Any, *, record_event: bool = False) -> dict[str, Any]:
    """Run `action(broker, actor)` against the configuration's datastore and databases."""
    from warden.credentials import CredentialError, DatabaseBroker

    options = _load_options(config)
    if options.database is None:
        fail(f"{config} has no database block")
    datastore = _open_datastore(config, options)
    actor = f"unix:{operating_system_user()}"

    async def run() -> dict[str, Any]:
        from datetime import UTC, datetime

        broker = DatabaseBroker(options.database, datastore, clock=lambda: datetime.now(UTC))
        try:
            result: dict[str, Any] = await action(broker, actor)
        finally:
            await broker.close()
        if record_event:
            await asyncio.to_thread(datastore.append_audit, [result["event"]])
        return result

    try:
        return asyncio.run(run())
    except CredentialError as error:
        fail(str(error))
    finally:
        datastore.close()


def register(app: typer.Typer) -> None:
    """Add this family's commands to `app`."""
    creds_app.add_typer(db_app, name="db")
    app.add_typer(cloud_app, name="cloud-trust")
    app.add_typer(creds_app, name="creds")
