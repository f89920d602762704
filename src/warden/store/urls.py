"""Turn the connection strings operators write into SQLAlchemy URLs.

Accepted forms:

- a SQLAlchemy URL: `sqlite:////var/lib/warden/datastore.sqlite3`,
  `postgresql+psycopg://warden@db.internal/warden`;
- a PostgreSQL URL as libpq and SPIRE write it: `postgres://…` or `postgresql://…`;
- libpq's keyword form, as SPIRE's examples write it: `dbname=warden user=warden host=db`;
- a filesystem path, which means SQLite.

PostgreSQL is always reached through psycopg 3.
"""

from __future__ import annotations

from pathlib import Path

from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from warden.store.errors import InvalidInput

#: File name of the SQLite datastore inside the server's data directory.
SQLITE_FILE_NAME = "datastore.sqlite3"

#: `database_type` values of SPIRE's `DataStore "sql"` plugin that Warden implements.
SUPPORTED_DATABASE_TYPES = ("sqlite3", "postgres")

_POSTGRES_SCHEMES = ("postgres", "postgresql", "postgresql+psycopg")
_POSTGRES_URL_FIELDS = {"user", "password", "host", "port", "dbname"}


def sqlite_url(path: str | Path) -> URL:
    """Return the URL of the SQLite database file at `path`."""
    return URL.create("sqlite", database=str(Path(path).expanduser().absolute()))


def _postgres_from_keywords(text: str) -> URL:
    try:
        params = conninfo_to_dict(text)
    except Exception as error:  # psycopg raises ProgrammingError with libpq's reason
        # libpq's reason quotes the text near the problem, which may be part of a password.
        reason = "libpq could not parse it" if "password" in text else str(error)
        raise InvalidInput(
            f"invalid PostgreSQL connection string: {reason}; write it as "
            "'dbname=warden user=warden host=db.example port=5432' or as "
            "'postgresql://warden@db.example:5432/warden'"
        ) from None
    port = params.get("port")
    host = params.get("host")
    query = {
        key: str(value)
        for key, value in params.items()
        if key not in _POSTGRES_URL_FIELDS or (key == "host" and host and "," in str(host))
    }
    single_host = str(host) if host and "," not in str(host) else None
    if single_host and single_host.startswith("/"):
        # A Unix socket directory is passed as a query parameter, as libpq URLs do.
        query["host"] = single_host
        single_host = None
    try:
        port_number = int(port) if port is not None and "," not in str(port) else None
    except ValueError:
        raise InvalidInput(
            f"invalid PostgreSQL connection string: port {port!r} is not a number"
        ) from None
    if port is not None and port_number is None:
        query["port"] = str(port)

    def text_of(key: str) -> str | None:
        value = params.get(key)
        return None if value is None else str(value)

    return URL.create(
        "postgresql+psycopg",
        username=text_of("user"),
        password=text_of("password"),
        host=single_host,
        port=port_number,
        database=text_of("dbname"),
        query=query,
    )


def to_sqlalchemy_url(text: str | URL | Path) -> URL:
    """Normalise any accepted connection string to a SQLAlchemy URL (see the module doc)."""
    if isinstance(text, URL):
        url = text
    elif isinstance(text, Path):
        return sqlite_url(text)
    else:
        stripped = text.strip()
        if not stripped:
            raise InvalidInput(
                "the datastore connection string is empty; give a SQLite file path or a "
                "PostgreSQL URL such as 'postgresql://warden@db.example/warden'"
            )
        if "://" not in stripped and "=" in stripped:
            return _postgres_from_keywords(stripped)
        if "://" not in stripped and not stripped.startswith("sqlite:"):
            return sqlite_url(stripped)
        try:
            url = make_url(stripped)
        except ArgumentError:
            raise InvalidInput(
                f"invalid datastore URL {stripped.split('@')[-1]!r}; write it as "
                "'postgresql://user@host:5432/dbname' or give a SQLite file path"
            ) from None
    if url.drivername in _POSTGRES_SCHEMES:
        return url.set(drivername="postgresql+psycopg")
    if url.drivername in ("sqlite", "sqlite+pysqlite"):
        return url.set(drivername="sqlite")
    raise InvalidInput(
        f"unsupported database {url.drivername!r} in datastore URL "
        f"{url.render_as_string(hide_password=True)!r}; Warden supports SQLite and PostgreSQL "
        "(postgresql://…)"
    )


def url_from_sql_plugin(
    database_type: str, connection_string: str, data_dir: str | Path | None = None
) -> URL:
    """Build the URL for SPIRE's `DataStore "sql"` settings.

    `database_type` is `sqlite3` or `postgres`. For SQLite an empty connection string means
    `<data_dir>/datastore.sqlite3`, and a relative path is resolved against `data_dir`.
    """
    kind = database_type.strip().lower()
    if kind == "sqlite3":
        if not connection_string.strip():
            if data_dir is None:
                raise InvalidInput(
                    'DataStore "sql": database_type is sqlite3 but neither connection_string '
                    "nor data_dir is set; set connection_string to the database file path"
                )
            return sqlite_url(Path(data_dir) / SQLITE_FILE_NAME)
        path = Path(connection_string.strip().removeprefix("file:").split("?", 1)[0])
        if not path.is_absolute() and data_dir is not None:
            path = Path(data_dir) / path
        return sqlite_url(path)
    if kind in ("postgres", "postgresql"):
        if not connection_string.strip():
            raise InvalidInput(
                'DataStore "sql": database_type is postgres but connection_string is empty; '
                "set it to 'dbname=warden user=warden host=db.example' or a postgresql:// URL"
            )
        url = to_sqlalchemy_url(connection_string)
        if not url.drivername.startswith("postgresql"):
            raise InvalidInput(
                'DataStore "sql": database_type is postgres but connection_string is not a '
                "PostgreSQL connection string; write 'dbname=… user=… host=…' or postgresql://…"
            )
        return url
    raise InvalidInput(
        f'DataStore "sql": unsupported database_type {database_type!r}; supported: '
        f"{', '.join(SUPPORTED_DATABASE_TYPES)}"
    )


def describe_url(url: URL) -> str:
    """Render `url` for logs and messages, with the password hidden."""
    return url.render_as_string(hide_password=True)
