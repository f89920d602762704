"""Kubernetes: object exports (`kubectl get ... -A -o json`) and audit logs (audit.k8s.io/v1).

A service account's identity id is its username in the API server,
`system:serviceaccount:<namespace>:<name>`, so that audit events, bindings, token secrets
and pods all land on the same identity. Other users get `k8s:user:<username>`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from warden.governance import jsonstream
from warden.governance.iam.authorization import parse_time
from warden.governance.model import Identity, Inventory, Kind, Provider
from warden.governance.workspace import IngestStats, LogKind, Workspace

OBJECTS_SOURCE = "k8s_objects"
AUDIT_SOURCE = "k8s_audit"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
# Names of a Secret type and a label, not secrets.
LEGACY_TOKEN_TYPE = "kubernetes.io/service-account-token"  # noqa: S105
LEGACY_TOKEN_LAST_USED = "kubernetes.io/legacy-token-last-used"  # noqa: S105
FILE_PATTERNS = ("*.json", "*.jsonl", "*.log", "*.json.gz", "*.jsonl.gz", "*.log.gz", "*.ndjson")
# Errors that a JSON value of the wrong type raises when an object is read as documented.
_SHAPE_ERRORS = (AttributeError, TypeError, ValueError)


def service_account_id(namespace: str, name: str) -> str:
    return f"{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"


def identity_for_username(inventory: Inventory, username: str, source: str) -> Identity:
    if username.startswith(SERVICE_ACCOUNT_PREFIX):
        namespace, _, name = username[len(SERVICE_ACCOUNT_PREFIX) :].partition(":")
        identity = inventory.identity(
            username, Kind.K8S_SERVICE_ACCOUNT, Provider.KUBERNETES, name, source
        )
        identity.account = namespace
        return identity
    return inventory.identity(
        f"k8s:user:{username}", Kind.K8S_USER, Provider.KUBERNETES, username, source
    )


def add_objects(inventory: Inventory, path: Path) -> None:
    """Add service accounts, token secrets, bindings and pods from a `kubectl -o json` export."""
    items = _load_items(inventory, path)
    if items is None:
        return

    by_kind: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for index, item in enumerate(items, start=1):
        if isinstance(item, dict):
            by_kind.setdefault(str(item.get("kind")), []).append((index, item))

    # Service accounts first, so that the objects naming them find their labels in place.
    for kinds, add in (
        (("ServiceAccount",), _add_service_account),
        (("Secret",), _add_token_secret),
        (("RoleBinding", "ClusterRoleBinding"), _add_binding),
        (("Pod",), _add_pod),
    ):
        for kind in kinds:
            for index, item in by_kind.get(kind, []):
                try:
                    add(inventory, item)
                except _SHAPE_ERRORS as error:
                    inventory.warn(
                        OBJECTS_SOURCE,
                        str(path),
                        f"item {index} ({kind}) has an unexpected structure ({error}); "
                        "it is skipped",
                    )


def _load_items(inventory: Inventory, path: Path) -> list[Any] | None:
    """Read the export's items, or warn and return None when the file cannot be used."""
    text_path = str(path)
    try:
        document = jsonstream.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        inventory.warn(OBJECTS_SOURCE, text_path, f"cannot read file: {error}")
        return None
    except json.JSONDecodeError as error:
        inventory.warn(OBJECTS_SOURCE, text_path, f"invalid JSON: {error.msg}", line=error.lineno)
        return None

    items = document.get("items") if isinstance(document, dict) else document
    if isinstance(document, dict) and "kind" in document and "items" not in document:
        items = [document]
    if not isinstance(items, list):
        inventory.warn(
            OBJECTS_SOURCE,
            text_path,
            "expected a List with items (kubectl get ... -o json); file skipped",
        )
        return None
    return items


def _add_service_account(inventory: Inventory, item: dict[str, Any]) -> None:
    metadata = item.get("metadata") or {}
    identity = _service_account(
        inventory, metadata.get("namespace", "default"), metadata.get("name", "")
    )
    identity.created_at = parse_time(metadata.get("creationTimestamp")) or identity.created_at
    labels = metadata.get("labels") or {}
    annotations = metadata.get("annotations") or {}
    identity.tags.update({f"label:{key}": str(value) for key, value in labels.items()})
    identity.tags.update({f"annotation:{key}": str(value) for key, value in annotations.items()})
    identity.facts["automount_token"] = item.get("automountServiceAccountToken", True)
    identity.facts.setdefault("pods", [])


