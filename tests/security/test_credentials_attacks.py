"""Attacks on the ephemeral credentials: OIDC discovery, token exchange and database leases.

Each test plays an attacker against servers, sockets, files and PostgreSQL clusters that it
starts itself, on loopback. A test that found a hole stays as its regression test. The
attacks that the product withstood stay too, so that a later change cannot open them.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import socket
import ssl
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry
from psycopg import sql
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "credentials"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "agent"))

from agent_support import make_entry, public_socket_dir, running_agent
from attack_kit import Clock
from credentials_support import (
    BILLING,
    DEFAULT_POLICY,
    ISSUER,
    b64url,
    base_url,
    client_context,
    credential_server_options,
    exchange_form,
    https_client,
    jwt_signer,
    mint,
    operator_certificate,
)
from password_cluster import MANAGER, MANAGER_PASSWORD, OWNER, PasswordCluster

from warden.config import ConfigError, load_server_config
from warden.credentials import (
    ConnectionSettings,
    DatabaseBroker,
    DatabaseSettings,
    ExchangeRule,
    IssuedCredential,
    LeaseBusy,
    LeaseError,
    RoleSettings,
    SpiffeIdPattern,
    TokenExchangeSettings,
    parse_patterns,
)
from warden.credentials.oidc import validate_issuer
from warden.server.app import WardenServer
from warden.server.http import HttpListener
from warden.server.httpapi import HttpApi
from warden.server.metrics import Metrics
from warden.server.options import HttpApiOptions
from warden.spiffe import SpiffeId, mint_jwt_svid
from warden.store import Datastore, EntrySpec

AWS = "sts.amazonaws.com"


def start_server(tmp_path: Path, **overrides: Any) -> WardenServer:
    return WardenServer(
        credential_server_options(tmp_path, **overrides), metrics=Metrics(CollectorRegistry())
    )


async def post_token(server: WardenServer, form: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(base_url(server) + "/v1/token", data=form)


def audit_details(server: WardenServer, action: str) -> list[dict[str, Any]]:
    return [dict(record.details) for record in server.datastore.iter_audit(action=action)]


def unsigned_token(claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    """A compact JWS with the given claims and a signature of zeros."""
    header = header or {"alg": "ES256", "kid": "k", "typ": "JWT"}
    return ".".join(
        (b64url(json.dumps(header).encode()), b64url(json.dumps(claims).encode()), "A" * 86)
    )


def forged_svid(directory: Path, spiffe_id: SpiffeId) -> tuple[Path, Path]:
    """Write an X509-SVID for `spiffe_id` signed by a CA of its own; return cert and key."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "forger")])
    key = ec.generate_private_key(ec.SECP256R1())

    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(spiffe_id))]),
            critical=True,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )

    cert_path = directory / "svid.pem"
    cert_path.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_path = directory / "svid-key.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


# == Token exchange ==========================================================================


async def test_replay_within_leeway_rejected(tmp_path: Path) -> None:
    # With leeway, a token stays acceptable after its exp, so its jti must be stored for as
    # long. Otherwise the replay cache drops the jti while the token is still accepted.
    policy = TokenExchangeSettings(rules=DEFAULT_POLICY.rules, leeway=timedelta(minutes=1))
    async with start_server(tmp_path, token_exchange=policy) as server:
        token = mint(
            server,
            BILLING,
            now=datetime.now(UTC) - timedelta(seconds=70),
            ttl=timedelta(seconds=60),
            extra={"jti": "within-leeway"},
        )
        first = await post_token(server, exchange_form(token))
        replayed = await post_token(server, exchange_form(token))

    assert first.status_code == 200
    assert replayed.status_code == 400
    assert replayed.json()["error"] == "invalid_request"
    assert "already used" in replayed.json()["error_description"]
    assert "access_token" not in replayed.json()


