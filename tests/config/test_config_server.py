"""Loading of the server's configuration file."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from warden.config import ConfigError, ServerConfig, load_server_config, server_config_from_text
from warden.config.server_plugins import (
    AwsIidServer,
    ServerDiskKeyManager,
)
from warden.spiffe import TrustDomain

LoadServer = Callable[..., ServerConfig]
WriteConfig = Callable[..., Path]

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


# A realistic server configuration in SPIRE's layout, with settings Warden does not
# implement; it must load with warnings only.
SPIRE_STYLE_SERVER = """
server {
    bind_address = "0.0.0.0"
    bind_port = "8081"
    socket_path = "/run/spire/sockets/server.sock"
    trust_domain = "prod.example.org"
    data_dir = "/var/lib/spire/server"
    log_level = "INFO"
    log_format = "json"
    log_file = "/var/log/spire/server.log"
    ca_key_type = "rsa-2048"
    jwt_key_type = "ec-p256"
    ca_ttl = "168h"
    default_x509_svid_ttl = "4h"
    default_jwt_svid_ttl = "10m"
    agent_ttl = "24h"
    jwt_issuer = "https://oidc.prod.example.org"
    admin_ids = ["spiffe://prod.example.org/ops/admin"]
    audit_log_enabled = true

    ca_subject = {
        country = ["DE"],
        organization = ["Example GmbH"],
        common_name = "Example SPIFFE CA",
    }

    ratelimit {
        attestation = true
        signing = "false"
    }

    federation {
        bundle_endpoint {
            address = "0.0.0.0"
            port = 8443
            refresh_hint = "5m"
            profile "https_spiffe" {}
        }
        federates_with "partner.example.com" {
            bundle_endpoint_url = "https://bundle.partner.example.com/bundle"
            bundle_endpoint_profile "https_web" {}
        }
    }

    experimental {
        cache_reload_interval = "5s"
        events_based_cache = true
    }

    prune_attested_nodes_expired_for = "720h"
    log_source_location = false
}

plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "postgres"
            connection_string = "dbname=spire user=spire host=db.internal password=hunter2"
            ro_connection_string = "dbname=spire user=spire host=replica.internal"
            max_open_conns = 50
            max_idle_conns = "10"
            conn_max_lifetime = "30m"
            disable_migration = false
        }
    }

    KeyManager "disk" {
        plugin_data {
            keys_path = "/var/lib/spire/server/keys.json"
        }
    }

    NodeAttestor "join_token" {
        plugin_data {}
    }

    NodeAttestor "x509pop" {
        plugin_data {
            ca_bundle_paths = ["/etc/spire/x509pop/ca-a.pem", "/etc/spire/x509pop/ca-b.pem"]
            agent_path_template = "x509pop/{{ .Subject.CommonName }}"
        }
    }

    NodeAttestor "aws_iid" {
        plugin_data {
            skip_block_device = true
            disable_instance_profile_selectors = true
            account_ids_for_local_validation = ["123456789012"]
            assume_role = "spire-server-delegate"
            partition = "aws"
        }
    }

    UpstreamAuthority "disk" {
        plugin_data {
            cert_file_path = "/etc/spire/upstream/intermediate.crt"
            key_file_path = "/etc/spire/upstream/intermediate.key"
            bundle_file_path = "/etc/spire/upstream/root.crt"
        }
    }
}

health_checks {
    listener_enabled = true
    bind_address = "0.0.0.0"
    bind_port = "8080"
    live_path = "/live"
    ready_path = "/ready"
}

