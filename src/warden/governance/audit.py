"""`run_audit`: read every source, build the inventory, run the checks, score the risk.

This is the library entry point behind `warden audit`; `make demo` and other callers use it
directly:

    report = run_audit(AuditOptions(aws_authorization_details=[path], as_of=moment))
    render_table(report, console)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from warden.governance import checks as checks_module
from warden.governance import owners as owners_module
from warden.governance import suppressions as suppressions_module
from warden.governance.checks import CheckContext, Thresholds
from warden.governance.classify import classify
from warden.governance.iam.authorization import AuthorizationDetails
from warden.governance.iam.escalation import IamAnalysis, analyze
from warden.governance.model import Finding, Identity, InputWarning, Inventory, Severity
from warden.governance.risk import Risk, score
from warden.governance.sources import aws_iam, cloudtrail, github, kubernetes, warden_registry
from warden.governance.sources.warden_registry import RegistryReader
from warden.governance.workspace import IngestStats, Workspace, WorkspaceError

log = logging.getLogger(__name__)

LOGGED_WARNINGS = 20
# progress(stage, done, total): bytes of log files read so far, for a progress bar.
ProgressCallback = Callable[[str, int, int], None]


@dataclass
class AuditOptions:
    """Sources to read and the thresholds to judge them by; some paths may be directories."""

    aws_credential_reports: Sequence[Path] = ()
    aws_authorization_details: Sequence[Path] = ()
    cloudtrail: Sequence[Path] = ()  # files or directories, read recursively
    k8s_objects: Sequence[Path] = ()
    k8s_audit: Sequence[Path] = ()  # files or directories
    github: Sequence[Path] = ()  # files or directories
    warden_datastores: Sequence[str] = ()  # connection strings or SQLite paths
    warden_readers: Sequence[RegistryReader] = ()  # already-open registry readers
    secrets: Sequence[Path] = ()  # code or configuration to scan for leaked keys
    secret_scanner: Any = None  # a warden.governance.secrets.Scanner; None: warden.scan's
    aws_live: bool = False  # collect from AWS with boto3's default credentials
    aws_session: Any = None  # a boto3 Session to collect with instead of the default one
    workspace: Path | None = None  # None: a temporary workspace, removed afterwards
    as_of: datetime | None = None  # None: now
    ownership_map: Path | None = None
    owner_keys: Sequence[str] = owners_module.DEFAULT_OWNER_KEYS
    roster: Path | None = None
    suppressions: Path | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    progress: ProgressCallback | None = None


@dataclass
class AuditReport:
    as_of: datetime
    generated_at: datetime
    identities: list[Identity]  # non-human identities
    humans: list[Identity]
    findings: list[Finding]  # active findings, most severe first
    suppressed: list[Finding]
    expired_suppressions: list[dict[str, Any]]
    warnings: list[InputWarning]
    risks: dict[str, Risk]
    sources: list[dict[str, Any]]
    workspace: str | None

    def max_severity(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    def findings_for(self, identity_id: str) -> list[Finding]:
        return [f for f in self.findings if f.identity == identity_id]

    def to_json(self) -> dict[str, Any]:
        from warden.governance.report_json import report_to_json

        return report_to_json(self)


class AuditError(Exception):
    """An input that stops the audit before it starts: a bad configuration file or workspace."""


def run_audit(options: AuditOptions) -> AuditReport:
    """Read the sources in `options`, run every check and return the report.

    Raises AuditError for configuration files that cannot be used (ownership map, roster,
    suppressions) and for a workspace that cannot be opened. Damaged source files do not
    raise: they become warnings in the report.
    """
    as_of = options.as_of or datetime.now(UTC)
    if as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=UTC)
    rules, roster, suppressions = _load_configuration(options)

    inventory = Inventory()
    sources: list[dict[str, Any]] = []
    usage_sources: set[str] = set()
    details_list: list[AuthorizationDetails] = []
    try:
        workspace = Workspace(options.workspace)
    except WorkspaceError as error:
        raise AuditError(str(error)) from None
    try:
        for path in options.aws_authorization_details:
            details = aws_iam.add_authorization_details(inventory, path)
            if details is not None:
                details_list.append(details)
                usage_sources.add("aws_authorization_details")
            sources.append(
                {
                    "type": "aws_authorization_details",
                    "path": str(path),
                    "principals": len(details.principals) if details else 0,
                }
            )
        if options.aws_live:
            details = _collect_live(workspace, inventory, options, sources)
            if details is not None:
                details_list.append(details)
                usage_sources.update({"aws_authorization_details", "aws_credential_report"})
        for path in options.aws_credential_reports:
            aws_iam.add_credential_report(inventory, path)
            usage_sources.add("aws_credential_report")
            sources.append({"type": "aws_credential_report", "path": str(path)})
        _read_logs(workspace, inventory, options, sources, usage_sources)
        for path in options.k8s_objects:
            kubernetes.add_objects(inventory, path)
            sources.append({"type": "k8s_objects", "path": str(path)})
        for path in options.github:
            github.add_export(inventory, path)
            usage_sources.add("github")
            sources.append({"type": "github", "path": str(path)})
        for reader, label, owned in _registry_readers(options, inventory):
            try:
                warden_registry.add_registry(inventory, reader, label)
                records = warden_registry.add_audit_records(workspace, reader, label)
            finally:
                close = getattr(reader, "close", None)
                if owned and close is not None:
                    close()
            usage_sources.add("warden_registry")
            sources.append({"type": "warden_registry", "path": label, "audit_records": records})
        if options.secrets:
            from warden.governance.secrets import add_leaked_secrets

            add_leaked_secrets(
                inventory,
                options.secrets,
                sources,
                options.secret_scanner,
                key_directory=workspace.directory / "scan",
            )

        for identity in inventory.identities.values():
            classify(identity)
            owners_module.resolve_owner(identity, rules, options.owner_keys, roster)

        analysis = _merge_analyses([analyze(details, as_of) for details in details_list])
        context = CheckContext(inventory, as_of, options.thresholds, analysis, usage_sources)
        findings = checks_module.run_checks(context)
        active, suppressed, expired = suppressions_module.apply(findings, suppressions, as_of)
        active.sort(key=lambda f: (-f.severity, f.check, f.identity))
        risks = {
            identity.id: score(f for f in active if f.identity == identity.id)
            for identity in inventory.identities.values()
            if not identity.human
        }
        _save_snapshot(workspace, inventory, as_of)
    finally:
        workspace.close()

    identities = sorted(
        (i for i in inventory.identities.values() if not i.human),
        key=lambda i: (-risks[i.id].score, i.id),
    )
    humans = sorted((i for i in inventory.identities.values() if i.human), key=lambda i: i.id)
    # The report lists every warning; the log gets the first few and a count.
    for warning in inventory.warnings[:LOGGED_WARNINGS]:
        log.warning("input problem", extra={"path": warning.path, "error": warning.message})
    if len(inventory.warnings) > LOGGED_WARNINGS:
        log.warning(
            "more input problems are listed in the report",
            extra={"error": f"{len(inventory.warnings) - LOGGED_WARNINGS} not logged"},
        )
    return AuditReport(
        as_of=as_of,
        generated_at=datetime.now(UTC),
        identities=identities,
        humans=humans,
        findings=active,
        suppressed=suppressed,
        expired_suppressions=expired,
        warnings=list(inventory.warnings),
        risks=risks,
        sources=sources,
        workspace=str(options.workspace) if options.workspace else None,
    )


def _load_configuration(
    options: AuditOptions,
) -> tuple[
    list[owners_module.OwnershipRule], set[str] | None, list[suppressions_module.Suppression]
]:
    try:
        rules = (
            owners_module.load_ownership_map(options.ownership_map) if options.ownership_map else []
        )
        roster = owners_module.load_roster(options.roster) if options.roster else None
        suppressions = (
            suppressions_module.load(options.suppressions) if options.suppressions else []
        )
    except ValueError as error:
        raise AuditError(str(error)) from error
    return rules, roster, suppressions


def _read_logs(
    workspace: Workspace,
    inventory: Inventory,
    options: AuditOptions,
    sources: list[dict[str, Any]],
    usage_sources: set[str],
) -> None:
    def progress_for(stage: str) -> Callable[[int, int], None] | None:
        callback = options.progress
        if callback is None:
            return None
        return lambda done, total: callback(stage, done, total)

    if options.cloudtrail:
        stats = IngestStats()
        cloudtrail.ingest(workspace, options.cloudtrail, stats, progress_for("CloudTrail"))
        _record_ingest(inventory, "cloudtrail", options.cloudtrail, stats, sources)
        usage_sources.add("cloudtrail")
    if options.k8s_audit:
        stats = IngestStats()
        kubernetes.ingest_audit(
            workspace, options.k8s_audit, stats, progress_for("Kubernetes audit")
        )
        _record_ingest(inventory, "k8s_audit", options.k8s_audit, stats, sources)
        usage_sources.add("k8s_audit")
    # Summaries read the whole workspace, so files ingested by earlier runs count too.
    resolve = _resolver(inventory)
    cloudtrail.summarise(workspace, inventory, resolve)
    kubernetes.summarise_audit(workspace, inventory)


def _collect_live(
    workspace: Workspace,
    inventory: Inventory,
    options: AuditOptions,
    sources: list[dict[str, Any]],
) -> AuthorizationDetails | None:
    """Collect IAM state from AWS into the workspace directory and read it like exports."""
    from botocore.exceptions import BotoCoreError, ClientError

    from warden.governance.sources import aws_live

    directory = workspace.directory / "aws-live"
    directory.mkdir(exist_ok=True)
    try:
        details_path, report_path, owners = aws_live.collect(directory, options.aws_session)
    except (BotoCoreError, ClientError) as error:
        inventory.warn(
            aws_live.SOURCE,
            "AWS API",
            f"live collection failed: {error}; check the "
            "AWS credentials and the iam:GetAccountAuthorizationDetails, "
            "iam:GenerateCredentialReport and iam:ListAccessKeys permissions",
        )
        return None
    details = aws_iam.add_authorization_details(inventory, details_path)
    if report_path is not None:
        aws_iam.add_credential_report(inventory, report_path)
    aws_live.record_key_owners(inventory, owners)
    sources.append({"type": "aws_live", "path": str(directory), "access_keys": len(owners)})
    return details


def _record_ingest(
    inventory: Inventory,
    source: str,
    roots: Sequence[Path],
    stats: IngestStats,
    sources: list[dict[str, Any]],
) -> None:
    for path, line, message in stats.warnings:
        inventory.warn(source, path, message, line=line)
    sources.append(
        {
            "type": source,
            "path": [str(p) for p in roots],
            "files_seen": stats.files_seen,
            "files_read": stats.files_read,
            "files_unchanged": stats.files_unchanged,
            "files_duplicate": stats.files_duplicate,
            "events_ingested": stats.events,
        }
    )


_ARN = re.compile(
    r"^arn:[^:]+:(?:iam|sts)::(?P<account>\d*):(?P<type>user|role|assumed-role)/(?P<rest>.+)$"
)


def _resolver(inventory: Inventory) -> Callable[[str], str]:
    """Map ARNs built from events (which may lack the IAM path) to the inventory's ids."""
    index: dict[tuple[str, str, str], str] = {}
    for identity_id in inventory.identities:
        match = _ARN.match(identity_id)
        if match:
            name = match.group("rest").rsplit("/", 1)[-1]
            index[(match.group("account"), match.group("type"), name)] = identity_id

    def resolve(arn: str) -> str:
        if arn in inventory.identities:
            return arn
        match = _ARN.match(arn or "")
        if match is None:
            return arn
        kind = match.group("type")
        rest = match.group("rest")
        if kind == "assumed-role":
            kind, rest = "role", rest.split("/", 1)[0]
        name = rest.rsplit("/", 1)[-1]
        return index.get((match.group("account"), kind, name), arn)

    return resolve


