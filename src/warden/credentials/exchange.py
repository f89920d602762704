"""OAuth 2.0 Token Exchange (RFC 8693): a JWT-SVID in, a short-lived federation token out.

A workload posts its JWT-SVID as the `subject_token` and names one `audience` (a cloud's
STS, for example). The exchange checks, in order:

1. the request's form (`grant_type`, token types, one audience, no repeated parameter);
2. the subject token: a valid JWT-SVID of a trust domain the server has a bundle for, for
   the token endpoint's audience, not expired and not yet valid only later;
3. the actor token, when there is one, the same way (delegation: an AI agent acting for a
   workload);
4. the sender: over mTLS, the client certificate's SPIFFE ID must be the actor's when an
   actor token is present, and the subject's otherwise;
5. the policy: a rule must allow the subject this audience and, with an actor, allow that
   actor to act for the subject;
6. replay: a token that carries `jti` is accepted once, remembered until it expires plus
   the leeway, because until then it would still be accepted.

Then it signs a token with `iss` (the issuer), `sub` (the subject's SPIFFE ID), `aud` (the
audience), `iat`, `exp`, a fresh `jti` and, with an actor, `act: {"sub": <actor>}`. Its
lifetime is the rule's or the default (15 minutes), capped at the configured maximum. It does
not depend on the subject token's remaining lifetime, because, like a cloud STS, the exchange
checks the subject token only when it happens.

Errors follow RFC 8693 section 2.2.2: `invalid_request` for a malformed request or an
invalid or unacceptable subject or actor token, `invalid_target` for an audience the subject
may not have, `unsupported_grant_type` for another grant type.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from warden.credentials.errors import ExchangeError
from warden.credentials.oidc import TOKEN_EXCHANGE_GRANT
from warden.credentials.patterns import any_matches
from warden.credentials.settings import ExchangeRule, TokenExchangeSettings
from warden.spiffe import BundleSource, JwtSvid, JwtSvidError, SpiffeId, validate_jwt_svid
from warden.store.models import AuditEvent

log = logging.getLogger(__name__)

# Token type URIs of RFC 8693 section 3 (names, not secrets).
TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"  # noqa: S105
TOKEN_TYPE_ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"  # noqa: S105
TOKEN_TYPE_ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"  # noqa: S105
#: Token types a JWT-SVID may be presented as.
SUBJECT_TOKEN_TYPES = frozenset({TOKEN_TYPE_JWT, TOKEN_TYPE_ID_TOKEN})
#: Token types Warden can issue; each is the same signed JWT.
ISSUED_TOKEN_TYPES = frozenset({TOKEN_TYPE_JWT, TOKEN_TYPE_ID_TOKEN, TOKEN_TYPE_ACCESS_TOKEN})
#: GCP workload identity federation rejects a `sub` longer than this.
MAX_SUBJECT_LENGTH = 127
#: Longest `jti` accepted; it is hashed before it is stored.
MAX_JTI_LENGTH = 1024
#: Maximum length of the excerpt of a request value quoted in an error description or audit record. Anyone
#: may call the token endpoint and every rejection is audited, so a value of 60 KB must not be
#: copied into the append-only audit log. The limit fits the longest GCP provider audience
#: (158 characters) but stops before the signature of the shortest JWT-SVID (about 186), so a
#: token sent in the wrong parameter is not recorded whole.
MAX_QUOTED_LENGTH = 160
#: Maximum length of an audited `error_description`, which can quote a JWT-SVID's claims.
MAX_AUDITED_DESCRIPTION = 1024
# RFC 8693 allows `audience` and `resource` more than once; RFC 6749 section 3.1 forbids
# repeating any other parameter.
_REPEATABLE = frozenset({"audience", "resource"})

INVALID_REQUEST = "invalid_request"
INVALID_TARGET = "invalid_target"
INVALID_SCOPE = "invalid_scope"
UNSUPPORTED_GRANT_TYPE = "unsupported_grant_type"


class ReplayCache(Protocol):
    """Remembers token ids; `remember` returns False for one seen before and unexpired."""

    def remember(self, trust_domain: str, jti: str, expires_at: datetime) -> bool: ...


class FederationSigner(Protocol):
    """Signs federation tokens; `warden.pki.CertificateAuthority` is one."""

    def sign_federation_token(
        self, claims: Mapping[str, Any], ttl: timedelta | None = None, *, now: datetime
    ) -> str: ...


@dataclass(frozen=True, slots=True)
class ExchangeRequest:
    """A parsed token exchange request. `peer` is the mTLS client's SPIFFE ID, if any."""

    subject_token: str
    subject_token_type: str
    audience: str
    requested_token_type: str = TOKEN_TYPE_JWT
    actor_token: str | None = None
    actor_token_type: str | None = None
    peer: SpiffeId | None = None