async def test_rejection_audit_bounded_without_tokens(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Anyone may call the token endpoint, and every rejection is audited in an append-only
    # log: a request must not be able to write 100 KB into it. A client that sends its
    # JWT-SVID in the wrong parameter must not find the token in the audit log or the logs.
    async with start_server(tmp_path) as server:
        token = mint(server, BILLING)
        signature = token.rsplit(".", 1)[1]
        forms = [
            {**exchange_form("x"), "subject_token_type": "t" * 60_000},
            {**exchange_form(token), "audience": "a" * 60_000},
            {**exchange_form("x"), "grant_type": token},
            {**exchange_form("x"), "subject_token_type": token, "audience": token},
            {**exchange_form("x", requested_token_type=token)},
            {**exchange_form(unsigned_token({"sub": "spiffe://example.org/" + "s" * 40_000}))},
            {**exchange_form(unsigned_token({"sub": "spiffe://" + "d" * 40_000 + "/x"}))},
        ]
        with caplog.at_level("INFO", logger="warden"):
            responses = [await post_token(server, form) for form in forms]
        await server.audit.flush()
        records = audit_details(server, "token.exchange_reject")

    assert [response.status_code for response in responses] == [400] * len(forms)
    assert len(records) == len(forms)
    for record in records:
        text = json.dumps(record)
        assert len(text) < 2048
        assert signature not in text
    for log_record in caplog.records:
        assert signature not in log_record.getMessage()
        assert signature not in json.dumps(log_record.__dict__, default=str)
        assert len(json.dumps(log_record.__dict__, default=str)) < 8192


async def test_exchanged_token_not_accepted_as_subject(tmp_path: Path) -> None:
    # A rule may grant the token endpoint's own audience, but a federation token is signed
    # with a federation key, which is not in the SPIFFE bundle: it cannot be exchanged again
    # to reset its lifetime or to obtain another audience.
    loop_rule = ExchangeRule(
        subjects=(SpiffeIdPattern.parse("spiffe://example.org/billing/*"),),
        audiences=(ISSUER, AWS),
    )
    policy = TokenExchangeSettings(rules=(loop_rule,))
    async with start_server(tmp_path, token_exchange=policy) as server:
        first = await post_token(server, exchange_form(mint(server, BILLING), audience=ISSUER))
        again = await post_token(server, exchange_form(first.json()["access_token"]))

    assert first.status_code == 200
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_request"
    assert "access_token" not in again.json()


async def test_forged_subject_tokens_rejected(tmp_path: Path) -> None:
    async with start_server(tmp_path) as server:
        signer = jwt_signer(server)
        now = datetime.now(UTC)
        foreign = SpiffeId.parse("spiffe://evil.example/billing/api")
        claims = {"sub": str(BILLING), "aud": [ISSUER], "exp": int(now.timestamp()) + 300}
        header = {"alg": "ES256", "kid": signer.key_id, "typ": "JWT"}
        forgeries = {
            # Signed by this server's key, but naming a trust domain it has no bundle for.
            "foreign trust domain": mint_jwt_svid(
                signer, foreign, ISSUER, now, timedelta(minutes=5)
            ),
            # Headers that would let the token name its own verification key.
            "jwk header": unsigned_token(claims, {**header, "jwk": {"kty": "EC"}}),
            "jku header": unsigned_token(claims, {**header, "jku": "https://127.0.0.1/k"}),
            "x5u header": unsigned_token(claims, {**header, "x5u": "https://127.0.0.1/c"}),
            "crit header": unsigned_token(claims, {**header, "crit": ["exp"]}),
            "unknown kid": unsigned_token(claims, {**header, "kid": "not-a-key"}),
            "bad signature": unsigned_token(claims, header),
            "no exp": unsigned_token({"sub": str(BILLING), "aud": [ISSUER]}, header),
            "exp as string": unsigned_token({**claims, "exp": "9999999999"}, header),
            "sub not a SPIFFE ID": unsigned_token({**claims, "sub": "billing"}, header),
            "two dots only": "..",
            "not base64": "a.b.c",
        }
        responses = {
            name: await post_token(server, exchange_form(token))
            for name, token in forgeries.items()
        }

    for name, response in responses.items():
        assert response.status_code == 400, name
        assert response.json()["error"] == "invalid_request", name
        assert "access_token" not in response.json(), name


async def test_concurrent_replay_issues_one_token(tmp_path: Path) -> None:
    async with start_server(tmp_path) as server:
        token = mint(server, BILLING, extra={"jti": "raced"})
        async with httpx.AsyncClient(timeout=30) as client:
            responses = await asyncio.gather(
                *(
                    client.post(base_url(server) + "/v1/token", data=exchange_form(token))
                    for _ in range(20)
                )
            )
        await server.audit.flush()
        issued = audit_details(server, "token.exchange")

    assert sorted(response.status_code for response in responses) == [200] + [400] * 19
    assert len(issued) == 1


async def test_malformed_bodies_rejected_without_server_error(tmp_path: Path) -> None:
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    oversized = b"audience=" + b"a" * (70 * 1024)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(80):
            yield b"a" * 1024

    async with start_server(tmp_path) as server:
        url = base_url(server) + "/v1/token"
        async with httpx.AsyncClient(timeout=30) as client:
            statuses = {
                "invalid UTF-8": await client.post(
                    url, content=b"\xff\xfe=\x80", headers=form_type
                ),
                "too many fields": await client.post(
                    url, content="&".join(f"f{n}=v" for n in range(100)), headers=form_type
                ),
                "oversized": await client.post(url, content=oversized, headers=form_type),
                "oversized, chunked": await client.post(url, content=chunks(), headers=form_type),
                "no content type": await client.post(url, content=b"grant_type=x"),
                "multipart": await client.post(url, files={"grant_type": b"x"}),
                "GET": await client.get(url),
                "percent garbage": await client.post(
                    url, content=b"grant_type=%ZZ%&subject_token=%", headers=form_type
                ),
            }
            discovery = await client.get(
                base_url(server) + "/.well-known/openid-configuration",
                headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
            )

    for name, response in statuses.items():
        assert 400 <= response.status_code < 500, name
        assert "access_token" not in response.text, name
    assert statuses["oversized"].status_code == 413
    assert statuses["oversized, chunked"].status_code == 413
    assert discovery.json()["issuer"] == ISSUER
    assert discovery.json()["jwks_uri"] == ISSUER + "/keys"


async def test_client_certificate_from_foreign_ca_rejected(tmp_path: Path) -> None:
    # The HTTP API requests a client certificate without requiring one. A certificate that
    # is sent must chain to the trust bundle, whatever SPIFFE ID it names.
    ca_file, cert_file, key_file = operator_certificate(tmp_path / "operator")
    http_api = HttpApiOptions("127.0.0.1", 0, cert_file, key_file)
    async with start_server(tmp_path, http_api=http_api) as server:
        context = ssl.create_default_context(cafile=str(ca_file))
        context.load_cert_chain(*forged_svid(tmp_path / "forged", BILLING))
        outcome: httpx.Response | Exception
        try:
            async with https_client(context) as client:
                outcome = await client.get(base_url(server, "https") + "/v1/leases")
        except (httpx.HTTPError, ssl.SSLError) as error:
            outcome = error

    assert not isinstance(outcome, httpx.Response)


# == The HTTP API listener ===================================================================


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Tell whether the server closed the connection within `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


async def trickle(writer: asyncio.StreamWriter, data: bytes, interval: float) -> None:
    """Send `data` a byte at a time, as a slowloris client does, until the peer is gone."""
    try:
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(interval)
    except ConnectionError:
        pass


async def test_idle_and_slow_clients_disconnected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The listener is public (cloud providers fetch the JWKS), so a client that connects and
    # sends nothing, or sends a request a byte at a time, must not hold a connection forever.
    monkeypatch.setattr("warden.server.httpapi.REQUEST_TIMEOUT_SECONDS", 0.5)
    async with start_server(tmp_path) as server:
        port = server.credentials.port
        connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(12)]
        readers = [reader for reader, _ in connections]
        writers = [writer for _, writer in connections]
        writers[1].write(b"GET /keys HTT")
        slowloris = asyncio.create_task(
            trickle(writers[2], b"GET /keys HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 200, 0.1)
        )
        writers[3].write(
            b"POST /v1/token HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n\r\ngrant_type"
        )
        # A complete request, then a next one that never ends: the keep-alive timer of
        # uvicorn restarts with every byte, so it does not end this connection.
        writers[4].write(b"GET /keys HTTP/1.1\r\nHost: x\r\n\r\n")
        after_response = asyncio.create_task(
            trickle(writers[4], b"GET /keys HTTP/1.1\r\nX-B: " + b"b" * 200, 0.1)
        )
        try:
            closed = await asyncio.gather(*(closed_within(reader, 4) for reader in readers))
            async with httpx.AsyncClient(timeout=10) as client:
                keys = await client.get(base_url(server) + "/keys")
        finally:
            slowloris.cancel()
            after_response.cancel()
            for writer in writers:
                writer.close()

    assert closed == [True] * len(readers)
    assert keys.status_code == 200


async def test_connections_above_cap_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("warden.server.httpapi.MAX_CONNECTIONS", 8)
    async with start_server(tmp_path) as server:
        port = server.credentials.port
        connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(30)]
        try:
            closed = await asyncio.gather(*(closed_within(reader, 1) for reader, _ in connections))
        finally:
            for _, writer in connections:
                writer.close()
        await asyncio.sleep(0.1)
        async with httpx.AsyncClient(timeout=10) as client:
            keys = await client.get(base_url(server) + "/keys")

    assert closed.count(False) <= 8
    assert closed.count(True) >= 22
    assert keys.status_code == 200


async def test_expired_client_svid_on_open_connection_rejected(tmp_path: Path) -> None:
    # TLS checks the client certificate once, at the handshake; a kept-alive connection must
    # not go on speaking for a workload whose X509-SVID has expired since.
    ca_file, cert_file, key_file = operator_certificate(tmp_path / "operator")
    http_api = HttpApiOptions("127.0.0.1", 0, cert_file, key_file)
    async with start_server(tmp_path, http_api=http_api) as server:
        context = client_context(
            server, ca_file, tmp_path / "client", BILLING, ttl=timedelta(seconds=2)
        )
        url = base_url(server, "https") + "/v1/leases"
        async with https_client(context) as client:
            fresh = await client.get(url)
            await asyncio.sleep(2.5)
            expired = await client.get(url)

    assert fresh.status_code == 200
    assert expired.status_code == 401
    assert "expired" in expired.json()["error_description"]


# == Database leases =========================================================================

CREATE_USER = "CREATE ROLE \"{{name}}\" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'"
WORKLOAD = SpiffeId.parse("spiffe://example.org/orders/api")


@pytest.fixture(scope="module")
def password_cluster() -> Iterator[PasswordCluster]:
    """A PostgreSQL cluster that checks passwords, as the credential tests use."""
    from pg import PostgresCluster, find_bindir

    if find_bindir() is None:
        message = "PostgreSQL binaries (initdb, pg_ctl) not found"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI must install postgresql-15")
        pytest.skip(f"{message}; install postgresql-15 or set WARDEN_PG_BINDIR")
    cluster = PostgresCluster.start()
    try:
        yield PasswordCluster.prepare(cluster)
    finally:
        cluster.stop()


@pytest.fixture
def orders_database(password_cluster: PasswordCluster) -> str:
    name = f"orders_{uuid.uuid4().hex[:12]}"
    password_cluster.create_orders_database(name)
    return name


def lease_settings(
    cluster: PasswordCluster, database: str, *, ttl: timedelta = timedelta(minutes=5)
) -> DatabaseSettings:
    """A `writer` role whose users may create objects in schema public, as migrations do."""
    connection = ConnectionSettings(
        name="orders",
        url=cluster.manager_url(database),
        reassign_owned_to=OWNER,
        password=MANAGER_PASSWORD,
    )
    writer = RoleSettings(
        name="writer",
        connection="orders",
        creation_statements=(
            CREATE_USER,
            'GRANT SELECT, INSERT ON orders TO "{{name}}"',
            'GRANT USAGE, CREATE ON SCHEMA public TO "{{name}}"',
        ),
        allowed_spiffe_ids=parse_patterns(["spiffe://example.org/orders/*"]),
        default_ttl=ttl,
        max_ttl=timedelta(minutes=10),
    )
    return DatabaseSettings({"orders": connection}, {"writer": writer})


@pytest.fixture
async def broker(
    tmp_path: Path, password_cluster: PasswordCluster, orders_database: str
) -> AsyncIterator[DatabaseBroker]:
    datastore = Datastore.for_data_dir(tmp_path / "store", server_id="server-a")
    instance = DatabaseBroker(
        lease_settings(password_cluster, orders_database),
        datastore,
        clock=lambda: datetime.now(UTC),
    )
    try:
        yield instance
    finally:
        await instance.close()
        datastore.close()


def user_session(
    cluster: PasswordCluster, issued: IssuedCredential, database: str
) -> psycopg.Connection:
    return cluster.connect_as(issued.username, issued.password, database)


@pytest.mark.postgres
async def test_planted_function_cannot_hijack_revocation(
    broker: DatabaseBroker, password_cluster: PasswordCluster, orders_database: str
) -> None:
    # A leased user that may create objects in schema public plants a function whose
    # argument types match the management role's call more closely than pg_catalog's own
    # (psycopg sends 5000 as smallint). If the management session resolved it through its
    # search_path, the planted code would run as the management role (CREATEROLE) and keep
    # the session alive by not terminating it.
    backdoor = f"backdoor_{uuid.uuid4().hex[:8]}"
    issued = await broker.issue("writer", str(WORKLOAD), ["team-orders"], actor="test")
    session = user_session(password_cluster, issued, orders_database)
    session.execute(
        sql.SQL(
            "CREATE FUNCTION public.plant() RETURNS void LANGUAGE plpgsql AS $$ BEGIN "
            "IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {}) THEN EXECUTE {}; END IF; "
            "END $$"
        ).format(
            sql.Literal(backdoor), sql.Literal(f"CREATE ROLE {backdoor} LOGIN PASSWORD 'known'")
        )
    )
    session.execute(
        "CREATE FUNCTION public.pg_terminate_backend(integer, smallint) RETURNS boolean "
        "LANGUAGE plpgsql AS $$ BEGIN PERFORM public.plant(); RETURN true; END $$"
    )
    session.execute(
        "CREATE FUNCTION public.oid_is(oid, smallint) RETURNS boolean LANGUAGE plpgsql "
        "AS $$ BEGIN PERFORM public.plant(); RETURN $1 = $2::integer::oid; END $$"
    )
    session.execute(
        "CREATE OPERATOR public.= (LEFTARG = oid, RIGHTARG = smallint, FUNCTION = public.oid_is)"
    )

    try:
        revocation_error = ""
        try:
            await broker.revoke(issued.lease.lease_id, actor="test")
        except LeaseError as error:
            revocation_error = str(error)
        session_alive = session_works(session)
    finally:
        session.close()

    assert not password_cluster.role_exists(backdoor)
    assert revocation_error == ""
    assert not session_alive
    assert not password_cluster.role_exists(issued.username)


def session_works(session: psycopg.Connection) -> bool:
    try:
        session.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


@pytest.mark.postgres
async def test_lease_ending_at_once_is_lease_error(
    tmp_path: Path, password_cluster: PasswordCluster, orders_database: str
) -> None:
    # Lease ends are rounded down to the second, as VALID UNTIL is written. A one-second
    # lease requested just before a second ends can end before the datastore stores it.
    def late_in_second() -> datetime:
        return datetime.now(UTC).replace(microsecond=0) - timedelta(microseconds=1)

    datastore = Datastore.for_data_dir(tmp_path / "store")
    broker = DatabaseBroker(
        lease_settings(password_cluster, orders_database), datastore, clock=late_in_second
    )
    try:
        with pytest.raises(LeaseError, match="TTL"):
            await broker.issue(
                "writer", str(WORKLOAD), ["team-orders"], actor="test", ttl=timedelta(seconds=1)
            )
        leases = datastore.list_leases(include_revoked=True)
    finally:
        await broker.close()
        datastore.close()

    assert leases == []


@pytest.mark.postgres
async def test_revocation_during_issue_leaves_no_user(
    broker: DatabaseBroker, password_cluster: PasswordCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lease is stored before its user exists. A revocation in between (the holder's last
    # entry deleted, a revocation by prefix) finds no user and marks the lease revoked. The
    # user created right after must not survive it with working credentials.
    connection = broker.connection("orders")
    create_user = connection.create_user
    creating = asyncio.Event()
    proceed = asyncio.Event()

    async def slow_create_user(*args: Any, **kwargs: Any) -> None:
        creating.set()
        await proceed.wait()
        await create_user(*args, **kwargs)

    monkeypatch.setattr(connection, "create_user", slow_create_user)
    issue = asyncio.create_task(
        broker.issue("writer", str(WORKLOAD), ["team-orders"], actor="test")
    )
    await creating.wait()
    summary = await broker.revoke_holder(str(WORKLOAD), actor="test", reason="entry_deleted")
    proceed.set()
    outcome = (await asyncio.gather(issue, return_exceptions=True))[0]
    leases = broker._store.list_leases(include_revoked=True)

    assert len(summary.revoked) == 1
    assert isinstance(outcome, LeaseError)
    assert len(leases) == 1
    assert leases[0].revoked_at is not None
    assert not password_cluster.role_exists(str(leases[0].details["username"]))


@pytest.mark.postgres
async def test_reassigned_objects_do_not_escalate(
    broker: DatabaseBroker, password_cluster: PasswordCluster, orders_database: str
) -> None:
    # The writer role may insert into orders but not delete, and may not read secrets. A
    # writer plants a SECURITY DEFINER function that deletes every order and a view of the
    # secrets, both open to everyone. While the writer owns them, they run with the
    # writer's privileges and fail. Revocation reassigns them to the owner of the tables.
    with password_cluster.admin(orders_database) as admin:
        admin.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(OWNER)))
        admin.execute("CREATE TABLE secrets (value text)")
        admin.execute("INSERT INTO secrets VALUES ('owner only')")
    planter = await broker.issue("writer", str(WORKLOAD), ["team-orders"], actor="test")
    with user_session(password_cluster, planter, orders_database) as session:
        session.execute(
            "CREATE FUNCTION public.wipe() RETURNS void LANGUAGE sql SECURITY DEFINER "
            "AS $$ DELETE FROM public.orders $$"
        )
        session.execute("CREATE VIEW public.peek AS SELECT value FROM public.secrets")
        session.execute("GRANT SELECT ON public.peek TO PUBLIC")
    await broker.revoke(planter.lease.lease_id, actor="test")
    caller = await broker.issue("writer", str(WORKLOAD), ["team-orders"], actor="test")

    with user_session(password_cluster, caller, orders_database) as session:
        wiped = denied(session, "SELECT public.wipe()")
        peeked = denied(session, "SELECT value FROM public.peek")
    with password_cluster.admin(orders_database) as admin:
        remaining = admin.execute("SELECT count(*) FROM orders").fetchone()

    assert wiped
    assert peeked
    assert remaining == (2,)


def denied(session: psycopg.Connection, query: str) -> bool:
    try:
        session.execute(query)
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


# Deletes every order when it runs with a role that may, and does nothing otherwise, so
# that the planter's own calls succeed unnoticed.
ERASE_ORDERS = """
CREATE FUNCTION public.erase() RETURNS integer LANGUAGE plpgsql AS $$
BEGIN
  BEGIN
    DELETE FROM public.orders;
  EXCEPTION WHEN insufficient_privilege THEN NULL;
  END;
  RETURN 0;
END $$
"""
# Declared IMMUTABLE, so that indexes, statistics and range types may call them;
# PostgreSQL does not check.
ERASE_IN_EXPRESSION = """
CREATE FUNCTION public.erase_plus(integer) RETURNS integer LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  RETURN public.erase() + $1;
END $$
"""
ERASE_IN_RANGE_DIFF = """
CREATE FUNCTION public.erase_diff(float8, float8) RETURNS float8 LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
  RETURN public.erase() + $1 - $2;
END $$
"""


@pytest.mark.postgres
async def test_reassigned_rules_and_expressions_do_not_escalate(
    broker: DatabaseBroker, password_cluster: PasswordCluster, orders_database: str
) -> None:
    # Besides SECURITY DEFINER routines and views, PostgreSQL runs a rule's actions with the
    # privileges of its table's owner whenever anyone writes to the table, even on a
    # security-invoker view. ANALYZE, which autovacuum runs unasked, evaluates index and
    # statistics expressions, and calls the subtype_diff function of a range column's
    # type, as the table's owner. Each of them erases the orders once a revocation hands
    # the writer's objects to the owner of the orders table.
    planter = await broker.issue("writer", str(WORKLOAD), ["team-orders"], actor="test")
    with user_session(password_cluster, planter, orders_database) as session:
        session.execute(ERASE_ORDERS)
        session.execute(ERASE_IN_EXPRESSION)
        session.execute(ERASE_IN_RANGE_DIFF)
        session.execute(
            "CREATE TYPE public.erase_range AS RANGE "
            "(subtype = float8, subtype_diff = public.erase_diff)"
        )
        session.execute("CREATE DOMAIN public.erase_span AS public.erase_range")
        session.execute("CREATE TABLE public.notes (id integer, span public.erase_span)")
        session.execute(
            "INSERT INTO public.notes "
            "SELECT n, public.erase_range(n, n + 1) FROM generate_series(1, 100) n"
        )
        session.execute("CREATE INDEX notes_erase ON public.notes (public.erase_plus(id))")
        session.execute(
            "CREATE STATISTICS public.notes_stats ON (public.erase_plus(id)), id FROM public.notes"
        )
        session.execute(
            "CREATE RULE erase_on_insert AS ON INSERT TO public.notes "
            "DO ALSO DELETE FROM public.orders"
        )
        session.execute("CREATE VIEW public.notes_view AS SELECT id FROM public.notes")
        session.execute(
            "CREATE RULE erase_instead AS ON INSERT TO public.notes_view "
            "DO INSTEAD DELETE FROM public.orders"
        )
        session.execute(
            "CREATE PROCEDURE public.erase_all() LANGUAGE sql SECURITY DEFINER "
            "AS $$ DELETE FROM public.orders $$"
        )
        session.execute("GRANT INSERT ON public.notes, public.notes_view TO PUBLIC")
    await broker.revoke(planter.lease.lease_id, actor="test")
    caller = await broker.issue("writer", str(WORKLOAD), ["team-orders"], actor="test")

    with user_session(password_cluster, caller, orders_database) as session:
        called = denied(session, "CALL public.erase_all()")
        session.execute("INSERT INTO public.notes VALUES (101)")
        session.execute("INSERT INTO public.notes_view VALUES (102)")
    with password_cluster.admin(orders_database) as admin:
        admin.execute("ANALYZE public.notes")
        remaining = admin.execute("SELECT count(*) FROM orders").fetchone()
        notes = admin.execute("SELECT count(*) FROM public.notes").fetchone()
    record = list(broker._store.iter_audit(action="lease.revoke"))[-1]

    assert called
    assert remaining == (2,)
    assert notes == (102,)
    assert record.details["disarmed_count"] == 7
    assert any("erase_all()" in change for change in record.details["disarmed"])


@pytest.fixture
async def lease_server(
    tmp_path: Path, password_cluster: PasswordCluster, orders_database: str
) -> AsyncIterator[tuple[WardenServer, Path]]:
    """A server with the database API over mTLS and an entry for WORKLOAD; and its CA file."""
    ca_file, cert_file, key_file = operator_certificate(tmp_path / "operator")
    instance = start_server(
        tmp_path,
        http_api=HttpApiOptions("127.0.0.1", 0, cert_file, key_file),
        database=lease_settings(password_cluster, orders_database),
        database_sweep_interval=timedelta(seconds=0.5),
    )
    await instance.start()
    instance.datastore.create_entry(
        EntrySpec(
            spiffe_id=str(WORKLOAD),
            parent_id="spiffe://example.org/spire/agent/join_token/t",
            selectors=["unix:uid:1000"],
            owner="team-orders",
        ),
        actor="test",
    )
    try:
        yield instance, ca_file
    finally:
        await instance.stop()


async def call_lease_api(
    server: WardenServer, ca_file: Path, directory: Path, path: str, body: Any
) -> httpx.Response:
    context = client_context(server, ca_file, directory, WORKLOAD)
    async with https_client(context) as client:
        return await client.post(base_url(server, "https") + path, json=body)


@pytest.mark.postgres
async def test_huge_lease_durations_rejected(
    lease_server: tuple[WardenServer, Path], tmp_path: Path
) -> None:
    server, ca_file = lease_server
    issued = await call_lease_api(server, ca_file, tmp_path / "c", "/v1/database/creds/writer", {})
    lease_id = issued.json()["lease_id"]
    cases = [
        ("/v1/database/creds/writer", {"ttl": 10**30}),
        ("/v1/database/creds/writer", {"ttl": 10**13}),
        ("/v1/leases/renew", {"lease_id": lease_id, "increment": 10**30}),
        ("/v1/leases/renew", {"lease_id": lease_id, "increment": 10**13}),
        ("/v1/leases/renew", {"lease_id": lease_id, "increment": 1e308}),
        ("/v1/leases/renew", {"lease_id": lease_id, "increment": "3600"}),
        ("/v1/leases/renew", {"lease_id": ["x"]}),
        ("/v1/leases/revoke", {"lease_id": "x" * 60_000}),
    ]

    responses = [
        await call_lease_api(server, ca_file, tmp_path / "c", path, body) for path, body in cases
    ]

    assert issued.status_code == 200
    assert [response.status_code for response in responses] == [400] * len(cases)
    for response in responses:
        assert len(response.json()["error_description"]) < 1000
    lease = server.datastore.get_lease(lease_id)
    assert lease.revoked_at is None
    assert lease.expires_at <= lease.max_expires_at


@pytest.mark.postgres
async def test_revocation_cut_by_crash_resumes_at_start(
    tmp_path: Path, password_cluster: PasswordCluster, orders_database: str
) -> None:
    # A server claims a lease, starts revoking it and dies before it finishes. The claim
    # would keep every sweeper away for two minutes while the user can still log in. The
    # restarted server has the same server id, so its old claims are stale.
    options: dict[str, Any] = {
        "http_api": None,
        "database": lease_settings(password_cluster, orders_database),
        "database_sweep_interval": timedelta(seconds=30),
    }
    first = start_server(tmp_path, **options)
    await first.start()
    try:
        issued = await first.credentials.broker.issue(
            "writer", str(WORKLOAD), ["team-orders"], actor="test"
        )
        claimed = first.datastore.claim_lease(issued.lease.lease_id, hold=timedelta(minutes=2))
    finally:
        await first.stop()
    assert claimed is not None

    second = start_server(tmp_path, **options)
    await second.start()
    try:
        deadline = time.monotonic() + 10
        lease = second.datastore.get_lease(issued.lease.lease_id)
        while lease.revoked_at is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            lease = second.datastore.get_lease(issued.lease.lease_id)
    finally:
        await second.stop()

    assert lease.revoked_at is not None
    assert not password_cluster.role_exists(issued.username)


@pytest.mark.postgres
@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
async def test_rotate_root_keeps_password_file_owner(
    tmp_path: Path, password_cluster: PasswordCluster, orders_database: str
) -> None:
    # Operators run `warden creds db rotate-root` with sudo, while the server runs as its
    # own user and reads the file at each new connection. A file that rotation hands to
    # root, mode 0600, locks the server out of its database.
    service = pwd.getpwnam("nobody")
    password_file = tmp_path / "orders.password"
    password_file.write_text(MANAGER_PASSWORD + "\n")
    password_file.chmod(0o600)
    os.chown(password_file, service.pw_uid, service.pw_gid)
    tmp_path.chmod(0o755)
    settings = lease_settings(password_cluster, orders_database)
    connection = replace(settings.connections["orders"], password=None, password_file=password_file)
    datastore = Datastore.for_data_dir(tmp_path / "store")
    broker = DatabaseBroker(
        replace(settings, connections={"orders": connection}),
        datastore,
        clock=lambda: datetime.now(UTC),
    )
    try:
        await broker.rotate_root("orders", actor="unix:root")
    finally:
        await broker.close()
        datastore.close()
        with password_cluster.admin() as admin:
            admin.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(MANAGER), sql.Literal(MANAGER_PASSWORD)
                )
            )

    status = password_file.stat()
    assert status.st_uid == service.pw_uid
    assert status.st_gid == service.pw_gid
    assert status.st_mode & 0o777 == 0o600
    assert password_file.read_text().strip() != MANAGER_PASSWORD


@pytest.mark.postgres
async def test_concurrent_revocations_revoke_once(
    tmp_path: Path, password_cluster: PasswordCluster, orders_database: str
) -> None:
    settings = lease_settings(password_cluster, orders_database)
    stores = [Datastore.for_data_dir(tmp_path / "store", server_id=name) for name in ("a", "b")]
    brokers = [DatabaseBroker(settings, store, clock=lambda: datetime.now(UTC)) for store in stores]
    try:
        issued = await brokers[0].issue("writer", str(WORKLOAD), ["team-orders"], actor="test")
        session = user_session(password_cluster, issued, orders_database)
        lease_id = issued.lease.lease_id
        outcomes = await asyncio.gather(
            *(broker.revoke(lease_id, actor="test") for broker in brokers * 3),
            brokers[1].revoke_prefix("database/orders/", actor="test"),
            return_exceptions=True,
        )
        alive = session_works(session)
        session.close()
        records = list(stores[0].iter_audit(action="lease.*"))
    finally:
        for broker in brokers:
            await broker.close()
        for store in stores:
            store.close()

    unexpected = [
        outcome
        for outcome in outcomes
        if isinstance(outcome, BaseException) and not isinstance(outcome, LeaseBusy)
    ]
    assert unexpected == []
    assert [record.action for record in records].count("lease.revoke") == 1
    assert "lease.revoke_failed" not in [record.action for record in records]
    assert not alive
    assert not password_cluster.role_exists(issued.username)


@pytest.mark.postgres
async def test_management_password_kept_out_of_errors(
    tmp_path: Path, password_cluster: PasswordCluster, orders_database: str
) -> None:
    secret = "manager-secret-in-url"
    closed_port = socket.socket()
    closed_port.bind(("127.0.0.1", 0))
    port = closed_port.getsockname()[1]
    closed_port.close()
    cases = {
        "closed port": f"postgresql://{MANAGER}:{secret}@127.0.0.1:{port}/{orders_database}",
        "bad port": f"postgresql://{MANAGER}:{secret}@127.0.0.1:x{port}/{orders_database}",
        "bad option": f"host=127.0.0.1 password={secret} sslmode=sometimes",
        "wrong password": (
            f"postgresql://{MANAGER}:{secret}@127.0.0.1:{password_cluster.port}/{orders_database}"
        ),
    }
    settings = lease_settings(password_cluster, orders_database)
    datastore = Datastore.for_data_dir(tmp_path / "store")
    messages = {}
    try:
        for name, url in cases.items():
            connection = replace(settings.connections["orders"], url=url, password=None)
            broker = DatabaseBroker(
                replace(settings, connections={"orders": connection}),
                datastore,
                clock=lambda: datetime.now(UTC),
            )
            try:
                await broker.issue("writer", str(WORKLOAD), ["team-orders"], actor="test")
            except LeaseError as error:
                messages[name] = str(error)
            finally:
                await broker.close()
            assert secret not in repr(connection), name
        audit = json.dumps([dict(record.details) for record in datastore.iter_audit()])
    finally:
        datastore.close()

    assert sorted(messages) == sorted(cases)
    for name, message in messages.items():
        assert secret not in message, name
    assert secret not in audit


LEASING_CHILD = """
import asyncio, sys
from datetime import UTC, datetime, timedelta
from warden.credentials import (
    ConnectionSettings, DatabaseBroker, DatabaseSettings, RoleSettings, parse_patterns,
)
from warden.store import Datastore

url, password, owner, data_dir = sys.argv[1:]
connection = ConnectionSettings(
    name="orders", url=url, reassign_owned_to=owner, password=password
)
role = RoleSettings(
    name="killed",
    connection="orders",
    creation_statements=(
        "CREATE ROLE \\"{{name}}\\" LOGIN PASSWORD '{{password}}'",
        "GRANT USAGE, CREATE ON SCHEMA public TO \\"{{name}}\\"",
    ),
    allowed_spiffe_ids=parse_patterns(["spiffe://example.org/orders/*"]),
)

async def main():
    store = Datastore.for_data_dir(data_dir, server_id="killed-server")
    broker = DatabaseBroker(
        DatabaseSettings({"orders": connection}, {"killed": role}),
        store,
        clock=lambda: datetime.now(UTC),
    )
    number = 0
    while True:
        issued = await broker.issue("killed", "spiffe://example.org/orders/api", ["team"], actor="child")
        print("issued", flush=True)
        if number % 2:
            await broker.revoke(issued.lease.lease_id, actor="child")
            print("revoked", flush=True)
        number += 1

asyncio.run(main())
"""


def leased_roles(cluster: PasswordCluster) -> set[str]:
    with cluster.admin() as admin:
        rows = admin.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE 'w-killed-%'")
        return {str(row[0]) for row in rows}


@pytest.mark.postgres
async def test_killed_broker_leaves_no_unknown_user(
    tmp_path: Path, password_cluster: PasswordCluster, orders_database: str
) -> None:
    # SIGKILL a process that issues and revokes leases, at three different moments. Every
    # database user must have a lease, and a restarted broker must revoke them all.
    url = password_cluster.manager_url(orders_database)
    data_dir = tmp_path / "store"
    command = [sys.executable, "-c", LEASING_CHILD, url, MANAGER_PASSWORD, OWNER, str(data_dir)]
    for lines_before_kill, delay in ((3, 0.0), (6, 0.013), (9, 0.029)):
        child = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        assert child.stdout is not None
        for _ in range(lines_before_kill):
            line = await asyncio.wait_for(child.stdout.readline(), 30)
            assert line, (await child.stderr.read()).decode() if child.stderr else ""
        await asyncio.sleep(delay)
        child.kill()
        await child.wait()

    later = datetime.now(UTC) + timedelta(days=1)
    store = Datastore.for_data_dir(data_dir, server_id="killed-server", clock=lambda: later)
    try:
        leases = store.list_leases(include_revoked=True)
        users_before = leased_roles(password_cluster)
        broker = DatabaseBroker(
            lease_settings(password_cluster, orders_database), store, clock=lambda: later
        )
        try:
            store.release_own_claims()
            await broker.sweep()
        finally:
            await broker.close()
        swept = store.list_leases(include_revoked=True)
        verification = store.verify_audit_log()
    finally:
        store.close()

    lease_users = {str(lease.details["username"]) for lease in leases}
    assert len(leases) >= 9
    assert users_before <= lease_users
    assert all(lease.revoked_at is not None for lease in swept)
    assert leased_roles(password_cluster) == set()
    assert verification.ok, verification.problem


# == Configuration ===========================================================================

CONFIG_HEAD = """server {{
  bind_address = "127.0.0.1"
  bind_port = "0"
  trust_domain = "example.org"
  data_dir = "{data_dir}"
  jwt_issuer = "https://oidc.example.org"
}}
plugins {{
  NodeAttestor "join_token" {{
    plugin_data {{}}
  }}
}}
http_api {{
  bind_address = "127.0.0.1"
  bind_port = 0
}}
"""
SECRET_URL = "postgresql://warden:SECRET-IN-URL@127.0.0.1/orders"


def database_block(role: str = "", connection_name: str = "c") -> str:
    """A database block whose connection URL carries a password, with `role` appended."""
    connection = (
        f'connection "{connection_name}" {{ connection_url = "{SECRET_URL}" '
        'reassign_owned_to = "o" }'
    )
    return f"database {{ {connection} {role} }}"


def role_block(connection: str = "c", **overrides: str) -> str:
    values = {
        "creation_statements": '["CREATE ROLE \\"{{name}}\\""]',
        "allowed_spiffe_ids": '["spiffe://example.org/a"]',
        **overrides,
    }
    settings = " ".join(f"{key} = {value}" for key, value in values.items())
    return f'role "r" {{ connection = "{connection}" {settings} }}'


HOSTILE_BLOCKS = {
    "negative leeway": ('token_exchange { leeway = "-5s" }', "leeway"),
    "leeway above the maximum": ('token_exchange { leeway = "6m" }', "at most 5m"),
    "zero max_ttl": ('token_exchange { max_ttl = "0s" }', "max_ttl"),
    "wildcard inside": (
        'token_exchange { allow "spiffe://example.org/*/api" { audiences = ["a"] } }',
        "'*' may only end",
    ),
    "any trust domain": (
        'token_exchange { allow "spiffe://*" { audiences = ["a"] } }',
        "invalid SPIFFE ID pattern",
    ),
    "bare trust domain": (
        'token_exchange { allow "spiffe://example.org" { audiences = ["a"] } }',
        "names a trust domain",
    ),
    "any actor": (
        'token_exchange { allow "spiffe://example.org/a" { audiences = ["a"] actors = ["*"] } }',
        "actors",
    ),
    "empty audience": (
        'token_exchange { allow "spiffe://example.org/a" { audiences = [""] } }',
        "audiences",
    ),
    "rule ttl above max": (
        'token_exchange { max_ttl = "1h" allow "spiffe://example.org/a" '
        '{ audiences = ["a"] ttl = "2h" } }',
        "max_ttl",
    ),
    "block twice": ("token_exchange { }\ntoken_exchange { }", "more than once"),
    "connection name with a path": (
        database_block(connection_name="../c"),
        "invalid connection name",
    ),
    "statements without the user": (
        database_block(role_block(creation_statements='["CREATE ROLE x"]')),
        "{{name}}",
    ),
    "role on unknown connection": (database_block(role_block("d")), "is not defined"),
    "role for any workload": (
        database_block(role_block(allowed_spiffe_ids='["spiffe://*"]')),
        "allowed_spiffe_ids",
    ),
    "role default above max": (
        database_block(role_block(default_ttl='"48h"')),
        "max_ttl",
    ),
    "password twice": (
        'database { connection "c" { connection_url = "postgresql://warden@127.0.0.1/o" '
        'password = "SECRET-IN-URL" password_file = "/x" reassign_owned_to = "o" } }',
        "not both",
    ),
    "zero sweep interval": ('database { sweep_interval = "0s" }', "sweep_interval"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_BLOCKS))
def test_hostile_credential_blocks_rejected(tmp_path: Path, case: str) -> None:
    block, expected = HOSTILE_BLOCKS[case]
    path = tmp_path / "server.conf"
    path.write_text(CONFIG_HEAD.format(data_dir=tmp_path / "data") + block + "\n")

    with pytest.raises(ConfigError) as raised:
        load_server_config(path)

    assert expected in str(raised.value)
    assert "SECRET-IN-URL" not in str(raised.value)


@pytest.mark.postgres
async def test_logs_and_audit_keep_credentials_out(
    lease_server: tuple[WardenServer, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, ca_file = lease_server
    subject_token = mint(server, BILLING, extra={"jti": "logged-jti"})
    with caplog.at_level("DEBUG"):
        async with https_client(ssl.create_default_context(cafile=str(ca_file))) as client:
            exchanged = await client.post(
                base_url(server, "https") + "/v1/token", data=exchange_form(subject_token)
            )
        issued = await call_lease_api(
            server, ca_file, tmp_path / "c", "/v1/database/creds/writer", {}
        )
        lease_id = issued.json()["lease_id"]
        renewed = await call_lease_api(
            server, ca_file, tmp_path / "c", "/v1/leases/renew", {"lease_id": lease_id}
        )
        revoked = await call_lease_api(
            server, ca_file, tmp_path / "c", "/v1/leases/revoke", {"lease_id": lease_id}
        )
        await server.audit.flush()
    secrets = {
        "access token": exchanged.json()["access_token"].rsplit(".", 1)[1],
        "subject token": subject_token.rsplit(".", 1)[1],
        "database password": issued.json()["data"]["password"],
    }
    logged = "\n".join(
        json.dumps(record.__dict__, default=str) + record.getMessage() for record in caplog.records
    )
    audit = json.dumps([dict(record.details) for record in server.datastore.iter_audit()])
    actions = [record.action for record in server.datastore.iter_audit(action="lease.*")]

    assert [exchanged.status_code, issued.status_code, renewed.status_code] == [200] * 3
    assert revoked.status_code == 200
    assert actions == ["lease.create", "lease.renew", "lease.revoke"]
    for name, secret in secrets.items():
        assert secret not in logged, name
        assert secret not in audit, name


@pytest.mark.postgres
async def test_entry_deleted_while_leasing_revokes_lease(
    lease_server: tuple[WardenServer, Path],
    tmp_path: Path,
    password_cluster: PasswordCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The request reads the owners of the caller's entries, then stores the lease. When the
    # last entry is deleted in between, the deletion's revocation finds no lease yet; the
    # lease stored after it must not outlive the entry.
    server, ca_file = lease_server
    owners = HttpApi._owners

    async def owners_then_delete(api: HttpApi, spiffe_id: SpiffeId) -> list[str]:
        found = await owners(api, spiffe_id)
        for entry in server.datastore.list_entries(spiffe_id=str(spiffe_id)):
            deleted = server.datastore.delete_entry(entry.id, actor="test")
            await server.entry_deleted(deleted, "test")
        return found

    monkeypatch.setattr(HttpApi, "_owners", owners_then_delete)
    response = await call_lease_api(
        server, ca_file, tmp_path / "c", "/v1/database/creds/writer", {}
    )
    leases = server.datastore.list_leases(include_revoked=True)

    assert response.status_code == 403
    assert "data" not in response.json()
    assert [lease.revoked_at is not None for lease in leases] == [True] * len(leases)
    for lease in leases:
        assert not password_cluster.role_exists(str(lease.details["username"]))


# == The workload CLI ========================================================================


async def test_creds_token_audience_not_chosen_by_server(tmp_path: Path) -> None:
    # A server that is not Warden's names another service's audience as its issuer and
    # collects the subject tokens that workloads send it.
    victim = "https://victim.example.org"
    collected: list[str] = []

    async def discovery(request: Request) -> JSONResponse:
        return JSONResponse({"issuer": victim, "jwks_uri": victim + "/keys"})

    async def token(request: Request) -> JSONResponse:
        form = parse_qs((await request.body()).decode())
        collected.extend(form.get("subject_token", []))
        return JSONResponse({"error": "invalid_request"}, status_code=400)

    impostor = HttpListener(
        Starlette(
            routes=[
                Route("/.well-known/openid-configuration", discovery),
                Route("/v1/token", token, methods=["POST"]),
            ]
        ),
        "127.0.0.1",
        0,
        "impostor",
    )
    port = await impostor.start()
    directory = public_socket_dir()
    try:
        async with running_agent(directory) as agent:
            agent.register(make_entry(str(WORKLOAD), f"unix:uid:{os.geteuid()}"))
            await agent.wait_for_svids(1)
            process = await asyncio.create_subprocess_exec(
                *[sys.executable, "-m", "warden", "creds", "token", "-audience", AWS],
                *["-server", f"http://127.0.0.1:{port}", "-socketPath", str(agent.socket_path)],
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            _, stderr = await asyncio.wait_for(process.communicate(), 60)
    finally:
        await impostor.stop()
        shutil.rmtree(directory, ignore_errors=True)

    audiences = [
        jwt.decode(token, options={"verify_signature": False})["aud"] for token in collected
    ]
    assert [audience for audience in audiences if victim in audience] == []
    assert process.returncode == 1
    assert "-subjectAudience" in stderr.decode()


#: Advisory lock keys a leased user takes in the next test, the last one "warden" and 2 in
#: ASCII. Any user may take any key, so Warden must never wait for one.
ADVISORY_KEYS = (0, 1, 0x77617264656E02)


@pytest.mark.postgres
async def test_leased_user_cannot_block_new_leases(
    tmp_path: Path, password_cluster: PasswordCluster, orders_database: str
) -> None:
    settings = lease_settings(password_cluster, orders_database)
    connection = replace(settings.connections["orders"], statement_timeout=timedelta(seconds=2))
    datastore = Datastore.for_data_dir(tmp_path / "store")
    broker = DatabaseBroker(
        replace(settings, connections={"orders": connection}),
        datastore,
        clock=lambda: datetime.now(UTC),
    )
    try:
        holder = await broker.issue("writer", str(WORKLOAD), ["team-orders"], actor="test")
        with user_session(password_cluster, holder, orders_database) as session:
            for key in ADVISORY_KEYS:
                session.execute("SELECT pg_advisory_lock(%s)", (key,))
            outcome: IssuedCredential | LeaseError
            try:
                outcome = await broker.issue("writer", str(WORKLOAD), ["team-orders"], actor="test")
            except LeaseError as error:
                outcome = error
    finally:
        await broker.close()
        datastore.close()

    assert isinstance(outcome, IssuedCredential), str(outcome)


# == OIDC issuer =============================================================================


@pytest.mark.parametrize(
    "issuer",
    [
        "https://oidc.example.org\n",
        "https://oidc.exa\tmple.org",
        "https://oidc.example.org/a b",
        "https://oidc.example.org/x/../y",
        "https://oidc.example.org/./y",
        "https://oidc.example.org//y",
        "https://oidc.example.org/\u00e9",
        "https://oidc.example.org;x",
        "https://oidc_example.org",
        "https://oidc.example.org/a\\b",
    ],
    ids=repr,
)
def test_malformed_issuer_rejected(issuer: str) -> None:
    # Cloud providers compare the issuer byte for byte with each token's iss and fetch
    # <issuer>/.well-known/openid-configuration; a URL that Python's parser quietly cleans
    # up (it drops tabs and newlines) would be published as is and never match.
    with pytest.raises(ValueError, match="invalid jwt_issuer"):
        validate_issuer(issuer)


@pytest.mark.parametrize(
    "issuer",
    ["https://oidc.example.org", "https://auth.example.org/warden", "https://a-b.example/x_y~1"],
)
def test_plain_issuer_accepted(issuer: str) -> None:
    assert validate_issuer(issuer) == issuer


async def test_rotated_federation_key_stays_until_tokens_expire(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With a one-hour CA lifetime, the next federation key is prepared at 30 minutes and
    # takes over at 50. A token signed at 49 minutes must still verify with the published
    # JWKS after the rotation, until it expires.
    monkeypatch.setattr("warden.server.httpapi.JWKS_CACHE_SECONDS", 0.0)
    clock = Clock()
    server = WardenServer(
        credential_server_options(tmp_path, ca_ttl=timedelta(hours=1)),
        metrics=Metrics(CollectorRegistry()),
        clock=clock,
    )

    async def exchange() -> str:
        subject = mint(server, BILLING, now=clock.now)
        response = await post_token(server, exchange_form(subject))
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    async def published_kids() -> set[str]:
        async with httpx.AsyncClient(timeout=30) as client:
            jwks = (await client.get(base_url(server) + "/keys")).json()
        return {key["kid"] for key in jwks["keys"]}

    def kid(token: str) -> str:
        return str(jwt.get_unverified_header(token)["kid"])

    def expiry(token: str) -> datetime:
        claims = jwt.decode(token, options={"verify_signature": False})
        return datetime.fromtimestamp(claims["exp"], tz=UTC)

    # server._rotate is the server's periodic rotation step; it also refreshes the bundle.
    started = clock.now
    async with server:
        before = await exchange()
        for minutes in (30, 49):
            clock.now = started + timedelta(minutes=minutes)
            await server._rotate()
        late = await exchange()
        clock.now = started + timedelta(minutes=51)
        await server._rotate()
        after = await exchange()
        kids_after_rotation = await published_kids()
        clock.now = expiry(late) + timedelta(seconds=1)
        await server._rotate()
        kids_after_expiry = await published_kids()

    assert kid(late) == kid(before)
    assert kid(after) != kid(before)
    assert {kid(late), kid(after)} <= kids_after_rotation
    assert kid(late) not in kids_after_expiry
    assert kid(after) in kids_after_expiry
