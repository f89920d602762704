"""The signing path: check a CSR, sign an SVID for an authorised entry, audit it.

Every SVID the server issues, to agents for their workloads or to operators through `x509
mint` / `jwt mint`, goes through here and lands in the audit log before it is returned.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from warden.api.server.v1 import types_pb2
from warden.server.entry_cache import CachedEntry
from warden.server.signing_pool import (
    MIN_POOL_BATCH,
    SignedChain,
    SignRequest,
    TemplateCache,
    sign_or_explain,
    sign_with_template,
)
from warden.spiffe import SpiffeError, SpiffeId
from warden.spiffe.x509svid import load_csr
from warden.store.models import AuditEvent
from warden.store.validation import reserved_id_problem

if TYPE_CHECKING:
    from warden.server.app import WardenServer

log = logging.getLogger(__name__)


# Bounds on what a caller may ask to put in a JWT-SVID, which also lands in the audit log.
MAX_AUDIENCES = 16
MAX_AUDIENCE_LENGTH = 512


class SigningError(ValueError):
    """A signing request was refused; the message says why."""


class SigningDisabledError(SigningError):
    """The server's configuration turns this kind of signing off."""


def public_key_from_csr(csr_der: bytes) -> Any:
    """The public key of a DER CSR whose self-signature verifies."""
    try:
        csr = load_csr(csr_der)
    except (ValueError, SpiffeError) as error:
        raise SigningError(str(error)) from None
    return csr.public_key()


def svid_message(spiffe_id: str, chain: Sequence[x509.Certificate]) -> types_pb2.X509SVID:
    return types_pb2.X509SVID(
        spiffe_id=spiffe_id,
        cert_chain=[c.public_bytes(serialization.Encoding.DER) for c in chain],
        expires_at=int(chain[0].not_valid_after_utc.timestamp()),
    )


