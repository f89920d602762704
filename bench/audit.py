"""Benchmark `warden audit`: CloudTrail ingest rate and memory, and escalation findings.

1. CloudTrail ingest. The real invictus capture is replicated with shifted times and new
   event ids into gzipped `{"Records": [...]}` files in a temporary folder (one file per
   copy of the capture). Warden's ingestion into a workspace (file hashing, shape
   detection, normalisation into the activity table) is timed in a child process. Next to
   it, a plain DuckDB `read_json` of the same files is materialised into a table in
   another child process, so that each peak RSS is its own. Peak memory is measured at two sizes to show
   whether it grows with the number of events.
2. Escalation findings on the IAM Vulnerable export, side by side with cloudsplaining run on
   the same file.

`python -m bench --only audit` runs it; `--quick` uses 100,000 events instead of 10 million.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATASETS = Path(os.environ.get("WARDEN_DATASETS", ROOT.parent / "shared" / "datasets"))
CAPTURE = DATASETS / "aws_cloudtrail" / "invictus_stratus_2023-07-10"
AUTHORIZATION = (
    DATASETS / "aws_iam_authz_details" / "cloudsplaining_example_iam_vulnerable_authz_details.json"
)
FULL_EVENTS = 10_000_000
QUICK_EVENTS = 100_000

_WARDEN_INGEST = """
import json, sys, time
from pathlib import Path
from warden.governance.sources import cloudtrail
from warden.governance.workspace import IngestStats, Workspace
started = time.perf_counter()
with Workspace(Path(sys.argv[2])) as workspace:
    stats = IngestStats()
    cloudtrail.ingest(workspace, [Path(sys.argv[1])], stats)
elapsed = time.perf_counter() - started
import resource
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": elapsed, "events": stats.events, "warnings": len(stats.warnings),
                  "peak_mib": peak}))
"""

_DUCKDB_READ = """
import json, sys, time
import duckdb
started = time.perf_counter()
connection = duckdb.connect(sys.argv[2])
connection.execute(
    "CREATE TABLE ref AS SELECT unnest(Records) AS r FROM read_json(?, format='auto', "
    "maximum_object_size=1073741824)", [sys.argv[1] + "/**/*.json.gz"])
