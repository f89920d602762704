"""Warden's credential blocks of the server configuration: `token_exchange` and `database`.

token_exchange {
  default_ttl = "15m"
  allow "spiffe://example.org/billing/*" {
    audiences = ["sts.amazonaws.com"]
    actors    = ["spiffe://example.org/agents/assistant"]
  }
}

database {
  connection "orders" {
    connection_url    = "postgresql://warden@db.example.org:5432/orders"
    password_file     = "/etc/warden/orders.password"
    reassign_owned_to = "orders_owner"
  }
  role "reader" {
    connection          = "orders"
    creation_statements = ["CREATE ROLE \\"{{name}}\\" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'"]
    allowed_spiffe_ids  = ["spiffe://example.org/orders/*"]
    default_ttl = "1h"
    max_ttl     = "24h"
  }
}
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta
from typing import Annotated, Any

from pydantic import Field, PlainValidator

from warden.config.decode import Section
from warden.config.values import (
    Bool,
    ConfigPath,
    Duration,
    PositiveDuration,
    Secret,
    Str,
    StrList,
    _string_list,
)
from warden.spiffe import SpiffeError, SpiffeId, TrustDomain

_NAME = re.compile(r"[A-Za-z0-9_-]{1,48}")
#: Maximum `leeway` of token_exchange, the same as TokenExchangeSettings enforces: MIT
#: Kerberos' default maximum clock skew.
MAX_LEEWAY = timedelta(minutes=5)


def check_spiffe_id_pattern(text: str) -> str:
    """Return a SPIFFE ID pattern (an ID, or an ID followed by `/*`); raise ValueError if invalid."""
    subtree = text.endswith("/*")
    base = text[:-2] if subtree else text
    if "*" in base:
        raise ValueError(f"invalid SPIFFE ID pattern {text!r}: '*' may only end it, as '/*'")
    try:
        if subtree and base.count("/") == 2:
            TrustDomain.parse(base)
            return text
        spiffe_id = SpiffeId.parse(base)
    except SpiffeError as error:
        raise ValueError(f"invalid SPIFFE ID pattern {text!r}: {error}") from None
    if not subtree and not spiffe_id.path:
        raise ValueError(
            f"invalid SPIFFE ID pattern {text!r}: it names a trust domain; write {text}/* to "
            "match every workload in it"
        )
    return text


def _patterns(value: Any) -> tuple[str, ...]:
    return tuple(check_spiffe_id_pattern(text) for text in _string_list(value))


#: A list of SPIFFE ID patterns: IDs, or IDs followed by `/*` for everything below them.
SpiffeIdPatternList = Annotated[tuple[str, ...], PlainValidator(_patterns)]


def _name_problem(kind: str, name: str) -> str:
    if _NAME.fullmatch(name):
        return ""
    return (
        f"invalid {kind} name {name!r}: use 1 to 48 letters, digits, '_' or '-' (it becomes part "
        "of lease ids and database user names)"
    )


class ExchangeAllow(Section):
    """`allow "<SPIFFE ID pattern>" { ... }`: what the matching subjects may obtain."""

    #: Audiences the subjects may obtain tokens for, matched exactly.
    audiences: StrList
    #: SPIFFE ID patterns of the workloads that may act for these subjects (`act` claim).
    actors: SpiffeIdPatternList = ()
    #: Lifetime of tokens issued under this rule; unset means the block's default_ttl.
    ttl: PositiveDuration | None = None

    def config_problems(self) -> Iterable[tuple[str, str]]:
        if not self.audiences or any(not audience for audience in self.audiences):
            yield "audiences", "list at least one non-empty audience, such as sts.amazonaws.com"


class TokenExchange(Section):
    """Warden: `token_exchange { ... }`, the policy of the RFC 8693 token endpoint."""

    #: Audience that subject and actor JWT-SVIDs must carry; unset means server.jwt_issuer.
    audience: Str | None = None
    default_ttl: PositiveDuration = timedelta(minutes=15)
    max_ttl: PositiveDuration = timedelta(hours=1)
    #: Reject subject tokens without a `jti`; tokens that carry one are always single-use.
    require_jti: Bool = False
    #: Clock skew tolerated on the `exp` and `nbf` of subject and actor tokens.
    leeway: Duration = timedelta(0)
    allow: dict[str, ExchangeAllow] = Field(default_factory=dict)

    def config_problems(self) -> Iterable[tuple[str, str]]:
        if self.default_ttl > self.max_ttl:
            yield "default_ttl", "must not be longer than max_ttl"
        if self.leeway > MAX_LEEWAY:
            yield (
                "leeway",
                f"must be at most {MAX_LEEWAY.total_seconds() / 60:g}m, because more would "
                "keep expired JWT-SVIDs usable; synchronise the clocks instead",
            )
        for pattern, rule in self.allow.items():
            try:
                check_spiffe_id_pattern(pattern)
            except ValueError as error:
                yield "allow", str(error)
            if rule.ttl is not None and rule.ttl > self.max_ttl:
                yield "allow", f"allow {pattern!r}: ttl must not be longer than max_ttl"

    def config_warnings(self) -> Iterable[tuple[str, str]]:
        if not self.allow:
            yield (
                "allow",
                'no allow "<SPIFFE ID pattern>" { audiences = [...] } block, so every token '
                "exchange is rejected",
            )


class DatabaseConnection(Section):
    """`connection "<name>" { ... }`: a PostgreSQL server and its management role."""

    #: libpq URL or keyword string of the management role, preferably without a password.
    connection_url: Secret
    password: Secret | None = None
    #: File holding the management password; read at each connection, replaced by rotate-root.
    password_file: ConfigPath | None = None
    #: Role that takes over the objects a leased user created when it is revoked.
    reassign_owned_to: Str
    connect_timeout: PositiveDuration = timedelta(seconds=5)
    statement_timeout: PositiveDuration = timedelta(seconds=30)

    def config_problems(self) -> Iterable[tuple[str, str]]:
        if self.password is not None and self.password_file is not None:
            yield "password", "set password or password_file, not both"
        if not self.reassign_owned_to.strip():
            yield "reassign_owned_to", "name the role that takes over what leased users created"

    def config_warnings(self) -> Iterable[tuple[str, str]]:
        url = self.connection_url.get_secret_value()
        if re.search(r"://[^/@]*:[^/@]*@", url) or re.search(r"\bpassword\s*=", url):
            yield (
                "connection_url",
                "the URL contains a password, which stays valid until someone changes it; move "
                "it to password_file and run 'warden creds db rotate-root'",
            )


class DatabaseRole(Section):
    """`role "<name>" { ... }`: a kind of database user that workloads may lease."""

    connection: Str
    #: Statements run in one transaction with {{name}}, {{password}}, {{expiration}} replaced.
    creation_statements: StrList
    #: SPIFFE ID patterns of the workloads that may lease this role.
    allowed_spiffe_ids: SpiffeIdPatternList
    default_ttl: PositiveDuration = timedelta(hours=1)
    max_ttl: PositiveDuration = timedelta(hours=24)

    def config_problems(self) -> Iterable[tuple[str, str]]:
        if not any("{{name}}" in statement for statement in self.creation_statements):
            yield (
                "creation_statements",
                "the statements must create the user {{name}}, for example CREATE ROLE "
                "\"{{name}}\" LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'",
            )
        if not self.allowed_spiffe_ids:
            yield "allowed_spiffe_ids", "list the SPIFFE ID patterns that may lease this role"
        if self.default_ttl > self.max_ttl:
            yield "default_ttl", "must not be longer than max_ttl"


class Database(Section):
    """Warden: `database { ... }`, the leased PostgreSQL users."""

    connection: dict[str, DatabaseConnection] = Field(default_factory=dict)
    role: dict[str, DatabaseRole] = Field(default_factory=dict)
    #: Maximum time between two sweeps for expired leases, other servers' leases included.
    sweep_interval: PositiveDuration = timedelta(seconds=5)

    def config_problems(self) -> Iterable[tuple[str, str]]:
        for name in self.connection:
            problem = _name_problem("connection", name)
            if problem:
                yield "connection", problem
        for name, role in self.role.items():
            problem = _name_problem("role", name)
            if problem:
                yield "role", problem
            if role.connection not in self.connection:
                known = ", ".join(sorted(self.connection)) or "none"
                yield (
                    "role",
                    f'role "{name}": connection {role.connection!r} is not defined (defined: '
                    f"{known})",
                )
