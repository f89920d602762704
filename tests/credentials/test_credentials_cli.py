"""`warden cloud-trust` and `warden creds`: trust plans, workload commands through a real
agent's Workload API, and operator commands on a server configuration file.

The workload commands run as separate processes, as a workload would run them: the agent
attests them by uid, hands them their SVIDs, and they call the server's HTTP API over mTLS.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from agent_support import LocalCA, RunningAgent, make_entry, public_socket_dir, running_agent
from credentials_support import (
    BILLING,
    ISSUER,
    credential_server_options,
    jwt_signer,
    operator_certificate,
)
from password_cluster import MANAGER, MANAGER_PASSWORD, OWNER, PasswordCluster
from prometheus_client import CollectorRegistry
from psycopg import sql
from typer.testing import CliRunner

from warden.agent import EntryUpdate
from warden.cli.credentials import discovered_subject_audience
from warden.cli.main import app
from warden.credentials import DatabaseBroker
from warden.server.app import WardenServer
from warden.server.main import load_options
from warden.server.metrics import Metrics
from warden.server.options import HttpApiOptions
from warden.store import Datastore, EntrySpec

UID = os.geteuid()
ORDERS = "spiffe://example.org/orders/api"
runner = CliRunner()


# -- cloud-trust ------------------------------------------------------------------------------


def test_aws_plan_pins_aud_and_sub() -> None:
    result = runner.invoke(
        app,
        [
            "cloud-trust",
            "aws",
            "-role-arn",
            "arn:aws:iam::123456789012:role/billing",
            "-spiffeID",
            str(BILLING),
            "-issuer",
            ISSUER,
            "-output",
            "json",
        ],
    )
    plan = json.loads(result.stdout)
    policy = next(step["document"] for step in plan["steps"] if "document" in step)
    statement = policy["Statement"][0]

    assert result.exit_code == 0
    assert statement["Principal"]["Federated"] == (
        "arn:aws:iam::123456789012:oidc-provider/oidc.example.org"
    )
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"] == {
        "StringEquals": {
            "oidc.example.org:aud": "sts.amazonaws.com",
            "oidc.example.org:sub": str(BILLING),
        }
    }
    assert "--url https://oidc.example.org" in plan["steps"][0]["command"]
    assert f'allow "{BILLING}"' in plan["warden_config"]


def test_gcp_plan_names_principal_and_audience() -> None:
    result = runner.invoke(
        app,
        [
            "cloud-trust",
            "gcp",
            "-project-number",
            "123456",
            "-pool",
            "warden-pool",
            "-provider",
            "warden",
            "-spiffeID",
            str(BILLING),
            "-service-account",
            "billing@project.iam.gserviceaccount.com",
            "-issuer",
            ISSUER,
            "-output",
            "json",
        ],
    )
    plan = json.loads(result.stdout)
    commands = " ".join(step.get("command", "") for step in plan["steps"])
    pool = "projects/123456/locations/global/workloadIdentityPools/warden-pool"

    assert result.exit_code == 0
    assert plan["audience"] == f"//iam.googleapis.com/{pool}/providers/warden"
    assert f"--allowed-audiences={plan['audience']}" in commands
    assert "--attribute-mapping=google.subject=assertion.sub" in commands
    assert f'assertion.sub == "{BILLING}"' in commands
    assert f"--member=principal://iam.googleapis.com/{pool}/subject/{BILLING}" in commands


def test_gcp_plan_rejects_long_subject() -> None:
    long_id = "spiffe://example.org/" + "/".join(["segment"] * 16)

    result = runner.invoke(
        app,
        ["cloud-trust", "gcp", "-project-number", "1", "-spiffeID", long_id, "-issuer", ISSUER],
    )

    assert result.exit_code == 1
    assert "127" in result.stderr


def test_azure_plan_matches_issuer_and_subject() -> None:
    result = runner.invoke(
        app,
        [
            "cloud-trust",
            "azure",
            "-identity",
            "billing",
            "-resource-group",
            "rg-billing",
            "-spiffeID",
            str(BILLING),
            "-issuer",
            ISSUER,
            "-output",
            "json",
        ],
    )
    command = json.loads(result.stdout)["steps"][0]["command"]

    assert result.exit_code == 0
    assert f"--issuer {ISSUER}" in command
    assert f"--subject {BILLING}" in command
    assert "--audiences api://AzureADTokenExchange" in command


def test_azure_plan_needs_a_target() -> None:
    result = runner.invoke(
        app, ["cloud-trust", "azure", "-spiffeID", str(BILLING), "-issuer", ISSUER]
    )

    assert result.exit_code == 1
    assert "-identity" in result.stderr


def test_issuer_read_from_config(tmp_path: Path) -> None:
    config = tmp_path / "server.conf"
    config.write_text(
        'server {\n  trust_domain = "example.org"\n  jwt_issuer = "https://auth.example.net"\n}\n'
        'plugins {\n  NodeAttestor "join_token" {\n    plugin_data {}\n  }\n}\n'
    )

    result = runner.invoke(
        app,
        [
            "cloud-trust",
            "aws",
            "-role-arn",
            "arn:aws:iam::123456789012:role/r",
            "-spiffeID",
            str(BILLING),
            "-config",
            str(config),
            "-output",
            "json",
        ],
    )

    assert result.exit_code == 0
    assert json.loads(result.stdout)["issuer"] == "https://auth.example.net"


def test_invalid_role_arn_rejected() -> None:
    result = runner.invoke(
        app,
        [
            "cloud-trust",
            "aws",
            "-role-arn",
            "billing",
            "-spiffeID",
            str(BILLING),
            "-issuer",
            ISSUER,
        ],
    )

    assert result.exit_code == 1
    assert "invalid -role-arn" in result.stderr


# -- workload commands through a real agent ------------------------------------------------------


def server_config(
    tmp_path: Path, cluster: PasswordCluster, database: str, password_file: Path
) -> Path:
    config = tmp_path / "server.conf"
    config.write_text(
        f"""
