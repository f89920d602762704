"""Local fakes of the Docker Engine API and of the kubelet's pod list.

Both return responses in the documented formats (Docker Engine API `ContainerInspect`,
Kubernetes `v1.PodList`) over real sockets: the Docker fake on a Unix socket, the kubelet fake
on 127.0.0.1 over HTTP or HTTPS with bearer-token authentication, as the real kubelet's
secure port does. The attestors' client code is the same as against the real services.
"""

from __future__ import annotations

import json
import re
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_INSPECT_RE = re.compile(r"^(?:/v[0-9.]+)?/containers/([^/]+)/json$")


def docker_inspect(
    container_id: str, image: str, labels: dict[str, str], env: list[str]
) -> dict[str, Any]:
    """A container inspect document as the Docker Engine API (v1.43) returns it."""
    return {
        "Id": container_id,
        "Created": "2026-11-30T09:12:44.318240912Z",
        "Path": "/docker-entrypoint.sh",
        "Args": ["nginx", "-g", "daemon off;"],
        "State": {"Status": "running", "Running": True, "Pid": 4242, "ExitCode": 0},
        "Image": "sha256:5ef79149e0ec84a7a9f9284c3f91aa3c20608f8391f5445eabe92ef07dbda03c",
        "Name": "/web",
        "RestartCount": 0,
        "Driver": "overlay2",
        "Platform": "linux",
        "HostConfig": {"NetworkMode": "bridge"},
        "Config": {
            "Hostname": container_id[:12],
            "User": "",
            "Env": env,
            "Cmd": ["nginx", "-g", "daemon off;"],
            "Image": image,
            "WorkingDir": "",
            "Entrypoint": ["/docker-entrypoint.sh"],
            "Labels": labels,
        },
        "NetworkSettings": {"IPAddress": "172.17.0.2"},
    }


class _UnixHTTPServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


class _DockerHandler(BaseHTTPRequestHandler):
    server: _UnixHTTPServer
    protocol_version = "HTTP/1.1"

    def address_string(self) -> str:  # a Unix socket peer has no host
        return "docker-client"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        fake: FakeDockerEngine = self.server.fake  # type: ignore[attr-defined]
        fake.requests.append(self.path)
        match = _INSPECT_RE.match(self.path)
        if match is None:
            self._send(404, {"message": "page not found"})
            return
        document = fake.containers.get(match.group(1))
        if document is None:
            self._send(404, {"message": f"No such container: {match.group(1)}"})
            return
        self._send(200, document)

    def _send(self, status: int, document: dict[str, Any]) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Api-Version", "1.43")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FakeDockerEngine:
    """The container inspect endpoint of the Docker Engine API on a Unix socket."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.containers: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []
        self._server = _UnixHTTPServer(str(socket_path), _DockerHandler)
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> FakeDockerEngine:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def pod(
    name: str,
    namespace: str,
    uid: str,
    container_id: str,
    *,
    runtime: str = "containerd",
    labels: dict[str, str] | None = None,
    service_account: str = "default",
) -> dict[str, Any]:
    """A pod as it appears in the kubelet's `/pods` list (a `v1.Pod`)."""
    return {
        "metadata": {
            "name": name,
            "generateName": name.rsplit("-", 1)[0] + "-",
            "namespace": namespace,
            "uid": uid,
            "resourceVersion": "81342",
            "creationTimestamp": "2026-11-30T09:12:40Z",
            "labels": labels or {},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": name.rsplit("-", 1)[0],
                    "uid": "6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "containers": [{"name": "app", "image": "ghcr.io/example/app:1.4.2"}],
            "initContainers": [{"name": "migrate", "image": "ghcr.io/example/migrate:1.4.2"}],
            "serviceAccountName": service_account,
            "serviceAccount": service_account,
            "nodeName": "node-a",
        },
        "status": {
            "phase": "Running",
            "podIP": "10.244.1.17",
            "initContainerStatuses": [
                {
                    "name": "migrate",
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                    "ready": True,
                    "restartCount": 0,
                    "image": "ghcr.io/example/migrate:1.4.2",
                    "imageID": "ghcr.io/example/migrate@sha256:"
                    "1111111111111111111111111111111111111111111111111111111111111111",
                    "containerID": f"{runtime}://{'0' * 64}",
                }
            ],
            "containerStatuses": [
                {
                    "name": "app",
                    "state": {"running": {"startedAt": "2026-11-30T09:12:44Z"}},
                    "ready": True,
                    "restartCount": 0,
                    "image": "ghcr.io/example/app:1.4.2",
                    "imageID": "ghcr.io/example/app@sha256:"
                    "2222222222222222222222222222222222222222222222222222222222222222",
                    "containerID": f"{runtime}://{container_id}",
                    "started": True,
                }
            ],
        },
    }


