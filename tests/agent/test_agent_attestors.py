"""Workload attestors: unix against real processes, docker and k8s against local fakes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from agent_fakes import FakeDockerEngine, FakeKubelet, docker_inspect, pod, proc_tree

from warden.agent.attestor import (
    WORKLOAD_ATTESTORS,
    AttestationError,
    CompositeAttestor,
    PluginConfigError,
    build_workload_attestor,
)
from warden.agent.attestor.docker import DockerAttestor, DockerConfig
from warden.agent.attestor.k8s import K8sAttestor, K8sConfig, parse_duration
from warden.agent.attestor.unix import UnixAttestor, UnixConfig
from warden.agent.caller import capture_caller
from warden.agent.proc import ProcFS
from warden.spiffe import Selector

DATA = Path(__file__).parent / "data" / "cgroup"
DOCKER_ID = "9a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f2a4b6c8d0e2f4a6b8c0d2e4f6a8b"
POD_CONTAINER_ID = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899"
POD_UID = "0d3b2a7e-5c41-4f8e-9a6b-1c2d3e4f5a6b"
FAKE_PID = 4242


def values(selectors: list[Selector], prefix: str = "") -> set[str]:
    return {s.value for s in selectors if s.value.startswith(prefix)}


def this_process(*, open_executable: bool = False):  # type: ignore[no-untyped-def]
    return capture_caller(
        os.getpid(), os.geteuid(), os.getegid(), ProcFS(), open_executable=open_executable
    )


def recorded_caller(proc_root: Path):  # type: ignore[no-untyped-def]
    """A caller whose procfs tree is a recorded one (the attestors only read its cgroup)."""
    caller = this_process()
    caller.pid = FAKE_PID
    return caller


# unix


async def test_unix_selectors_of_this_process() -> None:
    attestor = UnixAttestor()
    caller = this_process()

    selectors = await attestor.attest(caller)

    assert {s.type for s in selectors} == {"unix"}
    assert f"uid:{os.geteuid()}" in values(selectors)
    assert f"gid:{os.getegid()}" in values(selectors)
    assert "user:root" in values(selectors)
    assert "group:root" in values(selectors)


async def test_unix_supplementary_groups(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("setting supplementary groups needs root")
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys; os.setgroups([4, 20]); sys.stdout.write('ok\\n'); "
            "sys.stdout.flush(); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ok\n"
        caller = capture_caller(child.pid, 0, 0, ProcFS(), open_executable=False)

        selectors = await UnixAttestor().attest(caller)

        assert {"supplementary_gid:4", "supplementary_gid:20"} <= values(selectors)
        assert "supplementary_group:adm" in values(selectors)
    finally:
        child.kill()
        child.wait()


async def test_unix_path_and_digest_of_binary() -> None:
    attestor = UnixAttestor(UnixConfig(discover_workload_path=True))
    caller = this_process(open_executable=True)
    binary = os.path.realpath(sys.executable)

    selectors = await attestor.attest(caller)

    assert f"path:{binary}" in values(selectors)
    digest = hashlib.sha256(Path(binary).read_bytes()).hexdigest()
    assert f"sha256:{digest}" in values(selectors)
    caller.close()


async def test_unix_size_limit_fails_attestation() -> None:
    attestor = UnixAttestor(UnixConfig(discover_workload_path=True, workload_size_limit=10))

    with pytest.raises(AttestationError, match="workload_size_limit 10"):
        await attestor.attest(this_process(open_executable=True))


async def test_unix_negative_limit_skips_digest() -> None:
    attestor = UnixAttestor(UnixConfig(discover_workload_path=True, workload_size_limit=-1))

    selectors = await attestor.attest(this_process())

    assert values(selectors, "path:")
    assert not values(selectors, "sha256:")


def test_unix_unknown_key_names_it() -> None:
    with pytest.raises(PluginConfigError, match="unknown key 'discover_path'"):
        UnixAttestor.from_plugin_data({"discover_path": True})


# docker


@pytest.fixture
def docker_engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    with FakeDockerEngine(tmp_path / "docker.sock") as engine:
        engine.containers[DOCKER_ID] = docker_inspect(
            DOCKER_ID,
            "nginx:1.27",
            {"com.example.team": "payments", "com.example.tier": "web"},
            ["PATH=/usr/local/sbin:/usr/bin", "ENVIRONMENT=prod", "EMPTY="],
        )
        yield engine


@pytest.mark.parametrize("layout", ["docker-v1-cgroupfs.txt", "docker-v2-systemd.txt"])
async def test_docker_selectors_from_fake_engine(
    docker_engine: FakeDockerEngine, tmp_path: Path, layout: str
) -> None:
    with proc_tree(tmp_path / "proc", FAKE_PID, (DATA / layout).read_text()) as root:
        attestor = DockerAttestor(
            DockerConfig(
                docker_socket_path=f"unix://{docker_engine.socket_path}",
                docker_version="1.43",
                proc_root=str(root),
            )
        )
        try:
            selectors = await attestor.attest(recorded_caller(root))
        finally:
            await attestor.close()

    assert {str(s) for s in selectors} == {
        "docker:label:com.example.team:payments",
        "docker:label:com.example.tier:web",
        "docker:env:PATH=/usr/local/sbin:/usr/bin",
        "docker:env:ENVIRONMENT=prod",
        "docker:env:EMPTY=",
        "docker:image_id:nginx:1.27",
        "docker:image_config_digest:sha256:5ef79149e0ec84a7a9f9284c3f91aa3c20608f8391f5445eabe92ef07dbda03c",
    }
    assert docker_engine.requests == [f"/v1.43/containers/{DOCKER_ID}/json"]


async def test_docker_host_process_gets_no_selectors(
    docker_engine: FakeDockerEngine, tmp_path: Path
) -> None:
    with proc_tree(tmp_path / "proc", FAKE_PID, (DATA / "host-v2.txt").read_text()) as root:
        attestor = DockerAttestor(
            DockerConfig(docker_socket_path=str(docker_engine.socket_path), proc_root=str(root))
        )
        selectors = await attestor.attest(recorded_caller(root))
        await attestor.close()

    assert selectors == []
    assert docker_engine.requests == []


async def test_docker_unknown_container_gets_no_selectors(
    docker_engine: FakeDockerEngine, tmp_path: Path
) -> None:
    docker_engine.containers.clear()
    with proc_tree(
        tmp_path / "proc", FAKE_PID, (DATA / "docker-v2-systemd.txt").read_text()
    ) as root:
        attestor = DockerAttestor(
            DockerConfig(docker_socket_path=str(docker_engine.socket_path), proc_root=str(root))
        )
        selectors = await attestor.attest(recorded_caller(root))
        await attestor.close()

    assert selectors == []
    assert docker_engine.requests == [f"/containers/{DOCKER_ID}/json"]


async def test_docker_daemon_down_fails_attestation(tmp_path: Path) -> None:
    with proc_tree(
        tmp_path / "proc", FAKE_PID, (DATA / "docker-v2-systemd.txt").read_text()
    ) as root:
        attestor = DockerAttestor(
            DockerConfig(docker_socket_path=str(tmp_path / "missing.sock"), proc_root=str(root))
        )
        with pytest.raises(AttestationError, match="cannot reach the Docker daemon"):
            await attestor.attest(recorded_caller(root))
        await attestor.close()


async def test_docker_custom_matchers(docker_engine: FakeDockerEngine, tmp_path: Path) -> None:
    text = f"0::/custom.slice/runner/{DOCKER_ID}\n"
    with proc_tree(tmp_path / "proc", FAKE_PID, text) as root:
        attestor = DockerAttestor.from_plugin_data(
            {
                "docker_socket_path": str(docker_engine.socket_path),
                "container_id_cgroup_matchers": ["/custom.slice/*/<id>"],
                "proc_root": str(root),
            }
        )
        selectors = await attestor.attest(recorded_caller(root))
        await attestor.close()

    assert "image_id:nginx:1.27" in values(selectors)


def test_docker_ambiguous_matchers_rejected() -> None:
    with pytest.raises(PluginConfigError, match="can match the same cgroup path"):
        DockerAttestor.from_plugin_data(
            {"container_id_cgroup_matchers": ["/a/b/<id>", "/*/b/<id>"]}
        )


# k8s


def web_pod(container_id: str = POD_CONTAINER_ID) -> dict[str, object]:
    return pod(
        "web-7d9f8b6c5-x2x9q",
        "payments",
        POD_UID,
        container_id,
        labels={"app": "web", "tier": "frontend"},
        service_account="web-sa",
    )


EXPECTED_K8S = {
    "ns:payments",
    "sa:web-sa",
    "node-name:node-a",
    "pod-uid:0d3b2a7e-5c41-4f8e-9a6b-1c2d3e4f5a6b",
    "pod-name:web-7d9f8b6c5-x2x9q",
    "pod-label:app:web",
    "pod-label:tier:frontend",
    "pod-owner:ReplicaSet:web-7d9f8b6c5",
    "pod-owner-uid:ReplicaSet:6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9",
    "container-name:app",
    "container-image:ghcr.io/example/app:1.4.2",
    "container-image:ghcr.io/example/app@sha256:"
    "2222222222222222222222222222222222222222222222222222222222222222",
    "pod-image:ghcr.io/example/app:1.4.2",
    "pod-image:ghcr.io/example/app@sha256:"
    "2222222222222222222222222222222222222222222222222222222222222222",
    "pod-init-image:ghcr.io/example/migrate:1.4.2",
    "pod-init-image:ghcr.io/example/migrate@sha256:"
    "1111111111111111111111111111111111111111111111111111111111111111",
    "pod-image-count:1",
    "pod-init-image-count:1",
}


@pytest.mark.parametrize(
    "layout",
    [
        "kubepods-containerd-v1-cgroupfs.txt",
        "kubepods-containerd-v2-systemd.txt",
        "kubepods-crio-v2-systemd.txt",
        "kubepods-guaranteed-v1-cgroupfs.txt",
    ],
)
async def test_k8s_selectors_from_fake_kubelet(tmp_path: Path, layout: str) -> None:
    with (
        FakeKubelet() as kubelet,
        proc_tree(tmp_path / "proc", FAKE_PID, (DATA / layout).read_text()) as root,
    ):
        kubelet.pods = [
            pod("other-1", "default", "11111111-2222-3333-4444-555555555555", "f" * 64),
            web_pod(),
        ]
        attestor = K8sAttestor(K8sConfig(kubelet_read_only_port=kubelet.port, proc_root=str(root)))
        try:
            selectors = await attestor.attest(recorded_caller(root))
        finally:
            await attestor.close()

    assert {s.type for s in selectors} == {"k8s"}
    assert values(selectors) == EXPECTED_K8S


async def test_k8s_secure_port_sends_token(tmp_path: Path) -> None:
    token_path = tmp_path / "token"
    token_path.write_text("kubelet-reader-token\n")
    cgroup = (DATA / "kubepods-containerd-v2-systemd.txt").read_text()
    with (
        FakeKubelet(tls_dir=tmp_path, token="kubelet-reader-token") as kubelet,
        proc_tree(tmp_path / "proc", FAKE_PID, cgroup) as root,
    ):
        kubelet.pods = [web_pod()]
        attestor = K8sAttestor.from_plugin_data(
            {
                "kubelet_secure_port": kubelet.port,
                "kubelet_ca_path": str(kubelet.ca_path),
                "token_path": str(token_path),
                "proc_root": str(root),
            }
        )
        try:
            selectors = await attestor.attest(recorded_caller(root))
        finally:
            await attestor.close()

    assert "sa:web-sa" in values(selectors)
    assert kubelet.requests == [("/pods", "Bearer kubelet-reader-token")]


async def test_k8s_wrong_token_fails_attestation(tmp_path: Path) -> None:
    token_path = tmp_path / "token"
    token_path.write_text("stale-token")
    cgroup = (DATA / "kubepods-containerd-v2-systemd.txt").read_text()
    with (
        FakeKubelet(tls_dir=tmp_path, token="kubelet-reader-token") as kubelet,
        proc_tree(tmp_path / "proc", FAKE_PID, cgroup) as root,
    ):
        attestor = K8sAttestor(
            K8sConfig(
                kubelet_secure_port=kubelet.port,
                kubelet_ca_path=str(kubelet.ca_path),
                token_path=str(token_path),
                proc_root=str(root),
            )
        )
        with pytest.raises(AttestationError, match="HTTP 401"):
            await attestor.attest(recorded_caller(root))
        await attestor.close()


async def test_k8s_polls_until_container_listed(tmp_path: Path) -> None:
    cgroup = (DATA / "kubepods-containerd-v1-cgroupfs.txt").read_text()
    with FakeKubelet() as kubelet, proc_tree(tmp_path / "proc", FAKE_PID, cgroup) as root:
        kubelet.late_pods = [(3, web_pod())]
        attestor = K8sAttestor(
            K8sConfig(
                kubelet_read_only_port=kubelet.port,
                proc_root=str(root),
                poll_retry_interval="10ms",  # type: ignore[arg-type]
            )
        )
        selectors = await attestor.attest(recorded_caller(root))
        await attestor.close()

    assert "pod-name:web-7d9f8b6c5-x2x9q" in values(selectors)
    assert len(kubelet.requests) == 3


async def test_k8s_gives_up_after_max_attempts(tmp_path: Path) -> None:
    cgroup = (DATA / "kubepods-containerd-v1-cgroupfs.txt").read_text()
    with FakeKubelet() as kubelet, proc_tree(tmp_path / "proc", FAKE_PID, cgroup) as root:
        attestor = K8sAttestor.from_plugin_data(
            {
                "kubelet_read_only_port": kubelet.port,
                "proc_root": str(root),
                "max_poll_attempts": 2,
                "poll_retry_interval": "10ms",
            }
        )
        with pytest.raises(AttestationError, match="after 2 attempts"):
            await attestor.attest(recorded_caller(root))
        await attestor.close()


async def test_k8s_process_outside_pods_gets_no_selectors(tmp_path: Path) -> None:
    with (
        FakeKubelet() as kubelet,
        proc_tree(tmp_path / "proc", FAKE_PID, (DATA / "host-v2.txt").read_text()) as root,
    ):
        attestor = K8sAttestor(K8sConfig(kubelet_read_only_port=kubelet.port, proc_root=str(root)))
        selectors = await attestor.attest(recorded_caller(root))
        await attestor.close()

    assert selectors == []
    assert kubelet.requests == []


def test_k8s_missing_kubelet_ca_names_it(tmp_path: Path) -> None:
    with pytest.raises(PluginConfigError, match="cannot load the kubelet TLS files"):
        K8sAttestor.from_plugin_data({"kubelet_ca_path": str(tmp_path / "missing-ca.crt")})


def test_k8s_both_ports_rejected() -> None:
    with pytest.raises(PluginConfigError, match="mutually exclusive"):
        K8sAttestor.from_plugin_data(
            {"kubelet_read_only_port": 10255, "kubelet_secure_port": 10250}
        )


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("2s", 2.0), ("1m30s", 90.0), (3, 3.0)]
)
def test_duration_forms(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_duration_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("five seconds")


# registry


def test_registry_names_the_supported_attestors() -> None:
    assert set(WORKLOAD_ATTESTORS) == {"unix", "docker", "k8s"}

    with pytest.raises(PluginConfigError, match="use one of: docker, k8s, unix"):
        build_workload_attestor("systemd", {})


async def test_composite_fails_when_one_attestor_fails(tmp_path: Path) -> None:
    with proc_tree(
        tmp_path / "proc", FAKE_PID, (DATA / "docker-v2-systemd.txt").read_text()
    ) as root:
        (root / str(FAKE_PID) / "status").write_text(
            Path(f"/proc/{os.getpid()}/status").read_text()
        )
        broken = DockerAttestor(
            DockerConfig(docker_socket_path=str(tmp_path / "missing.sock"), proc_root=str(root))
        )
        composite = CompositeAttestor([UnixAttestor(UnixConfig(proc_root=str(root))), broken])

        with pytest.raises(AttestationError, match="Docker daemon"):
            await composite.attest(recorded_caller(root))
        await composite.close()