server {{
  trust_domain = "example.org"
  data_dir = "{tmp_path / "data"}"
  jwt_issuer = "{ISSUER}"
}}
plugins {{
  NodeAttestor "join_token" {{
    plugin_data {{}}
  }}
}}
database {{
  connection "orders" {{
    connection_url    = "{cluster.manager_url(database)}"
    password_file     = "{password_file}"
    reassign_owned_to = "{OWNER}"
  }}
  role "reader" {{
    connection          = "orders"
    creation_statements = [
      "CREATE ROLE \\"{{{{name}}}}\\" LOGIN PASSWORD '{{{{password}}}}' VALID UNTIL '{{{{expiration}}}}'",
      "GRANT SELECT ON orders TO \\"{{{{name}}}}\\"",
    ]
    allowed_spiffe_ids = ["spiffe://example.org/orders/*"]
    default_ttl = "10m"
  }}
}}
"""
    )
    return config


@pytest.fixture
def orders_database(password_cluster: PasswordCluster) -> str:
    name = f"orders_{uuid.uuid4().hex[:12]}"
    password_cluster.create_orders_database(name)
    return name


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "orders.password"
    path.write_text(MANAGER_PASSWORD + "\n")
    path.chmod(0o600)
    return path


async def warden(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "warden",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


class Stack:
    """A server with the HTTP API over TLS, and an agent whose SVIDs its CA signs."""

    def __init__(self, server: WardenServer, agent: RunningAgent, ca_file: Path) -> None:
        self.server = server
        self.agent = agent
        self.ca_file = ca_file

    def flags(self) -> list[str]:
        return [
            "-server",
            f"https://127.0.0.1:{self.server.credentials.port}",
            "-socketPath",
            str(self.agent.socket_path),
            "-caFile",
            str(self.ca_file),
            "-output",
            "json",
        ]


@pytest.fixture
async def stack(
    tmp_path: Path,
    password_cluster: PasswordCluster,
    orders_database: str,
    password_file: Path,
) -> AsyncIterator[Stack]:
    options, _ = load_options(
        str(server_config(tmp_path, password_cluster, orders_database, password_file))
    )
    ca_file, cert_file, key_file = operator_certificate(tmp_path / "operator")
    options = credential_server_options(
        tmp_path,
        http_api=HttpApiOptions("127.0.0.1", 0, cert_file, key_file),
        database=options.database,
    )
    server = WardenServer(options, metrics=Metrics(CollectorRegistry()))
    await server.start()
    server.datastore.create_entry(
        EntrySpec(
            spiffe_id=ORDERS,
            parent_id="spiffe://example.org/spire/agent/join_token/t",
            selectors=[f"unix:uid:{UID}"],
            owner="team-orders",
        ),
        actor="test",
    )
    # The agent signs with the server's own CA and JWT key, as after attestation.
    signer = LocalCA()
    signer.ca = server.ca.x509_ca
    signer.jwt_signer = jwt_signer(server)
    signer.bundle = server.bundle
    directory = public_socket_dir()
    try:
        async with running_agent(directory, signer) as agent:
            agent.register(make_entry(ORDERS, f"unix:uid:{UID}"))
            agent.manager.apply(EntryUpdate(bundle=server.bundle))
            await agent.wait_for_svids(1)
            yield Stack(server, agent, ca_file)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        await server.stop()


@pytest.mark.postgres
async def test_creds_db_leases_user_for_workload(
    stack: Stack, password_cluster: PasswordCluster, orders_database: str
) -> None:
    code, out, err = await warden("creds", "db", "-role", "reader", *stack.flags())
    assert code == 0, err
    document = json.loads(out)

    with password_cluster.connect_as(
        document["data"]["username"], document["data"]["password"], orders_database
    ) as session:
        assert session.execute("SELECT count(*) FROM orders").fetchone() == (2,)
    lease = stack.server.datastore.get_lease(document["lease_id"])
    assert lease.spiffe_id == ORDERS
    assert lease.owners == ("team-orders",)

    code, out, err = await warden("creds", "db", "list", *stack.flags())
    assert code == 0, err
    assert [item["lease_id"] for item in json.loads(out)] == [document["lease_id"]]

    # Sent unencoded, '#' would start a URL fragment and the prefix would match the lease.
    code, out, err = await warden(
        "creds", "db", "list", "-prefix", document["lease_id"] + "#", *stack.flags()
    )
    assert code == 0, err
    assert json.loads(out) == []

    code, out, err = await warden(
        "creds", "db", "renew", "-leaseID", document["lease_id"], "-increment", "2m", *stack.flags()
    )
    assert code == 0, err
    assert 110 <= json.loads(out)[0]["lease_duration"] <= 120

    code, out, err = await warden(
        "creds", "db", "revoke", "-leaseID", document["lease_id"], *stack.flags()
    )
    assert code == 0, err
    assert json.loads(out)[0]["state"] == "revoked"
    assert not password_cluster.role_exists(document["data"]["username"])


@pytest.mark.postgres
async def test_creds_db_unknown_role_fails(stack: Stack) -> None:
    code, _, err = await warden("creds", "db", "-role", "admin", *stack.flags())

    assert code == 1
    assert "HTTP 404" in err
    assert "'admin' is not configured" in err


@pytest.mark.postgres
async def test_creds_token_exchanges_workload_svid(stack: Stack) -> None:
    # The orders workload may obtain tokens for Azure under the default policy. The server
    # listens on 127.0.0.1, not on its issuer's host, so the subject audience is explicit.
    code, out, err = await warden(
        "creds",
        "token",
        "-audience",
        "api://AzureADTokenExchange",
        "-subjectAudience",
        ISSUER,
        *stack.flags()[:-2],
    )
    assert code == 0, err
    claims = jwt.decode(out.strip(), options={"verify_signature": False})

    assert claims["sub"] == ORDERS
    assert claims["aud"] == "api://AzureADTokenExchange"
    assert claims["iss"] == ISSUER


@pytest.mark.postgres
async def test_creds_token_needs_issuer_on_server_host(stack: Stack) -> None:
    code, out, err = await warden(
        "creds", "token", "-audience", "api://AzureADTokenExchange", *stack.flags()[:-2]
    )

    assert code == 1
    assert out == ""
    assert "on another host than 127.0.0.1" in err
    assert "-subjectAudience" in err


@pytest.mark.parametrize(
    ("server", "issuer"),
    [
        ("https://oidc.example.org", "https://oidc.example.org"),
        ("https://oidc.example.org:8443", "https://oidc.example.org"),
        ("https://OIDC.example.org/warden", "https://oidc.example.org/warden"),
        ("http://127.0.0.1:8080", "https://127.0.0.1"),
    ],
)
def test_issuer_on_server_host_accepted(server: str, issuer: str) -> None:
    assert discovered_subject_audience(server, {"issuer": issuer}) == issuer


@pytest.mark.parametrize(
    ("server", "document"),
    [
        ("https://127.0.0.1:8443", {"issuer": ISSUER}),
        ("https://oidc.example.org", {"issuer": "https://oidc.example.org.evil.example"}),
        ("https://oidc.example.org", {"issuer": "https://evil.example/oidc.example.org"}),
        ("https://oidc.example.org", {"issuer": "oidc.example.org"}),
        ("oidc.example.org", {"issuer": "sts.amazonaws.com"}),
        ("https://oidc.example.org", {"issuer": ["https://oidc.example.org"]}),
        ("https://oidc.example.org", {}),
    ],
)
def test_issuer_on_other_host_rejected(server: str, document: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="-subjectAudience"):
        discovered_subject_audience(server, document)


@pytest.mark.postgres
async def test_creds_token_denied_audience_fails(stack: Stack) -> None:
    code, out, err = await warden(
        "creds",
        "token",
        "-audience",
        "sts.amazonaws.com",
        "-subjectAudience",
        ISSUER,
        *stack.flags(),
    )

    assert code == 1
    assert out == ""
    assert "invalid_target" in err


# -- operator commands on a configuration file -------------------------------------------------


@pytest.mark.postgres
def test_operator_lists_and_revokes_by_prefix(
    tmp_path: Path, password_cluster: PasswordCluster, orders_database: str, password_file: Path
) -> None:
    config = server_config(tmp_path, password_cluster, orders_database, password_file)
    options, _ = load_options(str(config))
    datastore = Datastore.open(options.datastore_url)

    async def issue() -> list[Any]:
        broker = DatabaseBroker(options.database, datastore, clock=lambda: datetime.now(UTC))
        try:
            return [
                await broker.issue("reader", ORDERS, ["team-orders"], actor="test")
                for _ in range(2)
            ]
        finally:
            await broker.close()

    try:
        issued = asyncio.run(issue())
    finally:
        datastore.close()

    listed = runner.invoke(app, ["creds", "db", "list", "-config", str(config), "-output", "json"])
    revoked = runner.invoke(
        app, ["creds", "db", "revoke", "-prefix", "database/orders/", "-config", str(config)]
    )
    after = runner.invoke(
        app,
        ["creds", "db", "list", "-config", str(config), "-revoked", "-output", "json"],
    )

    assert listed.exit_code == 0, listed.stderr
    assert sorted(item["lease_id"] for item in json.loads(listed.stdout)) == sorted(
        i.lease.lease_id for i in issued
    )
    assert revoked.exit_code == 0, revoked.stderr
    assert "revoked 2 leases" in revoked.stdout
    assert {item["state"] for item in json.loads(after.stdout)} == {"revoked"}
    assert all(not password_cluster.role_exists(i.username) for i in issued)


@pytest.mark.postgres
def test_operator_rotates_root_password(
    tmp_path: Path, password_cluster: PasswordCluster, orders_database: str, password_file: Path
) -> None:
    config = server_config(tmp_path, password_cluster, orders_database, password_file)
    Datastore.open(load_options(str(config))[0].datastore_url).close()

    try:
        result = runner.invoke(
            app, ["creds", "db", "rotate-root", "-connection", "orders", "-config", str(config)]
        )
        rotated = password_file.read_text().strip()
        with password_cluster.connect_as(MANAGER, rotated, orders_database) as session:
            assert session.execute("SELECT current_user").fetchone() == (MANAGER,)
    finally:
        with password_cluster.admin() as admin:
            admin.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(MANAGER), sql.Literal(MANAGER_PASSWORD)
                )
            )

    assert result.exit_code == 0, result.stderr
    assert rotated != MANAGER_PASSWORD
    with Datastore.open(load_options(str(config))[0].datastore_url) as datastore:
        records = list(datastore.iter_audit(action="database.rotate_root"))
    assert len(records) == 1
    assert records[0].actor.startswith("unix:")
    assert rotated not in json.dumps(dict(records[0].details))


def test_operator_command_needs_database_block(tmp_path: Path) -> None:
    config = tmp_path / "server.conf"
    config.write_text(
        f'server {{\n  trust_domain = "example.org"\n  data_dir = "{tmp_path}"\n}}\n'
        'plugins {\n  NodeAttestor "join_token" {\n    plugin_data {}\n  }\n}\n'
    )

    result = runner.invoke(
        app, ["creds", "db", "rotate-root", "-connection", "orders", "-config", str(config)]
    )

    assert result.exit_code == 1
    assert "has no database block" in result.stderr
