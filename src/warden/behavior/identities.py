"""Human or non-human, for every identity in a run, as the audit classifies it.

The audit's rules (`warden.governance.classify`) decide, on facts this package keeps up to
date run after run in `behavior_identities`: console sign-ins, sessions named after EC2
instances, long-lived keys, and how a role was assumed (SAML, web identity, a service).
When an audit has stored its inventory in the workspace (`identities`), its classification
wins, because it also read IAM exports and tags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from warden.governance.classify import classify
from warden.governance.model import Identity, Kind, Provider

if TYPE_CHECKING:
    import duckdb

_AWS_ARN = re.compile(
    r"^arn:[^:]+:(?:iam|sts)::(?P<account>\d*):(?P<kind>user|role|root|federated-user)"
    r"(?:/(?P<rest>.*))?$"
)
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
KUBERNETES_USER_PREFIX = "k8s:user:"
# The stored fact columns of `behavior_identities`, in table order after `identity`.
FACT_COLUMNS = (
    "source",
    "identity_type",
    "first_seen",
    "last_seen",
    "events",
    "console_events",
    "browser_events",
    "instance_events",
    "long_lived_keys",
    "saml_assumptions",
    "web_identity_assumptions",
    "service_assumers",
)
MAX_SERVICE_ASSUMERS = 10


@dataclass(frozen=True)
class IdentityRecord:
    """The stored facts of one identity after this run, with its classification."""

    identity: str
    source: str | None
    identity_type: str | None
    first_seen: datetime | None
    last_seen: datetime | None
    events: int
    console_events: int
    browser_events: int
    instance_events: int
    long_lived_keys: int
    saml_assumptions: int
    web_identity_assumptions: int
    service_assumers: tuple[str, ...]
    human: bool = False
    classification: str = "unclassified"
    peer_group: str = ""
    # The stored values before this run, which baselines are compared with.
    previous_first_seen: datetime | None = None
    previous_events: int = 0

    def row(self) -> tuple[Any, ...]:
        return (
            self.identity,
            self.source,
            self.identity_type,
            self.first_seen,
            self.last_seen,
            self.events,
            self.console_events,
            self.browser_events,
            self.instance_events,
            self.long_lived_keys,
            self.saml_assumptions,
            self.web_identity_assumptions,
            list(self.service_assumers),
            self.human,
            self.classification,
            self.peer_group,
        )


def classify_batch(connection: duckdb.DuckDBPyConnection) -> dict[str, IdentityRecord]:
    """Merge this run's facts into the stored ones and classify each identity they touch.

    Reads `behavior_work` (new rows, `in_batch`) and `behavior_fresh` (role assumptions);
    writes nothing, so that a failed run leaves the stored facts as they were.
    """
    batch_rows = connection.execute(
        """
        SELECT identity, any_value(source), any_value(identity_type),
               min(event_time), max(event_time), count(*),
               count(*) FILTER (WHERE console),
               count(*) FILTER (WHERE agent = 'browser'),
               count(*) FILTER (WHERE workload_kind = 'instance'),
               count(*) FILTER (WHERE workload_kind = 'key')
        FROM behavior_work WHERE in_batch GROUP BY identity
        """
    ).fetchall()
    assumptions = connection.execute(
        """
        SELECT assumed_role,
               count(*) FILTER (WHERE operation = 'AssumeRoleWithSAML'),
               count(*) FILTER (WHERE operation = 'AssumeRoleWithWebIdentity'),
               list(DISTINCT assumer_service) FILTER (WHERE assumer_service IS NOT NULL
                                                       AND identity IS NULL)
        FROM behavior_fresh WHERE assumed_role IS NOT NULL GROUP BY assumed_role
        """
    ).fetchall()
    touched = {row[0] for row in batch_rows} | {row[0] for row in assumptions}
    stored = _stored(connection, touched)
    snapshot = _snapshot(connection, touched)

    records: dict[str, IdentityRecord] = {}
    for identity in touched:
        previous = stored.get(identity)
        records[identity] = previous or IdentityRecord(
            identity, None, None, None, None, 0, 0, 0, 0, 0, 0, 0, ()
        )
    for (
        identity,
        source,
        identity_type,
        first,
        last,
        events,
        console,
        browser,
        instance,
        keys,
    ) in batch_rows:
        record = records[identity]
        records[identity] = replace(
            record,
            source=record.source or source,
            identity_type=record.identity_type or identity_type,
            first_seen=_earliest(record.first_seen, first),
            last_seen=_latest(record.last_seen, last),
            events=record.events + int(events),
            console_events=record.console_events + int(console),
            browser_events=record.browser_events + int(browser),
            instance_events=record.instance_events + int(instance),
            long_lived_keys=record.long_lived_keys + int(keys),
        )
    for role, saml, web, services in assumptions:
        record = records[role]
        merged = sorted(set(record.service_assumers) | set(services or []))
        records[role] = replace(
            record,
            saml_assumptions=record.saml_assumptions + int(saml),
            web_identity_assumptions=record.web_identity_assumptions + int(web),
            service_assumers=tuple(merged[:MAX_SERVICE_ASSUMERS]),
        )
    for identity, record in records.items():
        previous = stored.get(identity)
        human, reason = _classification(record, snapshot.get(identity))
        records[identity] = replace(
            record,
            human=human,
            classification=reason,
            peer_group=peer_group(identity, human),
            previous_first_seen=previous.first_seen if previous else None,
            previous_events=previous.events if previous else 0,
        )
    return records


def peer_group(identity: str, human: bool) -> str:
    """Identities compared as peers: same provider, account (AWS), kind and classification."""
    match = _AWS_ARN.match(identity)
    kind_of_user = "human" if human else "nhi"
    if match:
        kind = "user" if match.group("kind") == "federated-user" else match.group("kind")
        return f"aws:{match.group('account')}:{kind}:{kind_of_user}"
    if identity.startswith(SERVICE_ACCOUNT_PREFIX):
        return f"kubernetes:service_account:{kind_of_user}"
    if identity.startswith(KUBERNETES_USER_PREFIX):
        return f"kubernetes:user:{kind_of_user}"
    if identity.startswith("spiffe://"):
        return f"warden:workload:{kind_of_user}"
    return f"other:{kind_of_user}"


def _classification(record: IdentityRecord, snapshot: tuple[bool, str] | None) -> tuple[bool, str]:
    if snapshot is not None:
        return snapshot
    identity = _identity(record)
    if identity is None:
        return _other_kind(record.identity)
    classify(identity)
    return identity.human, identity.classification


def _identity(record: IdentityRecord) -> Identity | None:
    """Build the audit's identity object from the stored facts, for its classifier."""
    identity_id = record.identity
    match = _AWS_ARN.match(identity_id)
    if match:
        kind_text = match.group("kind")
        rest = match.group("rest") or ""
        name = rest.rsplit("/", 1)[-1] if rest else kind_text
        kind = {
            "user": Kind.AWS_USER,
            "federated-user": Kind.AWS_USER,
            "role": Kind.AWS_ROLE,
            "root": Kind.AWS_ROOT,
        }[kind_text]
        identity = Identity(id=identity_id, kind=kind, provider=Provider.AWS, name=name)
        identity.account = match.group("account")
        facts = identity.facts
        if kind_text == "federated-user":
            facts["federated_user"] = True
        if kind_text == "role":
            facts["path"] = "/" + rest.rsplit("/", 1)[0] + "/" if "/" in rest else "/"
        if record.console_events:
            facts["console_events"] = record.console_events
        if record.instance_events:
            facts["instance_sessions"] = record.instance_events
        if record.service_assumers:
            facts["assumed_by_services"] = list(record.service_assumers)
        if record.saml_assumptions:
            facts["assumed_via_saml"] = record.saml_assumptions
        if record.web_identity_assumptions:
            facts["assumed_via_web_identity"] = record.web_identity_assumptions
        if record.long_lived_keys:
            identity.credential("long-lived key", "aws_access_key").long_lived = True
        return identity
    if identity_id.startswith(SERVICE_ACCOUNT_PREFIX):
        name = identity_id.rsplit(":", 1)[-1]
        return Identity(
            id=identity_id, kind=Kind.K8S_SERVICE_ACCOUNT, provider=Provider.KUBERNETES, name=name
        )
    if identity_id.startswith(KUBERNETES_USER_PREFIX):
        name = identity_id[len(KUBERNETES_USER_PREFIX) :]
        return Identity(id=identity_id, kind=Kind.K8S_USER, provider=Provider.KUBERNETES, name=name)
    if identity_id.startswith("spiffe://"):
        agent = "/spire/agent/" in identity_id or "/agent/" in identity_id
        kind = Kind.WARDEN_AGENT if agent else Kind.WARDEN_ENTRY
        return Identity(id=identity_id, kind=kind, provider=Provider.WARDEN, name=identity_id)
    return None


