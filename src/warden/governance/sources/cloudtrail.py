"""CloudTrail: streamed into the workspace's activity table, then summarised per identity.

Files are S3 delivery files (`{"Records": [...]}`), bare arrays of records, or JSON Lines
from log pipelines, and each may be gzipped. Logstash-style exports carry the time in
`@timestamp` instead of `eventTime`. Every event is attributed to the identity that owns it:
an assumed-role session to its role (`sessionContext.sessionIssuer.arn`, or the role named
in the session ARN), an IAM user's call to the user, whatever key it used.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from warden.governance.model import Inventory, Kind, Provider
from warden.governance.workspace import IngestStats, LogKind, Workspace

SOURCE = "cloudtrail"
FILE_PATTERNS = ("*.json", "*.json.gz", "*.jsonl", "*.jsonl.gz", "*.ndjson", "*.ndjson.gz", "*.gz")


class CloudTrailLog(LogKind):
    name = SOURCE
    fields: ClassVar[tuple[tuple[str, str], ...]] = (
        ("event_id", "$.eventID"),
        ("event_time", "$.eventTime"),
        ("timestamp", '$."@timestamp"'),
        ("event_source", "$.eventSource"),
        ("event_name", "$.eventName"),
        ("event_type", "$.eventType"),
        ("region", "$.awsRegion"),
        ("source_ip", "$.sourceIPAddress"),
        ("user_agent", "$.userAgent"),
        ("error_code", "$.errorCode"),
        ("read_only", "$.readOnly"),
        ("recipient_account", "$.recipientAccountId"),
        ("vpc_endpoint", "$.vpcEndpointId"),
        ("from_console", "$.sessionCredentialFromConsole"),
        ("ui_type", "$.userIdentity.type"),
        ("ui_arn", "$.userIdentity.arn"),
        ("ui_account", "$.userIdentity.accountId"),
        ("ui_key", "$.userIdentity.accessKeyId"),
        ("ui_user", "$.userIdentity.userName"),
        ("ui_invoked_by", "$.userIdentity.invokedBy"),
        ("ui_issuer_arn", "$.userIdentity.sessionContext.sessionIssuer.arn"),
        ("ui_mfa", "$.userIdentity.sessionContext.attributes.mfaAuthenticated"),
        ("console_login", "$.responseElements.ConsoleLogin"),
    )
    json_fields: ClassVar[tuple[tuple[str, str], ...]] = (
        ("request_parameters", "$.requestParameters"),
        ("response_elements", "$.responseElements"),
    )
    # The identity rules: a session belongs to its role, a user's call to the user. AWS
    # services acting on their own (no type, or type AWSService) belong to no identity.
    select_sql = r"""
        'cloudtrail',
        event_id,
        TRY_CAST(coalesce(event_time, "timestamp") AS TIMESTAMPTZ),
        CASE ui_type
            WHEN 'AssumedRole' THEN coalesce(
                nullif(ui_issuer_arn, ''),
                nullif(regexp_replace(ui_arn,
                    '^arn:([^:]+):sts::([0-9]+):assumed-role/([^/]+)/.*$',
                    'arn:\1:iam::\2:role/\3'), ui_arn))
            WHEN 'IAMUser' THEN coalesce(nullif(ui_arn, ''),
                'arn:aws:iam::' || ui_account || ':user/' || ui_user)
            WHEN 'Root' THEN coalesce(nullif(ui_arn, ''), 'arn:aws:iam::' || ui_account || ':root')
            WHEN 'FederatedUser' THEN nullif(ui_arn, '')
            ELSE NULL
        END,
        ui_arn,
        CASE WHEN no_identity THEN '<missing>'
             ELSE coalesce(ui_type, CASE WHEN ui_invoked_by IS NOT NULL THEN 'AWSService' END)
        END,
        nullif(ui_key, ''),
        CASE WHEN ui_type = 'AssumedRole'
             THEN regexp_extract(ui_arn, 'assumed-role/[^/]+/(.*)$', 1) END,
        split_part(event_source, '.', 1) || ':' || event_name,
        event_source,
        event_name,
        NULL,
        source_ip,
        user_agent,
        region,
        coalesce(recipient_account, ui_account),
        coalesce(error_code, CASE WHEN console_login = 'Failure' THEN 'Failure' END),
        lower(read_only) = 'true',
        coalesce(event_type = 'AwsConsoleSignIn' OR lower(from_console) = 'true', FALSE),
        lower(ui_mfa) = 'true',
        ui_invoked_by,
        vpc_endpoint,
        NULL,
        request_parameters,
        response_elements,
        filename
    """


_ARN = re.compile(r"^arn:(?P<partition>[^:]+):(?P<service>iam|sts)::(?P<account>\d*):(?P<rest>.+)$")


def ingest(
    workspace: Workspace,
    roots: Iterable[Path],
    stats: IngestStats,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Stream the CloudTrail files under `roots` into the workspace, skipping files already read."""
    pending = workspace.plan(roots, SOURCE, stats, FILE_PATTERNS)
    total = sum(item.size for item in pending)
    done = 0

    def advance(size: int) -> None:
        nonlocal done
        done += size
        if progress:
            progress(done, total)

    workspace.ingest(CloudTrailLog(), pending, stats, advance)


