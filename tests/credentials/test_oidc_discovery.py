"""OIDC discovery and the JWKS, checked field by field and with Authlib, an OIDC client
library Warden does not use itself.

Authlib reads the discovery document over HTTP from the loopback listener, validates it as
OpenID Provider metadata, fetches the JWKS and verifies an exchanged token with it. The
document's issuer stays the public https URL whatever address the request came to.
"""

from __future__ import annotations

import socket
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from authlib.oidc.discovery import OpenIDProviderMetadata, get_well_known_url
from credentials_support import (
    BILLING,
    ISSUER,
    base_url,
    credential_server_options,
    exchange_form,
    mint,
)
from password_cluster import PasswordCluster
from prometheus_client import CollectorRegistry
from psycopg import sql

from warden.credentials.oidc import (
    MAX_JWKS_KEYS,
    discovery_document,
    issuer_path,
    key_algorithms,
    public_jwks,
    validate_issuer,
)
from warden.pki import CASettings, CertificateAuthority, KeyType
from warden.pki.keys import open_key_manager
from warden.pki.stores import MemoryBundleStore, MemoryJournalStore
from warden.server.app import WardenServer
from warden.server.metrics import Metrics
from warden.spiffe import TrustDomain

with warnings.catch_warnings():
    # Authlib 1.9 deprecates its JOSE module in favour of joserfc and keeps it until 2.0.
    warnings.simplefilter("ignore")
    from authlib.jose import JsonWebKey, JsonWebToken

EXPECTED_FIELDS = {
    "issuer",
    "jwks_uri",
    "token_endpoint",
    "response_types_supported",
    "subject_types_supported",
    "id_token_signing_alg_values_supported",
    "grant_types_supported",
    "claims_supported",
}


async def test_discovery_document_fields(server: WardenServer) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(base_url(server) + "/.well-known/openid-configuration")
    document = response.json()

    assert response.status_code == 200
    assert set(document) == EXPECTED_FIELDS
    assert document["issuer"] == ISSUER
    assert document["jwks_uri"] == ISSUER + "/keys"
    assert document["token_endpoint"] == ISSUER + "/v1/token"
    assert document["response_types_supported"] == ["id_token"]
    assert document["subject_types_supported"] == ["public"]
    assert document["id_token_signing_alg_values_supported"][0] == "RS256"
    assert document["grant_types_supported"] == ["urn:ietf:params:oauth:grant-type:token-exchange"]
    issuer = urlsplit(document["issuer"])
    assert issuer.scheme == "https"
    assert issuer.port is None
    assert issuer.query == ""
    assert issuer.fragment == ""


async def test_issuer_ignores_request_address(server: WardenServer) -> None:
    headers = {"Host": "203.0.113.7:9999", "X-Forwarded-Host": "evil.example.net"}
    async with httpx.AsyncClient() as client:
        response = await client.get(
            base_url(server) + "/.well-known/openid-configuration", headers=headers
        )

    assert response.json()["issuer"] == ISSUER
    assert response.json()["jwks_uri"] == ISSUER + "/keys"


async def test_jwks_keys_fit_cloud_providers(server: WardenServer) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.get(base_url(server) + "/keys")
    keys = response.json()["keys"]

    assert response.status_code == 200
    assert 1 <= len(keys) <= MAX_JWKS_KEYS
    for key in keys:
        assert key["kid"]
        assert key["use"] == "sig"
        assert key["kty"] == "RSA"
        assert key["alg"] == "RS256"
        assert not {"x5c", "x5t", "x5t#S256", "x5u", "d", "p", "q"} & set(key)


async def test_federation_keys_absent_from_spiffe_bundle(server: WardenServer) -> None:
    async with httpx.AsyncClient() as client:
        keys = (await client.get(base_url(server) + "/keys")).json()["keys"]
    bundle = server.bundle.to_jwks()

    federation_kids = {key["kid"] for key in keys}
    bundle_kids = {key.get("kid") for key in bundle["keys"]}
    assert federation_kids
    assert not federation_kids & bundle_kids


async def test_authlib_discovers_and_validates_token(server: WardenServer) -> None:
    local = base_url(server)
    async with httpx.AsyncClient() as client:
        # Authlib builds the discovery URL from the issuer; the request goes to loopback.
        well_known = get_well_known_url(ISSUER, external=True)
        document = (await client.get(local + urlsplit(well_known).path)).json()
        metadata = OpenIDProviderMetadata(document)
        metadata.validate()
        jwks = (await client.get(local + urlsplit(metadata["jwks_uri"]).path)).json()
        exchanged = await client.post(
            local + urlsplit(metadata["token_endpoint"]).path,
            data=exchange_form(mint(server, BILLING)),
        )
    token = exchanged.json()["access_token"]

    claims = JsonWebToken(["RS256"]).decode(
        token,
        JsonWebKey.import_key_set(jwks),
        claims_options={
            "iss": {"essential": True, "value": metadata["issuer"]},
            "aud": {"essential": True, "value": "sts.amazonaws.com"},
            "sub": {"essential": True, "value": str(BILLING)},
            "exp": {"essential": True},
        },
    )
    claims.validate()
    assert claims["iss"] == ISSUER
    assert claims.header["alg"] == "RS256"
    assert claims.header["kid"] in {key["kid"] for key in jwks["keys"]}