@dataclass(frozen=True, slots=True)
class ExchangeResult:
    """An issued token and what the audit log records about it."""

    access_token: str
    issued_token_type: str
    token_id: str
    subject: str
    audience: str
    actor: str | None
    issued_at: datetime
    expires_at: datetime
    subject_token_id: str | None

    @property
    def expires_in(self) -> int:
        return int((self.expires_at - self.issued_at).total_seconds())

    def to_response(self) -> dict[str, Any]:
        """Return the RFC 8693 section 2.2.1 response body."""
        bearer = self.issued_token_type == TOKEN_TYPE_ACCESS_TOKEN
        return {
            "access_token": self.access_token,
            "issued_token_type": self.issued_token_type,
            # "N_A" when the token is not an access token, as RFC 8693 section 2.2.1 defines.
            "token_type": "Bearer" if bearer else "N_A",
            "expires_in": self.expires_in,
        }

    def audit_event(self, actor: str) -> AuditEvent:
        """Return the `token.exchange` audit record; it names the token by id, never itself."""
        details: dict[str, Any] = {
            "token_id": self.token_id,
            "audience": self.audience,
            "expires_at": self.expires_at.isoformat(),
            "issued_token_type": self.issued_token_type,
        }
        if self.actor:
            details["act"] = self.actor
        if self.subject_token_id:
            details["subject_token_id"] = self.subject_token_id
        return AuditEvent(
            action="token.exchange", actor=actor, subject=self.subject, details=details
        )


def rejection_audit_event(error: ExchangeError, actor: str, audience: str) -> AuditEvent:
    """Return the `token.exchange_reject` audit record of a refused request.

    The requested audience and the description are cut to a bounded length, because they
    come from an unauthenticated request.
    """
    details: dict[str, Any] = {
        "error": error.error,
        "error_description": error.description[:MAX_AUDITED_DESCRIPTION],
    }
    if audience:
        details["audience"] = _excerpt(audience, quoted=False)
    if error.actor:
        details["act"] = error.actor
    return AuditEvent(
        action="token.exchange_reject", actor=actor, subject=error.subject, details=details
    )


def _excerpt(value: str, *, quoted: bool = True) -> str:
    """Return `value`, cut to MAX_QUOTED_LENGTH characters with a marker, for a message."""
    if len(value) > MAX_QUOTED_LENGTH:
        value = f"{value[:MAX_QUOTED_LENGTH]}... ({len(value)} characters)"
    return repr(value) if quoted else value


def _single(form: Mapping[str, Sequence[str]], name: str, *, required: bool) -> str | None:
    values = form.get(name, ())
    if len(values) > 1:
        raise ExchangeError(INVALID_REQUEST, f"parameter {name} is repeated; send it once")
    if not values or values[0] == "":
        if required:
            raise ExchangeError(INVALID_REQUEST, f"parameter {name} is missing")
        return None
    return values[0]


