"""The block decoder on models shaped like the blocks later features add.

`database { connection "name" { ... } role "name" { ... } }` is a block of labelled blocks;
these tests decode such a shape with small models defined here, as a new block would be.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

import pytest
from pydantic import Field

from warden.config import server_config_from_text
from warden.config.decode import DecodeContext, Section, decode_section
from warden.config.hcl import Block, parse_hcl
from warden.config.plugins import PluginCatalog, PluginData, decode_plugins, register_plugin
from warden.config.values import Int, PositiveDuration, Secret, Str, StrList


class Connection(Section):
    plugin: Str
    connection_url: Secret
    max_open_connections: Int = 4


class Role(Section):
    connection: Str
    creation_statements: StrList
    default_ttl: PositiveDuration = timedelta(hours=1)


class Database(Section):
    spire_ignored: ClassVar[Mapping[str, str]] = {"legacy": "kept for old files"}

    connection: dict[str, Connection] = Field(default_factory=dict)
    role: dict[str, Role] = Field(default_factory=dict)
    tag: tuple[Role, ...] = ()


def _decode(text: str) -> tuple[Database | None, DecodeContext]:
    context = DecodeContext(file="db.conf", base_dir=Path("/etc/warden"))
    root = parse_hcl(textwrap.dedent(text).lstrip("\n"), "db.conf")
    block = root.get_all("database")[0].node
    assert isinstance(block, Block)
    return decode_section(Database, block, "database", context), context


def test_labelled_blocks_decode_by_label() -> None:
    database, context = _decode(
        """
        database {
          connection "orders" {
            plugin = "postgresql"
            connection_url = "postgresql://vault:pw@db/orders"
          }
          role "reader" {
            connection = "orders"
            creation_statements = ["CREATE ROLE ..."]
            default_ttl = "15m"
          }
          role "writer" {
            connection = "orders"
            creation_statements = ["CREATE ROLE ..."]
          }
        }
        """
    )

    assert context.problems == []
    assert database is not None
    assert list(database.connection) == ["orders"]
    assert database.connection["orders"].max_open_connections == 4
    assert list(database.role) == ["reader", "writer"]
    assert database.role["reader"].default_ttl == timedelta(minutes=15)
    assert "pw@" not in repr(database)


def test_labelled_block_errors_name_label_and_line() -> None:
    database, context = _decode(
        """
        database {
          role "reader" {
            connection = "orders"
            creation_statement = ["CREATE ROLE ..."]
          }
        }
        """
    )

    assert database is None
    keys = [(problem.line, problem.key, problem.message) for problem in context.problems]
    assert keys == [
        (
            4,
            'database.role["reader"].creation_statement',
            "unknown key; did you mean creation_statements?",
        ),
        (2, 'database.role["reader"].creation_statements', "missing required key"),
    ]


def test_repeated_label_is_an_error() -> None:
    database, context = _decode(
        """
        database {
          connection "orders" {
            plugin = "postgresql"
            connection_url = "x"
          }
          connection "orders" {
            plugin = "postgresql"
            connection_url = "y"
          }
        }
        """
    )

    assert database is None
    assert [(problem.line, problem.key) for problem in context.problems] == [
        (6, 'database.connection["orders"]')
    ]


def test_repeatable_block_keeps_order() -> None:
    database, context = _decode(
        """
        database {
          tag {
            connection = "a"
            creation_statements = []
          }
          tag {
            connection = "b"
            creation_statements = []
          }
        }
        """
    )

    assert context.problems == []
    assert database is not None
    assert [tag.connection for tag in database.tag] == ["a", "b"]


def test_ignored_key_warns_with_reason() -> None:
    database, context = _decode("database {\n  legacy = true\n}\n")

    assert database is not None
    assert [(warning.line, warning.key) for warning in context.warnings] == [(2, "database.legacy")]
    assert "kept for old files" in context.warnings[0].message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('database {\n  connection = "orders"\n}\n', "expected labelled blocks"),
        ('database {\n  tag = "x"\n}\n', "expected a block, got 'x'"),
        ("database {\n  connection = { a = 1 }\n}\n", "expected a block, got the number 1"),
    ],
)
def test_shape_mismatch_is_explained(text: str, message: str) -> None:
    database, context = _decode(text)

    assert database is None
    assert message in context.problems[0].message


def test_secret_values_stay_out_of_messages() -> None:
    _, context = _decode(
        """
        database {
          connection "orders" {
            plugin = "postgresql"
            connection_url = ["postgresql://vault:s3cr3t@db/orders"]
          }
        }
        """
    )

    assert len(context.problems) == 1
    assert "s3cr3t" not in str(context.problems[0])
    assert "got a list" in context.problems[0].message


class TokenAttestor(PluginData):
    audience: Str = "warden"


def test_registered_plugin_is_decoded() -> None:
    catalog = PluginCatalog(
        "server", {"NodeAttestor": {}}, {"NodeAttestor": frozenset({"k8s_psat"})}
    )
    register_plugin(catalog, "NodeAttestor", "k8s_psat", TokenAttestor)
    context = DecodeContext(file="p.conf", base_dir=Path("/etc/warden"))
    text = 'plugins {\n  NodeAttestor "k8s_psat" {\n    plugin_data {\n      audience = "a"\n'
    root = parse_hcl(text + "    }\n  }\n}\n", "p.conf")
    block = root.get_all("plugins")[0].node
    assert isinstance(block, Block)

    plugins = decode_plugins(block, catalog, context)

    assert context.problems == []
    assert [(plugin.kind, plugin.name, plugin.line) for plugin in plugins] == [
        ("NodeAttestor", "k8s_psat", 2)
    ]
    assert isinstance(plugins[0].data, TokenAttestor)
    assert plugins[0].data.audience == "a"


def test_bracketed_ipv6_host_is_unwrapped(tmp_path: Path) -> None:
    config = server_config_from_text(
        'server {\n  trust_domain = "example.org"\n  bind_address = "[::]"\n}\n',
        base_dir=tmp_path,
    )

    assert config.server.bind_address == "::"
