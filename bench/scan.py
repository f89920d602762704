"""Benchmark of `warden scan`: throughput next to detect-secrets, findings per MB, and the
Nosey Parker regression figures.

Run alone with `python -m bench --only scan` (add `--quick` for a smoke run).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SITE_PACKAGES = (
    ROOT
    / ".venv"
    / "lib"
    / f"python{sys.version_info.major}.{sys.version_info.minor}"
    / "site-packages"
)
DATASET = (
    Path(os.environ.get("WARDEN_DATASETS", ROOT.parent / "shared" / "datasets"))
    / "secrets"
    / "noseyparker_examples.jsonl"
)


def _text_files(root: Path, limit_bytes: int) -> list[Path]:
    """Every text file under root (by Warden's own skip rules), in sorted order, up to a size budget;
    when the budget is smaller than the tree, take every n-th file so the sample spans all packages."""
    from warden.scan import files as scan_files

    warnings: list = []
    candidates = [
        source.path
        for source in scan_files.walk(root, warnings)
        if not scan_files.has_binary_suffix(source.relative)
    ]
    total = sum(path.stat().st_size for path in candidates)
    step = max(1, round(total / limit_bytes)) if limit_bytes < total else 1
    chosen = candidates[::step]
    return chosen


def _warden_on(paths: list[Path], keyring) -> tuple[float, int, list]:
    from warden.scan.model import Confidence
    from warden.scan.scanner import Scanner, default_detector

    default_detector()  # compile outside the timing, as a long-running scan amortises it
    scanner = Scanner(keyring, min_confidence=Confidence.MEDIUM)
    started = time.perf_counter()
    for path in paths:
        data = path.read_bytes()
        scanner.result.findings.extend(scanner.scan_bytes(data, str(path.relative_to(path.anchor))))
    elapsed = time.perf_counter() - started
    return elapsed, scanner.result.stats.bytes_scanned, scanner.result.findings


def _detect_secrets_on(paths: list[Path]) -> tuple[float, int]:
    from detect_secrets import SecretsCollection
    from detect_secrets.settings import default_settings

    collection = SecretsCollection()
    started = time.perf_counter()
    with default_settings():
        collection.scan_files(*[str(path) for path in paths], num_processors=1)
    elapsed = time.perf_counter() - started
    return elapsed, sum(len(list(secrets)) for _, secrets in collection.data.items())


def _history_blobs(repository: Path, folder: Path) -> tuple[list[Path], int]:
    from warden.scan import files as scan_files
    from warden.scan import gitsource

    origins, commits = gitsource.blob_origins(repository)
    wanted = [origin.blob for origin in origins if not scan_files.has_binary_suffix(origin.path)]
    written = []
    for blob, content, _ in gitsource.read_blobs(
        repository, wanted, scan_files.DEFAULT_MAX_FILE_SIZE
    ):
        if content is None or scan_files.looks_binary(content):
            continue
        target = folder / blob
        target.write_bytes(content)
        written.append(target)
    return written, commits


def _regression() -> str:
    spec = importlib.util.spec_from_file_location(
        "scan_noseyparker", ROOT / "tests" / "scan" / "noseyparker.py"
    )
    if spec is None or spec.loader is None or not DATASET.exists():
        return "The Nosey Parker regression set was not found; set WARDEN_DATASETS.\n"
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    from warden.scan.model import Confidence

    examples = module.load(DATASET)
    lines = []
    for confidence in (Confidence.LOW, Confidence.MEDIUM):
        evaluation = module.evaluate(examples, confidence)
        lines.append(
            f"| {confidence.label()} | {evaluation.found}/{evaluation.positives} = "
            f"{evaluation.recall:.1%} | {evaluation.flagged}/{evaluation.negatives} = {evaluation.flag_rate:.1%} |"
        )
    uncovered = ", ".join(sorted(module.NOT_COVERED))
    return (
        "| minimum confidence | recall on covered positives | flag rate on covered negatives |\n"
        "|---|---|---|\n" + "\n".join(lines) + "\n\n"
        f"Rules not covered ({len(module.NOT_COVERED)}, each with its reason in "
        f"`tests/scan/noseyparker.py`): {uncovered}.\n"
    )


def run(quick: bool) -> str:
    from warden.scan import Keyring

    keyring = Keyring(b"\x05" * 32)
    sample_budget = 3_000_000 if quick else 30_000_000
    sample = _text_files(SITE_PACKAGES, sample_budget)

    warden_seconds, warden_bytes, _ = _warden_on(sample, keyring)
    detect_seconds, detect_count = _detect_secrets_on(sample)
    sample_mb = warden_bytes / 1e6

    full_paths = sample if quick else _text_files(SITE_PACKAGES, 10**12)
    full_seconds, full_bytes, findings = (
        (warden_seconds, warden_bytes, _warden_on(sample, keyring)[2])
        if quick
        else _warden_on(full_paths, keyring)
    )
    full_mb = full_bytes / 1e6
    by_rule = Counter(finding.rule_id for finding in findings)

    with tempfile.TemporaryDirectory() as folder:
        blobs, commits = _history_blobs(ROOT, Path(folder))
        history_started = time.perf_counter()
        from warden.scan import scan_paths

        history = scan_paths([ROOT], git=True, keyring=keyring)
        history_seconds = time.perf_counter() - history_started
        history_mb = history.stats.bytes_scanned / 1e6
        history_detect_seconds, _ = _detect_secrets_on(blobs)

    top = "\n".join(f"| {rule} | {count} |" for rule, count in by_rule.most_common(12))
    warden_rate = sample_mb / warden_seconds
    detect_rate = sample_mb / detect_seconds
    return f"""## Static credential scanner (`warden scan`)

Command: `python -m bench --only scan{" --quick" if quick else ""}`. One process, one core for
both tools (detect-secrets 1.5 with its default plugins and `num_processors=1`); Warden with
Hyperscan and the full rule catalogue at its default confidence (medium).

| input | size | Warden | detect-secrets | ratio |
|---|---|---|---|---|
| site-packages sample ({len(sample)} text files) | {sample_mb:.1f} MB | {warden_seconds:.2f} s = {warden_rate:.1f} MB/s | {detect_seconds:.2f} s = {detect_rate:.2f} MB/s | {warden_rate / detect_rate:.1f}x |
| project git history ({commits} commits, {len(blobs)} blobs) | {history_mb:.1f} MB | {history_seconds:.2f} s = {history_mb / history_seconds:.1f} MB/s (including git) | {history_detect_seconds:.2f} s = {history_mb / history_detect_seconds:.2f} MB/s (blobs as files) | {history_detect_seconds / history_seconds:.1f}x |

Warden on all of site-packages ({len(full_paths)} text files, {full_mb:.0f} MB):
{full_seconds:.1f} s = {full_mb / full_seconds:.1f} MB/s, {len(findings)} findings =
{len(findings) / full_mb:.2f} findings per MB (detect-secrets: {detect_count} findings on the
{sample_mb:.1f} MB sample = {detect_count / sample_mb:.2f} per MB).

| rule | findings on site-packages |
|---|---|
{top}

### Nosey Parker regression set

{_regression()}"""
