"""The `k8s` workload attestor: pod and container of the caller, from the kubelet.

The pod UID and container id come from `/proc/<pid>/cgroup`; the kubelet's pod list
(`GET /pods`, a `v1.PodList`) describes the pod. Selectors, in SPIRE's forms:
`k8s:ns`, `k8s:sa`, `k8s:node-name`, `k8s:pod-uid`, `k8s:pod-name`,
`k8s:pod-label:<key>:<value>`, `k8s:pod-owner:<kind>:<name>`,
`k8s:pod-owner-uid:<kind>:<uid>`, `k8s:container-name`, `k8s:container-image` (once with the
image as the pod spec names it, once with the status's `imageID`, which carries the digest),
`k8s:pod-image`, `k8s:pod-init-image`, `k8s:pod-image-count` and `k8s:pod-init-image-count`.

The kubelet is reached on its read-only port over HTTP or on its secure port over HTTPS with a
bearer token or a client certificate. Its host is the node name when one is configured, else
127.0.0.1 (which needs host networking).

NOTE: static pods appear in the cgroup under their config hash, not the mirror pod's UID the
kubelet lists, so they are not found; SPIRE has the same limit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import ssl
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pydantic

from warden.agent.attestor.base import (
    AttestationError,
    PluginConfig,
    PluginConfigError,
    parse_plugin_data,
    valid_selectors,
)
from warden.agent.attestor.cgroups import ConflictingCgroupsError, ContainerLocation, locate
from warden.agent.caller import Caller
from warden.agent.proc import DEFAULT_PROC_ROOT, ProcessGoneError, ProcFS
from warden.spiffe import Selector

log = logging.getLogger(__name__)

NAME = "k8s"
DEFAULT_SECURE_PORT = 10250
DEFAULT_CA_PATH = "/run/secrets/kubernetes.io/serviceaccount/ca.crt"
DEFAULT_TOKEN_PATH = "/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105 - a path
REQUEST_TIMEOUT_SECONDS = 5.0
# A pod list is reused for this long, so that many workloads starting together cost one
# kubelet request. A lookup that misses always fetches a fresh list.
POD_LIST_REUSE_SECONDS = 1.0

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: str | int | float) -> float:
    """Parse a Go-style duration such as "500ms", "1m30s" or a number of seconds."""
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    if not text or _DURATION_RE.sub("", text):
        raise ValueError(f"invalid duration {value!r}: use a form such as 500ms, 2s or 1m")
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_RE.findall(text))


class K8sConfig(PluginConfig):
    """`plugin_data` of `WorkloadAttestor "k8s"`, with SPIRE's keys."""

    kubelet_read_only_port: int | None = None
    kubelet_secure_port: int | None = None
    kubelet_ca_path: str = DEFAULT_CA_PATH
    skip_kubelet_verification: bool = False
    token_path: str = DEFAULT_TOKEN_PATH
    certificate_path: str | None = None
    private_key_path: str | None = None
    use_anonymous_authentication: bool = False
    node_name_env: str = "MY_NODE_NAME"
    node_name: str | None = None
    #: How many times to look for a container that the kubelet does not list yet.
    max_poll_attempts: int = pydantic.Field(default=60, ge=1)
    #: Wait between those attempts, such as "500ms".
    poll_retry_interval: float = 0.5
    #: Leave out the container-level selectors (container-name, container-image).
    disable_container_selectors: bool = False
    #: The procfs tree to read (Warden addition, for tests and containers).
    proc_root: str = str(DEFAULT_PROC_ROOT)

    @pydantic.field_validator("poll_retry_interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @pydantic.model_validator(mode="after")
    def _one_port(self) -> K8sConfig:
        if self.kubelet_read_only_port is not None and self.kubelet_secure_port is not None:
            raise ValueError(
                "kubelet_read_only_port and kubelet_secure_port are mutually exclusive; set one"
            )
        if (self.certificate_path is None) != (self.private_key_path is None):
            raise ValueError("certificate_path and private_key_path must be set together")
        return self


class K8sAttestor:
    """Selectors from the kubelet's description of the caller's pod and container."""

    name = NAME
    needs_executable = False

    def __init__(self, config: K8sConfig | None = None) -> None:
        self.config = config or K8sConfig()
        self._proc = ProcFS(self.config.proc_root)
        self._client = self._build_client()
        self._pods: list[dict[str, Any]] = []
        self._pods_fetched_at = float("-inf")
        #: Counts the pod lists fetched, so that pollers can share a list newer than theirs.
        self._pods_generation = 0
        self._fetch_lock = asyncio.Lock()

    @classmethod
    def from_plugin_data(cls, plugin_data: Mapping[str, Any]) -> K8sAttestor:
        return cls(parse_plugin_data(NAME, K8sConfig, plugin_data))

    def _host(self) -> str:
        return self.config.node_name or os.environ.get(self.config.node_name_env) or "127.0.0.1"

    def _build_client(self) -> httpx.AsyncClient:
        host = self._host()
        if self.config.kubelet_read_only_port is not None:
            return httpx.AsyncClient(
                base_url=f"http://{host}:{self.config.kubelet_read_only_port}",
                timeout=REQUEST_TIMEOUT_SECONDS,
            )
        port = self.config.kubelet_secure_port or DEFAULT_SECURE_PORT
        try:
            if self.config.skip_kubelet_verification:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            else:
                context = ssl.create_default_context(cafile=self.config.kubelet_ca_path)
            if self.config.certificate_path and self.config.private_key_path:
                context.load_cert_chain(self.config.certificate_path, self.config.private_key_path)
        except (OSError, ssl.SSLError) as error:
            raise PluginConfigError(
                f'WorkloadAttestor "k8s": cannot load the kubelet TLS files '
                f"(kubelet_ca_path {self.config.kubelet_ca_path}, certificate_path, "
                f"private_key_path): {error}; is the agent running in Kubernetes?"
            ) from None
        return httpx.AsyncClient(
            base_url=f"https://{host}:{port}", verify=context, timeout=REQUEST_TIMEOUT_SECONDS
        )

    def _headers(self) -> dict[str, str]:
        if (
            self.config.kubelet_read_only_port is not None
            or self.config.certificate_path
            or self.config.use_anonymous_authentication
        ):
            return {}
        # Read the token on every request: projected service account tokens are rotated
        # on disk by the kubelet.
        try:
            token = Path(self.config.token_path).read_text().strip()
        except OSError as error:
            raise AttestationError(
                f"k8s attestor: cannot read the kubelet token {self.config.token_path}: "
                f"{error.strerror}; set token_path or certificate_path"
            ) from None
        return {"Authorization": f"Bearer {token}"}

    async def attest(self, caller: Caller) -> list[Selector]:
        try:
            cgroup = self._proc.cgroup(caller.pid)
        except ProcessGoneError as error:
            raise AttestationError(f"k8s attestor: {error}") from None
        try:
            location = locate(cgroup)
        except ConflictingCgroupsError as error:
            raise AttestationError(f"k8s attestor: pid {caller.pid}: {error}") from None
        if location.pod_uid is None and location.container_id is None:
            return []

        seen: int | None = None
        for attempt in range(1, self.config.max_poll_attempts + 1):
            pods, seen = await self._pod_list(newer_than=seen)
            found = find_workload(pods, location)
            if found is not None:
                pod, status = found
                return selectors_for(
                    pod, None if self.config.disable_container_selectors else status
                )
            if attempt < self.config.max_poll_attempts:
                log.debug(
                    "workload not in the kubelet's pod list yet; retrying",
                    extra={"attempt": attempt, "delay_seconds": self.config.poll_retry_interval},
                )
                await asyncio.sleep(self.config.poll_retry_interval)
        raise AttestationError(
            f"k8s attestor: no pod with uid {location.pod_uid} and container "
            f"{(location.container_id or '?')[:12]} in the kubelet's pod list after "
            f"{self.config.max_poll_attempts} attempts"
        )

    async def _pod_list(self, *, newer_than: int | None) -> tuple[list[dict[str, Any]], int]:
        """Return a pod list and its generation.

        With `newer_than` None, a list up to `POD_LIST_REUSE_SECONDS` old will do. A poller
        that did not find its pod passes the generation it searched and gets a later list.
        The list another poller fetched meanwhile counts, so that many pollers cost one
        kubelet request per round rather than one each.
        """
        async with self._fetch_lock:
            if newer_than is None:
                reusable = time.monotonic() - self._pods_fetched_at < POD_LIST_REUSE_SECONDS
            else:
                reusable = self._pods_generation > newer_than
            if not reusable:
                self._pods = await self._fetch_pods()
                self._pods_fetched_at = time.monotonic()
                self._pods_generation += 1
            return self._pods, self._pods_generation

    async def _fetch_pods(self) -> list[dict[str, Any]]:
        try:
            response = await self._client.get(
                "/pods", headers=self._headers(), extensions=self._extensions()
            )
        except httpx.HTTPError as error:
            raise AttestationError(
                f"k8s attestor: cannot reach the kubelet at {self._client.base_url}: {error}"
            ) from None
        if response.status_code != 200:
            raise AttestationError(
                f"k8s attestor: the kubelet returned HTTP {response.status_code} for /pods: "
                f"{response.text[:200]}"
            )
        try:
            document = response.json()
        except ValueError:
            raise AttestationError("k8s attestor: the kubelet returned invalid JSON") from None
        items = document.get("items") if isinstance(document, dict) else None
        if not isinstance(items, list):
            raise AttestationError("k8s attestor: the kubelet's /pods response has no items")
        return [item for item in items if isinstance(item, dict)]

    def _extensions(self) -> dict[str, str]:
        # Without a node name the kubelet is reached at 127.0.0.1, and its serving certificate
        # names the host, so verify it against the host name as SPIRE does.
        if self.config.kubelet_read_only_port is None and self._host() == "127.0.0.1":
            return {"sni_hostname": socket.gethostname()}
        return {}

    async def close(self) -> None:
        await self._client.aclose()


def _container_statuses(pod: Mapping[str, Any]) -> Iterable[Mapping[str, Any]]:
    status = pod.get("status") or {}
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for item in status.get(key) or []:
            if isinstance(item, dict):
                yield item


def _runtime_container_id(status: Mapping[str, Any]) -> str | None:
    """Return the id part of a status's `containerID`, such as `containerd://<id>`."""
    value = status.get("containerID")
    if not isinstance(value, str) or "://" not in value:
        return None
    return value.split("://", 1)[1]


def find_workload(
    pods: list[dict[str, Any]], location: ContainerLocation
) -> tuple[dict[str, Any], Mapping[str, Any] | None] | None:
    """Find the caller's pod, and its container's status when the cgroup names a container."""
    for pod in pods:
        uid = (pod.get("metadata") or {}).get("uid")
        if location.pod_uid is not None and uid != location.pod_uid:
            continue
        if location.container_id is None:
            return pod, None
        for status in _container_statuses(pod):
            if _runtime_container_id(status) == location.container_id:
                return pod, status
    return None


def _image_identifiers(status: Mapping[str, Any]) -> list[str]:
    # Both the image as the spec names it (tag form) and the imageID the runtime reports
    # (digest form): entries may pin either.
    values = []
    for key in ("image", "imageID"):
        value = status.get(key)
        if isinstance(value, str) and value and value not in values:
            values.append(value)
    return values


def selectors_for(pod: Mapping[str, Any], status: Mapping[str, Any] | None) -> list[Selector]:
    """Build the `k8s:` selectors of a pod and, when known, of the caller's container."""
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    pod_status = pod.get("status") or {}
    values = [
        f"sa:{spec.get('serviceAccountName') or spec.get('serviceAccount') or 'default'}",
    ]
    # A field missing from a malformed list gives no selector rather than an empty one.
    for prefix, value in (
        ("ns", metadata.get("namespace")),
        ("pod-uid", metadata.get("uid")),
        ("pod-name", metadata.get("name")),
        ("node-name", spec.get("nodeName")),
    ):
        if value:
            values.append(f"{prefix}:{value}")
    for key, value in sorted((metadata.get("labels") or {}).items()):
        values.append(f"pod-label:{key}:{value}")
    for owner in metadata.get("ownerReferences") or []:
        values.append(f"pod-owner:{owner.get('kind')}:{owner.get('name')}")
        values.append(f"pod-owner-uid:{owner.get('kind')}:{owner.get('uid')}")

    containers = [
        item for item in pod_status.get("containerStatuses") or [] if isinstance(item, dict)
    ]
    init_containers = [
        item for item in pod_status.get("initContainerStatuses") or [] if isinstance(item, dict)
    ]
    values.append(f"pod-image-count:{len(containers)}")
    values.append(f"pod-init-image-count:{len(init_containers)}")
    for image in sorted({image for item in containers for image in _image_identifiers(item)}):
        values.append(f"pod-image:{image}")
    for image in sorted({image for item in init_containers for image in _image_identifiers(item)}):
        values.append(f"pod-init-image:{image}")

    if status is not None:
        if status.get("name"):
            values.append(f"container-name:{status['name']}")
        values.extend(f"container-image:{image}" for image in _image_identifiers(status))
    return valid_selectors(NAME, values)
