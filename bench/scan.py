"""Benchmark of `warden scan`: throughput next to detect-secrets, per core and with one worker
per CPU, findings per MB on real code, and the Nosey Parker regression figures.

The site-packages of the project's own virtual environment is the input: thousands of real
files from real projects. detect-secrets (its default plugins, one process) scans a sample of
the same files in the same run. The hand review of the findings is kept in
`bench/scan_review.md` and printed after the figures.

Run alone with `python -m bench --only scan` (add `--quick` for a smoke run).
"""

from __future__ import annotations

import importlib.util
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
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
REVIEW = Path(__file__).with_name("scan_review.md")


@dataclass
class Run:
    """One measured scan: wall time, CPU time of this process and its workers, bytes."""

    wall: float
    cpu: float
    megabytes: float
    findings: list

    @property
    def rate(self) -> float:
        return self.megabytes / self.wall

    @property
    def cpu_rate(self) -> float:
        return self.megabytes / self.cpu


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def _measure(function) -> tuple[float, float, object]:
    started_wall, started_cpu = time.perf_counter(), _cpu_seconds()
    value = function()
    return time.perf_counter() - started_wall, _cpu_seconds() - started_cpu, value


def _text_files(root: Path, limit_bytes: int) -> list:
    """Return the files Warden would read under root, in sorted order, up to a size budget.

    When the budget is smaller than the tree, every n-th file is taken, so that the sample
    spans all packages.
    """
    from warden.scan import files as scan_files

    candidates = [
        source
        for source in scan_files.walk(root, [])
        if not scan_files.has_binary_suffix(source.relative)
    ]
    total = sum(scan_files.size_of(source) for source in candidates)
    step = max(1, round(total / limit_bytes)) if limit_bytes < total else 1
    return candidates[::step]


def _warden_on(sources: list, keyring) -> Run:
    """Scan a list of files in this process, reading them as a scan of a folder does."""
    from warden.scan.model import Confidence
    from warden.scan.scanner import Scanner, default_detector

    default_detector()  # loaded outside the timing, as a long scan amortises it
    scanner = Scanner(keyring, min_confidence=Confidence.MEDIUM)

    def scan() -> list:
        return [finding for source in sources for finding in scanner.scan_source(source)]

    wall, cpu, findings = _measure(scan)
    return Run(wall, cpu, scanner.result.stats.bytes_scanned / 1e6, findings)


def _warden_tree(root: Path, keyring, *, jobs: int, confidence: str = "MEDIUM") -> Run:
    from warden.scan import scan_paths
    from warden.scan.model import Confidence

    wall, cpu, result = _measure(
        lambda: scan_paths(
            [root], keyring=keyring, jobs=jobs, min_confidence=Confidence[confidence]
        )
    )
    return Run(wall, cpu, result.stats.bytes_scanned / 1e6, result.findings)


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
            f"{evaluation.recall:.1%} | {evaluation.flagged}/{evaluation.negatives} = "
            f"{evaluation.flag_rate:.1%} |"
        )
    uncovered = ", ".join(sorted(module.NOT_COVERED))
    return (
        "| minimum confidence | recall on covered positives | flag rate on covered negatives |\n"
        "|---|---|---|\n" + "\n".join(lines) + "\n\n"
        "Medium is the default of `warden scan`. Low also counts tokens whose checksum fails "
        "(most positive examples are edited tokens) and credentials for documentation hosts. "
        "Each negative that Warden still flags is listed with the reason Warden is right in "
        "`tests/scan/test_noseyparker_regression.py`.\n\n"
        f"Rules not covered ({len(module.NOT_COVERED)}, each with its reason in "
        f"`tests/scan/noseyparker.py`): {uncovered}.\n"
    )