class SigningService:
    """Signs X509-SVIDs and JWT-SVIDs for agents and operators."""

    def __init__(self, server: WardenServer) -> None:
        self._server = server
        self._templates = TemplateCache()

    @property
    def _now(self) -> Callable[[], datetime]:
        return self._server.clock

    def _x509_ttl(self, requested: int) -> timedelta:
        return (
            timedelta(seconds=requested)
            if requested
            else self._server.options.default_x509_svid_ttl
        )

    def _jwt_ttl(self, requested: int) -> timedelta:
        return (
            timedelta(seconds=requested) if requested else self._server.options.default_jwt_svid_ttl
        )

    def sign_x509(
        self, spiffe_id: str, csr_der: bytes, ttl: timedelta, dns_names: Sequence[str]
    ) -> SignedChain:
        """Check the CSR and sign; the CPU-bound core of every X509-SVID issued."""
        return sign_with_template(
            self._templates.get(self._server.ca.x509_ca, self._now()),
            SignRequest(spiffe_id, csr_der, ttl.total_seconds(), tuple(dns_names)),
            self._now(),
        )

    async def sign_entries(
        self, agent_id: str, items: Sequence[tuple[CachedEntry, bytes]]
    ) -> list[types_pb2.X509SVID | SigningError]:
        """Sign one SVID per (entry, CSR); audit them all in one batch before returning.

        Large batches go to the signing workers when the server has them.
        """
        now = self._now()
        requests = [
            SignRequest(
                entry.spiffe_id,
                csr,
                self._x509_ttl(entry.x509_svid_ttl).total_seconds(),
                entry.dns_names,
            )
            for entry, csr in items
        ]
        pool = self._server.signing_pool
        outcomes: list[SignedChain | str]
        if pool.enabled and len(items) >= MIN_POOL_BATCH:
            outcomes = await pool.sign(self._server.ca.x509_ca, requests, now)
        else:
            template = self._templates.get(self._server.ca.x509_ca, now)
            outcomes = []
            for index, request in enumerate(requests):
                outcomes.append(sign_or_explain(template, request, now))
                if index % 32 == 31:
                    # Let other calls and the audit writer run during a large batch.
                    await asyncio.sleep(0)

        results: list[types_pb2.X509SVID | SigningError] = []
        events = []
        for (entry, _), outcome in zip(items, outcomes, strict=True):
            if isinstance(outcome, str):
                results.append(SigningError(outcome))
                continue
            results.append(
                types_pb2.X509SVID(
                    spiffe_id=entry.spiffe_id,
                    cert_chain=outcome.chain,
                    expires_at=outcome.not_after,
                )
            )
            events.append(
                AuditEvent(
                    action="svid.x509.sign",
                    actor=agent_id,
                    subject=entry.spiffe_id,
                    details={
                        "entry_id": entry.id,
                        "serial": format(outcome.serial_number, "x"),
                        "expires_at": outcome.not_after,
                        "owner": entry.owner,
                    },
                )
            )
        if events:
            await self._server.audit.record_many(events)
            self._server.metrics.count("svid", "x509", "sign", amount=len(events))
        return results

    async def sign_jwt_for_entry(
        self, agent_id: str, entry: CachedEntry, audience: Sequence[str]
    ) -> tuple[str, int, int]:
        """Mint a JWT-SVID for an entry; return the token, its issue time and its expiry."""
        self._check_jwt_enabled()
        audiences = self._check_audience(audience)
        now = self._now()
        ttl = self._jwt_ttl(entry.jwt_svid_ttl)
        token = self._server.ca.sign_jwt_svid(
            SpiffeId.parse(entry.spiffe_id), audiences, ttl=ttl, now=now
        )
        expires_at = self._expiry(token)
        await self._server.audit.record(
            AuditEvent(
                action="svid.jwt.sign",
                actor=agent_id,
                subject=entry.spiffe_id,
                details={
                    "entry_id": entry.id,
                    "audience": list(audience),
                    "expires_at": expires_at,
                    "owner": entry.owner,
                },
            )
        )
        self._server.metrics.count("svid", "jwt", "sign")
        return token, int(now.timestamp()), expires_at

    async def mint_x509(
        self, spiffe_id: str, csr_der: bytes, ttl_seconds: int, dns_names: Sequence[str], actor: str
    ) -> types_pb2.X509SVID:
        """Sign an X509-SVID for an operator (`warden x509 mint`), with no entry behind it."""
        parsed = self._check_own_domain(spiffe_id)
        signed = self.sign_x509(str(parsed), csr_der, self._x509_ttl(ttl_seconds), dns_names)
        if isinstance(signed, str):
            raise SigningError(signed)
        serial = format(signed.serial_number, "x")
        await self._server.audit.record(
            AuditEvent(
                action="svid.x509.mint",
                actor=actor,
                subject=str(parsed),
                details={"serial": serial, "expires_at": signed.not_after},
            )
        )
        log.info(
            "X509-SVID minted", extra={"spiffe_id": str(parsed), "caller": actor, "serial": serial}
        )
        return types_pb2.X509SVID(
            spiffe_id=str(parsed), cert_chain=signed.chain, expires_at=signed.not_after
        )

    async def mint_jwt(
        self, spiffe_id: str, audience: Sequence[str], ttl_seconds: int, actor: str
    ) -> tuple[str, int]:
        self._check_jwt_enabled()
        parsed = self._check_own_domain(spiffe_id)
        audiences = self._check_audience(audience)
        now = self._now()
        ttl = self._jwt_ttl(ttl_seconds)
        token = self._server.ca.sign_jwt_svid(parsed, audiences, ttl=ttl, now=now)
        expires_at = self._expiry(token)
        await self._server.audit.record(
            AuditEvent(
                action="svid.jwt.mint",
                actor=actor,
                subject=str(parsed),
                details={"audience": list(audience), "expires_at": expires_at},
            )
        )
        log.info(
            "JWT-SVID minted",
            extra={"spiffe_id": str(parsed), "caller": actor, "audience": list(audience)},
        )
        return token, expires_at

    @staticmethod
    def _check_audience(audience: Sequence[str]) -> list[str]:
        audiences = list(audience)
        if not audiences or not all(audiences):
            raise SigningError("at least one non-empty audience is required")
        if len(audiences) > MAX_AUDIENCES:
            raise SigningError(
                f"{len(audiences)} audiences requested; at most {MAX_AUDIENCES} are allowed"
            )
        long = next((a for a in audiences if len(a) > MAX_AUDIENCE_LENGTH), None)
        if long is not None:
            raise SigningError(
                f"audience {long[:40]!r}... is longer than {MAX_AUDIENCE_LENGTH} characters"
            )
        return audiences

    @staticmethod
    def _expiry(token: str) -> int:
        """The `exp` the token carries: the CA caps it at its signing key's expiry."""
        return int(jwt.decode(token, options={"verify_signature": False})["exp"])

    def _check_jwt_enabled(self) -> None:
        if self._server.options.disable_jwt_svids:
            raise SigningDisabledError(
                "JWT-SVIDs are disabled on this server (disable_jwt_svids = true in its "
                "configuration)"
            )

    def _check_own_domain(self, spiffe_id: str) -> SpiffeId:
        try:
            parsed = SpiffeId.parse(spiffe_id)
        except SpiffeError as error:
            raise SigningError(str(error)) from None
        trust_domain = self._server.options.trust_domain
        if parsed.trust_domain != trust_domain:
            raise SigningError(
                f"SPIFFE ID {spiffe_id} is not in this server's trust domain {trust_domain.name}"
            )
        if not parsed.path:
            raise SigningError(
                f"SPIFFE ID {spiffe_id} has no path: an SVID names a workload, not the trust domain"
            )
        problem = reserved_id_problem(str(parsed))
        if problem is not None:
            raise SigningError(problem)
        return parsed