telemetry {
    Prometheus {
        port = 9988
    }

    DogStatsd = [
        { address = "localhost:8125" },
    ]

    AllowedLabels = []
}
"""


def test_spire_style_server_loads_with_warnings(load_server: LoadServer) -> None:
    config = load_server(SPIRE_STYLE_SERVER)

    server = config.server
    assert server.trust_domain.name == "prod.example.org"
    assert server.socket_path == Path("/run/spire/sockets/server.sock")
    assert server.ca_key_type == "rsa-2048"
    assert server.effective_jwt_key_type == "ec-p256"
    assert server.ca_ttl == timedelta(days=7)
    assert server.effective_agent_ttl == timedelta(hours=24)
    assert server.ca_subject.common_name == "Example SPIFFE CA"
    assert server.ca_subject.country == ("DE",)
    assert [str(admin) for admin in server.admin_ids] == ["spiffe://prod.example.org/ops/admin"]
    assert server.ratelimit.signing is False
    assert server.audit_log_enabled is True

    datastore = config.plugins.datastore
    assert datastore.line == 54
    assert datastore.data.database_type == "postgres"
    assert datastore.data.max_idle_conns == 10
    assert datastore.data.conn_max_lifetime == timedelta(minutes=30)
    assert [plugin.name for plugin in config.plugins.node_attestors] == [
        "join_token",
        "x509pop",
        "aws_iid",
    ]
    upstream = config.plugins.upstream_authority
    assert upstream is not None
    assert upstream.name == "disk"
    assert config.telemetry.prometheus is not None
    assert config.telemetry.prometheus.host == "localhost"

    assert {warning.key for warning in config.warnings} == {
        "server.federation",
        "server.experimental",
        "server.prune_attested_nodes_expired_for",
        "server.log_source_location",
        "plugins.DataStore.sql.plugin_data.ro_connection_string",
        "telemetry.DogStatsd",
        "telemetry.AllowedLabels",
    }
    assert "hunter2" not in repr(config)
    assert all("hunter2" not in str(warning) for warning in config.warnings)


def test_plugin_data_file_is_read(load_server: LoadServer, write_config: WriteConfig) -> None:
    data_file = write_config('ca_bundle_path = "ca.pem"\nbogus = 1\n', "x509pop.hcl")
    text = f"""
    server {{
      trust_domain = "example.org"
    }}
    plugins {{
      NodeAttestor "x509pop" {{
        plugin_data_file = "{data_file.name}"
      }}
    }}
    """

    with pytest.raises(ConfigError) as caught:
        load_server(text)

    assert caught.value.file == str(data_file)
    assert caught.value.line == 2
    assert caught.value.key == "plugins.NodeAttestor.x509pop.plugin_data.bogus"


def test_plugin_data_file_paths_resolve_beside_it(
    load_server: LoadServer, write_config: WriteConfig, tmp_path: Path
) -> None:
    (tmp_path / "plugins").mkdir()
    write_config('ca_bundle_path = "ca.pem"\n', "plugins/x509pop.hcl")
    config = load_server(
        """
        server {
          trust_domain = "example.org"
        }
        plugins {
          NodeAttestor "x509pop" {
            plugin_data_file = "plugins/x509pop.hcl"
          }
        }
        """
    )

    attestor = config.plugins.node_attestor("x509pop")
    assert attestor is not None
    assert attestor.data.ca_bundle_files == (tmp_path / "plugins" / "ca.pem",)


def test_missing_plugin_data_file(load_server: LoadServer) -> None:
    error = _error(
        load_server,
        """
        server {
          trust_domain = "example.org"
        }
        plugins {
          NodeAttestor "x509pop" {
            plugin_data_file = "absent.hcl"
          }
        }
        """,
    )

    assert (error.line, error.key) == (6, "plugins.NodeAttestor.x509pop.plugin_data_file")
    assert "cannot read" in error.message


@pytest.mark.parametrize(
    ("plugin_data", "key", "fragment"),
    [
        ('database_type = "mysql"', "database_type", "MySQL is not supported"),
        (
            'database_type "aws_postgres" {\n region = "us-east-1"\n}',
            "database_type",
            "IAM database authentication",
        ),
        ('database_type = "postgres"', "connection_string", "required for postgres"),
        ('database_type = "sqlite3"\nmax_open_conns = 0', "max_open_conns", "1 or more"),
        ('connection_string = "x.db"', "database_type", "missing required key"),
    ],
)
def test_invalid_datastore(
    load_server: LoadServer, plugin_data: str, key: str, fragment: str
) -> None:
    error = _error(
        load_server,
        'server {\n  trust_domain = "example.org"\n}\n'
        f'plugins {{\n  DataStore "sql" {{\n    plugin_data {{\n{plugin_data}\n    }}\n  }}\n}}\n',
    )

    assert error.key == f"plugins.DataStore.sql.plugin_data.{key}"
    assert fragment in error.message


def test_sqlite_path_resolves_against_file(load_server: LoadServer, tmp_path: Path) -> None:
    config = load_server(
        """
        server {
          trust_domain = "example.org"
        }
        plugins {
          DataStore "sql" {
            plugin_data {
              database_type = "sqlite3"
              connection_string = "state/datastore.sqlite3"
            }
          }
        }
        """
    )

    connection = config.plugins.datastore.data.connection_string
    assert connection is not None
    assert connection.get_secret_value() == str(tmp_path / "state" / "datastore.sqlite3")


def test_two_datastores_are_an_error(load_server: LoadServer) -> None:
    error = _error(
        load_server,
        """
        server {
          trust_domain = "example.org"
        }
        plugins {
          KeyManager "disk" {
            plugin_data {}
          }
          KeyManager "memory" {
            plugin_data {}
          }
        }
        """,
    )

    assert (error.line, error.key) == (8, "plugins.KeyManager")
    assert "only one KeyManager" in error.message


def test_same_plugin_twice_is_an_error(load_server: LoadServer) -> None:
    error = _error(
        load_server,
        """
        server {
          trust_domain = "example.org"
        }
        plugins {
          NodeAttestor "join_token" {
            plugin_data {}
          }
          NodeAttestor "join_token" {
            plugin_data {}
          }
        }
        """,
    )

    assert (error.line, error.key) == (8, "plugins.NodeAttestor.join_token")
    assert "declared more than once (lines 5 and 8)" in error.message


def test_x509pop_needs_a_ca(load_server: LoadServer) -> None:
    error = _error(
        load_server,
        """
        server {
          trust_domain = "example.org"
        }
        plugins {
          NodeAttestor "x509pop" {
            plugin_data {
              mode = "external_pki"
            }
          }
        }
        """,
    )

    assert error.key == "plugins.NodeAttestor.x509pop.plugin_data.ca_bundle_path"


def test_x509pop_spiffe_mode_is_rejected(load_server: LoadServer) -> None:
    error = _error(
        load_server,
        """
        server {
          trust_domain = "example.org"
        }
        plugins {
          NodeAttestor "x509pop" {
            plugin_data {
              mode = "spiffe"
            }
          }
        }
        """,
    )

    assert (error.line, error.key) == (7, "plugins.NodeAttestor.x509pop.plugin_data.mode")
    assert 'mode "spiffe" is not implemented' in error.message


def test_aws_iid_warden_keys(load_server: LoadServer, tmp_path: Path) -> None:
    config = load_server(
        """
        server {
          trust_domain = "example.org"
        }
        plugins {
          NodeAttestor "aws_iid" {
            plugin_data {
              allowed_account_ids = ["123456789012"]
              region_certificates_path = "aws-rsa2048.pem"
              ec2_endpoint_url = "http://127.0.0.1:5000/"
              sts_endpoint_url = "http://127.0.0.1:5000"
            }
          }
        }
        """
    )

    attestor = config.plugins.node_attestor("aws_iid")
    assert attestor is not None
    assert isinstance(attestor.data, AwsIidServer)
    assert attestor.data.allowed_account_ids == ("123456789012",)
    assert attestor.data.region_certificates_path == tmp_path / "aws-rsa2048.pem"
    assert attestor.data.ec2_endpoint_url == "http://127.0.0.1:5000"
    assert attestor.data.iam_endpoint_url is None
    assert config.warnings == ()


@pytest.mark.parametrize(
    ("plugin_data", "key", "fragment"),
    [
        ('allowed_account_ids = ["12345"]', "allowed_account_ids", "expected 12 digits"),
        ('access_key_id = "AKIAEXAMPLEKEY77"', "secret_access_key", "together"),
        ('ec2_endpoint_url = "127.0.0.1:5000"', "ec2_endpoint_url", "http:// or https://"),
        ('partition = "aws-eu"', "partition", "aws, aws-cn, aws-us-gov"),
    ],
)
def test_invalid_aws_iid(
    load_server: LoadServer, plugin_data: str, key: str, fragment: str
) -> None:
    error = _error(
        load_server,
        'server {\n  trust_domain = "example.org"\n}\n'
        f'plugins {{\n  NodeAttestor "aws_iid" {{\n    plugin_data {{\n{plugin_data}\n'
        "    }\n  }\n}\n",
    )

    assert error.key == f"plugins.NodeAttestor.aws_iid.plugin_data.{key}"
    assert fragment in error.message
    assert "AKIAEXAMPLEKEY77" not in str(error)


def test_ttl_longer_than_ca_allows_warns(load_server: LoadServer) -> None:
    config = load_server(
        """
        server {
          trust_domain = "example.org"
          ca_ttl = "12h"
          default_x509_svid_ttl = "4h"
        }
        """
    )

    warning = next(w for w in config.warnings if w.key == "server.default_x509_svid_ttl")
    assert warning.line == 4
    assert "set default_x509_svid_ttl to at most 2h or ca_ttl to at least 24h" in warning.message


def test_memory_key_manager_warns(load_server: LoadServer) -> None:
    config = load_server(
        """
        server {
          trust_domain = "example.org"
        }
        plugins {
          KeyManager "memory" {
            plugin_data {}
          }
        }
        """
    )

    assert config.plugins.key_manager.name == "memory"
    warning = next(w for w in config.warnings if w.key.startswith("plugins.KeyManager"))
    assert warning.key == "plugins.KeyManager.memory.plugin_data"
    assert "lost at restart" in warning.message


def test_no_node_attestor_warns(load_server: LoadServer) -> None:
    config = load_server('server {\n  trust_domain = "example.org"\n}\n')

    assert config.plugins.node_attestors == ()
    assert [warning.key for warning in config.warnings] == ["plugins"]


def test_http_api_block(load_server: LoadServer, tmp_path: Path) -> None:
    config = load_server(
        """
        server {
          trust_domain = "example.org"
        }
        http_api {
          bind_address = "0.0.0.0"
          bind_port = 8443
          cert_file = "tls/http.crt"
          key_file = "tls/http.key"
        }
        """
    )

    assert config.http_api is not None
    assert config.http_api.bind_port == 8443
    assert config.http_api.cert_file == tmp_path / "tls" / "http.crt"
    assert config.warnings[-1].key == "plugins"


def test_http_api_absent_by_default(load_server: LoadServer) -> None:
    assert load_server('server {\n  trust_domain = "example.org"\n}\n').http_api is None


def test_http_api_needs_both_tls_files(load_server: LoadServer) -> None:
    error = _error(
        load_server,
        """
        server {
          trust_domain = "example.org"
        }
        http_api {
          cert_file = "tls/http.crt"
        }
        """,
    )

    assert (error.line, error.key) == (4, "http_api.key_file")


def test_plain_http_on_network_warns(load_server: LoadServer) -> None:
    config = load_server(
        """
        server {
          trust_domain = "example.org"
        }
        http_api {
          bind_address = "0.0.0.0"
        }
        """
    )

    assert any(warning.key == "http_api.bind_address" for warning in config.warnings)


def test_prometheus_tls_is_rejected(load_server: LoadServer) -> None:
    error = _error(
        load_server,
        """
        server {
          trust_domain = "example.org"
        }
        telemetry {
          Prometheus {
            port = 9988
            tls {
              cert_file = "metrics.crt"
              key_file = "metrics.key"
            }
          }
        }
        """,
    )

    assert (error.line, error.key) == (7, "telemetry.Prometheus.tls")


def test_agent_file_given_to_server_loader(load_server: LoadServer) -> None:
    error = _error(load_server, 'agent {\n  trust_domain = "example.org"\n}\n')

    assert error.key == "agent"
    assert "warden agent run" in error.message


def test_json_configuration_loads(load_server: LoadServer) -> None:
    config = load_server(
        """
        {
          "server": {
            "trust_domain": "example.org",
            "bind_port": "9081"
          },
          "plugins": {
            "NodeAttestor": [
              {"join_token": {"plugin_data": {}}},
              {"x509pop": {"plugin_data": {"ca_bundle_path": "ca.pem"}}}
            ]
          }
        }
        """
    )

    assert config.server.bind_port == 9081
    assert [plugin.name for plugin in config.plugins.node_attestors] == ["join_token", "x509pop"]


def test_text_loader_for_embedded_configs(tmp_path: Path) -> None:
    config = server_config_from_text(
        'server {\n  trust_domain = "example.org"\n}\n', file="<dev>", base_dir=tmp_path
    )

    assert config.source is None
    assert config.server.data_dir == tmp_path / "data"
    assert config.warnings[0].file == "<dev>"
