"""Value coercions that SPIRE's HCL decoder applies, and that operators' files rely on."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warden.config import ConfigError, ServerConfig
from warden.config.values import go_bool, go_int, go_string

LoadServer = Callable[..., ServerConfig]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (8081, 8081),
        ("8081", 8081),
        (" 8081 ", 8081),
        ("+5", 5),
        ("-5", -5),
        ("0x1F", 31),
        ("0o17", 15),
        ("017", 15),
        ("0b101", 5),
        ("1_000", 1000),
        ("0", 0),
    ],
)
def test_go_int_accepts(value: object, expected: int) -> None:
    assert go_int(value) == expected


@pytest.mark.parametrize("value", ["", "80x", "08", "1.5", 1.5, True, "0x", "1__0", None, [1]])
def test_go_int_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="expected a whole number"):
        go_int(value)


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_go_int_reads_decimal_and_hex_text(number: int) -> None:
    assert go_int(str(number)) == number
    assert go_int(("-" if number < 0 else "") + hex(abs(number))) == number


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("true", True), ("TRUE", True), ("False", False),
     ("1", True), ("0", False), (1, True), (0, False)],
)  # fmt: skip
def test_go_bool_accepts(value: object, expected: bool) -> None:
    assert go_bool(value) is expected


@pytest.mark.parametrize("value", ["yes", "on", "", 2, None, 1.0])
def test_go_bool_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="expected true or false"):
        go_bool(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("text", "text"), (42, "42"), (True, "true"), (False, "false"), (1.5, "1.5")],
)
def test_go_string_accepts_scalars(value: object, expected: str) -> None:
    assert go_string(value) == expected


@pytest.mark.parametrize("value", [["a"], {"a": 1}])
def test_go_string_rejects_lists_and_blocks(value: object) -> None:
    with pytest.raises(ValueError, match="expected a string"):
        go_string(value)


def test_spire_string_forms_load(load_server: LoadServer) -> None:
    config = load_server(
        """
        server {
          trust_domain = "example.org"
          bind_port = "0x1F91"
          audit_log_enabled = "true"
          log_level = "DEBUG"
          ca_key_type = "EC-P384"
        }
        health_checks {
          listener_enabled = 1
          bind_port = "8080"
        }
        """
    )

    assert config.server.bind_port == 8081
    assert config.server.audit_log_enabled is True
    assert config.server.log_level == "debug"
    assert config.server.ca_key_type == "ec-p384"
    assert config.health_checks.listener_enabled is True
    assert config.health_checks.bind_port == 8080


def test_empty_string_means_default(load_server: LoadServer) -> None:
    config = load_server(
        """
        server {
          trust_domain = "example.org"
          bind_address = ""
          log_level = ""
          ca_ttl = ""
        }
        """
    )

    assert config.server.bind_address == "0.0.0.0"
    assert config.server.log_level == "info"
    assert config.server.ca_ttl.total_seconds() == 86400


def test_empty_required_value_is_missing(load_server: LoadServer) -> None:
    with pytest.raises(ConfigError) as caught:
        load_server('server {\n  trust_domain = ""\n}\n')

    assert caught.value.key == "server.trust_domain"
    assert caught.value.message == "missing required key"


@pytest.mark.parametrize(
    ("setting", "fragment"),
    [
        ("bind_port = 70000", "from 0 to 65535, got 70000"),
        ('log_level = "verbose"', "expected one of debug, info, warn, error, got 'verbose'"),
        ('log_format = "xml"', "expected one of text, json"),
        ('ca_key_type = "ec-p521"', "expected one of ec-p256, ec-p384, rsa-2048, rsa-4096"),
        ('ca_ttl = "-1h"', "greater than zero"),
        ('ca_ttl = "0s"', "greater than zero"),
        ('admin_ids = "spiffe://example.org/admin"', "expected a list of strings"),
        ('admin_ids = ["https://example.org/admin"]', "it must be 'spiffe'"),
        ('trust_domain = "Example.org"', "uppercase"),
        ('audit_log_enabled = "yes"', "expected true or false, got 'yes'"),
        ('data_dir = ["a"]', "expected a string, got a list"),
    ],
)
def test_invalid_server_values(load_server: LoadServer, setting: str, fragment: str) -> None:
    key = setting.split(" ", 1)[0]
    text = f'server {{\n  trust_domain = "example.org"\n  {setting}\n}}\n'
    if key == "trust_domain":
        text = f"server {{\n  {setting}\n}}\n"

    with pytest.raises(ConfigError) as caught:
        load_server(text)

    assert caught.value.key == f"server.{key}"
    assert fragment in caught.value.message


def test_trust_domain_as_spiffe_id(load_server: LoadServer) -> None:
    config = load_server('server {\n  trust_domain = "spiffe://example.org"\n}\n')

    assert config.server.trust_domain.name == "example.org"


def test_relative_paths_resolve_against_file(load_server: LoadServer, tmp_path: Path) -> None:
    config = load_server(
        """
        server {
          trust_domain = "example.org"
          data_dir = "./state"
          log_file = "logs/server.log"
          socket_path = "/run/warden/api.sock"
        }
        """
    )

    assert config.server.data_dir == tmp_path / "state"
    assert config.server.log_file == tmp_path / "logs" / "server.log"
    assert config.server.socket_path == Path("/run/warden/api.sock")
    datastore = config.plugins.datastore.data.connection_string
    assert datastore is not None
    assert datastore.get_secret_value() == str(tmp_path / "state" / "datastore.sqlite3")