def run(quick: bool) -> str:
    from warden.scan import Keyring
    from warden.scan.parallel import available_cpus

    keyring = Keyring(b"\x05" * 32)
    command = f"python -m bench --only scan{' --quick' if quick else ''}"
    cpus = available_cpus()

    # detect-secrets reads about 0.1 to 0.5 MB/s, so its sample stays small.
    sample = _text_files(SITE_PACKAGES, 1_000_000 if quick else 10_000_000)
    warden = _warden_on(sample, keyring)
    detect_seconds, detect_count = _detect_secrets_on([source.path for source in sample])
    detect_rate = warden.megabytes / detect_seconds

    # pip is in every virtual environment: about 10 MB, enough to start the workers.
    tree = SITE_PACKAGES / "pip" if quick else SITE_PACKAGES
    serial = _warden_tree(tree, keyring, jobs=1)
    parallel = _warden_tree(tree, keyring, jobs=cpus)
    low = _warden_tree(tree, keyring, jobs=cpus, confidence="LOW")
    by_rule = Counter(finding.rule_id for finding in serial.findings)

    with tempfile.TemporaryDirectory() as folder:
        blobs, commits = _history_blobs(ROOT, Path(folder))
        from warden.scan import scan_paths

        history_wall, _, history = _measure(
            lambda: scan_paths([ROOT], git=True, keyring=keyring, jobs=1)
        )
        history_mb = history.stats.bytes_scanned / 1e6
        if quick:
            history_detect = "not measured with --quick | –"
        else:
            seconds, _ = _detect_secrets_on(blobs)
            history_detect = (
                f"{seconds:.2f} s = {history_mb / seconds:.2f} MB/s (blobs as files) | "
                f"{seconds / history_wall:.0f}x"
            )

    top = "\n".join(f"| {rule} | {count} |" for rule, count in by_rule.most_common(12))
    tree_name = "site-packages/pip (--quick)" if quick else "all of site-packages"
    review = REVIEW.read_text() if REVIEW.exists() else ""
    return f"""## Static credential scanner (`warden scan`)

Command: `{command}`. Warden runs with Hyperscan, the full rule catalogue and its default
confidence (medium), detect-secrets {_version("detect-secrets")} with its default plugins and
`num_processors=1`. Throughput includes reading the files. CPU seconds include worker
processes (`getrusage` of this process and its children), so MB per CPU-second is the
per-core figure.

| input | size | Warden, 1 process | detect-secrets, 1 process | ratio |
|---|---|---|---|---|
| site-packages sample ({len(sample)} files) | {warden.megabytes:.1f} MB | {warden.wall:.2f} s = {warden.rate:.1f} MB/s ({warden.cpu_rate:.1f} MB per CPU-second) | {detect_seconds:.2f} s = {detect_rate:.2f} MB/s | {warden.rate / detect_rate:.0f}x |
| project git history ({commits} commits, {len(blobs)} blobs) | {history_mb:.1f} MB | {history_wall:.2f} s = {history_mb / history_wall:.1f} MB/s (including git) | {history_detect} |

Warden on {tree_name} ({serial.megabytes:.0f} MB, {cpus} CPUs available):

| workers | wall | MB/s | CPU seconds | MB per CPU-second |
|---|---|---|---|---|
| 1 (`--jobs 1`) | {serial.wall:.1f} s | {serial.rate:.1f} | {serial.cpu:.1f} | {serial.cpu_rate:.1f} |
| {cpus} (`--jobs {cpus}`) | {parallel.wall:.1f} s | {parallel.rate:.1f} | {parallel.cpu:.1f} | {parallel.cpu_rate:.1f} |

Findings on {tree_name}: {len(serial.findings)} at the default confidence
({len(serial.findings) / serial.megabytes:.2f} per MB) and {len(low.findings)} with
`--min-confidence low` ({len(low.findings) / low.megabytes:.2f} per MB). detect-secrets:
{detect_count} findings on the {warden.megabytes:.1f} MB sample
({detect_count / warden.megabytes:.2f} per MB).

| rule | findings at the default confidence |
|---|---|
{top}

### Nosey Parker regression set

{_regression()}
{review}"""


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "(version unknown)"
