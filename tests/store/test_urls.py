"""Connection strings: SQLite paths, PostgreSQL URLs and libpq keyword strings."""

from __future__ import annotations

from pathlib import Path

import pytest

from warden.store import InvalidInput, to_sqlalchemy_url, url_from_sql_plugin
from warden.store.urls import describe_url


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "postgres://warden:pw@db.example:5433/warden",
            "postgresql+psycopg://warden:***@db.example:5433/warden",
        ),
        (
            "postgresql://warden@db.example/warden?sslmode=verify-full",
            "postgresql+psycopg://warden@db.example/warden?sslmode=verify-full",
        ),
        (
            "postgresql+psycopg://warden@db.example/warden",
            "postgresql+psycopg://warden@db.example/warden",
        ),
        (
            "dbname=warden user=warden host=db.example port=5433 sslmode=require",
            "postgresql+psycopg://warden@db.example:5433/warden?sslmode=require",
        ),
        (
            "dbname=warden host=/run/postgresql",
            "postgresql+psycopg:///warden?host=%2Frun%2Fpostgresql",
        ),
        ("dbname=warden user=w password='p w'", "postgresql+psycopg://w:***@/warden"),
    ],
)
def test_postgres_forms(text: str, expected: str) -> None:
    assert describe_url(to_sqlalchemy_url(text)) == expected


def test_keyword_form_keeps_password() -> None:
    url = to_sqlalchemy_url("dbname=warden user=w password='p w'")
    assert url.password == "p w"


def test_paths_mean_sqlite(tmp_path: Path) -> None:
    assert to_sqlalchemy_url(str(tmp_path / "d.db")).database == str(tmp_path / "d.db")
    assert to_sqlalchemy_url(tmp_path / "d.db").drivername == "sqlite"
    assert to_sqlalchemy_url(f"sqlite:///{tmp_path}/d.db").database == f"{tmp_path}/d.db"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "connection string is empty"),
        ("mysql://root@db/warden", "unsupported database 'mysql'"),
        ("dbname=warden port=abc", "port 'abc' is not a number"),
        ("dbname='unterminated", "invalid PostgreSQL connection string"),
    ],
)
def test_bad_connection_strings(text: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        to_sqlalchemy_url(text)


def test_parse_error_does_not_echo_password() -> None:
    with pytest.raises(InvalidInput) as raised:
        to_sqlalchemy_url("dbname=warden password=hunter2 'broken")
    assert "hunter2" not in str(raised.value)


def test_sql_plugin_settings(tmp_path: Path) -> None:
    assert url_from_sql_plugin("sqlite3", "", tmp_path).database == str(
        tmp_path / "datastore.sqlite3"
    )
    assert url_from_sql_plugin("sqlite3", "db/x.sqlite3", tmp_path).database == str(
        tmp_path / "db" / "x.sqlite3"
    )
    assert url_from_sql_plugin("sqlite3", "/abs/x.sqlite3", tmp_path).database == "/abs/x.sqlite3"
    postgres = url_from_sql_plugin("postgres", "dbname=warden user=warden host=db.example")
    assert postgres.drivername == "postgresql+psycopg"
    with pytest.raises(InvalidInput, match="unsupported database_type 'mysql'"):
        url_from_sql_plugin("mysql", "root@/warden")
    with pytest.raises(InvalidInput, match="connection_string is empty"):
        url_from_sql_plugin("postgres", " ")
    with pytest.raises(InvalidInput, match="is not a PostgreSQL connection string"):
        url_from_sql_plugin("postgres", "/var/lib/warden.sqlite3")
