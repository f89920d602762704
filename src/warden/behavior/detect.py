"""`run_detect`: read new logs, judge them against each identity's baseline, report alerts.

This is the library entry point behind `warden detect`:

    report = run_detect(DetectOptions(cloudtrail=[Path("logs/")], workspace=Path("ws")))
    for alert in report.alerts:
        print(alert.severity, alert.detector, alert.identity)

A run has these steps:

1. Ingest: log files not yet in the workspace are read (`warden.governance` sources). When
   inventory sources are given as well (IAM exports, Kubernetes objects, ...), the audit
   runs first on the same workspace, so that its classification of identities is used.
2. Select: the rows appended since the last run, without duplicates, plus the context the
   detectors need around them (`warden.behavior.batch`).
3. Classify and compute each event's features against the stored baselines.
4. In one transaction: fold the new events into the baselines, fit the anomaly model on
   the stored sample and score the events, run every detector, reconcile alerts with
   earlier runs, and advance the watermark. A failure leaves the workspace as it was
   after the last whole transaction. A long backlog goes through steps 2 to 4 in slices of
   `slice_rows` rows.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from warden.behavior.alerts import Retraction
from warden.behavior.batch import BatchSummary
from warden.behavior.model import Alert, Severity
from warden.behavior.settings import Settings
from warden.governance.model import InputWarning

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
#: DuckDB memory limit of a detection run, the default of `DetectOptions.memory_limit`.
DETECT_MEMORY_LIMIT = "2GB"
ProgressCallback = Callable[[str, int, int], None]


class DetectError(Exception):
    """An option or configuration file that stops the run before it starts."""


@dataclass
class DetectOptions:
    """Sources to read (the same as the audit's), the workspace and the detector settings."""

    cloudtrail: Sequence[Path] = ()
    k8s_audit: Sequence[Path] = ()
    aws_credential_reports: Sequence[Path] = ()
    aws_authorization_details: Sequence[Path] = ()
    k8s_objects: Sequence[Path] = ()
    github: Sequence[Path] = ()
    warden_datastores: Sequence[str] = ()
    warden_readers: Sequence[Any] = ()
    secrets: Sequence[Path] = ()
    aws_live: bool = False
    aws_session: Any = None
    workspace: Path | None = None  # None: a temporary workspace, removed afterwards
    settings: Settings = field(default_factory=Settings)
    networks: Path | None = None  # CIDR or ASN table, see warden.behavior.networks
    include_previous: bool = False  # also report alerts raised by earlier runs
    # Activity rows judged per transaction; bounds memory on a long backlog.
    slice_rows: int = 1_000_000
    # DuckDB's memory limit while detecting. Judging a slice joins every event with its
    # counts per dimension, so a low limit makes DuckDB spill (fifty times slower on one
    # million events at 512 MB) or fail where it cannot spill.
    memory_limit: str = DETECT_MEMORY_LIMIT
    # Return every new event's anomaly score in the report (event id to score), for
    # evaluating the model on labelled data. It has one entry per event, so keep it off for
    # large inputs.
    event_scores: bool = False
    progress: ProgressCallback | None = None

    def inventory_sources(self) -> bool:
        return bool(
            self.aws_credential_reports
            or self.aws_authorization_details
            or self.k8s_objects
            or self.github
            or self.warden_datastores
            or self.warden_readers
            or self.secrets
            or self.aws_live
        )


@dataclass
class DetectReport:
    generated_at: datetime
    workspace: str | None
    run: int
    settings: Settings
    batch: BatchSummary
    alerts: list[Alert]  # non-human identities, most severe and highest scored first
    human_alerts: list[Alert]  # human identities, reported apart
    retracted: list[Retraction]
    sources: list[dict[str, Any]]
    warnings: list[InputWarning]
    model: dict[str, Any]
    event_scores: dict[str, float] = field(default_factory=dict)

    def max_severity(self) -> Severity | None:
        """Return the highest severity of this run's new or updated non-human alerts."""
        return max(
            (alert.severity for alert in self.alerts if alert.status != "previous"), default=None
        )

    def to_json(self) -> dict[str, Any]:
        from warden.behavior.report import report_to_json

        return report_to_json(self)


def run_detect(options: DetectOptions) -> DetectReport:
    """Read the sources in `options`, run every detector and return the report.

    Raises DetectError for a network table, workspace or audit configuration that cannot be
    used.
    Damaged log files do not raise: they become warnings in the report.
    """
    from warden.behavior.networks import NetworkTableError, load_network_table
    from warden.governance.workspace import WorkspaceError

    table = None
    if options.networks is not None:
        try:
            table = load_network_table(options.networks)
        except NetworkTableError as error:
            raise DetectError(str(error)) from None

    temporary = None
    directory = options.workspace
    if directory is None:
        temporary = tempfile.TemporaryDirectory(prefix="warden-detect-")
        directory = Path(temporary.name)
    try:
        sources: list[dict[str, Any]] = []
        warnings: list[InputWarning] = []
        if options.inventory_sources():
            _run_audit(options, directory, sources, warnings)
        return _detect(options, directory, table, sources, warnings)
    except WorkspaceError as error:
        # Not a DuckDB file, a directory that cannot be written, or another run has it open.
        raise DetectError(str(error)) from None
    finally:
        if temporary is not None:
            temporary.cleanup()


def _run_audit(
    options: DetectOptions,
    directory: Path,
    sources: list[dict[str, Any]],
    warnings: list[InputWarning],
) -> None:
    """Ingest every source and store the audit's classified inventory in the workspace."""
    from warden.governance import AuditError, AuditOptions, run_audit

    try:
        report = run_audit(
            AuditOptions(
                aws_credential_reports=options.aws_credential_reports,
                aws_authorization_details=options.aws_authorization_details,
                cloudtrail=options.cloudtrail,
                k8s_objects=options.k8s_objects,
                k8s_audit=options.k8s_audit,
                github=options.github,
                warden_datastores=options.warden_datastores,
                warden_readers=options.warden_readers,
                secrets=options.secrets,
                aws_live=options.aws_live,
                aws_session=options.aws_session,
                workspace=directory,
                progress=options.progress,
            )
        )
    except AuditError as error:
        raise DetectError(str(error)) from None
    sources.extend(report.sources)
    warnings.extend(report.warnings)


def _detect(
    options: DetectOptions,
    directory: Path,
    table: Any,
    sources: list[dict[str, Any]],
    warnings: list[InputWarning],
) -> DetectReport:
    from warden.behavior import alerts as alerts_module
    from warden.behavior import store
    from warden.governance.workspace import Workspace

    settings = options.settings
    with Workspace(directory, memory_limit=options.memory_limit) as workspace:
        connection = workspace.connection
        store.ensure_schema(connection)
        if not options.inventory_sources():
            _ingest_logs(workspace, options, sources, warnings)
        run_number = int(store.get_meta(connection, "runs") or 0) + 1
        watermark = int(store.get_meta(connection, "activity_rowid") or -1)
        row = connection.execute("SELECT count(*) FROM activity").fetchone()
        top = int(row[0]) - 1 if row else -1

        # A long backlog is judged in slices of rows, each in its own transaction, so that
        # memory stays bounded and an interrupted run resumes after the last whole slice.
        # Slices are exactly like successive runs, which the context makes equivalent to one.
        outcome = _Outcome()
        while True:
            upper = min(top, watermark + max(options.slice_rows, 1))
            outcome.add(_judge(connection, options, table, watermark, upper, run_number))
            watermark = max(watermark, upper)
            if watermark >= top:
                break
        store.set_meta(connection, "runs", str(run_number))
        skipped = outcome.summary().implausible_times
        if skipped:
            message = (
                f"{skipped} event{'s' if skipped != 1 else ''} dated before 2000 or after "
                "2199 left out of the baselines and detectors; check the clock of the "
                "source that wrote them"
            )
            log.warning(message, extra={"events": skipped})
            warnings.append(
                InputWarning(source="activity", path=str(workspace.path), message=message)
            )

        # A run that was stopped after some slices committed did not count itself, so this
        # run has its number. The alerts those slices stored were never reported: report
        # them now, or a rerun would hide them.
        for alert in alerts_module.load_stored(connection, updated_run=run_number):
            outcome.alerts.setdefault(alert.id, alert)

        reported = list(outcome.alerts.values())
        if options.include_previous:
            listed = {alert.id for alert in reported}
            reported += [
                alert for alert in alerts_module.load_stored(connection) if alert.id not in listed
            ]
    reported.sort(key=Alert.sort_key)
    return DetectReport(
        generated_at=datetime.now(UTC),
        workspace=str(options.workspace) if options.workspace else None,
        run=run_number,
        settings=settings,
        batch=outcome.summary(),
        alerts=[alert for alert in reported if not alert.human],
        human_alerts=[alert for alert in reported if alert.human],
        retracted=outcome.retracted,
        sources=sources,
        warnings=warnings,
        model=outcome.model,
        event_scores=outcome.event_scores,
    )


@dataclass
class _Slice:
    batch: BatchSummary
    identities: set[str]
    alerts: list[Alert]
    retracted: list[Retraction]
    model: dict[str, Any]
    event_scores: dict[str, float]


@dataclass
class _Outcome:
    """What the slices of one run found, merged: the latest version of each alert."""

    batches: list[BatchSummary] = field(default_factory=list)
    identities: set[str] = field(default_factory=set)
    alerts: dict[str, Alert] = field(default_factory=dict)
    retracted: list[Retraction] = field(default_factory=list)
    model: dict[str, Any] = field(default_factory=dict)
    event_scores: dict[str, float] = field(default_factory=dict)

    def add(self, part: _Slice) -> None:
        self.batches.append(part.batch)
        self.identities |= part.identities
        for alert in part.alerts:
            if alert.status == "previous":
                continue
            earlier = self.alerts.get(alert.id)
            if earlier is not None and earlier.status == "new":
                alert.status = "new"  # raised by this run, then extended by a later slice
            self.alerts[alert.id] = alert
        for retraction in part.retracted:
            if self.alerts.pop(retraction.id, None) is None:
                self.retracted.append(retraction)
        self.model = part.model
        self.event_scores.update(part.event_scores)

    def summary(self) -> BatchSummary:
        firsts = [b.first_time for b in self.batches if b.first_time is not None]
        lasts = [b.last_time for b in self.batches if b.last_time is not None]
        return BatchSummary(
            new_rows=sum(b.new_rows for b in self.batches),
            new_events=sum(b.new_events for b in self.batches),
            context_events=sum(b.context_events for b in self.batches),
            identities=len(self.identities),
            first_time=min(firsts, default=None),
            last_time=max(lasts, default=None),
            watermark=max((b.watermark for b in self.batches), default=-1),
            implausible_times=sum(b.implausible_times for b in self.batches),
        )


def _judge(
    connection: Any,
    options: DetectOptions,
    table: Any,
    watermark: int,
    upper: int,
    run_number: int,
) -> _Slice:
    """Judge the activity rows after `watermark` up to `upper`, in one transaction."""
    from warden.behavior import alerts as alerts_module
    from warden.behavior import anomaly, store
    from warden.behavior.baseline import update_baselines
    from warden.behavior.batch import select_batch
    from warden.behavior.detectors import DETECTORS, RunContext
    from warden.behavior.features import compute_features
    from warden.behavior.identities import classify_batch

    settings = options.settings
    batch = select_batch(connection, watermark, upper, settings.context_window, table)
    records = classify_batch(connection)
    compute_features(connection, records, settings)
    log.info(
        "judging events",
        extra={"new_events": batch.new_events, "context_events": batch.context_events},
    )
    identities = {
        str(name)
        for (name,) in connection.execute(
            "SELECT DISTINCT identity FROM behavior_work WHERE in_batch"
        ).fetchall()
    }

    connection.execute("BEGIN TRANSACTION")
    try:
        update_baselines(connection, records, settings.model_sample_size)
        model = anomaly.fit(connection)
        vectors = anomaly.score_events(connection, model) if model else 0
        run = RunContext(connection, settings)
        raised: list[Alert] = []
        for detector in DETECTORS.values():
            hits = detector.find(run)
            run.flagged.update(hit.ev_key for hit in hits)
            raised.extend(alerts_module.group_hits(hits, detector, run))
        alerts_module.attach_scores(connection, raised, model)
        event_scores = _event_scores(connection) if options.event_scores and model else {}
        reconciled, retracted = alerts_module.reconcile(
            connection, raised, settings.alert_gap, run_number
        )
        store.set_meta(connection, "activity_rowid", str(batch.watermark))
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return _Slice(
        batch=batch,
        identities=identities,
        alerts=reconciled,
        retracted=retracted,
        model={
            "fitted": model is not None,
            "sample_size": model.sample_size if model else 0,
            "distinct_vectors_scored": vectors,
            "threshold": settings.anomaly_threshold,
        },
        event_scores=event_scores,
    )


def _event_scores(connection: Any) -> dict[str, float]:
    rows = connection.execute(
        "SELECT coalesce(event_id, ev_key), score FROM behavior_scored "
        "WHERE in_batch AND score IS NOT NULL"
    ).fetchall()
    return {str(event): float(score) for event, score in rows}


def _ingest_logs(
    workspace: Any,
    options: DetectOptions,
    sources: list[dict[str, Any]],
    warnings: list[InputWarning],
) -> None:
    from warden.governance.sources import cloudtrail, kubernetes
    from warden.governance.workspace import IngestStats

    def progress_for(stage: str) -> Callable[[int, int], None] | None:
        callback = options.progress
        if callback is None:
            return None
        return lambda done, total: callback(stage, done, total)

    steps = (
        ("cloudtrail", "CloudTrail", options.cloudtrail, cloudtrail.ingest),
        ("k8s_audit", "Kubernetes audit", options.k8s_audit, kubernetes.ingest_audit),
    )
    for source, label, roots, ingest in steps:
        if not roots:
            continue
        stats = IngestStats()
        ingest(workspace, roots, stats, progress_for(label))
        for path, line, message in stats.warnings:
            warnings.append(InputWarning(source=source, path=path, message=message, line=line))
        sources.append(
            {
                "type": source,
                "path": [str(path) for path in roots],
                "files_seen": stats.files_seen,
                "files_read": stats.files_read,
                "files_unchanged": stats.files_unchanged,
                "files_duplicate": stats.files_duplicate,
                "events_ingested": stats.events,
            }
        )
