"""Settings of the credential brokers, as the server process runs them.

The server builds these from the `token_exchange { … }` and `database { … }` blocks of its
configuration file; tests and benchmarks build them directly. Constructors check what the
brokers rely on and raise ValueError with the setting's name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from warden.credentials.patterns import SpiffeIdPattern

#: Lifetime of an exchanged token unless a rule sets another.
DEFAULT_EXCHANGE_TTL = timedelta(minutes=15)
#: Maximum lifetime of an exchanged token unless configured otherwise.
DEFAULT_EXCHANGE_MAX_TTL = timedelta(hours=1)
#: Maximum clock skew tolerated on subject and actor tokens: MIT Kerberos' default maximum
#: skew. More would keep a JWT-SVID of a few minutes usable long after it expired.
MAX_LEEWAY = timedelta(minutes=5)
#: Vault's defaults for database roles.
DEFAULT_LEASE_TTL = timedelta(hours=1)
DEFAULT_LEASE_MAX_TTL = timedelta(hours=24)

# Connection and role names become part of lease ids and database user names.
_NAME = re.compile(r"[A-Za-z0-9_-]{1,48}")


def check_name(kind: str, name: str) -> str:
    """Return `name` when it is a valid connection or role name; raise ValueError if not."""
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"invalid {kind} name {name!r}: use 1 to 48 letters, digits, '_' or '-' (it becomes "
            "part of lease ids and database user names)"
        )
    return name


@dataclass(frozen=True)
class ExchangeRule:
    """A policy rule: the audiences it grants to subjects, and the actors that may act for them.

    A request is allowed by a rule when the subject matches `subjects`, the requested
    audience is in `audiences` and, with an actor token, the actor matches `actors`.
    `ttl` overrides the default lifetime of tokens issued under this rule.
    """

    subjects: tuple[SpiffeIdPattern, ...]
    audiences: tuple[str, ...]
    actors: tuple[SpiffeIdPattern, ...] = ()
    ttl: timedelta | None = None

    def __post_init__(self) -> None:
        if not self.subjects:
            raise ValueError("a token exchange rule needs at least one subject pattern")
        if not self.audiences or any(not audience for audience in self.audiences):
            raise ValueError(
                f"token exchange rule for {self.subjects[0]}: audiences must list at least one "
                "non-empty audience"
            )
        if self.ttl is not None and self.ttl <= timedelta(0):
            raise ValueError(f"token exchange rule for {self.subjects[0]}: ttl must be positive")


@dataclass(frozen=True)
class TokenExchangeSettings:
    """The token endpoint's policy.

    `audience` is the audience subject and actor tokens must carry; None means the issuer
    URL. `require_jti` rejects tokens without a `jti`; otherwise only tokens that carry one
    are single-use. `leeway` tolerates clock skew on `exp` and `nbf`.
    """

    rules: tuple[ExchangeRule, ...] = ()
    audience: str | None = None
    default_ttl: timedelta = DEFAULT_EXCHANGE_TTL
    max_ttl: timedelta = DEFAULT_EXCHANGE_MAX_TTL
    require_jti: bool = False
    leeway: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        if self.default_ttl <= timedelta(0) or self.max_ttl <= timedelta(0):
            raise ValueError("token_exchange: default_ttl and max_ttl must be positive")
        if self.default_ttl > self.max_ttl:
            raise ValueError(
                f"token_exchange: default_ttl {self.default_ttl} is longer than max_ttl "
                f"{self.max_ttl}; shorten default_ttl or raise max_ttl"
            )
        if not timedelta(0) <= self.leeway <= MAX_LEEWAY:
            raise ValueError(
                f"token_exchange: leeway {self.leeway} must be between 0s and {MAX_LEEWAY}; "
                "synchronise the clocks instead of raising it"
            )


@dataclass(frozen=True)
class ConnectionSettings:
    """A PostgreSQL server that Warden manages users on, through a management role.

    `url` is a libpq URL or keyword string without the password. The password comes from
    `password` or from `password_file`, which is read at every connection so that
    `rotate-root` can replace it; rotation needs `password_file`. Objects that leased users
    created are reassigned to `reassign_owned_to` when they are revoked.
    """

    name: str
    # A connection_url may carry the password; it is accepted with a warning.
    url: str = field(repr=False)
    reassign_owned_to: str
    password: str | None = field(default=None, repr=False)
    password_file: Path | None = None
    connect_timeout: timedelta = timedelta(seconds=5)
    statement_timeout: timedelta = timedelta(seconds=30)

    def __post_init__(self) -> None:
        check_name("connection", self.name)
        if not self.url:
            raise ValueError(f"database connection {self.name!r}: connection_url is required")
        if self.password is not None and self.password_file is not None:
            raise ValueError(
                f"database connection {self.name!r}: set password or password_file, not both"
            )
        if not self.reassign_owned_to:
            raise ValueError(
                f"database connection {self.name!r}: reassign_owned_to is required; name the "
                "role that takes over tables that leased users created"
            )


@dataclass(frozen=True)
class RoleSettings:
    """A database role that workloads may lease users of.

    `creation_statements` run in one transaction on the connection's database, with
    `{{name}}`, `{{password}}` and `{{expiration}}` replaced. `{{password}}` becomes a
    SCRAM-SHA-256 verifier, so the clear password never reaches the database server or its
    logs. `allowed_spiffe_ids` are the patterns of the workloads that may lease it.
    """

    name: str
    connection: str
    creation_statements: tuple[str, ...]
    allowed_spiffe_ids: tuple[SpiffeIdPattern, ...]
    default_ttl: timedelta = DEFAULT_LEASE_TTL
    max_ttl: timedelta = DEFAULT_LEASE_MAX_TTL

    def __post_init__(self) -> None:
        check_name("role", self.name)
        if not self.creation_statements:
            raise ValueError(f"database role {self.name!r}: creation_statements is required")
        if not any("{{name}}" in statement for statement in self.creation_statements):
            raise ValueError(
                f"database role {self.name!r}: creation_statements must create the user "
                '{{name}}, for example CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '
                "'{{password}}' VALID UNTIL '{{expiration}}'"
            )
        if self.default_ttl <= timedelta(0) or self.max_ttl <= timedelta(0):
            raise ValueError(
                f"database role {self.name!r}: default_ttl and max_ttl must be positive"
            )
        if self.default_ttl > self.max_ttl:
            raise ValueError(
                f"database role {self.name!r}: default_ttl {self.default_ttl} is longer than "
                f"max_ttl {self.max_ttl}"
            )


@dataclass(frozen=True)
class DatabaseSettings:
    """Every managed connection and leasable role, by name."""

    connections: Mapping[str, ConnectionSettings]
    roles: Mapping[str, RoleSettings]

    def __post_init__(self) -> None:
        for role in self.roles.values():
            if role.connection not in self.connections:
                known = ", ".join(sorted(self.connections)) or "none"
                raise ValueError(
                    f"database role {role.name!r}: connection {role.connection!r} is not "
                    f"configured (configured: {known})"
                )
