"""`warden server run`: load the configuration, run the server until a signal arrives."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from warden import logs
from warden.server.options import ServerOptions, UpstreamDisk

log = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    """Convert a plugin_data value to what the attestors take: secrets revealed, paths as strings."""
    from pydantic import SecretStr

    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if value is not None and not isinstance(value, str | int | float | bool):
        return str(value)
    return value


def plugin_data_dict(data: Any) -> dict[str, Any]:
    return {key: _plain(getattr(data, key)) for key in type(data).model_fields}


def options_from_config(config: Any) -> ServerOptions:
    """Translate a loaded `ServerConfig` into the options the server process runs with."""
    server = config.server
    plugins = config.plugins
    datastore_data = plugins.datastore.data
    connection = datastore_data.connection_string
    connection_text = connection.get_secret_value() if connection is not None else ""
    datastore = ""
    if datastore_data.database_type == "postgres" or connection_text:
        datastore = connection_text
    key_manager = plugins.key_manager.name
    keys_path = getattr(plugins.key_manager.data, "keys_path", None)
    upstream = None
    if plugins.upstream_authority is not None:
        data = plugins.upstream_authority.data
        upstream = UpstreamDisk(
            cert_file_path=Path(data.cert_file_path),
            key_file_path=Path(data.key_file_path),
            bundle_file_path=Path(data.bundle_file_path) if data.bundle_file_path else None,
        )
    subject = server.ca_subject
    ca_subject = {
        "country": ",".join(subject.country),
        "organization": ",".join(subject.organization),
        "common_name": subject.common_name,
    }
    prometheus = config.telemetry.prometheus
    from warden.server.httpapi import credential_options

    return ServerOptions(
        trust_domain=server.trust_domain,
        data_dir=Path(server.data_dir),
        bind_address=server.bind_address,
        bind_port=server.bind_port,
        socket_path=Path(server.socket_path),
        log_level=server.log_level,
        log_format=server.log_format,
        log_file=Path(server.log_file) if server.log_file else None,
        ca_ttl=server.ca_ttl,
        default_x509_svid_ttl=server.default_x509_svid_ttl,
        default_jwt_svid_ttl=server.default_jwt_svid_ttl,
        agent_ttl=server.agent_ttl,
        ca_key_type=server.ca_key_type,
        jwt_key_type=server.effective_jwt_key_type,
        federation_key_type=server.federation_key_type,
        ca_subject=ca_subject,
        jwt_issuer=server.jwt_issuer or "",
        admin_ids=tuple(server.admin_ids),
        datastore=datastore,
        datastore_type=datastore_data.database_type,
        datastore_migrate=not datastore_data.disable_migration,
        key_manager=key_manager,
        keys_path=Path(keys_path) if keys_path else None,
        upstream=upstream,
        node_attestors={p.name: plugin_data_dict(p.data) for p in plugins.node_attestors},
        health_checks_enabled=config.health_checks.listener_enabled,
        health_bind_address=config.health_checks.bind_address,
        health_bind_port=config.health_checks.bind_port,
        live_path=config.health_checks.live_path,
        ready_path=config.health_checks.ready_path,
        prometheus_host=prometheus.host if prometheus is not None else None,
        prometheus_port=prometheus.port if prometheus is not None else None,
        signing_workers=server.signing_workers,
        disable_jwt_svids=server.disable_jwt_svids,
        log_api_calls=server.audit_log_enabled,
        ratelimit_attestation=server.ratelimit.attestation,
        ratelimit_signing=server.ratelimit.signing,
        **credential_options(config),
    )


def load_options(config_path: str, expand_env: bool = False) -> tuple[ServerOptions, Any]:
    from warden.config import load_server_config

    config = load_server_config(config_path, expand_env=expand_env)
    return options_from_config(config), config


def run_server(config_path: str, expand_env: bool = False) -> int:
    """Run the server from a configuration file; return the process exit status."""
    from warden.config import ConfigError

    try:
        options, config = load_options(config_path, expand_env)
    except ConfigError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"Error: cannot read configuration {config_path}: {error.strerror}", file=sys.stderr)
        return 1
    stream = None
    if options.log_file is not None:
        stream = open(options.log_file, "a", buffering=1)  # noqa: SIM115 - open for the process's life
    logs.configure(options.log_level, options.log_format, stream)
    config.log_warnings()
    try:
        return asyncio.run(serve(options))
    except KeyboardInterrupt:
        return 0


async def serve(options: ServerOptions) -> int:
    """Start a server and run it until SIGINT or SIGTERM."""
    from warden.server.app import WardenServer

    server = WardenServer(options)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await server.start()
    except Exception as error:
        log.error("server failed to start", extra={"error": str(error)})
        print(f"Error: the server failed to start: {error}", file=sys.stderr)
        await server.stop()
        return 1
    await stop.wait()
    await server.stop()
    return 0


def verify_audit_log_offline(config_path: str) -> tuple[bool, int, str, int]:
    """Verify the audit log straight from the datastore named by a configuration file."""
    from warden.store import Datastore

    options, _ = load_options(config_path)
    from warden.server.checkpoints import verify_checkpoints

    datastore = Datastore.open(options.datastore_url, migrate=False)
    try:
        result = datastore.verify_audit_log()
        ok, problem = result.ok, result.problem or ""
        if ok:
            # This server's keyed checkpoints catch a rewrite that recomputed every hash.
            checked = verify_checkpoints(options.data_dir, datastore)
            ok, problem = checked.ok, checked.problem
    finally:
        datastore.close()
    return ok, result.length, problem, result.first_bad_seq or 0
