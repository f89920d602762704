"""Evaluation of AWS IAM identity policies, with three-valued conditions.

The rules follow the IAM policy evaluation logic for one account: an explicit Deny wins, then
an Allow is needed, and a permissions boundary, when present, must allow the request too.
`Action`/`NotAction` match case-insensitively with `*` and `?` wildcards; `Resource`/
`NotResource` match case-sensitively. A condition evaluates to TRUE, FALSE or UNKNOWN:
date operators on `aws:CurrentTime` and `aws:TokenIssueTime` are decided at the audit's
as-of time, `aws:SecureTransport` is whatever the caller chooses, and `iam:PassedToService`
is decided when the request names the service. Any other condition is UNKNOWN, which
restricts an Allow (the grant is only conditional) and weakens a Deny (it may not apply);
the decision carries a note saying so.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

# Temporary credentials live at most 36 hours, so a session token in use at the as-of time
# was issued within this window before it.
MAX_SESSION_AGE = timedelta(hours=36)


class Tri(enum.Enum):
    """Three-valued logic for conditions and decisions."""

    FALSE = 0
    UNKNOWN = 1
    TRUE = 2

    def __and__(self, other: Tri) -> Tri:
        return self if self.value <= other.value else other

    def __or__(self, other: Tri) -> Tri:
        return self if self.value >= other.value else other


@dataclass(frozen=True)
class PolicySource:
    """The origin of a statement: its policy and how that policy reaches the principal."""

    name: str
    arn: str | None
    inline: bool
    # "" when attached to the principal itself, else "group <name>"; "boundary" for a
    # permissions boundary.
    via: str = ""

    def describe(self) -> str:
        kind = "inline policy" if self.inline else "managed policy"
        where = f" (through {self.via})" if self.via and self.via != "boundary" else ""
        if self.via == "boundary":
            kind = "permissions boundary"
        return f"{kind} {self.name}{where}"


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...] | None
    not_actions: tuple[str, ...] | None
    resources: tuple[str, ...] | None
    not_resources: tuple[str, ...] | None
    condition: dict[str, Any]
    source: PolicySource
    sid: str = ""
    # The Principal element of a resource policy such as a role's trust policy: AWS
    # principals (ARNs, account ids or "*"), service principals and federated providers.
    aws_principals: tuple[str, ...] = ()
    service_principals: tuple[str, ...] = ()
    federated_principals: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.actions is not None:
            what = "Action " + ", ".join(self.actions)
        else:
            what = "NotAction " + ", ".join(self.not_actions or ())
        if self.resources is not None:
            where = "Resource " + ", ".join(self.resources)
        else:
            where = "NotResource " + ", ".join(self.not_resources or ())
        condition = f" if {_compact(self.condition)}" if self.condition else ""
        return f"{self.source.describe()}: {self.effect} {what} on {where}{condition}"


@dataclass(frozen=True)
class RequestContext:
    """Request facts the evaluator uses besides the action and the resource."""

    as_of: datetime
    passed_to_service: str | None = None


@dataclass
class Decision:
    allowed: Tri
    allowed_by: list[Statement] = field(default_factory=list)
    denied_by: list[Statement] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_statements(document: Any, source: PolicySource) -> list[Statement]:
    """Parse a policy document (dict or JSON text) into statements; bad input yields none."""
    if isinstance(document, str):
        import json
        from urllib.parse import unquote

        text = document if document.lstrip().startswith("{") else unquote(document)
        try:
            document = json.loads(text)
        except ValueError:
            return []
    if not isinstance(document, dict):
        return []
    raw = document.get("Statement", [])
    if isinstance(raw, dict):
        raw = [raw]
    statements: list[Statement] = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict) or item.get("Effect") not in ("Allow", "Deny"):
            continue
        condition = item.get("Condition") or {}
        principal = item.get("Principal")
        if principal == "*":
            principal = {"AWS": "*"}
        if not isinstance(principal, dict):
            principal = {}
        statements.append(
            Statement(
                effect=item["Effect"],
                actions=_tuple(item.get("Action")),
                not_actions=_tuple(item.get("NotAction")),
                resources=_tuple(item.get("Resource")),
                not_resources=_tuple(item.get("NotResource")),
                condition=condition if isinstance(condition, dict) else {},
                source=source,
                sid=str(item.get("Sid") or ""),
                aws_principals=_tuple(principal.get("AWS")) or (),
                service_principals=_tuple(principal.get("Service")) or (),
                federated_principals=_tuple(principal.get("Federated")) or (),
            )
        )
    return statements


def _tuple(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list):
        return tuple(str(item) for item in value)
    return None


@lru_cache(maxsize=65536)
def _pattern(pattern: str, case_sensitive: bool) -> re.Pattern[str]:
    parts = []
    for char in pattern:
        if char == "*":
            parts.append(".*")
        elif char == "?":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    flags = 0 if case_sensitive else re.IGNORECASE
    return re.compile("^" + "".join(parts) + "$", flags | re.DOTALL)


def wildcard_match(pattern: str, value: str, case_sensitive: bool = True) -> bool:
    return _pattern(pattern, case_sensitive).match(value) is not None


def matches_action(statement: Statement, action: str) -> bool:
    if statement.actions is not None:
        return any(wildcard_match(pattern, action, False) for pattern in statement.actions)
    if statement.not_actions is not None:
        return not any(wildcard_match(pattern, action, False) for pattern in statement.not_actions)
    return False


def matches_resource(statement: Statement, resource: str | None) -> bool:
    """Return whether the statement covers `resource` (None: "some resource of that action").

    For an unnamed resource a `Resource` list covers it when any entry is present, and a
    `NotResource` list covers it unless it excludes everything (`*`).
    """
    if resource is None:
        if statement.resources is not None:
            return bool(statement.resources)
        return "*" not in (statement.not_resources or ())
    if statement.resources is not None:
        return any(wildcard_match(pattern, resource) for pattern in statement.resources)
    if statement.not_resources is not None:
        return not any(wildcard_match(pattern, resource) for pattern in statement.not_resources)
    return False


def evaluate_condition(
    condition: dict[str, Any], context: RequestContext, deny: bool = False
) -> tuple[Tri, list[str]]:
    """Evaluate a Condition block: every operator and key must hold (AND), any value may (OR).

    Keys whose value the caller chooses (`aws:SecureTransport`, `aws:TokenIssueTime`) hold
    for an Allow when some choice satisfies them. For a Deny (`deny=True`) they hold only
    when every choice does, because the caller picks the one that avoids the Deny.
    """
    result = Tri.TRUE
    notes: list[str] = []
    for operator, entries in condition.items():
        if not isinstance(entries, dict):
            return Tri.UNKNOWN, [f"malformed condition {operator}"]
        for key, values in entries.items():
            value_list = values if isinstance(values, list) else [values]
            outcome = _evaluate_one(operator, key, [str(v) for v in value_list], context, deny)
            if outcome is Tri.UNKNOWN:
                notes.append(
                    f"condition {operator} {key} {_compact(values)} cannot be evaluated "
                    f"from an export; treated as restricting"
                )
            result = result & outcome
    return result, notes


def _evaluate_one(
    operator: str, key: str, values: Sequence[str], context: RequestContext, deny: bool
) -> Tri:
    base = operator
    if_exists = base.endswith("IfExists")
    if if_exists:
        base = base[: -len("IfExists")]
    if ":" in base:  # ForAnyValue:/ForAllValues: on multi-valued keys
        return Tri.UNKNOWN
    lowered = key.lower()
    if lowered in ("aws:currenttime", "aws:tokenissuetime") and base.startswith("Date"):
        return _evaluate_date(base, lowered, values, context, every=deny)
    if lowered == "aws:securetransport" and base == "Bool":
        if not deny:
            return Tri.TRUE
        return Tri.TRUE if {"true", "false"} <= {value.lower() for value in values} else Tri.FALSE
    if lowered == "iam:passedtoservice":
        if context.passed_to_service is None:
            return Tri.TRUE if if_exists else Tri.UNKNOWN
        return _evaluate_string(base, context.passed_to_service, values)
    return Tri.UNKNOWN


def _evaluate_string(operator: str, actual: str, values: Sequence[str]) -> Tri:
    if operator in ("StringEquals", "StringEqualsIgnoreCase"):
        hit = any(
            actual.lower() == value.lower() if "IgnoreCase" in operator else actual == value
            for value in values
        )
        return Tri.TRUE if hit else Tri.FALSE
    if operator == "StringLike":
        return Tri.TRUE if any(wildcard_match(value, actual) for value in values) else Tri.FALSE
    if operator == "StringNotEquals":
        return Tri.FALSE if actual in values else Tri.TRUE
    if operator == "StringNotLike":
        return Tri.FALSE if any(wildcard_match(value, actual) for value in values) else Tri.TRUE
    return Tri.UNKNOWN


def _evaluate_date(
    operator: str, key: str, values: Sequence[str], context: RequestContext, every: bool = False
) -> Tri:
    """Decide a date condition at the as-of time.

    For `aws:TokenIssueTime` the caller can use any token issued in the session window
    before the as-of time, so the condition holds when some instant in that window does,
    or with `every`, when each instant does.
    """
    moments = [_parse_time(value) for value in values]
    if any(moment is None for moment in moments):
        return Tri.UNKNOWN
    latest = context.as_of
    earliest = latest if key == "aws:currenttime" else latest - MAX_SESSION_AGE
    if every and earliest != latest:
        return _evaluate_date_everywhere(operator, moments, earliest, latest)
    for moment in moments:
        assert moment is not None
        if operator == "DateGreaterThan" and latest > moment:
            return Tri.TRUE
        if operator == "DateGreaterThanEquals" and latest >= moment:
            return Tri.TRUE
        if operator == "DateLessThan" and earliest < moment:
            return Tri.TRUE
        if operator == "DateLessThanEquals" and earliest <= moment:
            return Tri.TRUE
        if operator == "DateEquals" and earliest <= moment <= latest:
            return Tri.TRUE
        if operator == "DateNotEquals":
            return Tri.TRUE
    if operator in (
        "DateGreaterThan",
        "DateGreaterThanEquals",
        "DateLessThan",
        "DateLessThanEquals",
        "DateEquals",
    ):
        return Tri.FALSE
    return Tri.UNKNOWN


def _evaluate_date_everywhere(
    operator: str, moments: Sequence[datetime | None], earliest: datetime, latest: datetime
) -> Tri:
    """Decide whether a date condition holds at every instant from `earliest` to `latest`.

    A value is tried alone, so a window that only several values cover together counts as
    not covered: for a Deny that errs towards reporting the path.
    """
    known = [moment for moment in moments if moment is not None]
    holds = {
        "DateGreaterThan": lambda moment: earliest > moment,
        "DateGreaterThanEquals": lambda moment: earliest >= moment,
        "DateLessThan": lambda moment: latest < moment,
        "DateLessThanEquals": lambda moment: latest <= moment,
        "DateEquals": lambda _moment: False,
        "DateNotEquals": lambda moment: not earliest <= moment <= latest,
    }.get(operator)
    if holds is None:
        return Tri.UNKNOWN
    return Tri.TRUE if any(holds(moment) for moment in known) else Tri.FALSE


def _parse_time(text: str) -> datetime | None:
    from datetime import UTC

    try:
        if text.isdigit():
            return datetime.fromtimestamp(int(text), tz=UTC)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def evaluate(
    statements: Iterable[Statement],
    action: str,
    resource: str | None,
    context: RequestContext,
    boundary: Sequence[Statement] | None = None,
) -> Decision:
    """Decide whether `statements` (and the boundary, if any) allow `action` on `resource`."""
    decision = _evaluate_set(statements, action, resource, context)
    if boundary is not None and decision.allowed is not Tri.FALSE:
        limit = _evaluate_set(boundary, action, resource, context)
        if limit.allowed is not Tri.TRUE:
            decision.notes.append(
                "the permissions boundary does not allow it"
                if limit.allowed is Tri.FALSE
                else "the permissions boundary allows it only conditionally"
            )
        decision.allowed = decision.allowed & limit.allowed
        decision.notes.extend(limit.notes)
    return decision


def _evaluate_set(
    statements: Iterable[Statement], action: str, resource: str | None, context: RequestContext
) -> Decision:
    decision = Decision(allowed=Tri.FALSE)
    allow = Tri.FALSE
    deny = Tri.FALSE
    for statement in statements:
        if not matches_action(statement, action) or not matches_resource(statement, resource):
            continue
        holds, notes = evaluate_condition(
            statement.condition, context, deny=statement.effect == "Deny"
        )
        if holds is Tri.FALSE:
            continue
        if statement.effect == "Deny":
            deny = deny | holds
            decision.denied_by.append(statement)
            if holds is Tri.UNKNOWN:
                decision.notes.extend(f"a Deny may not apply: {note}" for note in notes)
        else:
            if holds is Tri.TRUE or allow is not Tri.TRUE:
                decision.allowed_by.append(statement)
            allow = allow | holds
            decision.notes.extend(notes)
    if deny is Tri.TRUE:
        decision.allowed = Tri.FALSE
    elif deny is Tri.UNKNOWN:
        decision.allowed = allow & Tri.UNKNOWN
    else:
        decision.allowed = allow
    if decision.allowed is Tri.TRUE:
        decision.notes = []
    return decision


def _compact(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
