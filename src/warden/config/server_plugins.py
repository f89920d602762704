"""Settings of the server's plugins, and the table of plugins the server implements.

Key names and defaults follow SPIRE's plugin documentation (doc/plugin_server_*.md in the
SPIRE repository) and its Go configuration structs. Keys that only Warden has are marked
as such in their comments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import PlainValidator, ValidationInfo, field_validator

from warden.config.plugins import PluginCatalog, PluginData
from warden.config.values import (
    Bool,
    ConfigPath,
    ConfigPathList,
    Duration,
    HttpUrl,
    Int,
    Secret,
    Str,
    StrList,
    go_string,
    one_of,
)

# --- DataStore -----------------------------------------------------------------------------


def _database_type(value: Any) -> str:
    if isinstance(value, dict):
        # SPIRE's `database_type "aws_postgres" { region = "..." }` form.
        names = ", ".join(f'"{name}"' for name in value)
        raise ValueError(
            f"database_type {names} (IAM database authentication) is not implemented by Warden; "
            'use database_type = "postgres" with a connection_string'
        )
    if go_string(value).strip().lower() == "mysql":
        raise ValueError('MySQL is not supported by Warden; use "postgres" or "sqlite3"')
    return one_of("sqlite3", "postgres")(value)


_MYSQL_ONLY = "it applies to MySQL only, which Warden does not support"


class SqlDataStore(PluginData):
    """`DataStore "sql"`: SQLite for one server, PostgreSQL for servers that share a database."""

    spire_ignored: ClassVar[Mapping[str, str]] = {
        "ro_connection_string": "all queries use connection_string",
        "root_ca_path": _MYSQL_ONLY,
        "client_cert_path": _MYSQL_ONLY,
        "client_key_path": _MYSQL_ONLY,
        "log_sql": "",
    }

    database_type: Annotated[str, PlainValidator(_database_type)]
    #: For sqlite3 the database file (relative paths are resolved against the
    #: configuration file's directory); for postgres a libpq connection string or URL.
    #: Unset for sqlite3 means `datastore.sqlite3` in the server's data_dir.
    connection_string: Secret | None = None
    max_open_conns: Int = 100
    max_idle_conns: Int = 100
    #: How long a connection may be reused; None (or 0) means without limit.
    conn_max_lifetime: Duration | None = None
    disable_migration: Bool = False

    @field_validator("connection_string", mode="after")
    @classmethod
    def _resolve_sqlite_path(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or info.data.get("database_type") != "sqlite3":
            return value
        text = value.get_secret_value()
        if text.startswith("file:") or text == ":memory:" or Path(text).is_absolute():
            return value
        base = (info.context or {}).get("base_dir") or Path.cwd()
        return type(value)(str(Path(base) / text))

    def config_problems(self) -> Iterable[tuple[str, str]]:
        if self.database_type == "postgres" and self.connection_string is None:
            yield (
                "connection_string",
                'required for postgres, for example "postgresql://warden@db.internal/warden"',
            )
        if self.max_open_conns < 1:
            yield "max_open_conns", "expected 1 or more"
        if self.max_idle_conns < 0:
            yield "max_idle_conns", "expected 0 or more"


# --- KeyManager ----------------------------------------------------------------------------


class ServerDiskKeyManager(PluginData):
    """`KeyManager "disk"`: CA and JWT signing keys in a file, written with mode 0600."""

    #: Unset means `keys.json` in the server's data_dir.
    keys_path: ConfigPath | None = None


class MemoryKeyManager(PluginData):
    """`KeyManager "memory"`: keys that live only in memory and are lost at restart."""

    def config_warnings(self) -> Iterable[tuple[str, str]]:
        yield (
            "",
            "keys are lost at restart, so every restart starts a new signing key; "
            'use KeyManager "disk" outside development',
        )


# --- NodeAttestor --------------------------------------------------------------------------


class JoinTokenServer(PluginData):
    """`NodeAttestor "join_token"`: single-use tokens made with `warden token generate`."""


def _x509pop_mode(value: Any) -> str:
    if go_string(value).strip().lower() == "spiffe":
        raise ValueError(
            'mode "spiffe" is not implemented by Warden; use mode "external_pki" with '
            "ca_bundle_path"
        )
    return one_of("external_pki")(value)


class X509PopServer(PluginData):
    """`NodeAttestor "x509pop"`: proof of possession of a key certified by a configured CA."""

    spire_ignored: ClassVar[Mapping[str, str]] = {
        "spiffe_prefix": 'it applies to mode "spiffe" only',
        "svid_prefix": 'it applies to mode "spiffe" only',
    }
    spire_rejected: ClassVar[Mapping[str, str]] = {
        "verify_client_ip": (
            "Warden does not check the agent's address against the certificate's IP SANs, "
            "so it cannot honour this restriction; remove the key to attest without it"
        ),
    }

    mode: Annotated[str, PlainValidator(_x509pop_mode)] = "external_pki"
    ca_bundle_path: ConfigPath | None = None
    ca_bundle_paths: ConfigPathList = ()
    #: Go text/template of the agent ID path, after `/spire/agent/`.
    agent_path_template: Str = "{{ .PluginName }}/{{ .Fingerprint }}"
    max_intermediates: Int = 4
    max_rsa_key_size: Int = 8192

    @property
    def ca_bundle_files(self) -> tuple[Path, ...]:
        """All CA bundle files, from ca_bundle_path and ca_bundle_paths."""
        single = (self.ca_bundle_path,) if self.ca_bundle_path is not None else ()
        return single + self.ca_bundle_paths

    def config_problems(self) -> Iterable[tuple[str, str]]:
        if self.ca_bundle_path is None and not self.ca_bundle_paths:
            yield (
                "ca_bundle_path",
                "set ca_bundle_path or ca_bundle_paths to the CA certificates that sign "
                "agent certificates",
            )
        if self.ca_bundle_path is not None and self.ca_bundle_paths:
            yield "ca_bundle_paths", "set only one of ca_bundle_path and ca_bundle_paths"
        if self.max_intermediates < 0:
            yield "max_intermediates", "expected 0 or more"
        if self.max_rsa_key_size < 2048:
            yield "max_rsa_key_size", "expected 2048 or more"


_ACCOUNT_ID = re.compile(r"\d{12}")


class AwsIidServer(PluginData):
    """`NodeAttestor "aws_iid"`: the EC2 instance identity document, signed by AWS."""

    spire_rejected: ClassVar[Mapping[str, str]] = {
        "verify_organization": (
            "Warden does not check AWS Organizations membership, so it cannot honour this "
            "restriction; list the accepted accounts in allowed_account_ids instead"
        ),
        "validate_eks_cluster_membership": (
            "Warden does not check EKS cluster membership, so it cannot honour this "
            "restriction; restrict attestation with allowed_account_ids instead"
        ),
    }

    access_key_id: Secret | None = None
    secret_access_key: Secret | None = None
    skip_block_device: Bool = False
    disable_instance_profile_selectors: Bool = False
    #: Accounts whose instances skip the check that the root volume was never detached.
    account_ids_for_local_validation: StrList = ()
    #: Go text/template of the agent ID path, after `/spire/agent/`.
    agent_path_template: Str = "{{ .PluginName }}/{{ .AccountID }}/{{ .Region }}/{{ .InstanceID }}"
    #: Name of a role to assume in the instance's account for the EC2 and IAM calls.
    assume_role: Str | None = None
    partition: Annotated[str, PlainValidator(one_of("aws", "aws-cn", "aws-us-gov"))] = "aws"
    #: Warden: accounts allowed to attest; empty accepts any account.
    allowed_account_ids: StrList = ()
    #: Warden: PEM file of AWS's per-region RSA-2048 certificates for instance identity
    #: documents; unset means the certificates built into the server.
    region_certificates_path: ConfigPath | None = None
    #: Warden: endpoint URLs of the AWS APIs, for private endpoints and local tests.
    ec2_endpoint_url: HttpUrl | None = None
    iam_endpoint_url: HttpUrl | None = None
    sts_endpoint_url: HttpUrl | None = None

    def config_problems(self) -> Iterable[tuple[str, str]]:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            missing = "secret_access_key" if self.secret_access_key is None else "access_key_id"
            yield missing, "set access_key_id and secret_access_key together, or neither"
        for key in ("account_ids_for_local_validation", "allowed_account_ids"):
            for account in getattr(self, key):
                if not _ACCOUNT_ID.fullmatch(account):
                    yield key, f"invalid AWS account ID {account!r}: expected 12 digits"

    def config_warnings(self) -> Iterable[tuple[str, str]]:
        if self.access_key_id is not None or self.secret_access_key is not None:
            yield (
                "access_key_id",
                "static AWS keys (access_key_id, secret_access_key) in plugin_data are a "
                "long-lived secret; remove both and let the server use its instance profile "
                "or web-identity credentials (AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE)",
            )


# --- UpstreamAuthority ---------------------------------------------------------------------


class DiskUpstreamAuthority(PluginData):
    """`UpstreamAuthority "disk"`: an upstream CA certificate and key read from files."""

    cert_file_path: ConfigPath
    key_file_path: ConfigPath
    bundle_file_path: ConfigPath | None = None


# --- The tables ----------------------------------------------------------------------------

SERVER_DATA_STORES: dict[str, type[PluginData]] = {
    "sql": SqlDataStore,
}
SERVER_KEY_MANAGERS: dict[str, type[PluginData]] = {
    "disk": ServerDiskKeyManager,
    "memory": MemoryKeyManager,
}
SERVER_NODE_ATTESTORS: dict[str, type[PluginData]] = {
    "join_token": JoinTokenServer,
    "x509pop": X509PopServer,
    "aws_iid": AwsIidServer,
}
SERVER_UPSTREAM_AUTHORITIES: dict[str, type[PluginData]] = {
    "disk": DiskUpstreamAuthority,
}

#: SPIRE's server plugins (SPIRE 1.x, doc/plugin_server_*.md), for precise error messages.
SPIRE_SERVER_PLUGINS: dict[str, frozenset[str]] = {
    "BundlePublisher": frozenset(
        {
            "aws_rolesanywhere_trustanchor",
            "aws_s3",
            "azure_blob",
            "gcp_cloudstorage",
            "k8s_configmap",
        }
    ),
    "CredentialComposer": frozenset({"uniqueid"}),
    "DataStore": frozenset({"sql"}),
    "KeyManager": frozenset(
        {"aws_kms", "azure_key_vault", "disk", "gcp_kms", "hashicorp_vault", "memory"}
    ),
    "NodeAttestor": frozenset(
        {
            "aws_iid",
            "azure_imds",
            "azure_msi",
            "gcp_iit",
            "http_challenge",
            "join_token",
            "k8s_psat",
            "k8s_sat",
            "sshpop",
            "tpm_devid",
            "x509pop",
        }
    ),
    "Notifier": frozenset({"gcs_bundle", "k8sbundle"}),
    "UpstreamAuthority": frozenset(
        {"aws_pca", "awssecret", "cert-manager", "disk", "ejbca", "gcp_cas", "spire", "vault"}
    ),
}

SERVER_PLUGINS = PluginCatalog(
    process="server",
    implemented={
        "DataStore": SERVER_DATA_STORES,
        "KeyManager": SERVER_KEY_MANAGERS,
        "NodeAttestor": SERVER_NODE_ATTESTORS,
        "UpstreamAuthority": SERVER_UPSTREAM_AUTHORITIES,
    },
    spire_names=SPIRE_SERVER_PLUGINS,
)