async def test_issuer_with_path_serves_both_routes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    issuer = "https://auth.example.org/warden"
    options = credential_server_options(tmp_path, jwt_issuer=issuer)
    instance = WardenServer(options, metrics=Metrics(CollectorRegistry()))
    await instance.start()
    try:
        async with httpx.AsyncClient() as client:
            prefixed = await client.get(
                base_url(instance) + "/warden/.well-known/openid-configuration"
            )
            bare = await client.get(base_url(instance) + "/.well-known/openid-configuration")
    finally:
        await instance.stop()

    assert prefixed.json()["issuer"] == issuer
    assert prefixed.json()["jwks_uri"] == issuer + "/keys"
    assert bare.json() == prefixed.json()
    assert issuer_path(issuer) == "/warden"


@pytest.mark.parametrize(
    "issuer",
    [
        "http://oidc.example.org",
        "https://oidc.example.org:8443",
        "https://oidc.example.org/?tenant=1",
        "https://oidc.example.org/#x",
        "https://user@oidc.example.org",
        "https://oidc.example.org/",
        "https://OIDC.example.org",
        "oidc.example.org",
    ],
)
def test_invalid_issuer_rejected(issuer: str) -> None:
    with pytest.raises(ValueError, match="invalid jwt_issuer"):
        validate_issuer(issuer)


async def test_server_refuses_invalid_issuer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    options = credential_server_options(tmp_path, jwt_issuer="https://oidc.example.org:8443")
    instance = WardenServer(options, metrics=Metrics(CollectorRegistry()))
    try:
        with pytest.raises(ValueError, match="must not contain a port"):
            await instance.start()
    finally:
        await instance.stop()


def test_es256_keys_on_request() -> None:
    now = datetime.now(UTC)
    trust_domain = TrustDomain("example.org")
    ca = CertificateAuthority(
        CASettings(trust_domain=trust_domain, federation_key_type=KeyType.EC_P256),
        open_key_manager("memory"),
        MemoryJournalStore(),
        MemoryBundleStore(),
    )
    ca.start(now)

    jwks = public_jwks(ca.federation_jwks(now))
    document = discovery_document(ISSUER, key_algorithms(jwks))

    assert [key["alg"] for key in jwks["keys"]] == ["ES256"]
    assert jwks["keys"][0]["kty"] == "EC"
    assert jwks["keys"][0]["use"] == "sig"
    assert document["id_token_signing_alg_values_supported"] == ["RS256", "ES256"]
    token = ca.sign_federation_token(
        {"iss": ISSUER, "sub": "spiffe://example.org/a", "aud": "x"}, timedelta(minutes=5), now=now
    )
    claims = JsonWebToken(["ES256"]).decode(token, JsonWebKey.import_key_set(jwks))
    assert claims["sub"] == "spiffe://example.org/a"


def test_jwks_capped_at_100_keys() -> None:
    keys = [
        {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": f"k{index}", "x5c": ["MIIB"], "x5t": "a"}
        for index in range(130)
    ]

    published = public_jwks({"keys": keys})["keys"]

    assert len(published) == MAX_JWKS_KEYS
    assert published[-1]["kid"] == "k129"
    assert published[0]["kid"] == "k30"
    assert all("x5c" not in key and "x5t" not in key for key in published)
    assert all(key["use"] == "sig" for key in published)


async def test_connections_disable_nagle(server: WardenServer) -> None:
    # Without TCP_NODELAY a response's body waits ~40 ms for the client's delayed ACK.
    async with httpx.AsyncClient() as client:
        await client.get(base_url(server) + "/keys")
        listener = server.credentials.listener
        assert listener is not None
        connections = list(listener._server.server_state.connections)  # type: ignore[union-attr]
        sockets = [c.transport.get_extra_info("socket") for c in connections]

    assert sockets
    assert all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in sockets)


@pytest.mark.postgres
async def test_unreachable_datastore_answers_503(
    tmp_path: Path, password_cluster: PasswordCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The JWKS and the audit records live in the datastore. While it cannot be reached,
    # clouds fetching the keys and clients asking for tokens are told to retry, and no
    # token leaves the server without its audit record.
    monkeypatch.setattr("warden.server.httpapi.JWKS_CACHE_SECONDS", 0.0)
    store_url = password_cluster.cluster.create_database()
    database = sql.Identifier(urlsplit(store_url).path.lstrip("/"))
    server = WardenServer(
        credential_server_options(tmp_path, datastore=store_url),
        metrics=Metrics(CollectorRegistry()),
    )
    async with server:
        token = mint(server, BILLING)
        token_with_jti = mint(server, BILLING, extra={"jti": "while-down"})
        with password_cluster.admin() as admin:
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(database))
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (urlsplit(store_url).path.lstrip("/"),),
            )
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                responses = {
                    "discovery": await client.get(
                        base_url(server) + "/.well-known/openid-configuration"
                    ),
                    "keys": await client.get(base_url(server) + "/keys"),
                    "token": await client.post(
                        base_url(server) + "/v1/token", data=exchange_form(token)
                    ),
                    "token with jti": await client.post(
                        base_url(server) + "/v1/token", data=exchange_form(token_with_jti)
                    ),
                }
        finally:
            with password_cluster.admin() as admin:
                admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(database))

    for name, response in responses.items():
        assert response.status_code == 503, name
        assert response.json()["error"] == "temporarily_unavailable", name
        assert response.headers["retry-after"] == "5", name
    assert "access_token" not in responses["token"].json()
    assert "access_token" not in responses["token with jti"].json()
