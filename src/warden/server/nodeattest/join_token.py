"""Join tokens: single-use secrets an operator generates for one node.

The agent ID is `spiffe://<td>/spire/agent/join_token/<token>`, as SPIRE forms it. The token
is consumed atomically in the datastore, so two servers presented the same token at once
accept it exactly once.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

from warden.server.nodeattest.base import (
    AttestationError,
    AttestationResult,
    AttestorContext,
    Challenger,
    agent_id,
)

# Tokens Warden generates are UUIDs; accept any path-safe value so SPIRE tokens work too.
_TOKEN_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")


class JoinTokenAttestor:
    name = "join_token"

    def __init__(self, plugin_data: Mapping[str, Any], context: AttestorContext) -> None:
        self._context = context

    async def attest(self, payload: bytes, challenge: Challenger) -> AttestationResult:
        try:
            token = payload.decode("ascii")
        except UnicodeDecodeError:
            raise AttestationError(
                "join token is not ASCII text", permission_denied=False
            ) from None
        if not _TOKEN_RE.fullmatch(token) or token in (".", ".."):
            raise AttestationError(
                "join token is malformed: expected 1 to 128 of A-Z, a-z, 0-9, '.', '_' and '-'",
                permission_denied=False,
            )
        from warden.store.errors import TokenInvalid

        spiffe_id = agent_id(self._context.trust_domain, "join_token", token)
        datastore = self._context.datastore
        try:
            record = await asyncio.to_thread(
                datastore.consume_join_token, token, now=self._context.now(), used_by=str(spiffe_id)
            )
        except TokenInvalid as error:
            raise AttestationError(str(error)) from None
        return AttestationResult(
            agent_id=spiffe_id,
            reattestable=False,
            owner=record.owner,
            details={"token_prefix": token[:4], "alias_spiffe_id": record.alias_spiffe_id or ""},
        )