def parse_exchange_request(
    form: Mapping[str, Sequence[str]], peer: SpiffeId | None = None
) -> ExchangeRequest:
    """Check a form-encoded token request and return it parsed; raise ExchangeError."""
    for name, values in form.items():
        if len(values) > 1 and name not in _REPEATABLE:
            raise ExchangeError(INVALID_REQUEST, f"parameter {name} is repeated; send it once")

    grant_type = _single(form, "grant_type", required=True)
    if grant_type != TOKEN_EXCHANGE_GRANT:
        raise ExchangeError(
            UNSUPPORTED_GRANT_TYPE,
            f"grant_type {_excerpt(grant_type or '')} is not supported; use {TOKEN_EXCHANGE_GRANT}",
        )

    subject_token = _single(form, "subject_token", required=True)
    subject_token_type = _single(form, "subject_token_type", required=True)
    assert subject_token is not None
    assert subject_token_type is not None
    if subject_token_type not in SUBJECT_TOKEN_TYPES:
        raise ExchangeError(
            INVALID_REQUEST,
            f"subject_token_type {_excerpt(subject_token_type)} is not supported; send a JWT-SVID as "
            f"{TOKEN_TYPE_JWT}",
        )

    actor_token = _single(form, "actor_token", required=False)
    actor_token_type = _single(form, "actor_token_type", required=False)
    if actor_token is None and actor_token_type is not None:
        raise ExchangeError(
            INVALID_REQUEST, "actor_token_type is present without actor_token; send both or neither"
        )
    if actor_token is not None:
        if actor_token_type is None:
            raise ExchangeError(
                INVALID_REQUEST, "actor_token_type is required when actor_token is present"
            )
        if actor_token_type not in SUBJECT_TOKEN_TYPES:
            raise ExchangeError(
                INVALID_REQUEST,
                f"actor_token_type {_excerpt(actor_token_type)} is not supported; send a JWT-SVID as "
                f"{TOKEN_TYPE_JWT}",
            )

    if _single(form, "scope", required=False) is not None:
        raise ExchangeError(
            INVALID_SCOPE, "scope is not supported: issued tokens carry an audience, not scopes"
        )

    targets = [value for name in ("audience", "resource") for value in form.get(name, ()) if value]
    if not targets:
        raise ExchangeError(
            INVALID_REQUEST, "audience is missing; name the service the token is for"
        )
    if len(set(targets)) > 1:
        raise ExchangeError(
            INVALID_TARGET,
            f"{len(set(targets))} audiences requested; each token is issued for exactly one, "
            "so exchange once per audience",
        )

    requested = _single(form, "requested_token_type", required=False) or TOKEN_TYPE_JWT
    if requested not in ISSUED_TOKEN_TYPES:
        raise ExchangeError(
            INVALID_REQUEST,
            f"requested_token_type {_excerpt(requested)} is not supported; request {TOKEN_TYPE_JWT}",
        )
    return ExchangeRequest(
        subject_token=subject_token,
        subject_token_type=subject_token_type,
        audience=targets[0],
        requested_token_type=requested,
        actor_token=actor_token,
        actor_token_type=actor_token_type,
        peer=peer,
    )