def _other_kind(identity_id: str) -> tuple[bool, str]:
    """Warden's audit log names people as `unix:<user>` and itself as `server`."""
    if identity_id.startswith("unix:"):
        return True, "operator at a terminal (unix user)"
    if identity_id == "server":
        return False, "Warden server"
    return False, "identity of an unknown kind, treated as non-human"


def _stored(connection: duckdb.DuckDBPyConnection, touched: set[str]) -> dict[str, IdentityRecord]:
    if not touched:
        return {}
    rows = connection.execute(
        f"SELECT identity, {', '.join(FACT_COLUMNS)} FROM behavior_identities "  # noqa: S608
        "WHERE identity IN (SELECT unnest(?))",
        [sorted(touched)],
    ).fetchall()
    records = {}
    for row in rows:
        values = list(row)
        values[-1] = tuple(values[-1] or ())
        for index in range(5, 12):
            values[index] = int(values[index] or 0)
        records[row[0]] = IdentityRecord(*values)
    return records


def _snapshot(
    connection: duckdb.DuckDBPyConnection, touched: set[str]
) -> dict[str, tuple[bool, str]]:
    """Return the audit's stored classification of these identities, when there is one."""
    if not touched:
        return {}
    rows = connection.execute(
        "SELECT id, human, classification FROM identities "
        "WHERE id IN (SELECT unnest(?)) AND human IS NOT NULL",
        [sorted(touched)],
    ).fetchall()
    return {row[0]: (bool(row[1]), str(row[2] or "classified by the audit")) for row in rows}


def _earliest(current: datetime | None, other: datetime | None) -> datetime | None:
    if current is None or (other is not None and other < current):
        return other
    return current


def _latest(current: datetime | None, other: datetime | None) -> datetime | None:
    if current is None or (other is not None and other > current):
        return other
    return current
