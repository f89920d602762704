"""The server as a user runs it: `warden server run` in its own process, driven by the CLI.

SVIDs from `warden x509 mint` are checked with `openssl verify` and the `spiffe` package, and
tokens from `warden jwt mint` with joserfc, a JOSE library Warden does not use itself.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

WARDEN = [sys.executable, "-m", "warden"]

CONFIG = """
server {{
  bind_address = "127.0.0.1"
  bind_port = "0"
  trust_domain = "example.org"
  data_dir = "{data_dir}"
  socket_path = "{socket}"
  log_level = "debug"
}}
plugins {{
  NodeAttestor "join_token" {{
    plugin_data {{}}
  }}
}}
"""


@dataclass
class RunningServer:
    config: Path
    socket: Path
    data_dir: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def cli(self, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `warden <arguments> -socketPath <this server>` and return the result."""
        command = [*WARDEN, *arguments]
        if arguments[0] not in ("server",):
            command += ["-socketPath", str(self.socket)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{arguments} failed ({result.returncode}): {result.stderr}\n{result.stdout}"
            )
        return result

    def start(self) -> None:
        self.process = subprocess.Popen(
            [*WARDEN, "server", "run", "-config", str(self.config)],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited: {self.log.read_text()}")
            if self.socket.exists() and self.cli("healthcheck", check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise AssertionError(f"server did not become healthy: {self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        self.process = None


def _server_in(directory: Path) -> RunningServer:
    data_dir = directory / "data"
    socket = directory / "admin" / "api.sock"
    config = directory / "server.conf"
    config.write_text(CONFIG.format(data_dir=data_dir, socket=socket))
    return RunningServer(config, socket, data_dir, directory / "server.log")


@pytest.fixture
def running_server(tmp_path: Path) -> Iterator[RunningServer]:
    """A server of this test's own, for tests that stop it or need it empty."""
    server = _server_in(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the tests that only add entries with SPIFFE IDs of their own."""
    server = _server_in(tmp_path_factory.mktemp("shared-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def count_with_id(server: RunningServer, spiffe_id: str) -> int:
    result = server.cli("entry", "count", "-spiffeID", spiffe_id, "-output", "json")
    return int(json.loads(result.stdout)["count"])


def test_x509_mint_verifies_with_openssl_and_spiffe(
    shared_server: RunningServer, tmp_path: Path
) -> None:
    running_server = shared_server
    out = tmp_path / "svid"
    running_server.cli(
        "x509", "mint", "-spiffeID", "spiffe://example.org/tools/backup", "-write", str(out)
    )
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(running_server.cli("bundle", "show", "-format", "pem").stdout)

    verified = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(bundle),
            "-untrusted",
            str(out / "svid.pem"),
            str(out / "svid.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    assert stat.S_IMODE((out / "key.pem").stat().st_mode) == 0o600

    parse = (
        "import sys, pathlib\n"
        "from spiffe import X509Svid\n"
        "d = pathlib.Path(sys.argv[1])\n"
        "svid = X509Svid.parse_raw(d.joinpath('svid.pem').read_bytes(), d.joinpath('key.pem').read_bytes())\n"
        "print(svid.spiffe_id)\n"
    )
    parsed = subprocess.run(
        [sys.executable, "-c", parse, str(out)], capture_output=True, text=True, check=False
    )
    # parse_raw takes DER; fall back to PEM loading when this version wants PEM.
    if parsed.returncode != 0:
        parse = parse.replace("parse_raw", "parse")
        parsed = subprocess.run(
            [sys.executable, "-c", parse, str(out)], capture_output=True, text=True, check=False
        )
    assert parsed.returncode == 0, parsed.stderr
    assert parsed.stdout.strip() == "spiffe://example.org/tools/backup"


def test_jwt_mint_validates_with_joserfc(shared_server: RunningServer) -> None:
    running_server = shared_server
    from joserfc import jwt
    from joserfc.jwk import KeySet

    token = running_server.cli(
        "jwt",
        "mint",
        "-spiffeID",
        "spiffe://example.org/batch",
        "-audience",
        "https://api.example.org",
    ).stdout.strip()
    bundle = json.loads(running_server.cli("bundle", "show", "-format", "spiffe").stdout)
    jwt_keys = [dict(key, use="sig") for key in bundle["keys"] if key.get("use") == "jwt-svid"]
    assert jwt_keys, bundle

    decoded = jwt.decode(
        token,
        KeySet.import_key_set({"keys": jwt_keys}),
        algorithms=["ES256", "RS256", "ES384", "PS256"],
    )
    claims = decoded.claims

    assert claims["sub"] == "spiffe://example.org/batch"
    assert claims["aud"] in ("https://api.example.org", ["https://api.example.org"])
    assert claims["exp"] - claims["iat"] <= 300
    records = json.loads(
        running_server.cli(
            "audit-log", "list", "-action", "svid.jwt.mint", "-output", "json"
        ).stdout
    )
    assert records["records"][0]["subject"] == "spiffe://example.org/batch"
    assert records["records"][0]["actor"].startswith("local:uid=")
    mistyped = running_server.cli("audit-log", "list", "-action", "svid.jwt.minted").stdout
    assert "No audit record has the action svid.jwt.minted" in mistyped
    assert "svid.jwt.mint" in mistyped


def test_entry_without_owner_is_rejected_and_nothing_written(shared_server: RunningServer) -> None:
    running_server = shared_server
    result = running_server.cli(
        "entry",
        "create",
        "-spiffeID",
        "spiffe://example.org/no-owner",
        "-parentID",
        "spiffe://example.org/spire/agent/join_token/abc",
        "-selector",
        "unix:uid:1000",
        check=False,
    )

    assert result.returncode == 1
    assert "owner is required; pass -owner" in result.stdout + result.stderr
    assert count_with_id(running_server, "spiffe://example.org/no-owner") == 0


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("-spiffeID", "spiffe://Example.org/web", "uppercase"),
        ("-spiffeID", "spiffe://example.org/web/", "ends with '/'"),
        ("-spiffeID", "http://example.org/web", "scheme"),
        ("-selector", "unix", "expected 'type:value'"),
        ("-selector", "unix:", "the value is empty"),
    ],
)
def test_malformed_input_is_rejected(
    shared_server: RunningServer, flag: str, value: str, message: str
) -> None:
    running_server = shared_server
    arguments = {
        "-spiffeID": "spiffe://example.org/malformed",
        "-parentID": "spiffe://example.org/spire/agent/join_token/abc",
        "-selector": "unix:uid:1000",
        "-owner": "web-team",
    }
    arguments[flag] = value
    flat = [item for pair in arguments.items() for item in pair]

    result = running_server.cli("entry", "create", *flat, check=False)

    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert count_with_id(running_server, "spiffe://example.org/malformed") == 0


def test_entry_lifecycle_through_cli(running_server: RunningServer) -> None:
    created = json.loads(
        running_server.cli(
            "entry",
            "create",
            "-spiffeID",
            "spiffe://example.org/web",
            "-parentID",
            "spiffe://example.org/spire/agent/join_token/abc",
            "-selector",
            "unix:uid:1000",
            "-selector",
            "unix:gid:1000",
            "-owner",
            "web-team",
            "-x509SVIDTTL",
            "30m",
            "-output",
            "json",
        ).stdout
    )
    entry_id = created["results"][0]["entry"]["id"]
    assert created["results"][0]["entry"]["x509_svid_ttl"] == 1800

    duplicate = running_server.cli(
        "entry",
        "create",
        "-spiffeID",
        "spiffe://example.org/web",
        "-parentID",
        "spiffe://example.org/spire/agent/join_token/abc",
        "-selector",
        "unix:gid:1000",
        "-selector",
        "unix:uid:1000",
        "-owner",
        "web-team",
        check=False,
    )
    assert duplicate.returncode == 1
    assert "similar entry already exists" in duplicate.stdout

    shown = json.loads(
        running_server.cli("entry", "show", "-selector", "unix:uid:1000", "-output", "json").stdout
    )
    assert [e["id"] for e in shown["entries"]] == [entry_id]

    running_server.cli(
        "entry",
        "update",
        "-entryID",
        entry_id,
        "-spiffeID",
        "spiffe://example.org/web",
        "-parentID",
        "spiffe://example.org/spire/agent/join_token/abc",
        "-selector",
        "unix:uid:1000",
        "-owner",
        "payments-team",
    )
    updated = json.loads(
        running_server.cli("entry", "show", "-entryID", entry_id, "-output", "json").stdout
    )
    assert updated["entries"][0]["owner"] == "payments-team"
    assert updated["entries"][0]["revision"] == 2

    running_server.cli("entry", "delete", "-entryID", entry_id)
    assert json.loads(running_server.cli("entry", "count", "-output", "json").stdout) == {
        "count": 0
    }
    actions = [
        r["action"]
        for r in json.loads(running_server.cli("audit-log", "list", "-output", "json").stdout)[
            "records"
        ]
    ]
    assert {"entry.create", "entry.update", "entry.delete"} <= set(actions)


def test_entries_from_data_file(shared_server: RunningServer, tmp_path: Path) -> None:
    running_server = shared_server
    data = tmp_path / "entries.json"
    data.write_text(
        json.dumps(
            {
                "entries": [
                    {
                        "spiffe_id": {"trust_domain": "example.org", "path": "/data-a"},
                        "parent_id": "spiffe://example.org/spire/agent/join_token/abc",
                        "selectors": [{"type": "unix", "value": "uid:1"}],
                        "owner": "team-a",
                    },
                    {
                        "spiffe_id": "spiffe://example.org/data-b",
                        "parent_id": "spiffe://example.org/spire/agent/join_token/abc",
                        "selectors": ["unix:uid:2"],
                    },
                ]
            }
        )
    )

    result = running_server.cli("entry", "create", "-data", str(data), check=False)

    assert result.returncode == 1
    assert "Failed to create spiffe://example.org/data-b" in result.stdout
    assert "owner is required" in result.stdout
    assert count_with_id(running_server, "spiffe://example.org/data-a") == 1
    assert count_with_id(running_server, "spiffe://example.org/data-b") == 0


def test_audit_log_tampering_is_detected(running_server: RunningServer) -> None:
    running_server.cli("jwt", "mint", "-spiffeID", "spiffe://example.org/a", "-audience", "x")
    running_server.cli("jwt", "mint", "-spiffeID", "spiffe://example.org/b", "-audience", "x")
    assert "intact" in running_server.cli("audit-log", "verify").stdout
    running_server.stop()

    database = sqlite3.connect(running_server.data_dir / "datastore.sqlite3")
    triggers = [
        row[0] for row in database.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
    ]
    assert triggers, "the audit log must be protected by triggers"
    with pytest.raises(sqlite3.DatabaseError):
        database.execute("UPDATE audit_log SET actor = 'someone-else'")
    # An attacker with write access to the file can drop the triggers; verification still sees it.
    for trigger in triggers:
        database.execute(f'DROP TRIGGER "{trigger}"')
    database.execute(
        "UPDATE audit_log SET subject = 'spiffe://example.org/c' WHERE subject = 'spiffe://example.org/a'"
    )
    database.commit()
    database.close()

    result = subprocess.run(
        [*WARDEN, "audit-log", "verify", "-config", str(running_server.config)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 1
    assert "tampered" in result.stdout


def test_restart_keeps_ca_entries_and_tokens(running_server: RunningServer) -> None:
    bundle_before = running_server.cli("bundle", "show").stdout
    running_server.cli(
        "entry",
        "create",
        "-spiffeID",
        "spiffe://example.org/web",
        "-parentID",
        "spiffe://example.org/spire/agent/join_token/abc",
        "-selector",
        "unix:uid:1000",
        "-owner",
        "web-team",
    )
    token = json.loads(
        running_server.cli("token", "generate", "-owner", "ops", "-output", "json").stdout
    )["value"]

    running_server.stop()
    running_server.start()

    assert running_server.cli("bundle", "show").stdout == bundle_before
    assert json.loads(running_server.cli("entry", "count", "-output", "json").stdout) == {
        "count": 1
    }
    from warden.store import Datastore

    store = Datastore.open(running_server.data_dir / "datastore.sqlite3", migrate=False)
    try:
        assert [t.prefix for t in store.list_join_tokens()] == [token[:8]]
    finally:
        store.close()


def test_malformed_hcl_is_rejected_with_line(tmp_path: Path) -> None:
    config = tmp_path / "server.conf"
    config.write_text('server {\n  trust_domain = "example.org"\n  bind_prot = "8081"\n}\n')

    result = subprocess.run(
        [*WARDEN, "server", "run", "-config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 1
    assert "server.conf:3" in result.stderr
    assert "did you mean bind_port" in result.stderr


def test_unsupported_plugin_names_supported_ones(tmp_path: Path) -> None:
    config = tmp_path / "server.conf"
    config.write_text(
        'server {\n  trust_domain = "example.org"\n}\nplugins {\n  KeyManager "aws_kms" {\n    plugin_data {}\n  }\n}\n'
    )

    result = subprocess.run(
        [*WARDEN, "server", "run", "-config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 1
    assert "aws_kms" in result.stderr
    assert "disk" in result.stderr


def test_example_spire_config_starts_and_is_healthy(tmp_path: Path) -> None:
    """The configuration from the issue, as it is, apart from a writable data_dir."""
    config = tmp_path / "server.conf"
    config.write_text(
        "server {\n"
        '  bind_address = "0.0.0.0"\n'
        '  bind_port = "8081"\n'
        '  trust_domain = "codesecai.com"\n'
        f'  data_dir = "{tmp_path / "data"}"\n'
        "}\n"
        "plugins {\n"
        '  NodeAttestor "aws_iid" {\n'
        "    plugin_data {\n"
        '      access_key_id = "DYNAMIC"\n'
        '      secret_access_key = "DYNAMIC"\n'
        "    }\n"
        "  }\n"
        "}\n"
    )
    socket = Path("/tmp/spire-server/private/api.sock")
    server = RunningServer(config, socket, tmp_path / "data", tmp_path / "server.log")
    server.start()
    try:
        result = subprocess.run(
            [*WARDEN, "healthcheck"], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
        assert "Server is healthy." in result.stdout
    finally:
        server.stop()
    log = server.log.read_text()
    assert "access_key_id" in log
    assert "secret_access_key" in log
    assert "DYNAMIC" not in log


def test_socket_directory_is_private(shared_server: RunningServer) -> None:
    running_server = shared_server
    assert stat.S_IMODE(running_server.socket.parent.stat().st_mode) == 0o700
    assert os.access(running_server.socket, os.W_OK)


def test_rewrite_with_recomputed_hashes_caught_by_checkpoints(
    running_server: RunningServer,
) -> None:
    """Someone who can drop the triggers and recompute every hash still does not get past
    the server's keyed checkpoints in data_dir."""
    from datetime import UTC, datetime, timedelta

    from warden.store.audit import canonical_record, chain_hash

    for name in ("a", "b", "c"):
        running_server.cli(
            "jwt", "mint", "-spiffeID", f"spiffe://example.org/{name}", "-audience", "x"
        )
    assert "intact" in running_server.cli("audit-log", "verify").stdout
    running_server.stop()
    assert (running_server.data_dir / "audit-checkpoints.jsonl").exists()
    assert stat.S_IMODE((running_server.data_dir / "audit-checkpoint.key").stat().st_mode) == 0o600

    database = sqlite3.connect(running_server.data_dir / "datastore.sqlite3")
    for (trigger,) in database.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger'"
    ).fetchall():
        database.execute(f'DROP TRIGGER "{trigger}"')
    rows = database.execute(
        "SELECT seq, recorded_at, actor, action, subject, details, server_id, prev_hash "
        "FROM audit_log ORDER BY seq"
    ).fetchall()
    previous = rows[0][7]
    for seq, recorded_at, actor, action, subject, details, server_id, _ in rows:
        moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=recorded_at)
        if seq == 2:
            actor = "someone-else"
        record_hash = chain_hash(
            previous,
            canonical_record(seq, moment, actor, action, subject, json.loads(details), server_id),
        )
        database.execute(
            "UPDATE audit_log SET actor = ?, prev_hash = ?, record_hash = ? WHERE seq = ?",
            (actor, previous, record_hash, seq),
        )
        previous = record_hash
    database.execute("UPDATE audit_head SET record_hash = ? WHERE id = 1", (previous,))
    database.commit()
    database.close()

    result = subprocess.run(
        [*WARDEN, "audit-log", "verify", "-config", str(running_server.config)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 1
    assert "rewritten" in result.stdout