def _registry_readers(
    options: AuditOptions, inventory: Inventory
) -> list[tuple[RegistryReader, str, bool]]:
    """Readers with their labels, and whether this audit opened them (and so closes them)."""
    readers: list[tuple[RegistryReader, str, bool]] = [
        (reader, f"reader {index + 1}", False)
        for index, reader in enumerate(options.warden_readers)
    ]
    for location in options.warden_datastores:
        try:
            readers.append((warden_registry.open_reader(location), _redact(location), True))
        except Exception as error:  # any driver or schema error is reported, not fatal
            inventory.warn(
                warden_registry.SOURCE, _redact(location), f"cannot open datastore: {error}"
            )
    return readers


# A key=value pair whose key ends in "password", as libpq's keyword form and URL query
# parameters write it; the value may be quoted with backslash escapes.
_PASSWORD_PARAMETER = re.compile(
    r"((?:^|[\s?&])\w*password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)", re.IGNORECASE
)


def _redact(location: str) -> str:
    """Hide every password in a connection string before it reaches a report or log.

    The user information of a URL ends at its last `@`, because a password may contain `@`
    or `/`. Keyword and query parameters named `*password` are hidden too.
    """
    text = _PASSWORD_PARAMETER.sub(r"\1***", location)
    scheme, separator, rest = text.partition("://")
    if separator and "@" in rest:
        user_info, host = rest.rsplit("@", 1)
        if ":" in user_info:
            text = f"{scheme}://{user_info.split(':', 1)[0]}:***@{host}"
    return text