def _add_pod(inventory: Inventory, item: dict[str, Any]) -> None:
    metadata = item.get("metadata") or {}
    spec = item.get("spec") or {}
    name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    identity = _service_account(inventory, metadata.get("namespace", "default"), name)
    pods = identity.facts.setdefault("pods", [])
    pods.append(f"{metadata.get('namespace', 'default')}/{metadata.get('name', '')}")


def _service_account(inventory: Inventory, namespace: str, name: str) -> Identity:
    return identity_for_username(inventory, service_account_id(namespace, name), OBJECTS_SOURCE)


def _add_token_secret(inventory: Inventory, item: dict[str, Any]) -> None:
    if item.get("type") != LEGACY_TOKEN_TYPE:
        return
    metadata = item.get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    account = annotations.get("kubernetes.io/service-account.name")
    if not account:
        return
    namespace = metadata.get("namespace", "default")
    identity = _service_account(inventory, namespace, account)
    credential = identity.credential(
        f"secret:{namespace}/{metadata.get('name', '')}", "k8s_legacy_token"
    )
    credential.long_lived = True
    credential.created_at = parse_time(metadata.get("creationTimestamp"))
    last_used = (metadata.get("labels") or {}).get(LEGACY_TOKEN_LAST_USED)
    if last_used:
        # The label contains a date (YYYY-MM-DD), the day the API server last saw the token.
        credential.last_used_at = parse_time(f"{last_used}T00:00:00Z")
        if credential.last_used_at and (
            identity.last_used_at is None or credential.last_used_at > identity.last_used_at
        ):
            identity.last_used_at = credential.last_used_at


def _add_binding(inventory: Inventory, item: dict[str, Any]) -> None:
    metadata = item.get("metadata") or {}
    role_ref = item.get("roleRef") or {}
    scope = "cluster" if item.get("kind") == "ClusterRoleBinding" else metadata.get("namespace", "")
    for subject in item.get("subjects") or []:
        if not isinstance(subject, dict) or subject.get("kind") != "ServiceAccount":
            continue
        namespace = subject.get("namespace") or metadata.get("namespace", "default")
        identity = _service_account(inventory, namespace, subject.get("name", ""))
        identity.facts.setdefault("bindings", []).append(
            {
                "binding": f"{item.get('kind')}/{metadata.get('name', '')}",
                "role": f"{role_ref.get('kind', '')}/{role_ref.get('name', '')}",
                "scope": scope,
            }
        )


class KubernetesAuditLog(LogKind):
    name = AUDIT_SOURCE
    identity_path = "$.user"
    fields: ClassVar[tuple[tuple[str, str], ...]] = (
        ("audit_id", "$.auditID"),
        ("stage", "$.stage"),
        ("received", "$.requestReceivedTimestamp"),
        ("stage_time", "$.stageTimestamp"),
        ("timestamp", '$."@timestamp"'),
        ("verb", "$.verb"),
        ("username", "$.user.username"),
        ("source_ip", "$.sourceIPs[0]"),
        ("user_agent", "$.userAgent"),
        ("resource", "$.objectRef.resource"),
        ("subresource", "$.objectRef.subresource"),
        ("namespace", "$.objectRef.namespace"),
        ("object_name", "$.objectRef.name"),
        ("code", "$.responseStatus.code"),
    )
    json_fields: ClassVar[tuple[tuple[str, str], ...]] = (("request_object", "$.requestObject"),)
    select_sql = r"""
        'k8s_audit',
        audit_id,
        TRY_CAST(coalesce(received, stage_time, "timestamp") AS TIMESTAMPTZ),
        CASE WHEN username LIKE 'system:serviceaccount:%' THEN username
             WHEN username IS NOT NULL THEN 'k8s:user:' || username END,
        username,
        CASE WHEN no_identity THEN '<missing>'
             WHEN username LIKE 'system:serviceaccount:%' THEN 'ServiceAccount'
             ELSE 'User' END,
        NULL,
        NULL,
        verb || ':' || coalesce(resource, 'nonresource') || coalesce('/' || subresource, ''),
        'kubernetes',
        verb,
        coalesce(namespace || '/', '') || coalesce(object_name, ''),
        source_ip,
        user_agent,
        NULL,
        namespace,
        CASE WHEN TRY_CAST(code AS INTEGER) >= 400 THEN code END,
        verb IN ('get', 'list', 'watch'),
        FALSE,
        NULL,
        NULL,
        NULL,
        stage,
        -- A Secret's values never reach the workspace: a merge patch with nulls drops
        -- them, and its metadata and type, which the inventory reads, stay.
        CASE WHEN resource = 'secrets' AND request_object IS NOT NULL
             THEN json_merge_patch(request_object, '{"data": null, "stringData": null}')
             ELSE request_object END,
        NULL,
        filename
    """


