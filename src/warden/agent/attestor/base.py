"""The workload attestor interface and the errors attestors raise."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, TypeVar

import pydantic

from warden.agent.caller import Caller
from warden.spiffe import InvalidSelectorError, Selector

log = logging.getLogger(__name__)


class AttestationError(Exception):
    """An attestor could not observe the caller; the Workload API answers `Unavailable`."""


class PluginConfigError(ValueError):
    """A workload attestor's `plugin_data` is invalid."""


class WorkloadAttestor(Protocol):
    """Observes properties of a calling process and returns them as selectors.

    `attest` returns an empty list when the attestor's platform does not apply (a docker
    attestor called by a process outside any container) and raises `AttestationError` when
    it applies but cannot observe the process.
    """

    #: The plugin name, also the type of every selector it returns.
    name: str

    #: True when `attest` reads the caller's executable, which the agent then opens as soon
    #: as it accepts the connection.
    needs_executable: bool

    async def attest(self, caller: Caller) -> list[Selector]: ...

    async def close(self) -> None: ...


ConfigModel = TypeVar("ConfigModel", bound=pydantic.BaseModel)


def parse_plugin_data(
    plugin: str, model: type[ConfigModel], plugin_data: Mapping[str, Any]
) -> ConfigModel:
    """Validate `plugin_data` into `model`, turning pydantic's errors into one clear message."""
    try:
        return model.model_validate(dict(plugin_data))
    except pydantic.ValidationError as error:
        problems = []
        for item in error.errors():
            key = ".".join(str(part) for part in item["loc"]) or "plugin_data"
            if item["type"] == "extra_forbidden":
                known = ", ".join(sorted(model.model_fields))
                problems.append(f"unknown key {key!r} (known keys: {known})")
            else:
                problems.append(f"{key}: {item['msg']} (got {item.get('input')!r})")
        raise PluginConfigError(
            f'WorkloadAttestor "{plugin}": invalid plugin_data: ' + "; ".join(problems)
        ) from None


class PluginConfig(pydantic.BaseModel):
    """Base of the attestors' `plugin_data` models: unknown keys are errors."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


def valid_selectors(selector_type: str, values: Iterable[str]) -> list[Selector]:
    """Build selectors of one type, skipping values that no entry could require.

    Container labels and environment values may hold control characters or be longer than
    a selector allows; such a value is left out (and counted in a debug log) rather than
    failing the whole attestation.
    """
    selectors = []
    skipped = 0
    for value in values:
        try:
            selectors.append(Selector(selector_type, value))
        except InvalidSelectorError:
            skipped += 1
    if skipped:
        log.debug(
            "skipped values that are not valid selectors",
            extra={"selectors": f"{selector_type}: {skipped} skipped"},
        )
    return selectors
