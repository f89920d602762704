"""Configuration loading: SPIRE's HCL layout into typed, frozen settings.

    config = load_server_config("server.conf", expand_env=False)   # or load_agent_config
    warden.logs.configure(config.server.log_level, config.server.log_format)
    config.log_warnings()

Errors carry the file, line and key, as in `server.conf:7: server.bind_prot: unknown key;
did you mean bind_port?`. Warnings are kept on the loaded configuration, so they can be
logged once logging is set up from that same configuration.
"""

from warden.config.agent import (
    AgentConfig,
    AgentPlugins,
    AgentSettings,
    agent_config_from_text,
    load_agent_config,
)
from warden.config.agent_plugins import AGENT_PLUGINS
from warden.config.duration import DurationError, format_duration, parse_duration
from warden.config.errors import ConfigError, Diagnostic
from warden.config.plugins import PluginCatalog, PluginConfig, PluginData, register_plugin
from warden.config.server import (
    HttpApi,
    ServerConfig,
    ServerPlugins,
    ServerSettings,
    load_server_config,
    server_config_from_text,
)
from warden.config.server_plugins import SERVER_PLUGINS

__all__ = [
    "AGENT_PLUGINS",
    "SERVER_PLUGINS",
    "AgentConfig",
    "AgentPlugins",
    "AgentSettings",
    "ConfigError",
    "Diagnostic",
    "DurationError",
    "HttpApi",
    "PluginCatalog",
    "PluginConfig",
    "PluginData",
    "ServerConfig",
    "ServerPlugins",
    "ServerSettings",
    "agent_config_from_text",
    "format_duration",
    "load_agent_config",
    "load_server_config",
    "parse_duration",
    "register_plugin",
    "server_config_from_text",
]
