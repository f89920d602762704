"""A throwaway PostgreSQL cluster for tests, started with the machine's initdb and pg_ctl.

The cluster lives in a temporary directory, listens on a free loopback port and on a Unix
socket in that directory, trusts every local connection, and is stopped and deleted at the
end. PostgreSQL refuses to run as root, so under root the server runs as the `postgres`
system user (through `runuser`) and the directory is handed to that user.

Each pytest-xdist worker starts its own cluster, so workers never share state; a test gets
a fresh database from `create_database()`.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

#: Binary directories tried in order when WARDEN_PG_BINDIR is not set.
CANDIDATE_BINDIRS = ("/usr/lib/postgresql/15/bin",)

SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    # Durability is useless for a test cluster and costs seconds per test run.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "32MB",
    "max_locks_per_transaction": "128",
    "log_min_messages": "warning",
}


def find_bindir() -> Path | None:
    """Return the directory holding initdb and pg_ctl, or None."""
    candidates: list[str] = []
    if os.environ.get("WARDEN_PG_BINDIR"):
        candidates.append(os.environ["WARDEN_PG_BINDIR"])
    candidates.extend(CANDIDATE_BINDIRS)
    if shutil.which("pg_config"):
        result = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=False
        )
        if result.returncode == 0:
            candidates.append(result.stdout.strip())
    for candidate in candidates:
        path = Path(candidate)
        if (path / "initdb").is_file() and (path / "pg_ctl").is_file():
            return path
    return None


def _others_can_enter(directory: Path) -> bool:
    """Tell whether every directory from the root down to `directory` is searchable by all."""
    resolved = directory.resolve()
    return all(os.stat(path).st_mode & 0o001 for path in (resolved, *resolved.parents))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresCluster:
    """A running test cluster; `superuser_url` reaches it as the `postgres` superuser."""

    def __init__(self, bindir: Path, base_dir: Path, port: int, run_as: str | None) -> None:
        self.bindir = bindir
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.socket_dir = base_dir / "socket"
        self.log_file = base_dir / "postgresql.log"
        self.host = "127.0.0.1"
        self.port = port
        self._run_as = run_as

    @classmethod
    def start(cls, bindir: Path | None = None, attempts: int = 3) -> PostgresCluster:
        """Create and start a cluster; raise RuntimeError with PostgreSQL's log on failure."""
        bindir = bindir or find_bindir()
        if bindir is None:
            raise FileNotFoundError(
                "PostgreSQL binaries (initdb, pg_ctl) not found; install postgresql-15 or set "
                "WARDEN_PG_BINDIR"
            )
        run_as = "postgres" if os.geteuid() == 0 else None
        parent = Path(tempfile.gettempdir())
        if run_as is not None and not _others_can_enter(parent):
            # The postgres user must reach the data directory; /tmp is open to everyone.
            parent = Path("/tmp")
        base_dir = Path(tempfile.mkdtemp(prefix="warden-pg-", dir=parent))
        cluster = cls(bindir, base_dir, 0, run_as)
        cluster.socket_dir.mkdir()
        if run_as is not None:
            user = pwd.getpwnam(run_as)
            for path in (base_dir, cluster.socket_dir):
                os.chown(path, user.pw_uid, user.pw_gid)
        cluster._run(
            "initdb",
            "-D",
            str(cluster.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        last_error = ""
        for _ in range(attempts):
            cluster.port = _free_port()
            try:
                cluster._pg_ctl_start()
                return cluster
            except RuntimeError as error:
                # Another process may have taken the port between the probe and the start.
                last_error = str(error)
        cluster.remove()
        raise RuntimeError(f"PostgreSQL test cluster did not start: {last_error}")

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self.bindir / program), *args]
        if self._run_as is not None:
            return ["runuser", "-u", self._run_as, "--", *command]
        return command

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run(
            self._command(program, *args), capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{program} failed ({result.returncode}): {result.stderr.strip()}")

    def _pg_ctl_start(self) -> None:
        options = [f"-c port={self.port}", f"-c unix_socket_directories={self.socket_dir}"]
        options += [f"-c {key}={value}" for key, value in SERVER_SETTINGS.items()]
        result = subprocess.run(
            self._command(
                "pg_ctl",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                "60",
                "-o",
                " ".join(options),
                "start",
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            log_text = self.log_file.read_text() if self.log_file.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {result.stderr.strip()} {log_text[-2000:]}")

    @property
    def superuser_url(self) -> str:
        """SQLAlchemy URL of the `postgres` database as the superuser."""
        return self.url("postgres")

    def url(self, database: str, user: str = "postgres", password: str | None = None) -> str:
        """SQLAlchemy URL of `database` on this cluster as `user`."""
        credentials = user if password is None else f"{user}:{password}"
        return f"postgresql+psycopg://{credentials}@{self.host}:{self.port}/{database}"

    def conninfo(self, database: str = "postgres", user: str = "postgres") -> str:
        """libpq keyword connection string, as SPIRE's configuration examples write it."""
        return f"dbname={database} user={user} host={self.host} port={self.port}"

    def connect(self, database: str = "postgres", user: str = "postgres") -> psycopg.Connection:
        """Open an autocommit psycopg connection, for administration in tests."""
        return psycopg.connect(self.conninfo(database, user), autocommit=True)

    def execute(self, statement: str | sql.Composed, database: str = "postgres") -> None:
        with self.connect(database) as connection:
            connection.execute(statement)  # type: ignore[arg-type]

    def create_database(self, name: str | None = None, template: str | None = None) -> str:
        """Create a database (a random name unless given) and return its URL."""
        name = name or f"test_{uuid.uuid4().hex[:16]}"
        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        # A template must have no sessions, and a backend whose client just disconnected
        # can take a moment to exit: retry for a few seconds.
        deadline = time.monotonic() + 10
        while True:
            try:
                self.execute(statement)
                break
            except psycopg.errors.ObjectInUse:
                if template is None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    def create_role(self, name: str, password: str | None = None, login: bool = True) -> None:
        """Create a role (a login role by default), for tests of restricted privileges."""
        statement = sql.SQL("CREATE ROLE {} {}").format(
            sql.Identifier(name), sql.SQL("LOGIN" if login else "NOLOGIN")
        )
        if password is not None:
            statement = sql.SQL("{} PASSWORD {}").format(statement, sql.Literal(password))
        self.execute(statement)

    def stop(self) -> None:
        """Stop the server immediately and delete its files."""
        subprocess.run(
            self._command("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "stop"),
            capture_output=True,
            check=False,
        )
        self.remove()

    def remove(self) -> None:
        # Wait briefly for the postmaster to release its files before deleting them.
        for _ in range(20):
            if not (self.data_dir / "postmaster.pid").exists():
                break
            time.sleep(0.1)
        with contextlib.suppress(OSError):
            shutil.rmtree(self.base_dir)
