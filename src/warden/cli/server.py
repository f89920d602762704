"""Server commands: `server run`, `entry`, `token`, `bundle`, `x509`, `jwt`, `healthcheck`,
`audit-log`.

These keep spire-server's single-dash flags (`-spiffeID`, `-socketPath`), so SPIRE users'
scripts and habits carry over; the GNU-style `--spiffeID` spelling works too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from warden.cli._common import (
    check_output_format,
    console,
    fail,
    format_time,
    format_ttl,
    operating_system_user,
    parse_ttl,
    print_json,
    say,
    table,
)

SocketPath = Annotated[
    str,
    typer.Option(
        "-socketPath",
        "--socketPath",
        help="Path of the server's admin socket (default /tmp/spire-server/private/api.sock, "
        "or $WARDEN_SERVER_SOCKET)",
    ),
]
Output = Annotated[str, typer.Option("-output", "--output", help="pretty (tables) or json")]


def _client(socket_path: str) -> Any:
    from warden.server.client import AdminClient

    return AdminClient(socket_path or None)


def _admin_call(function: Any, *args: Any) -> Any:
    from warden.server.client import AdminError

    try:
        return function(*args)
    except AdminError as error:
        fail(str(error))


# -- server run -----------------------------------------------------------------------------

server_app = typer.Typer(help="Run the Warden server.", no_args_is_help=True)


@server_app.command("run")
def server_run(
    config: Annotated[
        str, typer.Option("-config", "--config", help="Path to the server's HCL configuration")
    ] = "server.conf",
    expand_env: Annotated[
        bool,
        typer.Option(
            "-expandEnv", "--expandEnv", help="Expand $VARIABLES in the configuration file"
        ),
    ] = False,
) -> None:
    """Run the server until SIGINT or SIGTERM."""
    from warden.server.main import run_server

    raise typer.Exit(run_server(config, expand_env=expand_env))


@server_app.command("validate")
def server_validate(
    config: Annotated[
        str, typer.Option("-config", "--config", help="Path to the server's HCL configuration")
    ] = "server.conf",
    expand_env: Annotated[
        bool,
        typer.Option(
            "-expandEnv", "--expandEnv", help="Expand $VARIABLES in the configuration file"
        ),
    ] = False,
) -> None:
    """Check a server configuration file without starting the server."""
    from warden.config import ConfigError
    from warden.server.main import load_options

    try:
        _, loaded = load_options(config, expand_env)
    except ConfigError as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot read configuration {config}: {error.strerror}")
    for warning in loaded.warnings:
        say("[yellow]Warning:[/] {}", warning)
    say("Configuration {} is valid.", config)


datastore_app = typer.Typer(help="Prepare the server's datastore.", no_args_is_help=True)


@datastore_app.command("migrate")
def datastore_migrate(
    database: Annotated[
        str,
        typer.Option("-database", "--database", help="SQLite path or PostgreSQL connection string"),
    ] = "",
) -> None:
    """Bring a datastore to the newest schema, as the role that owns its tables."""
    from warden.store.engine import migrate_datastore

    if not database:
        fail(
            "-database is required, for example -database 'dbname=warden user=warden_owner host=db'"
        )
    changed = migrate_datastore(database)
    console.print("Schema migrated." if changed else "Schema already current.")


@datastore_app.command("grants")
def datastore_grants(
    role: Annotated[
        str, typer.Option("-role", "--role", help="PostgreSQL role the servers connect as")
    ] = "",
) -> None:
    """Print the GRANT statements for a restricted PostgreSQL role that runs the server."""
    from warden.store.roles import server_role_grants

    if not role:
        fail("-role is required, for example -role warden_server")
    for statement in server_role_grants(role):
        print(f"{statement};")


# -- entries --------------------------------------------------------------------------------

entry_app = typer.Typer(help="Manage registration entries.", no_args_is_help=True)

SpiffeIdOpt = Annotated[
    str, typer.Option("-spiffeID", "--spiffeID", help="The SPIFFE ID the workload gets")
]
ParentIdOpt = Annotated[
    str,
    typer.Option(
        "-parentID",
        "--parentID",
        help="SPIFFE ID of the agent (or node alias) that may hold the entry",
    ),
]
SelectorOpt = Annotated[
    list[str],
    typer.Option(
        "-selector",
        "--selector",
        help="type:value the workload must show, repeatable (unix:uid:1000)",
    ),
]
X509TtlOpt = Annotated[
    str,
    typer.Option(
        "-x509SVIDTTL",
        "--x509SVIDTTL",
        help="X509-SVID lifetime in seconds or as 1h; default: the server's",
    ),
]
JwtTtlOpt = Annotated[
    str,
    typer.Option(
        "-jwtSVIDTTL",
        "--jwtSVIDTTL",
        help="JWT-SVID lifetime in seconds or as 5m; default: the server's",
    ),
]
DnsOpt = Annotated[
    list[str], typer.Option("-dns", "--dns", help="DNS name for the X509-SVID, repeatable")
]
FederatesOpt = Annotated[
    list[str],
    typer.Option(
        "-federatesWith",
        "--federatesWith",
        help="Trust domain whose bundle the workload also gets, repeatable",
    ),
]
HintOpt = Annotated[
    str,
    typer.Option(
        "-hint", "--hint", help="Hint that tells workloads with several SVIDs which one to use"
    ),
]
ExpiryOpt = Annotated[
    int,
    typer.Option(
        "-entryExpiry", "--entryExpiry", help="Unix time at which the entry expires (0: never)"
    ),
]
OwnerOpt = Annotated[
    str,
    typer.Option("-owner", "--owner", help="Person or team answerable for the identity (required)"),
]
DescriptionOpt = Annotated[
    str,
    typer.Option("-description", "--description", help="What the workload is, for the inventory"),
]
AdminOpt = Annotated[
    bool,
    typer.Option("-admin", "--admin", help="Workloads with this SVID may administer the server"),
]
DownstreamOpt = Annotated[
    bool,
    typer.Option(
        "-downstream", "--downstream", help="The SVID may sign for a downstream trust domain"
    ),
]
NodeOpt = Annotated[
    bool,
    typer.Option(
        "-node",
        "--node",
        help="Create a node alias entry: its parent is the server, its selectors are node selectors",
    ),
]
DataOpt = Annotated[
    str,
    typer.Option(
        "-data", "--data", help='JSON file with {"entries": [...]} ("-" for standard input)'
    ),
]
EntryIdOpt = Annotated[str, typer.Option("-entryID", "--entryID", help="The entry's id")]


def _entry_message(
    *,
    entry_id: str = "",
    spiffe_id: str,
    parent_id: str,
    selectors: list[str],
    x509_ttl: str,
    jwt_ttl: str,
    dns: list[str],
    federates_with: list[str],
    hint: str,
    expiry: int,
    owner: str,
    description: str,
    admin: bool,
    downstream: bool,
    node: bool,
    trust_domain_hint: str = "",
) -> Any:
    from warden.api.server.v1 import types_pb2
    from warden.spiffe import Selector, SpiffeError, SpiffeId

    if not spiffe_id:
        fail("-spiffeID is required, for example -spiffeID spiffe://example.org/web")
    try:
        parsed_id = SpiffeId.parse(spiffe_id)
    except SpiffeError as error:
        fail(str(error))
    if node:
        if parent_id:
            fail(
                "-node and -parentID exclude each other: a node alias entry is parented to the server"
            )
        parent_id = f"spiffe://{parsed_id.trust_domain.name}/spire/server"
    if not parent_id:
        fail(
            "-parentID is required (or -node for a node alias entry), for example "
            "-parentID spiffe://example.org/spire/agent/join_token/<token>"
        )
    if not selectors:
        fail("at least one -selector is required, for example -selector unix:uid:1000")
    parsed_selectors = []
    for text in selectors:
        try:
            parsed_selectors.append(Selector.parse(text))
        except SpiffeError as error:
            fail(str(error))
    return types_pb2.Entry(
        id=entry_id,
        spiffe_id=spiffe_id,
        parent_id=parent_id,
        selectors=[types_pb2.Selector(type=s.type, value=s.value) for s in parsed_selectors],
        x509_svid_ttl=parse_ttl(x509_ttl, "-x509SVIDTTL"),
        jwt_svid_ttl=parse_ttl(jwt_ttl, "-jwtSVIDTTL"),
        dns_names=dns,
        federates_with=federates_with,
        hint=hint,
        expires_at=expiry,
        owner=owner,
        description=description,
        admin=admin,
        downstream=downstream,
    )


_ENTRY_KEYS = frozenset(
    {
        "id", "entry_id", "spiffe_id", "parent_id", "selectors", "x509_svid_ttl", "ttl",
        "jwt_svid_ttl", "dns_names", "federates_with", "admin", "downstream", "hint",
        "expires_at", "owner", "description", "revision", "created_at", "updated_at",
        "last_delivered_at", "store_svid",
    }
)  # fmt: skip


class EntryDataError(ValueError):
    """An entry of a -data file has a wrong key or type; the message names it."""


def entry_from_json(document: Any, position: int = 1) -> Any:
    """An entry message from SPIRE's JSON forms (`spiffe_id` as a string or as
    `{"trust_domain", "path"}`, selectors as `{"type", "value"}` or `type:value`).

    Types are checked strictly: `"admin": "false"` is an error, not a true value.
    """
    from warden.api.server.v1 import types_pb2

    where = f"entry {position}"
    if not isinstance(document, dict):
        raise EntryDataError(f"{where}: expected a JSON object, got {type(document).__name__}")
    unknown = sorted(set(document) - _ENTRY_KEYS)
    if unknown:
        raise EntryDataError(f"{where}: unknown key {unknown[0]!r}; check its spelling")

    def text(key: str) -> str:
        value = document.get(key, "")
        if not isinstance(value, str):
            raise EntryDataError(f"{where}: {key} must be a string, got {json.dumps(value)}")
        return value

    def whole(key: str) -> int:
        value = document.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise EntryDataError(
                f"{where}: {key} must be a whole number of seconds (>= 0), got {json.dumps(value)}"
            )
        return value

    def flag(key: str) -> bool:
        value = document.get(key, False)
        if not isinstance(value, bool):
            raise EntryDataError(f"{where}: {key} must be true or false, got {json.dumps(value)}")
        return value

    def strings(key: str) -> list[str]:
        value = document.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise EntryDataError(
                f"{where}: {key} must be a list of strings, got {json.dumps(value)}"
            )
        return value

    def spiffe_id_of(key: str) -> str:
        value = document.get(key, "")
        if isinstance(value, dict):
            domain, path = value.get("trust_domain", ""), value.get("path", "")
            if not isinstance(domain, str) or not isinstance(path, str):
                raise EntryDataError(f"{where}: {key}.trust_domain and {key}.path must be strings")
            return f"spiffe://{domain}{path}"
        if not isinstance(value, str):
            raise EntryDataError(
                f"{where}: {key} must be a string or an object, got {json.dumps(value)}"
            )
        return value

    selectors = []
    raw_selectors = document.get("selectors", [])
    if not isinstance(raw_selectors, list):
        raise EntryDataError(f"{where}: selectors must be a list, got {json.dumps(raw_selectors)}")
    for item in raw_selectors:
        if (
            isinstance(item, dict)
            and isinstance(item.get("type"), str)
            and isinstance(item.get("value"), str)
        ):
            selectors.append(types_pb2.Selector(type=item["type"], value=item["value"]))
        elif isinstance(item, str):
            selector_type, _, value = item.partition(":")
            selectors.append(types_pb2.Selector(type=selector_type, value=value))
        else:
            raise EntryDataError(
                f'{where}: each selector must be {{"type": ..., "value": ...}} or "type:value", '
                f"got {json.dumps(item)}"
            )
    entry_id = text("id") if "id" in document else text("entry_id")
    return types_pb2.Entry(
        id=entry_id,
        spiffe_id=spiffe_id_of("spiffe_id"),
        parent_id=spiffe_id_of("parent_id"),
        selectors=selectors,
        x509_svid_ttl=whole("x509_svid_ttl") if "x509_svid_ttl" in document else whole("ttl"),
        jwt_svid_ttl=whole("jwt_svid_ttl"),
        dns_names=strings("dns_names"),
        federates_with=strings("federates_with"),
        admin=flag("admin"),
        downstream=flag("downstream"),
        hint=text("hint"),
        expires_at=whole("expires_at"),
        owner=text("owner"),
        description=text("description"),
    )


def entry_to_json(entry: Any) -> dict[str, Any]:
    return {
        "id": entry.id,
        "spiffe_id": entry.spiffe_id,
        "parent_id": entry.parent_id,
        "selectors": [{"type": s.type, "value": s.value} for s in entry.selectors],
        "x509_svid_ttl": entry.x509_svid_ttl,
        "jwt_svid_ttl": entry.jwt_svid_ttl,
        "dns_names": list(entry.dns_names),
        "federates_with": list(entry.federates_with),
        "admin": entry.admin,
        "downstream": entry.downstream,
        "hint": entry.hint,
        "expires_at": entry.expires_at,
        "owner": entry.owner,
        "description": entry.description,
        "created_at": entry.created_at,
        "updated_at": entry.updated_at,
        "revision": entry.revision,
        "last_delivered_at": entry.last_delivered_at,
    }


def _read_entries_file(path: str) -> list[Any]:
    import sys

    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        document = json.loads(text)
    except OSError as error:
        fail(f"cannot read -data {path}: {error.strerror}")
    except json.JSONDecodeError as error:
        fail(
            f"invalid JSON in -data {path} at line {error.lineno} column {error.colno}: {error.msg}"
        )
    if not isinstance(document, dict) or not isinstance(document.get("entries"), list):
        fail(f'-data {path}: expected an object {{"entries": [...]}}')
    try:
        return [entry_from_json(item, index + 1) for index, item in enumerate(document["entries"])]
    except EntryDataError as error:
        fail(f"-data {path}: {error}")


def _print_entries(entries: list[Any], output: str, heading: str) -> None:
    if output == "json":
        print_json({"entries": [entry_to_json(e) for e in entries]})
        return
    console.print(heading)
    rows = [
        (
            e.id,
            e.spiffe_id,
            e.parent_id,
            "\n".join(f"{s.type}:{s.value}" for s in e.selectors),
            e.owner,
            format_ttl(e.x509_svid_ttl),
            format_ttl(e.jwt_svid_ttl),
            format_time(e.expires_at),
            format_time(e.last_delivered_at) or "never",
        )
        for e in entries
    ]
    if rows:
        console.print(
            table(
                None,
                (
                    "Entry ID",
                    "SPIFFE ID",
                    "Parent ID",
                    "Selectors",
                    "Owner",
                    "X509 TTL",
                    "JWT TTL",
                    "Expires",
                    "Last delivered",
                ),
                rows,
            )
        )


def _print_results(results: Any, output: str, verb: str) -> int:
    failures = 0
    entries = []
    for result in results:
        if result.status.code != 0:
            failures += 1
            name = result.entry.spiffe_id or result.entry.id
            say("[red]Failed to {} {}:[/] {}", verb, name, result.status.message)
        else:
            entries.append(result.entry)
    if output == "json":
        print_json(
            {
                "results": [
                    {
                        "status": {"code": r.status.code, "message": r.status.message},
                        "entry": entry_to_json(r.entry),
                    }
                    for r in results
                ]
            }
        )
    elif entries:
        _print_entries(
            entries,
            output,
            f"{verb.capitalize()}d {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}",
        )
    return failures


@entry_app.command("create")
def entry_create(
    spiffe_id: SpiffeIdOpt = "",
    parent_id: ParentIdOpt = "",
    selector: SelectorOpt = [],  # noqa: B006 - Typer needs a literal default
    x509_ttl: X509TtlOpt = "",
    jwt_ttl: JwtTtlOpt = "",
    dns: DnsOpt = [],  # noqa: B006
    federates_with: FederatesOpt = [],  # noqa: B006
    hint: HintOpt = "",
    entry_expiry: ExpiryOpt = 0,
    owner: OwnerOpt = "",
    description: DescriptionOpt = "",
    admin: AdminOpt = False,
    downstream: DownstreamOpt = False,
    node: NodeOpt = False,
    entry_id: EntryIdOpt = "",
    data: DataOpt = "",
    socket_path: SocketPath = "",
    output: Output = "pretty",
) -> None:
    """Create registration entries from flags or from a JSON file (-data)."""
    check_output_format(output)
    if data:
        entries = _read_entries_file(data)
    else:
        entries = [
            _entry_message(
                entry_id=entry_id,
                spiffe_id=spiffe_id,
                parent_id=parent_id,
                selectors=selector,
                x509_ttl=x509_ttl,
                jwt_ttl=jwt_ttl,
                dns=dns,
                federates_with=federates_with,
                hint=hint,
                expiry=entry_expiry,
                owner=owner,
                description=description,
                admin=admin,
                downstream=downstream,
                node=node,
            )
        ]
    with _client(socket_path) as client:
        response = _admin_call(client.create_entries, entries)
    if _print_results(response.results, output, "create"):
        raise typer.Exit(1)


@entry_app.command("update")
def entry_update(
    entry_id: EntryIdOpt = "",
    spiffe_id: SpiffeIdOpt = "",
    parent_id: ParentIdOpt = "",
    selector: SelectorOpt = [],  # noqa: B006
    x509_ttl: X509TtlOpt = "",
    jwt_ttl: JwtTtlOpt = "",
    dns: DnsOpt = [],  # noqa: B006
    federates_with: FederatesOpt = [],  # noqa: B006
    hint: HintOpt = "",
    entry_expiry: ExpiryOpt = 0,
    owner: OwnerOpt = "",
    description: DescriptionOpt = "",
    admin: AdminOpt = False,
    downstream: DownstreamOpt = False,
    data: DataOpt = "",
    socket_path: SocketPath = "",
    output: Output = "pretty",
) -> None:
    """Replace the fields of existing entries (every field, as spire-server does)."""
    from warden.api.server.v1 import admin_pb2

    check_output_format(output)
    if data:
        entries = _read_entries_file(data)
        missing = [e.spiffe_id for e in entries if not e.id]
        if missing:
            fail(f'-data: every entry to update needs its "id"; missing for {", ".join(missing)}')
    else:
        if not entry_id:
            fail("-entryID is required; find it with 'warden entry show -spiffeID <id>'")
        entries = [
            _entry_message(
                entry_id=entry_id,
                spiffe_id=spiffe_id,
                parent_id=parent_id,
                selectors=selector,
                x509_ttl=x509_ttl,
                jwt_ttl=jwt_ttl,
                dns=dns,
                federates_with=federates_with,
                hint=hint,
                expiry=entry_expiry,
                owner=owner,
                description=description,
                admin=admin,
                downstream=downstream,
                node=False,
            )
        ]
    with _client(socket_path) as client:
        response = _admin_call(
            client.call,
            client.entries.BatchUpdateEntry,
            admin_pb2.BatchUpdateEntryRequest(entries=entries),
        )
    if _print_results(response.results, output, "update"):
        raise typer.Exit(1)


@entry_app.command("delete")
def entry_delete(
    entry_id: Annotated[
        list[str],
        typer.Option("-entryID", "--entryID", help="Id of an entry to delete, repeatable"),
    ] = [],  # noqa: B006
    file: Annotated[
        str, typer.Option("-file", "--file", help='JSON file with {"ids": [...]}')
    ] = "",
    socket_path: SocketPath = "",
    output: Output = "pretty",
) -> None:
    """Delete registration entries by id."""
    from warden.api.server.v1 import admin_pb2

    check_output_format(output)
    ids = list(entry_id)
    if file:
        try:
            ids.extend(json.loads(Path(file).read_text())["ids"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            fail(f'cannot read entry ids from {file}: {error}; expected {{"ids": ["..."]}}')
    if not ids:
        fail("-entryID is required; find it with 'warden entry show -spiffeID <id>'")
    with _client(socket_path) as client:
        response = _admin_call(
            client.call, client.entries.BatchDeleteEntry, admin_pb2.BatchDeleteEntryRequest(ids=ids)
        )
    failures = [r for r in response.results if r.status.code != 0]
    if output == "json":
        print_json(
            {
                "results": [
                    {"id": r.id, "status": {"code": r.status.code, "message": r.status.message}}
                    for r in response.results
                ]
            }
        )
    else:
        for result in response.results:
            if result.status.code == 0:
                say("Deleted entry {}", result.id)
            else:
                say("[red]Failed to delete {}:[/] {}", result.id, result.status.message)
    if failures:
        raise typer.Exit(1)


def _entry_filter(
    spiffe_id: str,
    parent_id: str,
    selector: list[str],
    match: str,
    owner: str,
    federates_with: list[str],
    hint: str,
) -> Any:
    from warden.api.server.v1 import admin_pb2, types_pb2
    from warden.spiffe import Selector, SpiffeError

    if match not in ("exact", "subset", "superset", "any"):
        fail(f"invalid -matchSelectorsOn {match!r}: use exact, subset, superset or any")
    selectors = []
    for text in selector:
        try:
            parsed = Selector.parse(text)
        except SpiffeError as error:
            fail(str(error))
        selectors.append(types_pb2.Selector(type=parsed.type, value=parsed.value))
    return admin_pb2.EntryFilter(
        by_spiffe_id=spiffe_id,
        by_parent_id=parent_id,
        by_selectors=selectors,
        selector_match=match,
        by_owner=owner,
        by_federates_with=federates_with,
        by_hint=hint,
    )


MatchOpt = Annotated[
    str,
    typer.Option(
        "-matchSelectorsOn",
        "--matchSelectorsOn",
        help="How -selector matches: exact, subset, superset or any",
    ),
]


@entry_app.command("show")
def entry_show(
    entry_id: EntryIdOpt = "",
    spiffe_id: SpiffeIdOpt = "",
    parent_id: ParentIdOpt = "",
    selector: SelectorOpt = [],  # noqa: B006
    match: MatchOpt = "superset",
    owner: Annotated[
        str, typer.Option("-owner", "--owner", help="Only entries owned by this person or team")
    ] = "",
    federates_with: FederatesOpt = [],  # noqa: B006
    hint: HintOpt = "",
    socket_path: SocketPath = "",
    output: Output = "pretty",
) -> None:
    """Show registration entries, all of them or those matching the filters."""
    from warden.api.server.v1 import admin_pb2

    check_output_format(output)
    with _client(socket_path) as client:
        if entry_id:
            entries = [
                _admin_call(
                    client.call, client.entries.GetEntry, admin_pb2.GetEntryRequest(id=entry_id)
                )
            ]
        else:
            entry_filter = _entry_filter(
                spiffe_id, parent_id, selector, match, owner, federates_with, hint
            )
            entries = _admin_call(client.list_entries, entry_filter)
    _print_entries(
        entries, output, f"Found {len(entries)} entr{'y' if len(entries) == 1 else 'ies'}"
    )


@entry_app.command("count")
def entry_count(
    spiffe_id: SpiffeIdOpt = "",
    parent_id: ParentIdOpt = "",
    selector: SelectorOpt = [],  # noqa: B006
    match: MatchOpt = "superset",
    owner: Annotated[
        str, typer.Option("-owner", "--owner", help="Only entries owned by this person or team")
    ] = "",
    socket_path: SocketPath = "",
    output: Output = "pretty",
) -> None:
    """Count registration entries."""
    from warden.api.server.v1 import admin_pb2

    check_output_format(output)
    entry_filter = _entry_filter(spiffe_id, parent_id, selector, match, owner, [], "")
    with _client(socket_path) as client:
        response = _admin_call(
            client.call,
            client.entries.CountEntries,
            admin_pb2.CountEntriesRequest(filter=entry_filter),
        )
    if output == "json":
        print_json({"count": response.count})
    else:
        console.print(f"{response.count} registration entr{'y' if response.count == 1 else 'ies'}")


# -- join tokens ----------------------------------------------------------------------------

token_app = typer.Typer(help="Generate join tokens for agents.", no_args_is_help=True)


@token_app.command("generate")
def token_generate(
    spiffe_id: Annotated[
        str,
        typer.Option(
            "-spiffeID", "--spiffeID", help="Also give the node this SPIFFE ID (an alias entry)"
        ),
    ] = "",
    ttl: Annotated[
        str, typer.Option("-ttl", "--ttl", help="Token lifetime in seconds or as 10m (default 600)")
    ] = "600",
    owner: Annotated[
        str,
        typer.Option(
            "-owner", "--owner", help="Who answers for the agent that joins (default: you)"
        ),
    ] = "",
    socket_path: SocketPath = "",
    output: Output = "pretty",
) -> None:
    """Generate a single-use join token for one agent."""
    check_output_format(output)
    seconds = parse_ttl(ttl, "-ttl")
    with _client(socket_path) as client:
        token = _admin_call(
            client.create_join_token, seconds, owner or operating_system_user(), spiffe_id
        )
    if output == "json":
        print_json({"value": token.value, "expires_at": token.expires_at, "owner": token.owner})
    else:
        say("Token: {}", token.value)
        say("Expires: {}  Owner: {}", format_time(token.expires_at), token.owner)


# -- bundles --------------------------------------------------------------------------------

bundle_app = typer.Typer(help="Show the trust bundle.", no_args_is_help=True)


@bundle_app.command("show")
def bundle_show(
    output_format: Annotated[
        str, typer.Option("-format", "--format", help="pem or spiffe (the SPIFFE bundle JSON)")
    ] = "pem",
    socket_path: SocketPath = "",
) -> None:
    """Print the trust domain's bundle as PEM certificates or as a SPIFFE bundle."""
    from warden.spiffe import TrustDomain
    from warden.spiffe.bundle import Bundle

    if output_format not in ("pem", "spiffe"):
        fail(f"invalid -format {output_format!r}: use pem or spiffe")
    with _client(socket_path) as client:
        message = _admin_call(client.get_bundle)
    if output_format == "spiffe":
        print(json.dumps(json.loads(message.spiffe_json), indent=2))
        return
    bundle = Bundle.from_jwks_json(TrustDomain(message.trust_domain), message.spiffe_json)
    print(bundle.to_pem(), end="")


