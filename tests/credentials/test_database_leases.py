"""Leased PostgreSQL users against a real cluster that checks passwords.

Leased users log in and query. Expiry and explicit revocation end the sessions opened
before, drop the user and hand its tables to the configured owner, in every database.
Leases that expired while the server was stopped are revoked at start, and servers sharing
a datastore sweep without revoking twice. Deleting the last entry of a SPIFFE ID revokes its
leases, and rotate-root replaces the management password. The audit log never contains a
password.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from credentials_support import (
    client_context,
    credential_server_options,
    https_client,
    operator_certificate,
)
from password_cluster import MANAGER, MANAGER_PASSWORD, OWNER, PasswordCluster
from prometheus_client import CollectorRegistry
from psycopg import sql

from warden.api.server.v1 import admin_pb2
from warden.credentials import (
    BackendError,
    ConnectionSettings,
    DatabaseBroker,
    DatabaseSettings,
    LeaseError,
    NotAuthorized,
    RoleSettings,
    parse_patterns,
)
from warden.server.app import WardenServer
from warden.server.client import AdminClient
from warden.server.metrics import Metrics
from warden.server.options import HttpApiOptions
from warden.spiffe import SpiffeId
from warden.store import Datastore, EntrySpec
from warden.store.inventory import open_registry_reader

pytestmark = pytest.mark.postgres

WORKLOAD = SpiffeId.parse("spiffe://example.org/orders/api")
OTHER = SpiffeId.parse("spiffe://example.org/billing/api")
LEASE_ID = re.compile(r"database/orders/(reader|writer)/[0-9a-f]{32}")
CREATE = "CREATE ROLE \"{{name}}\" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'"


def database_settings(
    cluster: PasswordCluster,
    database: str,
    *,
    writer_ttl: timedelta = timedelta(minutes=5),
    password_file: Path | None = None,
    reader_statements: tuple[str, ...] = (CREATE, 'GRANT SELECT ON orders TO "{{name}}"'),
) -> DatabaseSettings:
    connection = ConnectionSettings(
        name="orders",
        url=cluster.manager_url(database),
        reassign_owned_to=OWNER,
        password=None if password_file else MANAGER_PASSWORD,
        password_file=password_file,
    )
    allowed = parse_patterns(["spiffe://example.org/orders/*"])
    reader = RoleSettings(
        name="reader",
        connection="orders",
        creation_statements=reader_statements,
        allowed_spiffe_ids=allowed,
        default_ttl=timedelta(minutes=5),
        max_ttl=timedelta(minutes=10),
    )
    writer = RoleSettings(
        name="writer",
        connection="orders",
        creation_statements=(
            CREATE,
            'GRANT SELECT, INSERT ON orders TO "{{name}}"',
            'GRANT USAGE, CREATE ON SCHEMA public TO "{{name}}"',
        ),
        allowed_spiffe_ids=allowed,
        default_ttl=writer_ttl,
        max_ttl=timedelta(minutes=10),
    )
    return DatabaseSettings({"orders": connection}, {"reader": reader, "writer": writer})


@pytest.fixture
def orders_database(password_cluster: PasswordCluster) -> str:
    name = f"orders_{uuid.uuid4().hex[:12]}"
    password_cluster.create_orders_database(name)
    return name


def user_session(
    cluster: PasswordCluster, credentials: dict[str, Any], database: str
) -> psycopg.Connection:
    return cluster.connect_as(credentials["username"], credentials["password"], database)


async def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.1)


def valid_until(cluster: PasswordCluster, username: str) -> datetime:
    with cluster.admin() as connection:
        row = connection.execute(
            "SELECT rolvaliduntil FROM pg_roles WHERE rolname = %s", (username,)
        ).fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def table_owner(cluster: PasswordCluster, database: str, table: str) -> str | None:
    with cluster.admin(database) as connection:
        row = connection.execute(
            "SELECT tableowner FROM pg_tables WHERE tablename = %s", (table,)
        ).fetchone()
    return row[0] if row else None


def audit_text(datastore: Datastore) -> str:
    return json.dumps([dict(r.details) for r in datastore.iter_audit()])


# -- through the HTTP API, over mTLS ----------------------------------------------------------


@dataclass
class Deployment:
    server: WardenServer
    ca_file: Path
    directory: Path

    async def call(
        self, path: str, body: dict[str, Any] | None = None, *, peer: SpiffeId | None = WORKLOAD
    ) -> httpx.Response:
        async with self._client(peer) as client:
            return await client.post(self._url(path), json=body or {})

    async def get(self, path: str, *, peer: SpiffeId | None = WORKLOAD) -> httpx.Response:
        async with self._client(peer) as client:
            return await client.get(self._url(path))

    def _client(self, peer: SpiffeId | None) -> httpx.AsyncClient:
        name = str(peer).rsplit("/", 1)[-1] if peer else "anonymous"
        return https_client(client_context(self.server, self.ca_file, self.directory / name, peer))

    def _url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.server.credentials.port}{path}"


async def start_deployment(
    tmp_path: Path, settings: DatabaseSettings, **overrides: Any
) -> Deployment:
    ca_file, cert_file, key_file = operator_certificate(tmp_path / "operator")
    options = credential_server_options(
        tmp_path,
        http_api=HttpApiOptions("127.0.0.1", 0, cert_file, key_file),
        database=settings,
        database_sweep_interval=timedelta(seconds=0.5),
        **overrides,
    )
    server = WardenServer(options, metrics=Metrics(CollectorRegistry()))
    await server.start()
    for spiffe_id, owner in ((WORKLOAD, "team-orders"), (OTHER, "team-billing")):
        server.datastore.create_entry(
            EntrySpec(
                spiffe_id=str(spiffe_id),
                parent_id="spiffe://example.org/spire/agent/join_token/t",
                selectors=[f"unix:uid:{1000 + len(owner)}"],
                owner=owner,
            ),
            actor="test",
        )
    return Deployment(server, ca_file, tmp_path / "clients")


@pytest.fixture
async def deployment(
    tmp_path: Path, password_cluster: PasswordCluster, orders_database: str
) -> AsyncIterator[Deployment]:
    settings = database_settings(password_cluster, orders_database, writer_ttl=timedelta(seconds=2))
    instance = await start_deployment(tmp_path, settings)
    try:
        yield instance
    finally:
        await instance.server.stop()


async def test_leased_user_logs_in_and_queries(
    deployment: Deployment, password_cluster: PasswordCluster, orders_database: str
) -> None:
    response = await deployment.call("/v1/database/creds/reader")
    body = response.json()

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert LEASE_ID.fullmatch(body["lease_id"])
    assert body["renewable"] is True
    assert 290 <= body["lease_duration"] <= 300
    with user_session(password_cluster, body["data"], orders_database) as session:
        rows = session.execute("SELECT item FROM orders ORDER BY id").fetchall()
    assert rows == [("tea",), ("coffee",)]
    expires_at = datetime.fromisoformat(body["expires_at"])
    assert valid_until(password_cluster, body["data"]["username"]) == expires_at
    lease = deployment.server.datastore.get_lease(body["lease_id"])
    assert lease.owners == ("team-orders",)
    assert lease.spiffe_id == str(WORKLOAD)


async def test_wrong_password_cannot_log_in(
    deployment: Deployment, password_cluster: PasswordCluster, orders_database: str
) -> None:
    body = (await deployment.call("/v1/database/creds/reader")).json()

    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        password_cluster.connect_as(body["data"]["username"], "not-the-password", orders_database)


async def test_expired_lease_revoked_with_open_session(
    deployment: Deployment, password_cluster: PasswordCluster, orders_database: str
) -> None:
    body = (await deployment.call("/v1/database/creds/writer")).json()
    username = body["data"]["username"]
    session = user_session(password_cluster, body["data"], orders_database)
    session.execute("CREATE TABLE scratch (note text)")
    session.execute("INSERT INTO scratch VALUES ('made by a leased user')")

    datastore = deployment.server.datastore
    await wait_until(lambda: datastore.get_lease(body["lease_id"]).revoked_at is not None)

    assert not password_cluster.role_exists(username)
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    session.close()
    assert table_owner(password_cluster, orders_database, "scratch") == OWNER
    lease = deployment.server.datastore.get_lease(body["lease_id"])
    assert lease.revoke_reason == "expired"
    assert lease.revoked_at is not None
    await deployment.server.audit.flush()
    actions = [r.action for r in deployment.server.datastore.iter_audit(action="lease.*")]
    assert actions == ["lease.create", "lease.revoke"]
    assert body["data"]["password"] not in audit_text(deployment.server.datastore)


async def test_revoke_ends_open_session(
    deployment: Deployment, password_cluster: PasswordCluster, orders_database: str
) -> None:
    body = (await deployment.call("/v1/database/creds/reader")).json()
    session = user_session(password_cluster, body["data"], orders_database)
    assert session.execute("SELECT count(*) FROM orders").fetchone() == (2,)

    response = await deployment.call("/v1/leases/revoke", {"lease_id": body["lease_id"]})

    assert response.status_code == 200
    assert response.json()["state"] == "revoked"
    assert response.json()["details"]["username"] == body["data"]["username"]
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")
    session.close()
    assert not password_cluster.role_exists(body["data"]["username"])
    with pytest.raises(psycopg.OperationalError):
        user_session(password_cluster, body["data"], orders_database)
    again = await deployment.call("/v1/leases/revoke", {"lease_id": body["lease_id"]})
    assert again.status_code == 200


async def test_renew_moves_valid_until_within_max(
    deployment: Deployment, password_cluster: PasswordCluster
) -> None:
    body = (await deployment.call("/v1/database/creds/reader")).json()
    username = body["data"]["username"]
    max_expires_at = datetime.fromisoformat(body["max_expires_at"])

    renewed = await deployment.call(
        "/v1/leases/renew", {"lease_id": body["lease_id"], "increment": 420}
    )
    renewed_until = valid_until(password_cluster, username)
    capped = await deployment.call(
        "/v1/leases/renew", {"lease_id": body["lease_id"], "increment": 86400}
    )

    assert renewed.status_code == 200
    assert 415 <= renewed.json()["lease_duration"] <= 420
    assert datetime.fromisoformat(renewed.json()["expires_at"]) == renewed_until
    assert capped.status_code == 200
    assert datetime.fromisoformat(capped.json()["expires_at"]) == max_expires_at
    assert valid_until(password_cluster, username) == max_expires_at


async def test_renew_of_revoked_lease_rejected(deployment: Deployment) -> None:
    body = (await deployment.call("/v1/database/creds/reader")).json()
    await deployment.call("/v1/leases/revoke", {"lease_id": body["lease_id"]})

    response = await deployment.call("/v1/leases/renew", {"lease_id": body["lease_id"]})

    assert response.status_code == 400
    assert "revoked" in response.json()["error_description"]


async def test_other_workload_cannot_touch_lease(deployment: Deployment) -> None:
    body = (await deployment.call("/v1/database/creds/reader")).json()

    renew = await deployment.call("/v1/leases/renew", {"lease_id": body["lease_id"]}, peer=OTHER)
    revoke = await deployment.call("/v1/leases/revoke", {"lease_id": body["lease_id"]}, peer=OTHER)

    assert renew.status_code == 404
    assert revoke.status_code == 404
    assert deployment.server.datastore.get_lease(body["lease_id"]).revoked_at is None


async def test_role_not_allowed_is_forbidden(deployment: Deployment) -> None:
    response = await deployment.call("/v1/database/creds/reader", peer=OTHER)

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert "allowed_spiffe_ids" in response.json()["error_description"]


async def test_workload_without_entry_is_forbidden(deployment: Deployment) -> None:
    unregistered = SpiffeId.parse("spiffe://example.org/orders/ghost")

    response = await deployment.call("/v1/database/creds/reader", peer=unregistered)

    assert response.status_code == 403
    assert "no registration entry" in response.json()["error_description"]


async def test_caller_without_certificate_unauthorized(deployment: Deployment) -> None:
    response = await deployment.call("/v1/database/creds/reader", peer=None)

    assert response.status_code == 401
    assert "X509-SVID" in response.json()["error_description"]


async def test_unknown_role_not_found(deployment: Deployment) -> None:
    response = await deployment.call("/v1/database/creds/admin")

    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


async def test_ttl_above_max_rejected(deployment: Deployment) -> None:
    response = await deployment.call("/v1/database/creds/reader", {"ttl": 3600})

    assert response.status_code == 400
    assert "max_ttl" in response.json()["error_description"]


async def test_revoke_by_prefix(deployment: Deployment, password_cluster: PasswordCluster) -> None:
    readers = [(await deployment.call("/v1/database/creds/reader")).json() for _ in range(2)]
    writer = (await deployment.call("/v1/database/creds/writer", {"ttl": 300})).json()
    broker = deployment.server.credentials.broker

    summary = await broker.revoke_prefix("database/orders/reader/", actor="unix:operator")

    assert sorted(summary.revoked) == sorted(r["lease_id"] for r in readers)
    assert summary.failed == ()
    assert all(not password_cluster.role_exists(r["data"]["username"]) for r in readers)
    assert password_cluster.role_exists(writer["data"]["username"])
    with pytest.raises(LeaseError, match="must start with database/"):
        await broker.revoke_prefix("orders/", actor="unix:operator")


async def test_revoke_prefix_needs_admin(deployment: Deployment) -> None:
    response = await deployment.call(
        "/v1/leases/revoke-prefix", {"prefix": "database/orders/"}, peer=WORKLOAD
    )

    assert response.status_code == 403


async def test_list_shows_own_leases(deployment: Deployment) -> None:
    mine = (await deployment.call("/v1/database/creds/reader")).json()

    response = await deployment.get("/v1/leases?prefix=database/orders/")

    assert response.status_code == 200
    assert [lease["lease_id"] for lease in response.json()["leases"]] == [mine["lease_id"]]
    assert "password" not in json.dumps(response.json())


async def test_list_pages_through_leases(deployment: Deployment) -> None:
    issued = [(await deployment.call("/v1/database/creds/reader")).json() for _ in range(3)]
    expected = sorted(document["lease_id"] for document in issued)

    first = await deployment.get("/v1/leases?limit=2")
    after = first.json()["next_after"]
    second = await deployment.get(f"/v1/leases?limit=2&after={after}")
    invalid = [await deployment.get(f"/v1/leases?limit={limit}") for limit in ("0", "1001", "x")]

    assert first.status_code == 200
    assert [lease["lease_id"] for lease in first.json()["leases"]] == expected[:2]
    assert first.json()["truncated"] is True
    assert after == expected[1]
    assert [lease["lease_id"] for lease in second.json()["leases"]] == expected[2:]
    assert second.json()["truncated"] is False
    assert second.json()["next_after"] is None
    assert [response.status_code for response in invalid] == [400, 400, 400]


async def test_deleting_last_entry_revokes_leases(
    deployment: Deployment, password_cluster: PasswordCluster
) -> None:
    server = deployment.server
    second = server.datastore.create_entry(
        EntrySpec(
            spiffe_id=str(WORKLOAD),
            parent_id="spiffe://example.org/spire/agent/join_token/u",
            selectors=["unix:uid:2000"],
            owner="team-orders-eu",
        ),
        actor="test",
    )
    body = (await deployment.call("/v1/database/creds/reader")).json()
    lease = server.datastore.get_lease(body["lease_id"])
    assert lease.owners == ("team-orders", "team-orders-eu")
    entries = server.datastore.list_entries(spiffe_id=str(WORKLOAD))
    client = AdminClient(str(server.options.socket_path))

    def delete(entry_id: str) -> Any:
        return client.call(
            client.entries.BatchDeleteEntry, admin_pb2.BatchDeleteEntryRequest(ids=[entry_id])
        )

    try:
        await asyncio.to_thread(delete, second.id)
        still_active = server.datastore.get_lease(body["lease_id"]).revoked_at is None
        last = next(e for e in entries if e.id != second.id)
        await asyncio.to_thread(delete, last.id)
    finally:
        client.close()

    assert still_active
    revoked = server.datastore.get_lease(body["lease_id"])
    assert revoked.revoke_reason == "entry_deleted"
    assert not password_cluster.role_exists(body["data"]["username"])


async def test_inventory_reads_leases(deployment: Deployment) -> None:
    body = (await deployment.call("/v1/database/creds/reader")).json()

    with open_registry_reader(deployment.server.options.datastore_url) as reader:
        leases = list(reader.leases())

    assert [lease.lease_id for lease in leases] == [body["lease_id"]]
    assert leases[0].kind == "database"
    assert leases[0].owners == ("team-orders",)
    assert leases[0].spiffe_id == str(WORKLOAD)
    assert leases[0].detail["role"] == "reader"
    assert "password" not in leases[0].detail


# -- the broker on its own ------------------------------------------------------------------


@pytest.fixture
def lease_store(tmp_path: Path) -> Any:
    datastore = Datastore.for_data_dir(tmp_path / "store", server_id="server-a")
    try:
        yield datastore
    finally:
        datastore.close()


@pytest.fixture
async def broker(
    lease_store: Datastore, password_cluster: PasswordCluster, orders_database: str
) -> AsyncIterator[DatabaseBroker]:
    settings = database_settings(password_cluster, orders_database)
    instance = DatabaseBroker(settings, lease_store, clock=lambda: datetime.now(UTC))
    try:
        yield instance
    finally:
        await instance.close()


async def test_revocation_cleans_every_database(
    broker: DatabaseBroker,
    lease_store: Datastore,
    password_cluster: PasswordCluster,
    orders_database: str,
) -> None:
    issued = await broker.issue("reader", str(WORKLOAD), ["team-orders"], actor="test")
    second = f"{orders_database}_archive"
    password_cluster.cluster.execute(
        sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(second), sql.Identifier(OWNER))
    )
    with password_cluster.admin(second) as admin:
        admin.execute(
            sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(issued.username))
        )
    with password_cluster.connect_as(issued.username, issued.password, second) as session:
        session.execute("CREATE TABLE archived (id integer)")

    revoked = await broker.revoke(issued.lease.lease_id, actor="test")

    assert revoked.revoked_at is not None
    assert table_owner(password_cluster, second, "archived") == OWNER
    assert not password_cluster.role_exists(issued.username)
    record = list(lease_store.iter_audit(action="lease.revoke"))[-1]
    assert record.details["databases"] == [orders_database, second]


async def test_failed_creation_revokes_lease(
    tmp_path: Path, password_cluster: PasswordCluster, orders_database: str
) -> None:
    settings = database_settings(
        password_cluster,
        orders_database,
        reader_statements=(CREATE, 'GRANT SELECT ON no_such_table TO "{{name}}"'),
    )
    datastore = Datastore.for_data_dir(tmp_path / "store")
    instance = DatabaseBroker(settings, datastore, clock=lambda: datetime.now(UTC))
    try:
        with pytest.raises(BackendError, match="no_such_table"):
            await instance.issue("reader", str(WORKLOAD), ["team-orders"], actor="test")
        leases = datastore.list_leases(include_revoked=True)
    finally:
        await instance.close()
        datastore.close()

    assert len(leases) == 1
    assert leases[0].revoke_reason == "creation_failed"
    assert not password_cluster.role_exists(str(leases[0].details["username"]))


async def test_issue_checks_policy(broker: DatabaseBroker) -> None:
    with pytest.raises(NotAuthorized, match="may not lease"):
        await broker.issue("reader", str(OTHER), ["team"], actor="test")
    with pytest.raises(NotAuthorized, match="no registration entry"):
        await broker.issue("reader", str(WORKLOAD), [], actor="test")


async def test_rotate_root_replaces_password(
    tmp_path: Path, password_cluster: PasswordCluster, orders_database: str
) -> None:
    password_file = tmp_path / "orders.password"
    password_file.write_text(MANAGER_PASSWORD + "\n")
    password_file.chmod(0o600)
    datastore = Datastore.for_data_dir(tmp_path / "store")
    settings = database_settings(password_cluster, orders_database, password_file=password_file)
    rotating = DatabaseBroker(settings, datastore, clock=lambda: datetime.now(UTC))
    fresh = DatabaseBroker(settings, datastore, clock=lambda: datetime.now(UTC))
    try:
        event = await rotating.rotate_root("orders", actor="unix:operator")
        rotated = password_file.read_text().strip()
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            password_cluster.connect_as(MANAGER, MANAGER_PASSWORD, orders_database)
        # A broker with no pooled connection reads the new password from the file.
        issued = await fresh.issue("reader", str(WORKLOAD), ["team-orders"], actor="test")
    finally:
        await rotating.close()
        await fresh.close()
        # Give the other tests of this session their management password back.
        with password_cluster.admin() as admin:
            admin.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(MANAGER), sql.Literal(MANAGER_PASSWORD)
                )
            )
        datastore.close()

    assert rotated != MANAGER_PASSWORD
    assert len(rotated) >= 32
    assert password_file.stat().st_mode & 0o777 == 0o600
    assert event.action == "database.rotate_root"
    assert rotated not in json.dumps(dict(event.details))
    assert issued.username.startswith("w-reader-")
    assert list(tmp_path.glob(".orders.password.*")) == []


async def test_rotate_root_needs_password_file(broker: DatabaseBroker) -> None:
    with pytest.raises(LeaseError, match="has no password_file"):
        await broker.rotate_root("orders", actor="unix:operator")


# -- sweeping ---------------------------------------------------------------------------------


async def test_lease_expired_while_stopped_revoked_at_start(
    tmp_path: Path, password_cluster: PasswordCluster, orders_database: str
) -> None:
    # Lease ends are rounded down to the second. With a lease of three seconds, the first
    # server's sweeper cannot revoke it while a loaded machine is still creating the user.
    settings = database_settings(password_cluster, orders_database, writer_ttl=timedelta(seconds=3))
    options = credential_server_options(
        tmp_path, http_api=None, database=settings, database_sweep_interval=timedelta(seconds=30)
    )
    first = WardenServer(options, metrics=Metrics(CollectorRegistry()))
    await first.start()
    try:
        issued = await first.credentials.broker.issue(
            "writer", str(WORKLOAD), ["team-orders"], actor="test"
        )
    finally:
        await first.stop()
    remaining = (issued.lease.expires_at - datetime.now(UTC)).total_seconds()
    await asyncio.sleep(max(remaining, 0) + 0.2)
    assert password_cluster.role_exists(issued.username)

    second = WardenServer(options, metrics=Metrics(CollectorRegistry()))
    started = time.monotonic()
    await second.start()
    try:
        lease_id = issued.lease.lease_id
        await wait_until(
            lambda: second.datastore.get_lease(lease_id).revoked_at is not None, timeout=10
        )
        lease = second.datastore.get_lease(lease_id)
    finally:
        await second.stop()

    assert time.monotonic() - started < 10
    assert lease.revoke_reason == "expired"
    assert not password_cluster.role_exists(issued.username)


async def test_servers_share_sweeping_without_double_revocation(
    password_cluster: PasswordCluster, orders_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small batches, so that the three sweepers interleave their claims.
    monkeypatch.setattr("warden.credentials.database.broker.SWEEP_BATCH", 3)
    store_url = password_cluster.cluster.create_database()
    settings = database_settings(password_cluster, orders_database, writer_ttl=timedelta(seconds=1))
    stores = [Datastore.open(store_url, server_id=f"server-{n}") for n in (1, 2, 3)]
    brokers = [DatabaseBroker(settings, s, clock=lambda: datetime.now(UTC)) for s in stores]
    try:
        issued = [
            await brokers[0].issue("writer", str(WORKLOAD), ["team-orders"], actor="test")
            for _ in range(12)
        ]
        await asyncio.sleep(1.2)
        counts = await asyncio.gather(*(broker.sweep() for broker in brokers))
        records = list(stores[0].iter_audit(action="lease.revoke"))
        failures = list(stores[0].iter_audit(action="lease.revoke_failed"))
    finally:
        for broker in brokers:
            await broker.close()
        for store in stores:
            store.close()

    assert sum(counts) == 12
    assert failures == []
    revoked_ids = [record.details["lease_id"] for record in records]
    assert sorted(revoked_ids) == sorted(i.lease.lease_id for i in issued)
    assert all(not password_cluster.role_exists(i.username) for i in issued)


async def test_concurrent_grants_of_two_servers_succeed(
    tmp_path: Path, password_cluster: PasswordCluster, orders_database: str
) -> None:
    # Every writer is granted CREATE on schema public, and every revocation drops that
    # grant. PostgreSQL fails the later of two such changes with "tuple concurrently
    # updated"; each server runs its own one at a time and retries those that conflict.
    settings = database_settings(password_cluster, orders_database)
    stores = [Datastore.for_data_dir(tmp_path / "store", server_id=name) for name in ("a", "b")]
    brokers = [DatabaseBroker(settings, store, clock=lambda: datetime.now(UTC)) for store in stores]
    try:
        issued = await asyncio.gather(
            *(
                broker.issue("writer", str(WORKLOAD), ["team-orders"], actor="test")
                for broker in brokers * 6
            )
        )
        revoked = await asyncio.gather(
            *(
                brokers[number % 2].revoke(credentials.lease.lease_id, actor="test")
                for number, credentials in enumerate(issued)
            )
        )
    finally:
        for broker in brokers:
            await broker.close()
        for store in stores:
            store.close()

    assert len(issued) == 12
    assert all(lease.revoked_at is not None for lease in revoked)
    assert all(not password_cluster.role_exists(i.username) for i in issued)