events = connection.execute("SELECT count(*) FROM ref").fetchone()[0]
elapsed = time.perf_counter() - started
import resource
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": elapsed, "events": events, "peak_mib": peak}))
"""


def _templates() -> list[tuple[list[str], datetime]]:
    """Split each event of the capture, as JSON text, around its eventTime and eventID values.

    The odd items of each part list name the value to put there ("TIME" or "ID").
    """
    templates = []
    for path in sorted(CAPTURE.glob("*.json")):
        for record in json.loads(path.read_text())["Records"]:
            moment = datetime.fromisoformat(record["eventTime"].replace("Z", "+00:00"))
            record["eventTime"] = "\x00TIME\x00"
            record["eventID"] = "\x00ID\x00"
            text = json.dumps(record, separators=(",", ":"))
            templates.append((re.split(r'"\\u0000(TIME|ID)\\u0000"', text), moment))
    return templates


def generate(folder: Path, events: int) -> tuple[int, int]:
    """Write `events` replicated events into gzipped delivery files; return (events, bytes)."""
    templates = _templates()
    folder.mkdir(parents=True, exist_ok=True)
    written = size = copy = 0
    while written < events:
        shift = timedelta(hours=copy)
        parts = []
        for pieces, moment in templates[: events - written]:
            values = {
                "TIME": f'"{(moment + shift).strftime("%Y-%m-%dT%H:%M:%SZ")}"',
                "ID": f'"{uuid.uuid4()}"',
            }
            parts.append("".join(values[p] if i % 2 else p for i, p in enumerate(pieces)))
        data = ('{"Records":[' + ",".join(parts) + "]}").encode()
        path = folder / f"{copy // 100:04d}" / f"copy-{copy:06d}.json.gz"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(gzip.compress(data, compresslevel=1))
        size += path.stat().st_size
        written += len(parts)
        copy += 1
    return written, size


def _child(code: str, *arguments: str) -> tuple[dict[str, float], float]:
    """Run `code` in a fresh interpreter; return its JSON output and its peak RSS in MiB."""
    result = subprocess.run(
        [sys.executable, "-c", code, *arguments],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    output = json.loads(result.stdout.strip().splitlines()[-1])
    return output, float(output["peak_mib"])


def _ingest_section(quick: bool) -> list[str]:
    total = QUICK_EVENTS if quick else FULL_EVENTS
    small = total // 10
    lines = ["### CloudTrail ingest", ""]
    with tempfile.TemporaryDirectory(prefix="warden-bench-audit-") as scratch:
        base = Path(scratch)
        started = time.perf_counter()
        small_events, _ = generate(base / "small", small)
        events, size = generate(base / "full", total)
        generation = time.perf_counter() - started

        small_run, small_peak = _child(_WARDEN_INGEST, str(base / "small"), str(base / "ws-small"))
        warden, warden_peak = _child(_WARDEN_INGEST, str(base / "full"), str(base / "ws-full"))
        reference, reference_peak = _child(_DUCKDB_READ, str(base / "full"), str(base / "ref.db"))

    warden_rate = warden["events"] / warden["seconds"]
    reference_rate = reference["events"] / reference["seconds"]
    lines += [
        f"{events:,} events ({size / 2**20:,.0f} MiB gzipped in {total // 2900 + 1:,} delivery "
        f"files, generated in {generation:.0f} s from the invictus capture with shifted times "
        "and new event ids). Each run is a fresh process; peak memory is its maximum RSS.",
        "",
        "| run | events | seconds | events/s | peak RSS (MiB) |",
        "|---|---:|---:|---:|---:|",
        f"| warden ingest, {small_events:,} events | {small_run['events']:,} | "
        f"{small_run['seconds']:.1f} | {small_run['events'] / small_run['seconds']:,.0f} | "
        f"{small_peak:,.0f} |",
        f"| warden ingest | {warden['events']:,} | {warden['seconds']:.1f} | {warden_rate:,.0f} | "
        f"{warden_peak:,.0f} |",
        f"| plain DuckDB `read_json` into a table (reference) | {reference['events']:,} | "
        f"{reference['seconds']:.1f} | {reference_rate:,.0f} | {reference_peak:,.0f} |",
        "",
        f"Warden ingests at **{warden_rate / reference_rate:.2f}x** the reference rate (aim: at "
        f"least 0.5x). Memory for {events:,} events is {warden_peak / small_peak:.2f}x the "
        f"memory for {small_events:,} (flat means about 1x).",
        "",
    ]
    return lines


def _cloudsplaining_flags(directory: Path) -> dict[str, bool]:
    """Principal name -> whether cloudsplaining reports privilege escalation in its policies."""
    results = json.loads(next(directory.glob("iam-results-*.json")).read_text())
    escalating: set[str] = set()
    for kind in ("customer_managed_policies", "aws_managed_policies", "inline_policies"):
        for key, policy in results[kind].items():
            if (policy.get("PrivilegeEscalation") or {}).get("findings"):
                escalating.add(key)
    flags: dict[str, bool] = {}
    groups = {
        group["name"]: any(
            pid in escalating
            for kind in ("customer_managed_policies", "aws_managed_policies", "inline_policies")
            for pid in group.get(kind, {})
        )
        for group in results["groups"].values()
    }
    for kind in ("users", "roles"):
        for principal in results[kind].values():
            own = any(
                pid in escalating
                for policy_kind in (
                    "customer_managed_policies",
                    "aws_managed_policies",
                    "inline_policies",
                )
                for pid in principal.get(policy_kind, {})
            )
            via_group = any(groups.get(name) for name in principal.get("groups", {}))
            flags[principal["name"]] = own or via_group
    return flags


def _escalation_section() -> list[str]:
    from datetime import UTC

    from warden.governance import AuditOptions, run_audit

    started = time.perf_counter()
    report = run_audit(
        AuditOptions(
            aws_authorization_details=[AUTHORIZATION], as_of=datetime(2023, 4, 1, tzinfo=UTC)
        )
    )
    warden_seconds = time.perf_counter() - started
    warden_paths = {
        f.identity.rsplit("/", 1)[-1] for f in report.findings if f.check == "NHI5-PRIVESC"
    }
    warden_admin = {
        f.identity.rsplit("/", 1)[-1] for f in report.findings if f.check == "NHI5-ADMIN"
    }

    with tempfile.TemporaryDirectory(prefix="warden-bench-cloudsplaining-") as scratch:
        started = time.perf_counter()
        subprocess.run(
            [
                str(Path(sys.executable).parent / "cloudsplaining"),
                "scan",
                "--input-file",
                str(AUTHORIZATION),
                "--output",
                scratch,
                "--skip-open-report",
            ],
            capture_output=True,
            check=True,
        )
        cloudsplaining_seconds = time.perf_counter() - started
        flags = _cloudsplaining_flags(Path(scratch))

    lab = sorted(name for name in flags if name.startswith(("privesc", "fp", "fn")))

    def mark(value: bool) -> str:
        return "yes" if value else "-"

    rows = [
        f"| {name} | {mark(name in warden_paths)} | {mark(name in warden_admin)} | "
        f"{mark(flags[name])} |"
        for name in lab
    ]
    fp_warden = sum(name.startswith("fp") and name in warden_paths for name in lab)
    fp_cloud = sum(name.startswith("fp") and flags[name] for name in lab)
    fn_warden = sum(name.startswith("fn") and name in warden_paths for name in lab)
    fn_cloud = sum(name.startswith("fn") and flags[name] for name in lab)
    privesc = [n for n in lab if n.startswith("privesc")]
    warden_privesc = sum(n in warden_paths or n in warden_admin for n in privesc)
    return [
        "### Privilege escalation on the IAM Vulnerable export",
        "",
        f"Warden (escalation paths with policy evaluation and role hops) took "
        f"{warden_seconds:.1f} s for the whole audit; cloudsplaining 0.9 (`cloudsplaining scan`, "
        f"action-based) took {cloudsplaining_seconds:.1f} s, a ratio of "
        f"{warden_seconds / cloudsplaining_seconds:.2f}.",
        "",
        f"- `privesc*` principals flagged: warden {warden_privesc}/{len(privesc)} (path or "
        "administrator finding), cloudsplaining "
        f"{sum(flags[n] for n in privesc)}/{len(privesc)}.",
        f"- false positives `fp1`..`fp5` (users and roles) flagged: warden {fp_warden}/10, "
        f"cloudsplaining {fp_cloud}/10.",
        f"- hard true positives `fn1`..`fn4` (users and roles) found: warden {fn_warden}/8, "
        f"cloudsplaining {fn_cloud}/8.",
        "",
        "| principal | warden: escalation path | warden: administrator or wildcard | "
        "cloudsplaining: privilege escalation |",
        "|---|---|---|---|",
        *rows,
        "",
    ]


def run(quick: bool) -> str:
    command = "python -m bench --only audit" + (" --quick" if quick else "")
    lines = ["## warden audit", "", f"Command: `{command}`.", ""]
    if not CAPTURE.is_dir():
        return "\n".join([*lines, f"Skipped: datasets not found at {DATASETS}.", ""])
    lines += _ingest_section(quick)
    lines += _escalation_section()
    return "\n".join(lines)


if __name__ == "__main__":
    print(run("--quick" in sys.argv))
