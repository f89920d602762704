"""Workload attestors: plugins that turn a calling process into selectors.

Each attestor is a class behind the `WorkloadAttestor` protocol, registered by name in
`WORKLOAD_ATTESTORS`, so adding one touches one new module and one line of that table.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from warden.agent.attestor.base import (
    AttestationError,
    PluginConfigError,
    WorkloadAttestor,
)
from warden.agent.attestor.docker import DockerAttestor
from warden.agent.attestor.k8s import K8sAttestor
from warden.agent.attestor.unix import UnixAttestor
from warden.agent.caller import Caller
from warden.spiffe import Selector

log = logging.getLogger(__name__)

#: Workload attestor factories by plugin name; each takes the plugin's `plugin_data`.
WORKLOAD_ATTESTORS: dict[str, Callable[[Mapping[str, Any]], WorkloadAttestor]] = {
    "unix": UnixAttestor.from_plugin_data,
    "docker": DockerAttestor.from_plugin_data,
    "k8s": K8sAttestor.from_plugin_data,
}


def build_workload_attestor(name: str, plugin_data: Mapping[str, Any]) -> WorkloadAttestor:
    """Create the attestor registered as `name` from its `plugin_data`."""
    factory = WORKLOAD_ATTESTORS.get(name)
    if factory is None:
        supported = ", ".join(sorted(WORKLOAD_ATTESTORS))
        raise PluginConfigError(
            f'WorkloadAttestor "{name}" is not supported; use one of: {supported}'
        )
    return factory(plugin_data)


class CompositeAttestor:
    """Runs every configured attestor on a caller and joins their selectors.

    Attestors run concurrently. If any of them fails, the whole attestation fails, because a
    partial set of selectors could match a less specific entry than the operator meant.
    """

    def __init__(self, attestors: Sequence[WorkloadAttestor]) -> None:
        if not attestors:
            raise PluginConfigError(
                'no WorkloadAttestor configured; add at least WorkloadAttestor "unix"'
            )
        self.attestors = tuple(attestors)
        self.needs_executable = any(attestor.needs_executable for attestor in attestors)

    async def attest(self, caller: Caller) -> frozenset[Selector]:
        results = await asyncio.gather(
            *(attestor.attest(caller) for attestor in self.attestors), return_exceptions=True
        )
        selectors: set[Selector] = set()
        for attestor, result in zip(self.attestors, results, strict=True):
            if isinstance(result, AttestationError):
                raise result
            if isinstance(result, BaseException):
                raise AttestationError(
                    f"{attestor.name} attestor failed unexpectedly: {result!r}"
                ) from result
            selectors.update(result)
        return frozenset(selectors)

    async def close(self) -> None:
        for attestor in self.attestors:
            try:
                await attestor.close()
            except Exception as error:  # a failing close must not stop the others
                log.warning(
                    "closing a workload attestor failed",
                    extra={"error": str(error), "attestor": attestor.name},
                )


__all__ = [
    "WORKLOAD_ATTESTORS",
    "AttestationError",
    "CompositeAttestor",
    "DockerAttestor",
    "K8sAttestor",
    "PluginConfigError",
    "UnixAttestor",
    "WorkloadAttestor",
    "build_workload_attestor",
]