class _KubeletHandler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        fake: FakeKubelet = self.server.fake  # type: ignore[attr-defined]
        fake.requests.append((self.path, self.headers.get("Authorization")))
        if fake.token is not None and self.headers.get("Authorization") != f"Bearer {fake.token}":
            self._send(401, b"Unauthorized")
            return
        if self.path != "/pods":
            self._send(404, b"404 page not found")
            return
        pods = fake.pods_for_request(len(fake.requests))
        document = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": pods}
        self._send(200, json.dumps(document).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FakeKubelet:
    """The kubelet's `/pods` endpoint on 127.0.0.1, as its read-only or secure port.

    With `tls_dir`, it serves HTTPS with a certificate for this host's name (as a kubelet
    serving certificate names the node) and requires `Bearer <token>`.
    """

    def __init__(self, tls_dir: Path | None = None, token: str | None = None) -> None:
        self.pods: list[dict[str, Any]] = []
        #: Pods that appear only from this request number on (1-based), to test polling.
        self.late_pods: list[tuple[int, dict[str, Any]]] = []
        self.requests: list[tuple[str, str | None]] = []
        self.token = token
        self.ca_path: Path | None = None
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _KubeletHandler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        if tls_dir is not None:
            self.ca_path = _serving_certificate(tls_dir)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls_dir / "kubelet.crt", tls_dir / "kubelet.key")
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def pods_for_request(self, number: int) -> list[dict[str, Any]]:
        return self.pods + [item for after, item in self.late_pods if number >= after]

    def __enter__(self) -> FakeKubelet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _serving_certificate(directory: Path) -> Path:
    """Write a self-signed serving certificate for this host's name; return its path."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, socket.gethostname())])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(socket.gethostname())]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (directory / "kubelet.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path = directory / "kubelet.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return directory / "kubelet.crt"


@contextmanager
def proc_tree(root: Path, pid: int, cgroup_text: str) -> Iterator[Path]:
    """A procfs tree with `<pid>/cgroup` holding `cgroup_text`, as recorded from a host."""
    directory = root / str(pid)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cgroup").write_text(cgroup_text)
    yield root


class _MetadataHandler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_PUT(self) -> None:
        fake: FakeInstanceMetadata = self.server.fake  # type: ignore[attr-defined]
        fake.requests.append(("PUT", self.path))
        if self.path != "/latest/api/token" or not self.headers.get(
            "X-aws-ec2-metadata-token-ttl-seconds"
        ):
            self._send(400, b"")
            return
        self._send(200, fake.session_token.encode())

    def do_GET(self) -> None:
        fake: FakeInstanceMetadata = self.server.fake  # type: ignore[attr-defined]
        fake.requests.append(("GET", self.path))
        if self.headers.get("X-aws-ec2-metadata-token") != fake.session_token:
            self._send(401, b"")
            return
        documents = {
            "/latest/dynamic/instance-identity/document": fake.document,
            "/latest/dynamic/instance-identity/rsa2048": fake.rsa2048.encode(),
        }
        body = documents.get(self.path)
        if body is None:
            self._send(404, b"")
            return
        self._send(200, body)

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class FakeInstanceMetadata:
    """EC2's instance metadata service with IMDSv2 session tokens, on 127.0.0.1.

    Serves `/latest/dynamic/instance-identity/document` and `.../rsa2048` (base64 PKCS#7,
    as AWS returns it) only to requests that carry the session token from
    `PUT /latest/api/token`.
    """

    def __init__(self, document: bytes, rsa2048: str) -> None:
        self.document = document
        self.rsa2048 = rsa2048
        self.session_token = "AQAEAFAKE-session-token"
        self.requests: list[tuple[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _MetadataHandler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeInstanceMetadata:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