def summarise(workspace: Workspace, inventory: Inventory, resolve: Callable[[str], str]) -> None:
    """Add every principal and access key seen in the workspace's CloudTrail to `inventory`.

    `resolve` maps an ARN built from an event (which may lack the IAM path) to the id the
    inventory already uses for that principal.
    """
    connection = workspace.connection
    rows = connection.execute(
        """
        SELECT identity, any_value(identity_type), any_value(account),
               min(event_time), max(event_time), count(*),
               count(*) FILTER (WHERE console OR operation = 'ConsoleLogin'),
               list(DISTINCT user_agent) FILTER (WHERE user_agent ILIKE 'Mozilla/%')[1:5],
               list(DISTINCT session_name) FILTER (WHERE session_name IS NOT NULL)[1:20],
               count(DISTINCT session_name),
               count(*) FILTER (WHERE session_name SIMILAR TO 'i-[0-9a-f]{8,17}')
        FROM events
        WHERE source = 'cloudtrail' AND identity IS NOT NULL
        GROUP BY identity
        """
    ).fetchall()
    for (
        arn,
        identity_type,
        account,
        first,
        last,
        count,
        console,
        browsers,
        sessions,
        session_count,
        instance_sessions,
    ) in rows:
        identity = _principal(inventory, resolve(arn), account)
        if identity is None:
            continue
        _widen(identity, first, last)
        facts = identity.facts
        facts["event_count"] = facts.get("event_count", 0) + int(count)
        facts["cloudtrail_identity_type"] = identity_type
        if console:
            facts["console_events"] = facts.get("console_events", 0) + int(console)
        if browsers:
            facts["browser_user_agents"] = sorted(
                set(facts.get("browser_user_agents", [])) | set(browsers)
            )
        if sessions:
            facts["session_names"] = list(sessions)
            facts["session_count"] = int(session_count)
        if instance_sessions:
            facts["instance_sessions"] = int(instance_sessions)

    _summarise_keys(connection, inventory, resolve)
    _summarise_assumptions(connection, inventory, resolve)
    _summarise_lifecycle(connection, inventory, resolve)


def _summarise_keys(connection: Any, inventory: Inventory, resolve: Callable[[str], str]) -> None:
    rows = connection.execute(
        """
        SELECT credential, any_value(identity), any_value(account), min(event_time),
               max(event_time), count(*),
               list(DISTINCT source_address) FILTER (WHERE source_address IS NOT NULL)[1:100],
               list(DISTINCT user_agent) FILTER (WHERE user_agent IS NOT NULL)[1:100]
        FROM events
        WHERE source = 'cloudtrail' AND credential IS NOT NULL AND identity IS NOT NULL
        GROUP BY credential
        """
    ).fetchall()
    for key_id, arn, account, first, last, count, addresses, agents in rows:
        identity = _principal(inventory, resolve(arn), account)
        if identity is None:
            continue
        long_lived = key_id.startswith("AKIA")
        credential = identity.credential(
            key_id, "aws_access_key" if long_lived else "aws_session_key"
        )
        credential.long_lived = long_lived
        credential.first_used_at = _earliest(credential.first_used_at, first)
        credential.last_used_at = _latest(credential.last_used_at, last)
        credential.event_count += int(count)
        credential.source_addresses = tuple(
            sorted(set(credential.source_addresses) | set(addresses))
        )
        credential.user_agents = tuple(sorted(set(credential.user_agents) | set(agents)))


def _summarise_assumptions(
    connection: Any, inventory: Inventory, resolve: Callable[[str], str]
) -> None:
    """Record who assumed each role: AWS services (EC2 for instances), SAML, principals."""
    rows = connection.execute(
        """
        SELECT json_extract_string(request_parameters, '$.roleArn') AS role_arn, operation,
               coalesce(invoked_by, CASE WHEN identity_type = 'AWSService'
                                         THEN source_address END) AS assumer_service,
               identity, count(*)
        FROM events
        WHERE source = 'cloudtrail' AND service = 'sts.amazonaws.com'
          AND operation IN ('AssumeRole', 'AssumeRoleWithSAML', 'AssumeRoleWithWebIdentity')
          AND outcome IS NULL
        GROUP BY ALL
        """
    ).fetchall()
    for role_arn, operation, service, caller, count in rows:
        if not role_arn:
            continue
        role = _principal(inventory, resolve(role_arn), None)
        if role is None:
            continue
        facts = role.facts
        if operation == "AssumeRoleWithSAML":
            facts["assumed_via_saml"] = facts.get("assumed_via_saml", 0) + int(count)
        elif operation == "AssumeRoleWithWebIdentity":
            facts["assumed_via_web_identity"] = facts.get("assumed_via_web_identity", 0) + int(
                count
            )
        elif service and caller is None:
            services = set(facts.get("assumed_by_services", []))
            services.add(service)
            facts["assumed_by_services"] = sorted(services)
        elif caller:
            callers = set(facts.get("assumed_by_principals", []))
            callers.add(resolve(caller))
            facts["assumed_by_principals"] = sorted(callers)