class TokenExchanger:
    """Validates exchange requests and signs federation tokens.

    Thread-safe: `exchange` reads immutable settings, the current bundles through
    `bundles()`, and writes only through the replay cache and the signer.
    """

    def __init__(
        self,
        settings: TokenExchangeSettings,
        *,
        issuer: str,
        bundles: Callable[[], BundleSource],
        signer: FederationSigner,
        replay: ReplayCache,
        clock: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.issuer = issuer
        self.audience = settings.audience or issuer
        self._bundles = bundles
        self._signer = signer
        self._replay = replay
        self._clock = clock

    def exchange(self, request: ExchangeRequest) -> ExchangeResult:
        """Issue a token for `request` or raise ExchangeError saying why not.

        Blocks on the replay cache when a token carries `jti`; call it from a worker thread
        in asynchronous code.
        """
        now = self._clock()
        subject = self._validate(request.subject_token, "subject_token", now)
        subject_id = str(subject.spiffe_id)
        actor = None
        if request.actor_token is not None:
            actor = self._validate(request.actor_token, "actor_token", now, subject=subject_id)
        actor_id = str(actor.spiffe_id) if actor is not None else None

        self._check_sender(request.peer, subject_id, actor_id)
        if len(subject_id) > MAX_SUBJECT_LENGTH:
            raise ExchangeError(
                INVALID_REQUEST,
                f"SPIFFE ID {subject_id} is {len(subject_id)} characters long; issued tokens "
                f"carry it as sub, which GCP limits to {MAX_SUBJECT_LENGTH} characters, so "
                "register the workload under a shorter SPIFFE ID",
                subject=subject_id,
                actor=actor_id or "",
            )
        rule = self._authorize(subject.spiffe_id, request.audience, actor)

        subject_jti = self._check_replay(subject, "subject_token", subject_id, actor_id)
        if actor is not None:
            self._check_replay(actor, "actor_token", subject_id, actor_id)

        ttl = min(rule.ttl or self.settings.default_ttl, self.settings.max_ttl)
        token_id = secrets.token_urlsafe(18)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject_id,
            "aud": request.audience,
            "jti": token_id,
        }
        if actor_id is not None:
            claims["act"] = {"sub": actor_id}
        token = self._signer.sign_federation_token(claims, ttl, now=now)
        # The signer writes whole seconds and caps the expiry at its key's; read both back so
        # that expires_in equals exp - iat.
        issued_at, expires_at = _signed_times(token, now, ttl)
        return ExchangeResult(
            access_token=token,
            issued_token_type=request.requested_token_type,
            token_id=token_id,
            subject=subject_id,
            audience=request.audience,
            actor=actor_id,
            issued_at=issued_at,
            expires_at=expires_at,
            subject_token_id=subject_jti,
        )

    def _validate(self, token: str, parameter: str, now: datetime, *, subject: str = "") -> JwtSvid:
        try:
            return validate_jwt_svid(
                token, self.audience, self._bundles(), now, leeway=self.settings.leeway
            )
        except JwtSvidError as error:
            raise ExchangeError(
                INVALID_REQUEST, f"{parameter} is not acceptable: {error}", subject=subject
            ) from None

    @staticmethod
    def _check_sender(peer: SpiffeId | None, subject: str, actor: str | None) -> None:
        if peer is None:
            return
        expected = actor if actor is not None else subject
        if str(peer) != expected:
            role = "actor" if actor is not None else "subject"
            raise ExchangeError(
                INVALID_REQUEST,
                f"the client certificate is for {peer}, but the {role} token is for {expected}; "
                f"over mTLS, the {role}'s own X509-SVID must present its token",
                subject=subject,
                actor=actor or "",
            )

    def _authorize(self, subject: SpiffeId, audience: str, actor: JwtSvid | None) -> ExchangeRule:
        subject_id = str(subject)
        actor_id = str(actor.spiffe_id) if actor is not None else ""
        granting = [
            rule
            for rule in self.settings.rules
            if any_matches(rule.subjects, subject) and audience in rule.audiences
        ]
        if not granting:
            raise ExchangeError(
                INVALID_TARGET,
                f"{subject_id} may not obtain tokens for audience {_excerpt(audience)}; add it to a "
                "token_exchange rule that matches this SPIFFE ID",
                subject=subject_id,
                actor=actor_id,
            )
        if actor is None:
            return granting[0]
        for rule in granting:
            if any_matches(rule.actors, actor.spiffe_id):
                return rule
        raise ExchangeError(
            INVALID_REQUEST,
            f"actor {actor_id} may not act for {subject_id} (audience {_excerpt(audience)}); list it "
            "in the actors of the token_exchange rule that grants this audience",
            subject=subject_id,
            actor=actor_id,
        )

    def _check_replay(
        self, token: JwtSvid, parameter: str, subject: str, actor: str | None
    ) -> str | None:
        jti = token.claims.get("jti")
        if jti is None:
            if self.settings.require_jti:
                raise ExchangeError(
                    INVALID_REQUEST,
                    f"{parameter} has no jti, and this server accepts each token only once; "
                    "send a token that carries a jti",
                    subject=subject,
                    actor=actor or "",
                )
            return None
        if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
            raise ExchangeError(
                INVALID_REQUEST,
                f"{parameter} has an invalid jti: it must be a string of 1 to {MAX_JTI_LENGTH} "
                "characters",
                subject=subject,
                actor=actor or "",
            )
        trust_domain = token.spiffe_id.trust_domain.name
        # The token stays acceptable until exp plus the leeway, so its jti is kept as long.
        remember_until = token.expires_at + self.settings.leeway
        if not self._replay.remember(trust_domain, jti, remember_until):
            raise ExchangeError(
                INVALID_REQUEST,
                f"{parameter} with jti {_excerpt(jti)} was already used; fetch a new JWT-SVID",
                subject=subject,
                actor=actor or "",
            )
        return jti


def _signed_times(token: str, now: datetime, ttl: timedelta) -> tuple[datetime, datetime]:
    """Return the `iat` and `exp` of a token this process has just signed.

    The payload is decoded directly: the signature needs no check here, and PyJWT's
    decoder costs about a fifth of an exchange.
    """
    try:
        segment = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
        issued, expiry = claims["iat"], claims["exp"]
    except (IndexError, ValueError, KeyError, TypeError):
        return now, now + ttl
    if not isinstance(issued, int) or not isinstance(expiry, int):
        return now, now + ttl
    return datetime.fromtimestamp(issued, tz=UTC), datetime.fromtimestamp(expiry, tz=UTC)
