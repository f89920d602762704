"""Loading of the server's configuration file."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from warden.config import ConfigError, ServerConfig, load_server_config
from warden.config.server_plugins import (
    AwsIidServer,
    ServerDiskKeyManager,
)
from warden.spiffe import TrustDomain

LoadServer = Callable[..., ServerConfig]

EXAMPLE = """
server {
  bind_address = "0.0.0.0"
  bind_port = "8081"
  trust_domain = "codesecai.com"
  data_dir = "/opt/spire/data/server"
}
plugins {
  NodeAttestor "aws_iid" {
    plugin_data {
      access_key_id = "DYNAMIC"
      secret_access_key = "DYNAMIC"
    }
  }
}
"""


def _error(load: LoadServer, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(text)
    return caught.value


def test_example_loads(load_server: LoadServer) -> None:
    config = load_server(EXAMPLE)

    assert config.server.trust_domain == TrustDomain("codesecai.com")
    assert config.server.bind_address == "0.0.0.0"
    assert config.server.bind_port == 8081
    assert config.server.data_dir == Path("/opt/spire/data/server")
    aws = config.plugins.node_attestor("aws_iid")
    assert aws is not None
    assert isinstance(aws.data, AwsIidServer)
    assert aws.line == 8


def test_example_defaults_to_sqlite_and_disk_keys(load_server: LoadServer) -> None:
    config = load_server(EXAMPLE)

    datastore = config.plugins.datastore
    assert (datastore.name, datastore.line) == ("sql", None)
    assert datastore.data.database_type == "sqlite3"
    assert datastore.data.connection_string is not None
    assert datastore.data.connection_string.get_secret_value() == (
        "/opt/spire/data/server/datastore.sqlite3"
    )
    key_manager = config.plugins.key_manager
    assert key_manager.name == "disk"
    assert isinstance(key_manager.data, ServerDiskKeyManager)
    assert key_manager.data.keys_path == Path("/opt/spire/data/server/keys.json")


def test_example_defaults_match_spire(load_server: LoadServer) -> None:
    server = load_server(EXAMPLE).server

    assert server.socket_path == Path("/tmp/spire-server/private/api.sock")
    assert server.ca_ttl == timedelta(hours=24)
    assert server.default_x509_svid_ttl == timedelta(hours=1)
    assert server.default_jwt_svid_ttl == timedelta(minutes=5)
    assert server.effective_agent_ttl == timedelta(hours=1)
    assert server.ca_key_type == "ec-p256"
    assert server.effective_jwt_key_type == "ec-p256"
    assert server.ca_subject.country == ("US",)
    assert server.ca_subject.organization == ("SPIFFE",)
    assert server.ratelimit.attestation is True
    assert server.ratelimit.signing is True
    assert server.log_level == "info"
    assert server.log_format == "text"


def test_static_aws_keys_warn_without_values(load_server: LoadServer) -> None:
    config = load_server(EXAMPLE.replace('"DYNAMIC"', '"AKIAEXAMPLEKEY77"', 1))

    messages = [str(warning) for warning in config.warnings]
    aws = [message for message in messages if "access_key_id" in message]
    assert len(aws) == 1
    assert "secret_access_key" in aws[0]
    assert "instance profile" in aws[0]
    assert "web-identity" in aws[0]
    assert ":10: plugins.NodeAttestor.aws_iid.plugin_data.access_key_id" in aws[0]
    for message in messages:
        assert "AKIAEXAMPLEKEY77" not in message
        assert "DYNAMIC" not in message
    assert "AKIAEXAMPLEKEY77" not in repr(config)


def test_warnings_are_logged_on_request(
    load_server: LoadServer, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_server(EXAMPLE)
    caplog.set_level("WARNING", logger="warden.config")

    config.log_warnings()

    logged = [record.getMessage() for record in caplog.records if record.name == "warden.config"]
    assert any("access_key_id" in message for message in logged)
    assert all("DYNAMIC" not in message for message in logged)


def test_unknown_key_names_line_and_suggestion(load_server: LoadServer) -> None:
    error = _error(
        load_server,
        """
        server {
          trust_domain = "example.org"
          bind_prot = 8081
        }
        """,
    )

    assert error.line == 3
    assert error.key == "server.bind_prot"
    assert "did you mean bind_port?" in error.message
    expected = "server.conf:3: server.bind_prot: unknown key; did you mean bind_port?"
    assert str(error).endswith(expected)


def test_unknown_key_in_plugin_data(load_server: LoadServer) -> None:
    error = _error(
        load_server,
        """
        server {
          trust_domain = "example.org"
        }
        plugins {
          KeyManager "disk" {
            plugin_data {
              key_path = "keys.json"
            }
          }
        }
        """,
    )

    assert error.line == 7
    assert error.key == "plugins.KeyManager.disk.plugin_data.key_path"
    assert "did you mean keys_path?" in error.message


def test_every_problem_is_reported(load_server: LoadServer) -> None:
    error = _error(
        load_server,
        """
        server {
          trust_domain = "example.org"
          bind_prot = 8081
          ca_ttl = "1 day"
        }
        health_checks {
          listener_enable = true
        }
        """,
    )

    assert [(problem.line, problem.key) for problem in error.problems] == [
        (3, "server.bind_prot"),
        (4, "server.ca_ttl"),
        (7, "health_checks.listener_enable"),
    ]


def test_wrong_type_names_key_and_line(load_server: LoadServer) -> None:
    error = _error(
        load_server,
        """
        server {
          trust_domain = "example.org"
          bind_port = "eighty"
        }
        """,
    )

    assert (error.line, error.key) == (3, "server.bind_port")
    assert error.message == "expected a whole number, got 'eighty'"


def test_block_where_value_expected(load_server: LoadServer) -> None:
    error = _error(
        load_server,
        """
        server {
          trust_domain {
            name = "example.org"
          }
        }
        """,
    )

    assert (error.line, error.key) == (2, "server.trust_domain")
    assert "got a block" in error.message


def test_bad_duration_names_key_and_line(load_server: LoadServer) -> None:
    error = _error(
        load_server,
        """
        server {
          trust_domain = "example.org"

          ca_ttl = "2d"
        }
        """,
    )

    assert (error.line, error.key) == (4, "server.ca_ttl")
    assert "invalid duration '2d'" in error.message
    assert '"24h"' in error.message


def test_duration_without_unit_is_rejected(load_server: LoadServer) -> None:
    error = _error(
        load_server,
        """
        server {
          trust_domain = "example.org"
          default_x509_svid_ttl = 3600
        }
        """,
    )

    assert (error.line, error.key) == (3, "server.default_x509_svid_ttl")
    assert "missing unit" in error.message


def test_missing_trust_domain(load_server: LoadServer) -> None:
    error = _error(load_server, "server {\n  bind_port = 8081\n}\n")

    assert (error.line, error.key) == (1, "server.trust_domain")
    assert error.message == "missing required key"


def test_missing_server_block(load_server: LoadServer) -> None:
    error = _error(load_server, "health_checks {\n  listener_enabled = true\n}\n")

    assert error.key == "server"
    assert "missing the server block" in error.message


def test_unimplemented_spire_plugin_lists_supported(load_server: LoadServer) -> None:
    error = _error(
        load_server,
        """
        server {
          trust_domain = "example.org"
        }
        plugins {
          KeyManager "aws_kms" {
            plugin_data {
              region = "us-east-1"
            }
          }
        }
        """,
    )

    assert (error.line, error.key) == (5, "plugins.KeyManager.aws_kms")
    assert "SPIRE plugin that Warden does not implement" in error.message
    assert "supported KeyManager plugins: disk, memory" in error.message


def test_misspelt_plugin_gets_suggestion(load_server: LoadServer) -> None:
    error = _error(
        load_server,
        """
        server {
          trust_domain = "example.org"
        }
        plugins {
          NodeAttestor "join-token" {
            plugin_data {}
          }
        }
        """,
    )

    assert error.key == "plugins.NodeAttestor.join-token"
    assert "did you mean join_token?" in error.message
    assert "aws_iid, join_token, x509pop" in error.message


def test_unimplemented_plugin_kind_is_an_error(load_server: LoadServer) -> None:
    error = _error(
        load_server,
        """
        server {
          trust_domain = "example.org"
        }
        plugins {
          Notifier "k8sbundle" {
            plugin_data {}
          }
        }
        """,
    )

    assert error.key == "plugins.Notifier.k8sbundle"
    assert "Warden implements no Notifier plugins" in error.message


def test_unknown_plugin_type_gets_suggestion(load_server: LoadServer) -> None:
    error = _error(
        load_server,
        """
        server {
          trust_domain = "example.org"
        }
        plugins {
          NodeAtestor "join_token" {
            plugin_data {}
          }
        }
        """,
    )

    assert (error.line, error.key) == (5, "plugins.NodeAtestor")
    assert "did you mean NodeAttestor?" in error.message


def test_disabled_unsupported_plugin_only_warns(load_server: LoadServer) -> None:
    config = load_server(
        """
        server {
          trust_domain = "example.org"
        }
        plugins {
          KeyManager "aws_kms" {
            enabled = false
            plugin_data {}
          }
        }
        """
    )

    assert config.plugins.key_manager.name == "disk"
    assert any("enabled = false" in warning.message for warning in config.warnings)


def test_external_plugin_is_rejected(load_server: LoadServer) -> None:
    error = _error(
        load_server,
        """
        server {
          trust_domain = "example.org"
        }
        plugins {
          NodeAttestor "join_token" {
            plugin_cmd = "/usr/local/bin/my-attestor"
            plugin_data {}
          }
        }
        """,
    )

    assert (error.line, error.key) == (6, "plugins.NodeAttestor.join_token.plugin_cmd")
    assert "external plugins are not supported" in error.message


def test_unimplemented_spire_key_warns(load_server: LoadServer) -> None:
    config = load_server(
        """
        server {
          trust_domain = "example.org"
          log_source_location = true
          federation {
            bundle_endpoint {
              address = "0.0.0.0"
              port = 8443
            }
          }
        }
        """
    )

    warnings = {warning.key: warning for warning in config.warnings}
    assert warnings["server.log_source_location"].line == 3
    assert "does not implement" in warnings["server.log_source_location"].message
    assert warnings["server.federation"].line == 4
    assert "federation" in warnings["server.federation"].message


def test_restricting_spire_key_is_an_error(load_server: LoadServer) -> None:
    error = _error(
        load_server,
        """
        server {
          trust_domain = "example.org"
        }
        plugins {
          NodeAttestor "aws_iid" {
            plugin_data {
              verify_organization {
                management_account_id = "123456789012"
                assume_org_role = "spire-org-reader"
              }
            }
          }
        }
        """,
    )

    assert error.line == 7
    assert error.key == "plugins.NodeAttestor.aws_iid.plugin_data.verify_organization"
    assert "allowed_account_ids" in error.message


def test_setting_written_twice_is_an_error(load_server: LoadServer) -> None:
    error = _error(
        load_server,
        """
        server {
          trust_domain = "example.org"
          bind_port = 8081
          bind_port = 9090
        }
        """,
    )

    assert (error.line, error.key) == (4, "server.bind_port")
    assert "lines 3, 4" in error.message


def test_block_written_twice_is_an_error(load_server: LoadServer) -> None:
    error = _error(
        load_server,
        """
        server {
          trust_domain = "example.org"
        }
        server {
          bind_port = 9090
        }
        """,
    )

    assert (error.line, error.key) == (4, "server")


def test_malformed_hcl_names_line(load_server: LoadServer) -> None:
    error = _error(
        load_server,
        """
        server {
          trust_domain = "example.org"
          bind_port =
        }
        """,
    )

    assert error.line == 4
    assert error.key == ""
    assert "unexpected '}'" in error.message
    assert "expected a value" in error.message


def test_unclosed_block_names_its_opening_line(load_server: LoadServer) -> None:
    error = _error(
        load_server,
        """
        server {
          trust_domain = "example.org"
        plugins {
          NodeAttestor "join_token" {
            plugin_data {}
          }
        }
        """,
    )

    assert "the file ends inside the block 'server' opened on line 1" in error.message


def test_missing_equals_is_pointed_out(load_server: LoadServer) -> None:
    error = _error(
        load_server,
        """
        server {
          trust_domain = "example.org"
          bind_port 8081
        }
        """,
    )

    assert error.line == 3
    assert "missing '=' between 'bind_port' and its value" in error.message


def test_unterminated_string_names_its_line(load_server: LoadServer) -> None:
    error = _error(
        load_server,
        """
        server {
          trust_domain = "example.org
          bind_port = 8081
        }
        """,
    )

    assert error.line == 2
    assert "no closing" in error.message


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_server_config(tmp_path / "absent.conf")

    assert caught.value.line is None
    assert "file not found" in caught.value.message
    assert "-config" in caught.value.message
