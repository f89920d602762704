"""Helpers of the credential tests: server options, JWT-SVIDs, TLS files and HTTP clients."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from warden.credentials import ExchangeRule, SpiffeIdPattern, TokenExchangeSettings
from warden.pki.journal import AuthorityKind
from warden.server.app import WardenServer
from warden.server.options import HttpApiOptions, ServerOptions
from warden.spiffe import JwtSigner, SpiffeId, TrustDomain, mint_jwt_svid

ISSUER = "https://oidc.example.org"
TRUST_DOMAIN = TrustDomain("example.org")
GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"

BILLING = SpiffeId.parse("spiffe://example.org/billing/api")
ASSISTANT = SpiffeId.parse("spiffe://example.org/agents/assistant")
STRANGER = SpiffeId.parse("spiffe://example.org/agents/stranger")

#: The policy most tests run with: billing workloads may obtain AWS and GCP tokens, and the
#: assistant may act for them towards AWS only.
DEFAULT_POLICY = TokenExchangeSettings(
    rules=(
        ExchangeRule(
            subjects=(SpiffeIdPattern.parse("spiffe://example.org/billing/*"),),
            audiences=("sts.amazonaws.com",),
            actors=(SpiffeIdPattern.parse("spiffe://example.org/agents/assistant"),),
        ),
        ExchangeRule(
            subjects=(SpiffeIdPattern.parse("spiffe://example.org/billing/*"),),
            audiences=("//iam.googleapis.com/projects/1/locations/global/pools/p/providers/w",),
        ),
        ExchangeRule(
            subjects=(SpiffeIdPattern.parse("spiffe://example.org/*"),),
            audiences=("api://AzureADTokenExchange",),
        ),
    ),
)


def credential_server_options(tmp_path: Path, **overrides: Any) -> ServerOptions:
    """Options of a server with the HTTP API on a free loopback port, plain HTTP."""
    values: dict[str, Any] = {
        "trust_domain": TRUST_DOMAIN,
        "data_dir": tmp_path / "data",
        "bind_address": "127.0.0.1",
        "bind_port": 0,
        "socket_path": tmp_path / "admin" / "api.sock",
        "node_attestors": {"join_token": {}},
        "ratelimit_attestation": False,
        "event_poll_interval": 0.05,
        "jwt_issuer": ISSUER,
        "http_api": HttpApiOptions(bind_address="127.0.0.1", bind_port=0),
        "token_exchange": DEFAULT_POLICY,
    }
    values.update(overrides)
    return ServerOptions(**values)


def base_url(server: WardenServer, scheme: str = "http") -> str:
    assert server.credentials is not None
    return f"{scheme}://127.0.0.1:{server.credentials.port}"


def jwt_signer(server: WardenServer) -> JwtSigner:
    """The server CA's current JWT-SVID signer, to mint tokens with chosen claims."""
    # The CA mints only standard JWT-SVIDs; tests need `jti`, `nbf` and past times too.
    signer = server.ca._active(AuthorityKind.JWT_KEY).signer
    assert signer is not None
    return signer


def mint(
    server: WardenServer,
    spiffe_id: SpiffeId,
    *,
    audience: str = ISSUER,
    now: datetime | None = None,
    ttl: timedelta = timedelta(minutes=5),
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Mint a JWT-SVID signed by the server's CA, for the token endpoint by default."""
    return mint_jwt_svid(
        jwt_signer(server),
        spiffe_id,
        audience,
        now or datetime.now(UTC),
        ttl,
        extra_claims=extra,
    )


def exchange_form(
    subject_token: str, audience: str = "sts.amazonaws.com", **extra: str
) -> dict[str, str]:
    form = {
        "grant_type": GRANT,
        "subject_token": subject_token,
        "subject_token_type": JWT_TYPE,
        "audience": audience,
    }
    form.update(extra)
    return form


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def forge_hs256_with_public_key(server: WardenServer, spiffe_id: SpiffeId) -> str:
    """Forge a token signed HS256 with the bundle's public key as the HMAC secret.

    This is the classic algorithm-confusion attack on verifiers that take the algorithm
    from the token's header.
    """
    signer = jwt_signer(server)
    public_pem = signer.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "kid": signer.key_id, "typ": "JWT"}
    now = int(datetime.now(UTC).timestamp())
    claims = {"sub": str(spiffe_id), "aud": [ISSUER], "exp": now + 300, "iat": now}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def forge_alg_none(spiffe_id: SpiffeId, key_id: str) -> str:
    header = {"alg": "none", "kid": key_id, "typ": "JWT"}
    now = int(datetime.now(UTC).timestamp())
    claims = {"sub": str(spiffe_id), "aud": [ISSUER], "exp": now + 300, "iat": now}
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}."


# -- TLS ---------------------------------------------------------------------------------------


def _pem(certificates: list[x509.Certificate]) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def operator_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """Create a CA and a server certificate for 127.0.0.1, standing in for an operator's
    public certificate. Return the CA file, the certificate chain file and the key file."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test operator CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oidc.example.org")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("oidc.example.org"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "operator-ca.pem"
    ca_file.write_bytes(_pem([ca]))
    cert_file = directory / "http-api.pem"
    cert_file.write_bytes(_pem([leaf]))
    key_file = _write_key(directory / "http-api-key.pem", key)
    return ca_file, cert_file, key_file


def client_context(
    server: WardenServer,
    ca_file: Path,
    directory: Path,
    spiffe_id: SpiffeId | None,
    *,
    ttl: timedelta = timedelta(minutes=10),
) -> ssl.SSLContext:
    """A TLS client context trusting the operator CA, presenting an X509-SVID if asked."""
    context = ssl.create_default_context(cafile=str(ca_file))
    if spiffe_id is not None:
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        chain = server.ca.sign_x509_svid(spiffe_id, key.public_key(), ttl, now=datetime.now(UTC))
        name = str(spiffe_id).rsplit("/", 1)[-1]
        cert_path = directory / f"{name}-svid.pem"
        cert_path.write_bytes(_pem(chain))
        key_path = _write_key(directory / f"{name}-svid-key.pem", key)
        context.load_cert_chain(cert_path, key_path)
    return context


def https_client(context: ssl.SSLContext) -> httpx.AsyncClient:
    return httpx.AsyncClient(verify=context, timeout=30)
