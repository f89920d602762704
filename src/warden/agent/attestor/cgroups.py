"""Finding a process's container and pod from its `/proc/<pid>/cgroup` file.

Each line of the file is `<hierarchy-id>:<controllers>:<path>`; cgroup v2 has the single line
`0::<path>`. Container runtimes name the container's cgroup after its 64-hex-digit id and
kubelet names the pod's cgroup after the pod UID, in either of two layouts:

- cgroupfs driver: `/docker/<id>`, `/kubepods/burstable/pod<uid>/<id>`;
- systemd driver: `/system.slice/docker-<id>.scope`,
  `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid_with_underscores>
  .slice/cri-containerd-<id>.scope` (also `crio-<id>.scope`, `libpod-<id>.scope`).

A process outside any container (`0::/user.slice/...`, or `0::/` inside a cgroup namespace)
has neither.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CONTAINER_ID_RE = re.compile(r"(?<![0-9a-f])([0-9a-f]{64})(?![0-9a-f])")
_POD_UID_RE = re.compile(
    r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
)
# cri-o runs a monitor process (conmon) per container in a cgroup named after the container;
# it is not the workload.
_MONITOR_MARKERS = ("conmon",)


@dataclass(frozen=True, slots=True)
class ContainerLocation:
    """Where a process runs: a container id, the pod UID when kubelet manages it, or neither."""

    container_id: str | None = None
    pod_uid: str | None = None


def cgroup_paths(text: str) -> list[str]:
    """Return the cgroup path of every line of a `/proc/<pid>/cgroup` file."""
    paths = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3 and parts[2]:
            paths.append(parts[2])
    return paths


def locate_in_path(path: str) -> ContainerLocation:
    """Return the container and pod of one cgroup path.

    The container id is taken from the innermost segment that carries one, so a process in a
    nested cgroup under the container's (`.../docker-<id>.scope/init.scope`) is still found.
    """
    segments = [segment for segment in path.split("/") if segment]
    container_id = None
    for segment in reversed(segments):
        match = _CONTAINER_ID_RE.search(segment)
        if match is None:
            continue
        if any(marker in segment for marker in _MONITOR_MARKERS):
            return ContainerLocation()
        container_id = match.group(1)
        break
    pod_uid = None
    for segment in segments:
        pod_match = _POD_UID_RE.search(segment)
        if pod_match is not None:
            pod_uid = pod_match.group(1).replace("_", "-")
            break
    return ContainerLocation(container_id, pod_uid)


class ConflictingCgroupsError(ValueError):
    """The lines of a cgroup file name different containers or pods."""


def locate(text: str) -> ContainerLocation:
    """Return the container and pod of the process whose cgroup file is `text`.

    Every hierarchy of a containerised process names the same container, so lines that
    name different containers (or pods) raise `ConflictingCgroupsError`: a process that
    could create a cgroup in one hierarchy could otherwise name it after another container.
    As in SPIRE, a line that names a pod takes precedence over lines that name a container
    but no pod, which happens when Kubernetes runs inside a container (kind).
    """
    chosen: ContainerLocation | None = None
    pod_only = ContainerLocation()
    for path in cgroup_paths(text):
        location = locate_in_path(path)
        if location.container_id is None:
            if location.pod_uid is not None and pod_only.pod_uid is None:
                pod_only = location
            continue
        if chosen is None or (chosen.pod_uid is None and location.pod_uid is not None):
            chosen = location
        elif location.pod_uid is None and chosen.pod_uid is not None:
            continue
        elif location != chosen:
            raise ConflictingCgroupsError(_conflict(chosen, location))
    return chosen or pod_only


def _conflict(first: ContainerLocation, second: ContainerLocation) -> str:
    return (
        f"the cgroups of the process name different containers or pods "
        f"(container {(first.container_id or '?')[:12]}, pod {first.pod_uid or '-'}; "
        f"container {(second.container_id or '?')[:12]}, pod {second.pod_uid or '-'})"
    )


class CgroupMatcher:
    """One of SPIRE's `container_id_cgroup_matchers` patterns, such as `/docker/<id>`.

    A pattern is a `/`-separated path whose segments are literal text, `*` (any one segment)
    or `<id>` (the container id). It matches a cgroup path with the same number of segments.
    """

    def __init__(self, pattern: str) -> None:
        segments = [segment for segment in pattern.split("/") if segment]
        if segments.count("<id>") != 1:
            raise ValueError(
                f"invalid container_id_cgroup_matchers pattern {pattern!r}: it must contain "
                "'<id>' exactly once, as a whole segment"
            )
        for segment in segments:
            if segment not in ("*", "<id>") and ("*" in segment or "<" in segment):
                raise ValueError(
                    f"invalid container_id_cgroup_matchers pattern {pattern!r}: '*' and "
                    "'<id>' must be whole segments"
                )
        self.pattern = pattern
        self.segments = tuple(segments)

    def match(self, path: str) -> str | None:
        """Return the container id captured from `path`, or None when it does not match."""
        segments = [segment for segment in path.split("/") if segment]
        if len(segments) != len(self.segments):
            return None
        captured = None
        for expected, actual in zip(self.segments, segments, strict=True):
            if expected == "<id>":
                captured = actual
            elif expected != "*" and expected != actual:
                return None
        return captured

    def overlaps(self, other: CgroupMatcher) -> bool:
        """Tell whether some path could match both patterns (SPIRE rejects such a pair)."""
        if len(self.segments) != len(other.segments):
            return False
        for mine, theirs in zip(self.segments, other.segments, strict=True):
            wildcard = mine in ("*", "<id>") or theirs in ("*", "<id>")
            if not wildcard and mine != theirs:
                return False
        return True


def compile_matchers(patterns: list[str]) -> list[CgroupMatcher]:
    """Compile patterns, rejecting any two that could match the same path."""
    matchers = [CgroupMatcher(pattern) for pattern in patterns]
    for index, first in enumerate(matchers):
        for second in matchers[index + 1 :]:
            if first.overlaps(second):
                raise ValueError(
                    f"container_id_cgroup_matchers {first.pattern!r} and {second.pattern!r} "
                    "can match the same cgroup path; make them unambiguous"
                )
    return matchers


def locate_with_matchers(text: str, matchers: list[CgroupMatcher]) -> ContainerLocation:
    """Return the container id the patterns find, if any.

    Raises `ConflictingCgroupsError` when lines match with different container ids.
    """
    chosen: ContainerLocation | None = None
    for path in cgroup_paths(text):
        for matcher in matchers:
            container_id = matcher.match(path)
            if container_id is None:
                continue
            location = ContainerLocation(container_id, locate_in_path(path).pod_uid)
            if chosen is None:
                chosen = location
            elif location.container_id != chosen.container_id:
                raise ConflictingCgroupsError(_conflict(chosen, location))
    return chosen or ContainerLocation()
