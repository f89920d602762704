"""The operator's reference documents every key and plugin that the loaders accept."""

from __future__ import annotations

from pathlib import Path

import pytest

from warden.config import (
    AGENT_PLUGINS,
    SERVER_PLUGINS,
    agent_config_from_text,
    server_config_from_text,
)
from warden.config.agent import AgentConfig, AgentSettings
from warden.config.common import HealthChecks, Prometheus, Telemetry
from warden.config.credentials import (
    Database,
    DatabaseConnection,
    DatabaseRole,
    ExchangeAllow,
    TokenExchange,
)
from warden.config.decode import Section, hcl_keys
from warden.config.server import CASubject, HttpApi, RateLimit, ServerConfig, ServerSettings

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"

SECTIONS: list[type[Section]] = [
    ServerConfig,
    ServerSettings,
    CASubject,
    RateLimit,
    HttpApi,
    HealthChecks,
    Telemetry,
    Prometheus,
    AgentConfig,
    AgentSettings,
    TokenExchange,
    ExchangeAllow,
    Database,
    DatabaseConnection,
    DatabaseRole,
    *(model for kinds in SERVER_PLUGINS.implemented.values() for model in kinds.values()),
    *(model for kinds in AGENT_PLUGINS.implemented.values() for model in kinds.values()),
]


@pytest.fixture(scope="module")
def reference() -> str:
    return REFERENCE.read_text(encoding="utf-8")


@pytest.mark.parametrize("section", SECTIONS, ids=lambda section: section.__name__)
def test_every_key_is_documented(reference: str, section: type[Section]) -> None:
    keys = [*hcl_keys(section), *section.spire_ignored, *section.spire_rejected]

    missing = [key for key in keys if f"`{key}" not in reference]

    assert missing == []


@pytest.mark.parametrize("catalog", [SERVER_PLUGINS, AGENT_PLUGINS], ids=lambda c: c.process)
def test_every_plugin_is_documented(reference: str, catalog: object) -> None:
    implemented = catalog.implemented
    spire_names = catalog.spire_names
    names = [f'{kind} "{name}"' for kind, plugins in implemented.items() for name in plugins]
    # SPIRE plugins of a kind that Warden implements are named one by one; kinds that
    # Warden lacks entirely are named as kinds.
    unsupported = [
        name
        for kind, plugins in spire_names.items()
        if kind in implemented
        for name in plugins
        if name not in implemented[kind]
    ]
    missing_kinds = [kind for kind in spire_names if kind not in implemented]

    assert [name for name in names if name not in reference] == []
    assert [name for name in unsupported if f"`{name}`" not in reference] == []
    assert [kind for kind in missing_kinds if f"`{kind}`" not in reference] == []


def _examples(reference: str) -> list[str]:
    return [block.split("```", 1)[0] for block in reference.split("```hcl\n")[1:]]


def test_documented_examples_load(
    reference: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    examples = _examples(reference)
    server_example = next(e for e in examples if e.lstrip().startswith("server {"))
    agent_example = next(e for e in examples if e.lstrip().startswith("agent {"))
    monkeypatch.setenv("JOIN_TOKEN", "documented-example-token")

    server = server_config_from_text(server_example, file="server example", base_dir=tmp_path)
    agent = agent_config_from_text(
        agent_example, file="agent example", base_dir=tmp_path, expand_env=True
    )

    assert server.plugins.datastore.data.connection_string is not None
    assert server.plugins.datastore.data.connection_string.get_secret_value() == (
        "/var/lib/warden/server/datastore.sqlite3"
    )
    assert server.warnings == ()
    assert agent.agent.read_join_token() == "documented-example-token"
    assert agent.warnings == ()
