"""Node attestation, agent side: the evidence each method sends and its challenge responses.

- `join_token`: the token itself; single use, so the node cannot attest again with it.
- `x509pop`: the node's certificate chain; the server sends a nonce and the agent signs it
  with the certificate's key (proof of possession).
- `aws_iid`: the EC2 instance identity document and its `rsa2048` PKCS#7 signature, read
  from the instance metadata service (IMDSv2 session token first, IMDSv1 when the service
  does not issue tokens).

The payload formats are the ones Warden's server attestors decode. Attestors are classes
behind `NodeAttestorClient`, registered by name in `NODE_ATTESTORS`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

IMDS_TIMEOUT_SECONDS = 5.0
IMDS_TOKEN_TTL_SECONDS = 300


class NodeAttestationError(Exception):
    """The agent could not produce its attestation evidence. The message gives the reason."""


class NodeAttestorClient(Protocol):
    """Produces a node's attestation evidence and the responses to the server's challenges."""

    name: str
    #: False when the evidence works once only (join tokens).
    reattestable: bool

    async def payload(self) -> bytes: ...

    async def answer(self, challenge: bytes) -> bytes: ...


class JoinTokenAttestor:
    name = "join_token"
    reattestable = False

    def __init__(self, token: str | None) -> None:
        self._token = token

    async def payload(self) -> bytes:
        if not self._token:
            raise NodeAttestationError(
                "no join token: set join_token in the agent block, or pass -joinToken; generate "
                "one with 'warden token generate'"
            )
        return self._token.encode()

    async def answer(self, challenge: bytes) -> bytes:
        raise NodeAttestationError(
            "the server sent a challenge, but join_token attestation has no challenge response"
        )


class X509PopAttestor:
    name = "x509pop"
    reattestable = True

    def __init__(
        self, certificate_path: Path, private_key_path: Path, intermediates_path: Path | None
    ) -> None:
        try:
            chain = x509.load_pem_x509_certificates(certificate_path.read_bytes())
            if intermediates_path is not None:
                chain += x509.load_pem_x509_certificates(intermediates_path.read_bytes())
            key = serialization.load_pem_private_key(private_key_path.read_bytes(), password=None)
        except (OSError, ValueError) as error:
            raise NodeAttestationError(
                f"x509pop: cannot load the node's certificate or key: {error}"
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise NodeAttestationError(
                f"x509pop: unsupported key type {type(key).__name__}; use an EC or RSA key"
            )
        if chain[0].public_key() != key.public_key():
            raise NodeAttestationError(
                f"x509pop: the key {private_key_path} does not belong to the certificate "
                f"{certificate_path}"
            )
        self._chain = chain
        self._key = key

    async def payload(self) -> bytes:
        encoded = [
            base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode()
            for c in self._chain
        ]
        return json.dumps({"certificates": encoded}).encode()

    async def answer(self, challenge: bytes) -> bytes:
        # A signature over the nonce with SHA-256: ECDSA for EC keys, RSA-PSS for RSA keys.
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            return self._key.sign(challenge, ec.ECDSA(hashes.SHA256()))
        return self._key.sign(
            challenge,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH),
            hashes.SHA256(),
        )


class AwsIidAttestor:
    name = "aws_iid"
    reattestable = True

    def __init__(self, endpoint: str) -> None:
        self._endpoint = endpoint.rstrip("/")

    async def payload(self) -> bytes:
        async with httpx.AsyncClient(
            base_url=self._endpoint, timeout=IMDS_TIMEOUT_SECONDS
        ) as client:
            headers = await self._session_headers(client)
            document = await self._get(
                client, "/latest/dynamic/instance-identity/document", headers
            )
            signature = await self._get(
                client, "/latest/dynamic/instance-identity/rsa2048", headers
            )
        return json.dumps({"document": document.decode(), "rsa2048": signature.decode()}).encode()

    async def _session_headers(self, client: httpx.AsyncClient) -> dict[str, str]:
        try:
            response = await client.put(
                "/latest/api/token",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(IMDS_TOKEN_TTL_SECONDS)},
            )
        except httpx.HTTPError as error:
            raise NodeAttestationError(
                f"aws_iid: cannot reach the instance metadata service at {self._endpoint}: "
                f"{error}; is the agent running on EC2?"
            ) from None
        if response.status_code == 200:
            return {"X-aws-ec2-metadata-token": response.text}
        # IMDSv1 only: documents are read without a session token.
        return {}

    async def _get(self, client: httpx.AsyncClient, path: str, headers: Mapping[str, str]) -> bytes:
        try:
            response = await client.get(path, headers=dict(headers))
        except httpx.HTTPError as error:
            raise NodeAttestationError(
                f"aws_iid: reading {path} from {self._endpoint} failed: {error}"
            ) from None
        if response.status_code != 200:
            raise NodeAttestationError(
                f"aws_iid: {self._endpoint}{path} returned HTTP {response.status_code}"
            )
        return response.content

    async def answer(self, challenge: bytes) -> bytes:
        raise NodeAttestationError(
            "the server sent a challenge, but aws_iid attestation has no challenge response"
        )


def _join_token(settings: Mapping[str, Any], join_token: str | None) -> NodeAttestorClient:
    return JoinTokenAttestor(join_token)


def _x509pop(settings: Mapping[str, Any], join_token: str | None) -> NodeAttestorClient:
    intermediates = settings.get("intermediates_path")
    return X509PopAttestor(
        Path(settings["certificate_path"]),
        Path(settings["private_key_path"]),
        Path(intermediates) if intermediates else None,
    )


def _aws_iid(settings: Mapping[str, Any], join_token: str | None) -> NodeAttestorClient:
    # The configuration supplies the metadata service's address (AWS's by default).
    endpoint = settings.get("ec2_metadata_endpoint")
    if not endpoint:
        raise NodeAttestationError("aws_iid: ec2_metadata_endpoint is not set")
    return AwsIidAttestor(str(endpoint))


#: Agent-side node attestors by plugin name; each takes its plain settings and the join token.
NODE_ATTESTORS: dict[str, Callable[[Mapping[str, Any], str | None], NodeAttestorClient]] = {
    "join_token": _join_token,
    "x509pop": _x509pop,
    "aws_iid": _aws_iid,
}


def build_node_attestor(
    name: str, settings: Mapping[str, Any], join_token: str | None = None
) -> NodeAttestorClient:
    factory = NODE_ATTESTORS.get(name)
    if factory is None:
        raise NodeAttestationError(
            f'NodeAttestor "{name}" is not supported by the agent; use one of: '
            + ", ".join(sorted(NODE_ATTESTORS))
        )
    return factory(settings, join_token)
