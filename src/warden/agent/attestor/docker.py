"""The `docker` workload attestor: labels, environment and image of the caller's container.

The container id comes from `/proc/<pid>/cgroup`; the Docker Engine API's container inspect
call (`GET /containers/<id>/json` on the daemon's Unix socket) returns the rest. Selectors, in
SPIRE's forms: `docker:label:<key>:<value>`, `docker:env:<VAR>=<value>`,
`docker:image_id:<image as configured, e.g. nginx:1.27>` and
`docker:image_config_digest:sha256:<hex>`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx
import pydantic

from warden.agent.attestor.base import (
    AttestationError,
    PluginConfig,
    parse_plugin_data,
    valid_selectors,
)
from warden.agent.attestor.cgroups import (
    ConflictingCgroupsError,
    compile_matchers,
    locate,
    locate_with_matchers,
)
from warden.agent.caller import Caller
from warden.agent.proc import DEFAULT_PROC_ROOT, ProcessGoneError, ProcFS
from warden.spiffe import Selector

log = logging.getLogger(__name__)

NAME = "docker"
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
REQUEST_TIMEOUT_SECONDS = 5.0


class DockerConfig(PluginConfig):
    """`plugin_data` of `WorkloadAttestor "docker"`."""

    #: The Docker daemon's Unix socket, as `unix:///path` or a bare path.
    docker_socket_path: str = DEFAULT_SOCKET
    #: API version to request, such as "1.41"; empty uses the daemon's current version.
    docker_version: str = ""
    #: Patterns that locate the container id in a cgroup path (see `CgroupMatcher`); empty
    #: uses the built-in locator for docker, containerd, cri-o and podman layouts.
    container_id_cgroup_matchers: list[str] = pydantic.Field(default_factory=list)
    #: Accepted for SPIRE compatibility; Warden's locator always handles cgroup v1 and v2.
    use_new_container_locator: bool = True
    verbose_container_locator_logs: bool = False
    #: The procfs tree to read (Warden addition, for tests and containers).
    proc_root: str = str(DEFAULT_PROC_ROOT)

    @pydantic.field_validator("container_id_cgroup_matchers")
    @classmethod
    def _valid_matchers(cls, patterns: list[str]) -> list[str]:
        compile_matchers(patterns)
        return patterns


def _socket_path(value: str) -> str:
    if value.startswith("unix://"):
        return value[len("unix://") :]
    if value.startswith("/"):
        return value
    raise ValueError(f"invalid docker_socket_path {value!r}: use unix:///path/to/docker.sock")


class DockerAttestor:
    """Selectors from the Docker Engine API's description of the caller's container."""

    name = NAME
    needs_executable = False

    def __init__(self, config: DockerConfig | None = None) -> None:
        self.config = config or DockerConfig()
        self._proc = ProcFS(self.config.proc_root)
        self._matchers = compile_matchers(self.config.container_id_cgroup_matchers)
        self._socket_path = _socket_path(self.config.docker_socket_path)
        self._prefix = f"/v{self.config.docker_version}" if self.config.docker_version else ""
        self._client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=self._socket_path),
            # The host name is not used on a Unix socket, but HTTP/1.1 requires one.
            base_url="http://docker",
            timeout=REQUEST_TIMEOUT_SECONDS,
        )

    @classmethod
    def from_plugin_data(cls, plugin_data: Mapping[str, Any]) -> DockerAttestor:
        return cls(parse_plugin_data(NAME, DockerConfig, plugin_data))

    async def attest(self, caller: Caller) -> list[Selector]:
        try:
            cgroup = self._proc.cgroup(caller.pid)
        except ProcessGoneError as error:
            raise AttestationError(f"docker attestor: {error}") from None
        try:
            location = (
                locate_with_matchers(cgroup, self._matchers) if self._matchers else locate(cgroup)
            )
        except ConflictingCgroupsError as error:
            raise AttestationError(f"docker attestor: pid {caller.pid}: {error}") from None
        if self.config.verbose_container_locator_logs:
            log.info(
                "container lookup",
                extra={
                    "caller": caller.pid,
                    "path": cgroup.strip(),
                    "container_id": location.container_id,
                },
            )
        if location.container_id is None:
            return []

        container = await self._inspect(location.container_id)
        if container is None:
            return []
        return selectors_from_inspect(container)

    async def _inspect(self, container_id: str) -> dict[str, Any] | None:
        url = f"{self._prefix}/containers/{container_id}/json"
        try:
            response = await self._client.get(url)
        except httpx.HTTPError as error:
            raise AttestationError(
                f"docker attestor: cannot reach the Docker daemon at {self._socket_path}: "
                f"{error}; check docker_socket_path and that the agent may open the socket"
            ) from None
        if response.status_code == 404:
            # The cgroup named a container that Docker does not know (another runtime's, or
            # one that has just been removed): no docker selectors apply to this caller.
            log.debug("container not known to docker", extra={"identity": container_id})
            return None
        if response.status_code != 200:
            raise AttestationError(
                f"docker attestor: inspecting container {container_id[:12]} failed with HTTP "
                f"{response.status_code}: {_error_message(response)}"
            )
        try:
            document = response.json()
        except ValueError:
            raise AttestationError(
                f"docker attestor: the daemon returned invalid JSON for container "
                f"{container_id[:12]}"
            ) from None
        if not isinstance(document, dict):
            raise AttestationError(
                f"docker attestor: unexpected inspect response for container {container_id[:12]}"
            )
        return document

    async def close(self) -> None:
        await self._client.aclose()


def selectors_from_inspect(container: Mapping[str, Any]) -> list[Selector]:
    """Turn a Docker Engine API container inspect document into `docker:` selectors."""
    config = container.get("Config") or {}
    values = [f"label:{key}:{value}" for key, value in sorted((config.get("Labels") or {}).items())]
    values.extend(f"env:{variable}" for variable in config.get("Env") or [])
    image = config.get("Image")
    if image:
        values.append(f"image_id:{image}")
    digest = container.get("Image")
    if isinstance(digest, str) and digest.startswith("sha256:"):
        values.append(f"image_config_digest:{digest}")
    return valid_selectors(NAME, values)


def _error_message(response: httpx.Response) -> str:
    try:
        document = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(document, dict) and isinstance(document.get("message"), str):
        return str(document["message"])
    return response.text[:200]
