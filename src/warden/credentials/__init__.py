"""Ephemeral credential brokers hosted by the server: token exchange and database users.

- `TokenExchanger` trades a JWT-SVID for a short-lived federation token (RFC 8693) that
  cloud providers accept through OIDC federation. `warden.credentials.oidc` builds the
  discovery document and JWKS that they fetch.
- `DatabaseBroker` leases PostgreSQL users that expire, and revokes them for real.

Settings are frozen dataclasses (`TokenExchangeSettings`, `DatabaseSettings`); errors derive
from `CredentialError`.
"""

from warden.credentials.database import DatabaseBroker, IssuedCredential, RevocationSummary
from warden.credentials.errors import (
    BackendError,
    BackendUnavailable,
    CredentialError,
    ExchangeError,
    LeaseBusy,
    LeaseError,
    NotAuthorized,
    NotFoundError,
)
from warden.credentials.exchange import (
    ExchangeRequest,
    ExchangeResult,
    TokenExchanger,
    parse_exchange_request,
    rejection_audit_event,
)
from warden.credentials.patterns import SpiffeIdPattern, parse_patterns
from warden.credentials.settings import (
    ConnectionSettings,
    DatabaseSettings,
    ExchangeRule,
    RoleSettings,
    TokenExchangeSettings,
)

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "ConnectionSettings",
    "CredentialError",
    "DatabaseBroker",
    "DatabaseSettings",
    "ExchangeError",
    "ExchangeRequest",
    "ExchangeResult",
    "ExchangeRule",
    "IssuedCredential",
    "LeaseBusy",
    "LeaseError",
    "NotAuthorized",
    "NotFoundError",
    "RevocationSummary",
    "RoleSettings",
    "SpiffeIdPattern",
    "TokenExchangeSettings",
    "TokenExchanger",
    "parse_exchange_request",
    "parse_patterns",
    "rejection_audit_event",
]