def _merge_analyses(analyses: list[IamAnalysis]) -> IamAnalysis | None:
    if not analyses:
        return None
    merged = IamAnalysis({}, {}, {}, {})
    for analysis in analyses:
        merged.privileges.update(analysis.privileges)
        merged.paths.update(analysis.paths)
        merged.reachable.update(analysis.reachable)
        merged.permissive_trust.update(analysis.permissive_trust)
    return merged


def _save_snapshot(workspace: Workspace, inventory: Inventory, as_of: datetime) -> None:
    """Store the classified inventory so that later jobs (`warden detect`) can reuse it."""
    connection = workspace.connection
    connection.execute("DELETE FROM identities")
    connection.execute("DELETE FROM credentials")
    identity_rows = [
        (
            i.id,
            str(i.kind),
            str(i.provider),
            i.name,
            i.human,
            i.classification,
            i.owner,
            i.owner_source,
            i.created_at,
            i.last_used_at,
            as_of,
        )
        for i in inventory.identities.values()
    ]
    if identity_rows:
        connection.executemany(
            "INSERT INTO identities VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", identity_rows
        )
    credential_rows = [
        (c.id, i.id, c.type, c.long_lived, c.created_at, c.last_used_at, c.expires_at, as_of)
        for i in inventory.identities.values()
        for c in i.credentials.values()
    ]
    if credential_rows:
        connection.executemany(
            "INSERT INTO credentials VALUES (?, ?, ?, ?, ?, ?, ?, ?)", credential_rows
        )
