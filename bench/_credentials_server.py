"""A Warden server with the HTTP API, run as its own process for bench/credentials.py.

It prints one JSON line with the HTTP API's port and subject tokens, then serves until its
standard input closes. Besides the real routes, the listener gets `GET /bench/empty`, which
returns 204 and does nothing else: the floor of any request on that listener.

    python -m bench._credentials_server <data directory> <jti tokens>
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

ISSUER = "https://oidc.example.org"
SUBJECT = "spiffe://example.org/billing/api"
AUDIENCE = "sts.amazonaws.com"


async def serve(directory: Path, jti_tokens: int) -> None:
    from prometheus_client import CollectorRegistry
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from warden.credentials import ExchangeRule, SpiffeIdPattern, TokenExchangeSettings
    from warden.pki.journal import AuthorityKind
    from warden.server.app import WardenServer
    from warden.server.metrics import Metrics
    from warden.server.options import HttpApiOptions, ServerOptions
    from warden.spiffe import SpiffeId, TrustDomain, mint_jwt_svid

    policy = TokenExchangeSettings(
        rules=(
            ExchangeRule(
                subjects=(SpiffeIdPattern.parse("spiffe://example.org/billing/*"),),
                audiences=(AUDIENCE,),
            ),
        )
    )
    options = ServerOptions(
        trust_domain=TrustDomain("example.org"),
        data_dir=directory / "data",
        bind_address="127.0.0.1",
        bind_port=0,
        socket_path=directory / "admin" / "api.sock",
        key_manager="memory",
        jwt_issuer=ISSUER,
        http_api=HttpApiOptions("127.0.0.1", 0),
        token_exchange=policy,
    )
    server = WardenServer(options, metrics=Metrics(CollectorRegistry()))
    await server.start()

    async def empty(request: Request) -> Response:
        return Response(status_code=204)

    assert server.credentials is not None
    assert server.credentials.listener is not None
    server.credentials.listener.app.router.routes.insert(0, Route("/bench/empty", empty))

    now = datetime.now(UTC)
    subject = SpiffeId.parse(SUBJECT)
    # A JWT-SVID as Warden's agents fetch it: no jti, reusable until it expires.
    reusable = server.ca.sign_jwt_svid(subject, ISSUER, timedelta(minutes=5), now=now)
    # The CA mints only standard JWT-SVIDs; single-use tokens need its signer directly.
    signer = server.ca._active(AuthorityKind.JWT_KEY).signer
    single_use = [
        mint_jwt_svid(
            signer, subject, ISSUER, now, timedelta(minutes=10), extra_claims={"jti": f"bench-{n}"}
        )
        for n in range(jti_tokens)
    ]
    port = server.credentials.port
    sys.stdout.write(
        json.dumps({"port": port, "reusable": reusable, "single_use": single_use}) + "\n"
    )
    sys.stdout.flush()
    try:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        await server.stop()


if __name__ == "__main__":
    asyncio.run(serve(Path(sys.argv[1]), int(sys.argv[2])))
