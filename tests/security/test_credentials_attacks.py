"""Attacks on the ephemeral credentials: OIDC discovery, token exchange and database leases.

Each test plays an attacker against servers, sockets, files and PostgreSQL clusters that it
starts itself, on loopback. A test that once found a hole stays as its regression test; the
attacks the product withstood stay too, so that a later change cannot open them.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "credentials"))

from credentials_support import (
    BILLING,
    DEFAULT_POLICY,
    base_url,
    credential_server_options,
    exchange_form,
    mint,
)

from warden.credentials import TokenExchangeSettings
from warden.server.app import WardenServer
from warden.server.metrics import Metrics

AWS = "sts.amazonaws.com"


def start_server(tmp_path: Path, **overrides: Any) -> WardenServer:
    return WardenServer(
        credential_server_options(tmp_path, **overrides), metrics=Metrics(CollectorRegistry())
    )


async def post_token(server: WardenServer, form: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(base_url(server) + "/v1/token", data=form)


def audit_details(server: WardenServer, action: str) -> list[dict[str, Any]]:
    return [dict(record.details) for record in server.datastore.iter_audit(action=action)]


# == Token exchange ==========================================================================


async def test_replay_within_leeway_rejected(tmp_path: Path) -> None:
    # With leeway, a token stays acceptable after its exp; its jti must be remembered for as
    # long, or the replay cache forgets it while the token is still accepted.
    policy = TokenExchangeSettings(rules=DEFAULT_POLICY.rules, leeway=timedelta(minutes=1))
    async with start_server(tmp_path, token_exchange=policy) as server:
        token = mint(
            server,
            BILLING,
            now=datetime.now(UTC) - timedelta(seconds=70),
            ttl=timedelta(seconds=60),
            extra={"jti": "within-leeway"},
        )
        first = await post_token(server, exchange_form(token))
        replayed = await post_token(server, exchange_form(token))

    assert first.status_code == 200
    assert replayed.status_code == 400
    assert replayed.json()["error"] == "invalid_request"
    assert "already used" in replayed.json()["error_description"]
    assert "access_token" not in replayed.json()