def _summarise_lifecycle(
    connection: Any, inventory: Inventory, resolve: Callable[[str], str]
) -> None:
    """Record who created users, roles, keys and passwords during the capture, and deletions."""
    rows = connection.execute(
        """
        SELECT operation, identity, event_time, account,
               coalesce(json_extract_string(response_elements, '$.user.arn'),
                        json_extract_string(response_elements, '$.role.arn')),
               coalesce(json_extract_string(request_parameters, '$.userName'),
                        json_extract_string(response_elements, '$.accessKey.userName')),
               json_extract_string(request_parameters, '$.roleName'),
               coalesce(json_extract_string(request_parameters, '$.path'), '/'),
               coalesce(json_extract_string(response_elements, '$.accessKey.accessKeyId'),
                        json_extract_string(request_parameters, '$.accessKeyId')),
               json_extract_string(request_parameters, '$.status')
        FROM events
        WHERE source = 'cloudtrail' AND service = 'iam.amazonaws.com' AND outcome IS NULL
          AND operation IN ('CreateUser', 'CreateRole', 'CreateAccessKey', 'CreateLoginProfile',
                            'DeleteUser', 'DeleteRole', 'DeleteAccessKey', 'UpdateAccessKey',
                            'DeleteLoginProfile')
        ORDER BY event_time
        """
    ).fetchall()
    for (
        operation,
        creator,
        when,
        account,
        created_arn,
        user_name,
        role_name,
        path,
        key_id,
        key_status,
    ) in rows:
        creator_id = resolve(creator) if creator else None
        target_arn = created_arn
        if target_arn is None and account:
            if role_name:
                target_arn = f"arn:aws:iam::{account}:role{path}{role_name}"
            elif user_name:
                target_arn = f"arn:aws:iam::{account}:user{path}{user_name}"
            elif creator_id and ":user/" in creator_id:
                # CreateAccessKey without userName acts on the caller itself.
                target_arn = creator_id
        if target_arn is None:
            continue
        target = _principal(inventory, resolve(target_arn), account)
        if target is None:
            continue
        facts = target.facts
        if operation in ("CreateUser", "CreateRole"):
            target.created_at = target.created_at or when
            if creator_id:
                target.created_by = creator_id
                facts["created_by_event"] = operation
        elif operation == "CreateAccessKey" and key_id:
            credential = target.credential(key_id, "aws_access_key")
            credential.long_lived = key_id.startswith("AKIA")
            credential.created_at = credential.created_at or when
            if creator_id:
                facts.setdefault("key_creators", {})[key_id] = creator_id
                if target.created_by is None and creator_id != target.id:
                    target.created_by = creator_id
                    facts["created_by_event"] = operation
        elif operation == "CreateLoginProfile":
            facts["password_enabled"] = True
            facts["login_profile_created_at"] = when
        elif operation == "DeleteLoginProfile":
            facts["password_enabled"] = False
        elif operation in ("DeleteUser", "DeleteRole"):
            target.enabled = False
            facts["deleted_at"] = when
        elif operation == "DeleteAccessKey" and key_id:
            target.credential(key_id, "aws_access_key").active = False
        elif operation == "UpdateAccessKey" and key_id and key_status:
            target.credential(key_id, "aws_access_key").active = key_status == "Active"


def _principal(inventory: Inventory, arn: str, account: str | None) -> Any:
    """Return the inventory identity for an IAM or STS ARN, adding it when it is new."""
    match = _ARN.match(arn or "")
    if match is None:
        return None
    rest = match.group("rest")
    if rest == "root":
        identity = inventory.identity(arn, Kind.AWS_ROOT, Provider.AWS, "root", SOURCE)
    elif rest.startswith("user/"):
        identity = inventory.identity(
            arn, Kind.AWS_USER, Provider.AWS, rest.rsplit("/", 1)[-1], SOURCE
        )
    elif rest.startswith("role/"):
        identity = inventory.identity(
            arn, Kind.AWS_ROLE, Provider.AWS, rest.rsplit("/", 1)[-1], SOURCE
        )
    elif rest.startswith("federated-user/"):
        identity = inventory.identity(
            arn, Kind.AWS_USER, Provider.AWS, rest.split("/", 1)[1], SOURCE
        )
        identity.facts["federated_user"] = True
    else:
        return None
    identity.account = identity.account or match.group("account") or account
    return identity


def _widen(identity: Any, first: datetime | None, last: datetime | None) -> None:
    identity.first_used_at = _earliest(identity.first_used_at, first)
    identity.last_used_at = _latest(identity.last_used_at, last)


def _earliest(current: datetime | None, other: datetime | None) -> datetime | None:
    if current is None or (other is not None and other < current):
        return other
    return current


def _latest(current: datetime | None, other: datetime | None) -> datetime | None:
    if current is None or (other is not None and other > current):
        return other
    return current