def ingest_audit(
    workspace: Workspace,
    roots: Iterable[Path],
    stats: IngestStats,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    pending = workspace.plan(roots, AUDIT_SOURCE, stats, FILE_PATTERNS)
    total = sum(item.size for item in pending)
    done = 0

    def advance(size: int) -> None:
        nonlocal done
        done += size
        if progress:
            progress(done, total)

    workspace.ingest(KubernetesAuditLog(), pending, stats, advance)


def summarise_audit(workspace: Workspace, inventory: Inventory) -> None:
    """Add every user and service account seen in the audit logs, with first and last use."""
    rows = workspace.connection.execute(
        """
        SELECT principal, min(event_time), max(event_time), count(*),
               list(DISTINCT user_agent) FILTER (WHERE user_agent ILIKE 'Mozilla/%')[1:5],
               count(DISTINCT action), count(*) FILTER (WHERE outcome IS NOT NULL)
        FROM events
        WHERE source = 'k8s_audit' AND principal IS NOT NULL
        GROUP BY principal
        """
    ).fetchall()
    for username, first, last, count, browsers, actions, errors in rows:
        identity = identity_for_username(inventory, username, AUDIT_SOURCE)
        _widen(identity, first, last)
        facts = identity.facts
        facts["event_count"] = facts.get("event_count", 0) + int(count)
        facts["k8s_distinct_actions"] = int(actions)
        facts["k8s_denied_events"] = int(errors)
        if browsers:
            facts["browser_user_agents"] = sorted(
                set(facts.get("browser_user_agents", [])) | set(browsers)
            )
    _summarise_audit_objects(workspace, inventory)


def _summarise_audit_objects(workspace: Workspace, inventory: Inventory) -> None:
    """Apply objects created through the API: service accounts, token secrets, bindings."""
    rows = workspace.connection.execute(
        """
        SELECT operation, resource, principal, event_time, CAST(request_parameters AS VARCHAR),
               file
        FROM events
        WHERE source = 'k8s_audit' AND outcome IS NULL AND request_parameters IS NOT NULL
          AND operation IN ('create', 'update', 'patch')
          AND split_part(action, ':', 2) IN ('serviceaccounts', 'secrets', 'rolebindings',
                                             'clusterrolebindings')
        ORDER BY event_time
        """
    ).fetchall()
    for _operation, resource, creator, when, text, file in rows:
        try:
            item = json.loads(text)
        except ValueError:
            continue
        if not isinstance(item, dict):
            continue
        try:
            _apply_audit_object(inventory, item, resource, creator, when)
        except _SHAPE_ERRORS as error:
            inventory.warn(
                AUDIT_SOURCE,
                str(file),
                f"the {item.get('kind')} object of a request at {when} has an unexpected "
                f"structure ({error}); it is skipped",
            )


def _apply_audit_object(
    inventory: Inventory,
    item: dict[str, Any],
    resource: str | None,
    creator: str | None,
    when: datetime | None,
) -> None:
    """Apply one object created or changed through the API, as its export would."""
    metadata = item.setdefault("metadata", {}) or {}
    namespace = (resource or "").split("/", 1)[0] if "/" in (resource or "") else None
    if namespace and not metadata.get("namespace"):
        metadata["namespace"] = namespace
    kind = item.get("kind")
    if kind == "ServiceAccount":
        identity = _service_account(
            inventory, metadata.get("namespace", "default"), metadata.get("name", "")
        )
        identity.sources.add(AUDIT_SOURCE)
        identity.created_at = identity.created_at or when
        if creator and identity.created_by is None:
            identity.created_by = creator
            identity.facts["created_by_event"] = "create serviceaccounts"
    elif kind == "Secret":
        metadata.setdefault("creationTimestamp", when.isoformat() if when else None)
        _add_token_secret(inventory, item)
    elif kind in ("RoleBinding", "ClusterRoleBinding"):
        _add_binding(inventory, item)


def _widen(identity: Identity, first: datetime | None, last: datetime | None) -> None:
    if first and (identity.first_used_at is None or first < identity.first_used_at):
        identity.first_used_at = first
    if last and (identity.last_used_at is None or last > identity.last_used_at):
        identity.last_used_at = last
