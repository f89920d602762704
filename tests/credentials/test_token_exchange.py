"""RFC 8693 token exchange through the HTTP API: issued tokens, delegation, every
rejection with its documented error and no token, replay across servers, mTLS senders, and
the audit log."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from credentials_support import (
    ASSISTANT,
    BILLING,
    DEFAULT_POLICY,
    ISSUER,
    JWT_TYPE,
    STRANGER,
    base_url,
    client_context,
    credential_server_options,
    exchange_form,
    forge_alg_none,
    forge_hs256_with_public_key,
    https_client,
    jwt_signer,
    mint,
    operator_certificate,
)
from prometheus_client import CollectorRegistry

from warden.credentials import TokenExchangeSettings
from warden.pki import CASettings, CertificateAuthority
from warden.pki.keys import open_key_manager
from warden.pki.stores import MemoryBundleStore, MemoryJournalStore
from warden.server.app import WardenServer
from warden.server.metrics import Metrics
from warden.server.options import HttpApiOptions
from warden.spiffe import SpiffeId, TrustDomain

AWS = "sts.amazonaws.com"
AZURE = "api://AzureADTokenExchange"


async def post_token(server: WardenServer, form: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(base_url(server) + "/v1/token", data=form)


async def federation_claims(server: WardenServer, token: str) -> dict[str, Any]:
    """Verify an issued token against the published JWKS and return its claims."""
    async with httpx.AsyncClient() as client:
        jwks = (await client.get(base_url(server) + "/keys")).json()
    key_id = jwt.get_unverified_header(token)["kid"]
    key = next(jwt.PyJWK(k) for k in jwks["keys"] if k["kid"] == key_id)
    claims: dict[str, Any] = jwt.decode(
        token, key, algorithms=["RS256"], issuer=ISSUER, options={"verify_aud": False}
    )
    return claims


def assert_rejected(response: httpx.Response, error: str) -> None:
    body = response.json()
    assert response.status_code == 400
    assert body["error"] == error
    assert body["error_description"]
    assert "access_token" not in body
    assert response.headers["cache-control"] == "no-store"


# -- issued tokens --------------------------------------------------------------------------


async def test_exchange_issues_federation_token(server: WardenServer) -> None:
    response = await post_token(server, exchange_form(mint(server, BILLING)))
    body = response.json()
    claims = await federation_claims(server, body["access_token"])

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert body["issued_token_type"] == JWT_TYPE
    assert body["token_type"] == "N_A"
    assert body["expires_in"] == 900
    assert claims["iss"] == ISSUER
    assert claims["sub"] == str(BILLING)
    assert claims["aud"] == AWS
    assert claims["exp"] - claims["iat"] == 900
    assert claims["jti"]
    assert "act" not in claims


async def test_lifetime_ignores_subject_token_expiry(server: WardenServer) -> None:
    almost_expired = mint(server, BILLING, ttl=timedelta(seconds=20))

    body = (await post_token(server, exchange_form(almost_expired))).json()

    assert body["expires_in"] == 900


async def test_access_token_type_is_bearer(server: WardenServer) -> None:
    form = exchange_form(
        mint(server, BILLING),
        requested_token_type="urn:ietf:params:oauth:token-type:access_token",
    )

    body = (await post_token(server, form)).json()

    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert body["token_type"] == "Bearer"


async def test_delegation_adds_act_claim(server: WardenServer) -> None:
    form = exchange_form(
        mint(server, BILLING), actor_token=mint(server, ASSISTANT), actor_token_type=JWT_TYPE
    )

    body = (await post_token(server, form)).json()
    claims = await federation_claims(server, body["access_token"])

    assert claims["sub"] == str(BILLING)
    assert claims["act"] == {"sub": str(ASSISTANT)}


async def test_rule_ttl_capped_at_max(tmp_path: Path) -> None:
    policy = TokenExchangeSettings(
        rules=DEFAULT_POLICY.rules,
        default_ttl=timedelta(minutes=2),
        max_ttl=timedelta(minutes=3),
    )
    options = credential_server_options(tmp_path, token_exchange=policy)
    async with WardenServer(options, metrics=Metrics(CollectorRegistry())) as instance:
        body = (await post_token(instance, exchange_form(mint(instance, BILLING)))).json()

    assert body["expires_in"] == 120


# -- rejections -------------------------------------------------------------------------------


async def test_expired_subject_token_rejected(server: WardenServer) -> None:
    expired = mint(server, BILLING, now=datetime.now(UTC) - timedelta(minutes=10))

    response = await post_token(server, exchange_form(expired))

    assert_rejected(response, "invalid_request")
    assert "expired" in response.json()["error_description"]


async def test_not_yet_valid_subject_token_rejected(server: WardenServer) -> None:
    later = int((datetime.now(UTC) + timedelta(minutes=3)).timestamp())
    token = mint(server, BILLING, extra={"nbf": later})

    response = await post_token(server, exchange_form(token))

    assert_rejected(response, "invalid_request")
    assert "not valid before" in response.json()["error_description"]


async def test_other_audience_subject_token_rejected(server: WardenServer) -> None:
    token = mint(server, BILLING, audience="https://billing.example.org")

    response = await post_token(server, exchange_form(token))

    assert_rejected(response, "invalid_request")
    assert ISSUER in response.json()["error_description"]


async def test_alg_none_rejected(server: WardenServer) -> None:
    token = forge_alg_none(BILLING, jwt_signer(server).key_id)

    response = await post_token(server, exchange_form(token))

    assert_rejected(response, "invalid_request")
    assert "'none' is not allowed" in response.json()["error_description"]


async def test_hs256_with_public_key_rejected(server: WardenServer) -> None:
    token = forge_hs256_with_public_key(server, BILLING)

    response = await post_token(server, exchange_form(token))

    assert_rejected(response, "invalid_request")
    assert "HS256" in response.json()["error_description"]


async def test_unknown_trust_domain_rejected(server: WardenServer) -> None:
    now = datetime.now(UTC)
    other = CertificateAuthority(
        CASettings(trust_domain=TrustDomain("other.org")),
        open_key_manager("memory"),
        MemoryJournalStore(),
        MemoryBundleStore(),
    )
    other.start(now)
    token = other.sign_jwt_svid(SpiffeId.parse("spiffe://other.org/billing/api"), ISSUER, now=now)

    response = await post_token(server, exchange_form(token))

    assert_rejected(response, "invalid_request")
    assert "no bundle for trust domain other.org" in response.json()["error_description"]


async def test_replayed_jti_rejected(server: WardenServer) -> None:
    token = mint(server, BILLING, extra={"jti": "one-time-1"})

    first = await post_token(server, exchange_form(token))
    second = await post_token(server, exchange_form(token))

    assert first.status_code == 200
    assert_rejected(second, "invalid_request")
    assert "already used" in second.json()["error_description"]


async def test_audience_not_allowed_is_invalid_target(server: WardenServer) -> None:
    response = await post_token(server, exchange_form(mint(server, STRANGER), audience=AWS))

    assert_rejected(response, "invalid_target")
    assert str(STRANGER) in response.json()["error_description"]


async def test_actor_not_allowed_rejected(server: WardenServer) -> None:
    form = exchange_form(
        mint(server, BILLING), actor_token=mint(server, STRANGER), actor_token_type=JWT_TYPE
    )

    response = await post_token(server, form)

    assert_rejected(response, "invalid_request")
    assert f"actor {STRANGER} may not act" in response.json()["error_description"]


async def test_actor_without_grant_for_audience_rejected(server: WardenServer) -> None:
    # The assistant may act towards AWS only; the GCP rule lists no actors.
    gcp = DEFAULT_POLICY.rules[1].audiences[0]
    form = exchange_form(
        mint(server, BILLING),
        audience=gcp,
        actor_token=mint(server, ASSISTANT),
        actor_token_type=JWT_TYPE,
    )

    assert_rejected(await post_token(server, form), "invalid_request")


async def test_long_subject_rejected_for_gcp_limit(server: WardenServer) -> None:
    long_id = SpiffeId.parse("spiffe://example.org/" + "/".join(["segment"] * 16))
    assert len(str(long_id)) > 127

    response = await post_token(server, exchange_form(mint(server, long_id), audience=AZURE))

    assert_rejected(response, "invalid_request")
    assert "127" in response.json()["error_description"]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
        ({"grant_type": ""}, "invalid_request"),
        ({"subject_token": ""}, "invalid_request"),
        ({"subject_token_type": ""}, "invalid_request"),
        ({"subject_token_type": "urn:ietf:params:oauth:token-type:saml2"}, "invalid_request"),
        ({"actor_token_type": JWT_TYPE}, "invalid_request"),
        ({"audience": ""}, "invalid_request"),
        ({"scope": "admin"}, "invalid_scope"),
        ({"requested_token_type": "urn:ietf:params:oauth:token-type:saml1"}, "invalid_request"),
    ],
    ids=[
        "grant-type",
        "no-grant-type",
        "no-subject-token",
        "no-subject-token-type",
        "saml-subject",
        "actor-type-alone",
        "no-audience",
        "scope",
        "saml-requested",
    ],
)
async def test_malformed_request_rejected(
    server: WardenServer, change: dict[str, str], error: str
) -> None:
    form = exchange_form(mint(server, BILLING))
    form.update(change)
    form = {key: value for key, value in form.items() if value != ""}

    assert_rejected(await post_token(server, form), error)


async def test_two_audiences_rejected(server: WardenServer) -> None:
    body = (
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"
        f"&subject_token={mint(server, BILLING)}&subject_token_type={JWT_TYPE}"
        f"&audience={AWS}&audience={AZURE}"
    )
    async with httpx.AsyncClient() as client:
        response = await client.post(
            base_url(server) + "/v1/token",
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

    assert_rejected(response, "invalid_target")


async def test_repeated_parameter_rejected(server: WardenServer) -> None:
    token = mint(server, BILLING)
    body = (
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange"
        f"&subject_token={token}&subject_token={token}&subject_token_type={JWT_TYPE}"
        f"&audience={AWS}"
    )
    async with httpx.AsyncClient() as client:
        response = await client.post(
            base_url(server) + "/v1/token",
            content=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

    assert_rejected(response, "invalid_request")


async def test_json_body_rejected(server: WardenServer) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            base_url(server) + "/v1/token", json=exchange_form(mint(server, BILLING))
        )

    assert_rejected(response, "invalid_request")
    assert "x-www-form-urlencoded" in response.json()["error_description"]


async def test_token_without_jti_rejected_when_required(tmp_path: Path) -> None:
    policy = TokenExchangeSettings(rules=DEFAULT_POLICY.rules, require_jti=True)
    options = credential_server_options(tmp_path, token_exchange=policy)
    async with WardenServer(options, metrics=Metrics(CollectorRegistry())) as instance:
        without = await post_token(instance, exchange_form(mint(instance, BILLING)))
        with_jti = await post_token(
            instance, exchange_form(mint(instance, BILLING, extra={"jti": "j-1"}))
        )

    assert_rejected(without, "invalid_request")
    assert with_jti.status_code == 200


@pytest.mark.parametrize("leeway", [timedelta(seconds=-1), timedelta(minutes=5, seconds=1)])
def test_leeway_outside_bounds_rejected(leeway: timedelta) -> None:
    with pytest.raises(ValueError, match="leeway"):
        TokenExchangeSettings(leeway=leeway)


# -- replay across servers ----------------------------------------------------------------------


async def test_replay_caught_by_second_server(tmp_path: Path, postgres_url: str) -> None:
    first = WardenServer(
        credential_server_options(tmp_path / "a", datastore=postgres_url),
        metrics=Metrics(CollectorRegistry()),
    )
    second = WardenServer(
        credential_server_options(tmp_path / "b", datastore=postgres_url),
        metrics=Metrics(CollectorRegistry()),
    )
    await first.start()
    await second.start()
    try:
        token = mint(first, BILLING, extra={"jti": "shared-jti"})
        accepted = await post_token(first, exchange_form(token))
        replayed = await post_token(second, exchange_form(token))
    finally:
        await second.stop()
        await first.stop()

    assert accepted.status_code == 200
    assert_rejected(replayed, "invalid_request")
    assert "already used" in replayed.json()["error_description"]


# -- mTLS senders -------------------------------------------------------------------------------


@pytest.fixture
async def tls_server(tmp_path: Path) -> Any:
    ca_file, cert_file, key_file = operator_certificate(tmp_path / "operator")
    http_api = HttpApiOptions("127.0.0.1", 0, cert_file, key_file)
    options = credential_server_options(tmp_path, http_api=http_api)
    instance = WardenServer(options, metrics=Metrics(CollectorRegistry()))
    await instance.start()
    try:
        yield instance, ca_file
    finally:
        await instance.stop()


async def post_tls(
    server: WardenServer,
    ca_file: Path,
    directory: Path,
    peer: SpiffeId | None,
    form: dict[str, str],
) -> httpx.Response:
    context = client_context(server, ca_file, directory, peer)
    async with https_client(context) as client:
        return await client.post(base_url(server, "https") + "/v1/token", data=form)


async def test_mtls_sender_matching_subject_accepted(tls_server: Any, tmp_path: Path) -> None:
    server, ca_file = tls_server

    response = await post_tls(
        server, ca_file, tmp_path / "c", BILLING, exchange_form(mint(server, BILLING))
    )

    assert response.status_code == 200


async def test_mtls_sender_other_identity_rejected(tls_server: Any, tmp_path: Path) -> None:
    server, ca_file = tls_server

    response = await post_tls(
        server, ca_file, tmp_path / "c", STRANGER, exchange_form(mint(server, BILLING))
    )

    assert_rejected(response, "invalid_request")
    assert f"client certificate is for {STRANGER}" in response.json()["error_description"]


async def test_mtls_delegation_sender_is_actor(tls_server: Any, tmp_path: Path) -> None:
    server, ca_file = tls_server
    form = exchange_form(
        mint(server, BILLING), actor_token=mint(server, ASSISTANT), actor_token_type=JWT_TYPE
    )

    as_actor = await post_tls(server, ca_file, tmp_path / "a", ASSISTANT, form)
    form["actor_token"] = mint(server, ASSISTANT)
    as_subject = await post_tls(server, ca_file, tmp_path / "s", BILLING, form)

    assert as_actor.status_code == 200
    assert_rejected(as_subject, "invalid_request")


async def test_https_without_client_certificate_accepted(tls_server: Any, tmp_path: Path) -> None:
    server, ca_file = tls_server

    response = await post_tls(
        server, ca_file, tmp_path / "c", None, exchange_form(mint(server, BILLING))
    )

    assert response.status_code == 200


# -- audit ------------------------------------------------------------------------------------


async def test_audit_records_each_decision_without_token(server: WardenServer) -> None:
    subject_token = mint(server, BILLING, extra={"jti": "audited-jti"})
    issued = (await post_token(server, exchange_form(subject_token))).json()
    await post_token(server, exchange_form(mint(server, STRANGER)))
    await server.audit.flush()

    records = list(server.datastore.iter_audit(action="token.*"))
    issued_records = [r for r in records if r.action == "token.exchange"]
    rejected = [r for r in records if r.action == "token.exchange_reject"]
    claims = jwt.decode(issued["access_token"], options={"verify_signature": False})

    assert len(issued_records) == 1
    assert issued_records[0].subject == str(BILLING)
    assert issued_records[0].details["token_id"] == claims["jti"]
    assert issued_records[0].details["audience"] == AWS
    assert issued_records[0].details["subject_token_id"] == "audited-jti"
    assert len(rejected) == 1
    assert rejected[0].details["error"] == "invalid_target"
    assert rejected[0].subject == str(STRANGER)
    serialized = json.dumps([dict(r.details) for r in records])
    assert issued["access_token"] not in serialized
    assert subject_token not in serialized
    assert issued["access_token"].split(".")[2] not in serialized