# -- minting --------------------------------------------------------------------------------

x509_app = typer.Typer(
    help="Mint X509-SVIDs outside the agent, for tools and tests.", no_args_is_help=True
)
jwt_app = typer.Typer(
    help="Mint JWT-SVIDs outside the agent, for tools and tests.", no_args_is_help=True
)


@x509_app.command("mint")
def x509_mint(
    spiffe_id: SpiffeIdOpt = "",
    ttl: Annotated[
        str,
        typer.Option("-ttl", "--ttl", help="Lifetime in seconds or as 1h (default: the server's)"),
    ] = "",
    dns: DnsOpt = [],  # noqa: B006
    write: Annotated[
        str,
        typer.Option(
            "-write",
            "--write",
            help="Directory to write svid.pem, key.pem (0600) and bundle.pem to",
        ),
    ] = "",
    socket_path: SocketPath = "",
    output: Output = "pretty",
) -> None:
    """Mint an X509-SVID; the private key is generated here and never leaves this machine."""
    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from warden.api.server.v1 import admin_pb2
    from warden.spiffe import SpiffeError, SpiffeId, TrustDomain
    from warden.spiffe.bundle import Bundle

    check_output_format(output)
    if not spiffe_id:
        fail("-spiffeID is required, for example -spiffeID spiffe://example.org/tool")
    try:
        SpiffeId.parse(spiffe_id)
    except SpiffeError as error:
        fail(str(error))
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        cx509.CertificateSigningRequestBuilder()
        .subject_name(cx509.Name([]))
        .sign(key, hashes.SHA256())
    )
    with _client(socket_path) as client:
        response = _admin_call(
            client.call,
            client.svids.MintX509SVID,
            admin_pb2.MintX509SVIDRequest(
                spiffe_id=spiffe_id,
                csr=csr.public_bytes(serialization.Encoding.DER),
                ttl=parse_ttl(ttl, "-ttl"),
                dns_names=dns,
            ),
        )
        bundle_message = _admin_call(client.get_bundle)
    chain_pem = b"".join(
        cx509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
        for der in response.svid.cert_chain
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    bundle_pem = (
        Bundle.from_jwks_json(TrustDomain(bundle_message.trust_domain), bundle_message.spiffe_json)
        .to_pem()
        .encode()
    )
    if write:
        from warden.cli._files import write_private, write_public

        directory = Path(write)
        write_public(directory / "svid.pem", chain_pem)
        write_private(directory / "key.pem", key_pem)
        write_public(directory / "bundle.pem", bundle_pem)
        if output == "json":
            print_json(
                {
                    "spiffe_id": response.svid.spiffe_id,
                    "expires_at": response.svid.expires_at,
                    "directory": str(directory),
                }
            )
        else:
            console.print(
                f"Wrote {directory / 'svid.pem'}, {directory / 'key.pem'} and {directory / 'bundle.pem'}"
            )
            console.print(
                f"SPIFFE ID {response.svid.spiffe_id}, expires {format_time(response.svid.expires_at)}"
            )
        return
    if output == "json":
        print_json(
            {
                "spiffe_id": response.svid.spiffe_id,
                "expires_at": response.svid.expires_at,
                "svid_pem": chain_pem.decode(),
                "key_pem": key_pem.decode(),
                "bundle_pem": bundle_pem.decode(),
            }
        )
        return
    print(
        f"X509-SVID for {response.svid.spiffe_id}, expires {format_time(response.svid.expires_at)}:"
    )
    print(chain_pem.decode(), end="")
    print("Private key:")
    print(key_pem.decode(), end="")
    print("Root CAs:")
    print(bundle_pem.decode(), end="")


@jwt_app.command("mint")
def jwt_mint(
    spiffe_id: SpiffeIdOpt = "",
    audience: Annotated[
        list[str], typer.Option("-audience", "--audience", help="Audience, repeatable (required)")
    ] = [],  # noqa: B006
    ttl: Annotated[
        str,
        typer.Option("-ttl", "--ttl", help="Lifetime in seconds or as 5m (default: the server's)"),
    ] = "",
    write: Annotated[
        str, typer.Option("-write", "--write", help="File to write the token to (mode 0600)")
    ] = "",
    socket_path: SocketPath = "",
    output: Output = "pretty",
) -> None:
    """Mint a JWT-SVID."""
    from warden.api.server.v1 import admin_pb2
    from warden.spiffe import SpiffeError, SpiffeId

    check_output_format(output)
    if not spiffe_id:
        fail("-spiffeID is required, for example -spiffeID spiffe://example.org/tool")
    try:
        SpiffeId.parse(spiffe_id)
    except SpiffeError as error:
        fail(str(error))
    if not audience:
        fail("-audience is required, for example -audience https://api.example.org")
    with _client(socket_path) as client:
        response = _admin_call(
            client.call,
            client.svids.MintJWTSVID,
            admin_pb2.MintJWTSVIDRequest(
                spiffe_id=spiffe_id, audience=audience, ttl=parse_ttl(ttl, "-ttl")
            ),
        )
    if write:
        from warden.cli._files import write_private

        write_private(Path(write), response.token.encode() + b"\n")
        say("Wrote the token to {}, expires {}", write, format_time(response.expires_at))
        return
    if output == "json":
        print_json({"token": response.token, "expires_at": response.expires_at})
    else:
        print(response.token)


# -- health ---------------------------------------------------------------------------------


def healthcheck(
    socket_path: SocketPath = "",
    shallow: Annotated[
        bool, typer.Option("-shallow", "--shallow", help="Only check that the server answers")
    ] = False,
    verbose: Annotated[bool, typer.Option("-verbose", "--verbose", help="Print details")] = False,
) -> None:
    """Check that the server is running and ready, as spire-server healthcheck does."""
    from warden.server.client import AdminClient, AdminError

    with AdminClient(socket_path or None, timeout=5) as client:
        try:
            status = client.get_status()
        except AdminError as error:
            fail(f"Server is unhealthy: {error}")
    if verbose:
        console.print(
            f"Trust domain {status.trust_domain}, server {status.server_id}, version {status.version}, "
            f"{status.entries} entries, {status.agents} agents"
        )
    if not shallow and not (status.live and status.ready):
        fail(f"Server is unhealthy: {status.detail or 'not ready'}")
    console.print("Server is healthy.")


# -- audit log ------------------------------------------------------------------------------

audit_log_app = typer.Typer(
    help="Inspect and verify the server's append-only audit log.", no_args_is_help=True
)


@audit_log_app.command("verify")
def audit_log_verify(
    socket_path: SocketPath = "",
    config: Annotated[
        str,
        typer.Option(
            "-config",
            "--config",
            help="Verify the datastore of this server configuration directly, without a running server",
        ),
    ] = "",
    output: Output = "pretty",
) -> None:
    """Check the hash chain of the audit log; exit 1 when a record was changed or removed."""
    check_output_format(output)
    if config:
        from warden.server.main import verify_audit_log_offline

        ok, records, problem, first_bad = verify_audit_log_offline(config)
    else:
        from warden.api.server.v1 import admin_pb2

        with _client(socket_path) as client:
            response = _admin_call(
                client.call, client.audit.VerifyAuditLog, admin_pb2.VerifyAuditLogRequest()
            )
        ok, records, problem, first_bad = (
            response.ok,
            response.records,
            response.problem,
            response.first_bad_sequence,
        )
    if output == "json":
        print_json(
            {"ok": ok, "records": records, "problem": problem, "first_bad_sequence": first_bad}
        )
    elif ok:
        console.print(f"Audit log intact: {records} records, hash chain verified.")
    else:
        say("[bold red]Audit log tampered with:[/] {}", problem)
    if not ok:
        raise typer.Exit(1)


#: Actions the server writes to its audit log, for `audit-log list -action`.
AUDIT_ACTIONS = (
    "agent.attest",
    "agent.renew",
    "agent.evict",
    "agent.ban",
    "entry.create",
    "entry.update",
    "entry.delete",
    "token.create",
    "svid.x509.sign",
    "svid.x509.mint",
    "svid.jwt.sign",
    "svid.jwt.mint",
    "token.exchange",
    "token.exchange_reject",
    "lease.create",
    "lease.renew",
    "lease.revoke",
    "lease.revoke_failed",
    "database.rotate_root",
)


@audit_log_app.command("list")
def audit_log_list(
    action: Annotated[
        str,
        typer.Option(
            "-action",
            "--action",
            help="Only records of this action: " + ", ".join(AUDIT_ACTIONS),
        ),
    ] = "",
    limit: Annotated[
        int, typer.Option("-limit", "--limit", help="At most this many records (newest last)")
    ] = 100,
    socket_path: SocketPath = "",
    output: Output = "pretty",
) -> None:
    """List audit records."""
    from warden.api.server.v1 import admin_pb2

    check_output_format(output)
    with _client(socket_path) as client:
        records = list(
            _admin_call(
                lambda: list(
                    client.stream(
                        client.audit.ListAuditRecords,
                        admin_pb2.ListAuditRecordsRequest(action=action, limit=limit),
                    )
                )
            )
        )
    if output == "json":
        print_json(
            {
                "records": [
                    {
                        "sequence": r.sequence,
                        "time": r.time,
                        "actor": r.actor,
                        "action": r.action,
                        "subject": r.subject,
                        "details": json.loads(r.details_json or "{}"),
                        "server_id": r.server_id,
                        "hash": r.hash,
                    }
                    for r in records
                ]
            }
        )
        return
    if not records and action and action not in AUDIT_ACTIONS:
        say(
            "No audit record has the action {}. Actions the server records: {}.",
            action,
            ", ".join(AUDIT_ACTIONS),
        )
        return
    console.print(
        table(
            f"{len(records)} audit records",
            ("#", "Time", "Actor", "Action", "Subject", "Details"),
            (
                (r.sequence, format_time(r.time), r.actor, r.action, r.subject, r.details_json)
                for r in records
            ),
        )
    )


def register(app: typer.Typer) -> None:
    """Add the server family's commands to `app`."""
    app.add_typer(server_app, name="server")
    app.add_typer(entry_app, name="entry")
    app.add_typer(token_app, name="token")
    app.add_typer(bundle_app, name="bundle")
    app.add_typer(x509_app, name="x509")
    app.add_typer(jwt_app, name="jwt")
    app.command("healthcheck")(healthcheck)
    app.add_typer(audit_log_app, name="audit-log")
    app.add_typer(datastore_app, name="datastore")
