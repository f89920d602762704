"""`warden agent run -config agent.conf`: load the configuration, run the agent.

`options_from_config` turns a loaded `AgentConfig` into `AgentOptions`. Every plugin is built
there, so a mistake in the file stops the agent before it contacts the server.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import TextIO

from warden import logs
from warden.agent.attestor import PluginConfigError, WorkloadAttestor, build_workload_attestor
from warden.agent.nodeattest import NodeAttestationError, build_node_attestor
from warden.agent.observability import ListenerSettings
from warden.agent.ratelimit import RateLimit
from warden.agent.runtime import Agent, AgentOptions
from warden.config.agent import AgentConfig, load_agent_config
from warden.config.errors import ConfigError
from warden.pki.errors import KeyManagerError
from warden.pki.keys import open_key_manager
from warden.spiffe import Bundle, SpiffeError, TrustDomain

log = logging.getLogger(__name__)


class AgentConfigurationError(Exception):
    """The configuration loads but cannot be put to use; the message names the setting."""


def _bootstrap_bundle(config: AgentConfig, trust_domain: TrustDomain) -> Bundle | None:
    settings = config.agent
    if settings.trust_bundle_path is None:
        return None
    path = Path(settings.trust_bundle_path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise AgentConfigurationError(
            f"trust_bundle_path {path}: cannot read it: {error.strerror}"
        ) from None
    try:
        if settings.trust_bundle_format == "spiffe":
            return Bundle.from_jwks_json(trust_domain, data)
        return Bundle.from_pem(trust_domain, data)
    except SpiffeError as error:
        raise AgentConfigurationError(
            f"trust_bundle_path {path}: not a {settings.trust_bundle_format} bundle: {error}"
        ) from None


def options_from_config(config: AgentConfig, join_token: str | None = None) -> AgentOptions:
    """Build the agent's options and plugins from its configuration.

    `join_token` (the `-joinToken` flag) overrides the configuration's token.
    """
    settings = config.agent
    trust_domain = TrustDomain(str(settings.trust_domain))
    plugins = config.plugins
    try:
        token = join_token or settings.read_join_token()
    except OSError as error:
        raise AgentConfigurationError(f"join_token_file: cannot read it: {error}") from None

    node = plugins.node_attestor
    try:
        node_attestor = build_node_attestor(node.name, node.data.plain_settings(), token)
    except NodeAttestationError as error:
        raise AgentConfigurationError(f'NodeAttestor "{node.name}": {error}') from None

    key_plugin = plugins.key_manager
    key_options = {k: v for k, v in key_plugin.data.plain_settings().items() if v is not None}
    try:
        key_manager = open_key_manager(key_plugin.name, key_options)
    except KeyManagerError as error:
        raise AgentConfigurationError(f'KeyManager "{key_plugin.name}": {error}') from None

    workload_attestors: list[WorkloadAttestor] = []
    for plugin in plugins.workload_attestors:
        settings_map = {k: v for k, v in plugin.data.plain_settings().items() if v is not None}
        try:
            workload_attestors.append(build_workload_attestor(plugin.name, settings_map))
        except (PluginConfigError, ValueError) as error:
            raise AgentConfigurationError(str(error)) from None

    return AgentOptions(
        trust_domain=trust_domain,
        server_host=str(settings.server_address),
        server_port=int(settings.server_port),
        socket_path=Path(settings.socket_path),
        data_dir=Path(settings.data_dir),
        node_attestor=node_attestor,
        key_manager=key_manager,
        workload_attestors=workload_attestors,
        bootstrap_bundle=_bootstrap_bundle(config, trust_domain),
        insecure_bootstrap=bool(settings.insecure_bootstrap),
        rate_limit=RateLimit(
            requests_per_second=float(settings.workload_api_rate_limit),
            burst=int(settings.workload_api_rate_burst),
        ),
        max_svids=int(settings.x509_svid_cache_max_size),
        usage_interval=settings.usage_report_interval.total_seconds(),
        health_listener=(
            ListenerSettings(config.health_checks.bind_address, config.health_checks.bind_port)
            if config.health_checks.listener_enabled
            else None
        ),
        live_path=config.health_checks.live_path,
        ready_path=config.health_checks.ready_path,
        prometheus_listener=(
            ListenerSettings(config.telemetry.prometheus.host, config.telemetry.prometheus.port)
            if config.telemetry.prometheus is not None
            else None
        ),
    )


async def _serve(agent: Agent) -> int:
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, agent.stop, f"received {signal.Signals(number).name}")
    return await agent.run()


def run_agent(config_path: str, expand_env: bool = False, join_token: str | None = None) -> int:
    """Run the agent of `config_path` until SIGINT or SIGTERM; return the exit code."""
    try:
        config = load_agent_config(config_path, expand_env=expand_env)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    stream: TextIO | None = None
    if config.agent.log_file is not None:
        stream = open(config.agent.log_file, "a", buffering=1)  # noqa: SIM115 - closed below
    try:
        logs.configure(config.agent.log_level, config.agent.log_format, stream)
        config.log_warnings()
        try:
            options = options_from_config(config, join_token)
        except AgentConfigurationError as error:
            print(f"error: {config_path}: {error}", file=sys.stderr)
            return 1
        agent = Agent(options)
        code = asyncio.run(_serve(agent))
        if agent.stop_reason and code != 0:
            print(f"error: {agent.stop_reason}", file=sys.stderr)
        return code
    finally:
        if stream is not None:
            stream.close()
