"""Locating a process's container and pod in recorded `/proc/<pid>/cgroup` files."""

from __future__ import annotations

from pathlib import Path

import pytest

from warden.agent.attestor.cgroups import (
    CgroupMatcher,
    compile_matchers,
    locate,
    locate_with_matchers,
)

DATA = Path(__file__).parent / "data" / "cgroup"
DOCKER_ID = "9a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b"
POD_CONTAINER_ID = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899"
POD_UID = "0d3b2a7e-5c41-4f8e-9a6b-1c2d3e4f5a6b"

CASES = [
    ("docker-v1-cgroupfs.txt", DOCKER_ID, None),
    ("docker-v2-systemd.txt", DOCKER_ID, None),
    ("docker-v2-systemd-nested.txt", DOCKER_ID, None),
    ("podman-rootless-v2.txt", DOCKER_ID, None),
    ("kubepods-containerd-v1-cgroupfs.txt", POD_CONTAINER_ID, POD_UID),
    ("kubepods-guaranteed-v1-cgroupfs.txt", POD_CONTAINER_ID, POD_UID),
    ("kubepods-containerd-v2-systemd.txt", POD_CONTAINER_ID, POD_UID),
    ("kubepods-crio-v2-systemd.txt", POD_CONTAINER_ID, POD_UID),
    ("kubepods-docker-v1-systemd.txt", POD_CONTAINER_ID, POD_UID),
    ("kubepods-crio-conmon-v2.txt", None, None),
    ("host-v1.txt", None, None),
    ("host-v2.txt", None, None),
    ("cgroup-namespace-v2.txt", None, None),
]


@pytest.mark.parametrize(("name", "container_id", "pod_uid"), CASES)
def test_locate_recorded_layout(name: str, container_id: str | None, pod_uid: str | None) -> None:
    location = locate((DATA / name).read_text())

    assert location.container_id == container_id
    assert location.pod_uid == pod_uid


def test_every_recorded_layout_has_a_case() -> None:
    recorded = {path.name for path in DATA.glob("*.txt")}

    assert recorded == {name for name, _, _ in CASES}


def test_matcher_captures_id_segment() -> None:
    matchers = compile_matchers(["/docker/<id>", "/my.slice/*/<id>/*"])
    text = f"0::/my.slice/custom/{DOCKER_ID}/init\n"

    assert locate_with_matchers(text, matchers).container_id == DOCKER_ID
    assert locate_with_matchers("0::/other/abc\n", matchers).container_id is None


def test_matcher_requires_same_segment_count() -> None:
    assert CgroupMatcher("/docker/<id>").match(f"/docker/{DOCKER_ID}/extra") is None


@pytest.mark.parametrize("pattern", ["/docker/*", "/docker/<id>/<id>", "/dock*/<id>", "/a/x<id>"])
def test_invalid_matcher_rejected(pattern: str) -> None:
    with pytest.raises(ValueError, match="container_id_cgroup_matchers"):
        CgroupMatcher(pattern)


def test_ambiguous_matchers_rejected() -> None:
    with pytest.raises(ValueError, match="can match the same cgroup path"):
        compile_matchers(["/a/b/<id>", "/*/b/<id>"])
