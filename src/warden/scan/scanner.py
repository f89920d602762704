"""Scan files, folders and git history; turn matches into redacted findings.

`scan_paths` is the library's entry point (the `warden scan` command and `warden audit
--secrets` both call it). The secret itself never leaves this module: a `Finding` carries a
redacted prefix, the HMAC of the secret and a fingerprint.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from warden.scan import context, files, gitsource, manifests, parallel
from warden.scan.detector import Detector, FileContent, Match
from warden.scan.engine import Engine
from warden.scan.model import Confidence, Finding, ScanResult, ScanWarning, Severity
from warden.scan.rule import Lifetime, Rule, Tier
from warden.scan.rules import RULES
from warden.scan.workspace import Keyring, redact

logger = logging.getLogger(__name__)

_DEFAULT_DETECTOR: Detector | None = None


def default_detector() -> Detector:
    """Return the detector for the whole catalogue, compiled once per process."""
    global _DEFAULT_DETECTOR
    if _DEFAULT_DETECTOR is None:
        _DEFAULT_DETECTOR = Detector(RULES, Engine(RULES))
    return _DEFAULT_DETECTOR


def _lower(confidence: Confidence) -> Confidence:
    return Confidence(max(Confidence.LOW, confidence - 1))


class Scanner:
    """Turns content into findings with one HMAC key and one minimum confidence."""

    def __init__(
        self,
        keyring: Keyring,
        *,
        min_confidence: Confidence = Confidence.MEDIUM,
        max_file_size: int = files.DEFAULT_MAX_FILE_SIZE,
        detector: Detector | None = None,
        rules: Sequence[str] | None = None,
    ) -> None:
        self.keyring = keyring
        self.min_confidence = min_confidence
        self.max_file_size = max_file_size
        if rules:
            selected = [rule for rule in RULES if rule.id in set(rules)]
            unknown = set(rules) - {rule.id for rule in selected}
            if unknown:
                raise ValueError(
                    f"unknown rule ids: {', '.join(sorted(unknown))}; "
                    "list the rules with 'warden scan --list-rules'"
                )
            self.detector = Detector(selected, Engine(selected))
        else:
            self.detector = detector or default_detector()
        self.rule_ids = tuple(rule.id for rule in self.detector.rules)
        self.result = ScanResult(engine=self.detector.engine.name)
        if self.detector.engine.warning:
            self.result.warnings.append(ScanWarning("engine", "", self.detector.engine.warning))

    def _finding(self, match: Match, path: str, commit: str | None) -> Finding:
        rule: Rule = match.rule
        check = match.check
        lifetime = check.lifetime or rule.lifetime
        confidence = match.confidence
        # Keys, structures and generic values in tests, fixtures, examples, documentation
        # and docstrings are mostly made up. Provider formats are not lowered, because real
        # tokens get pasted into tests too.
        if rule.tier is not Tier.PROVIDER and (
            match.in_documentation or context.is_test_path(path)
        ):
            confidence = _lower(confidence)
        secret_hash = self.keyring.secret_hash(match.secret)
        return Finding(
            rule_id=rule.id,
            rule_name=rule.name,
            kind=rule.kind,
            provider=rule.provider,
            long_lived=None if lifetime is Lifetime.UNKNOWN else lifetime is Lifetime.LONG,
            path=path,
            line=match.line,
            column=match.column,
            redacted=redact(match.secret, rule.prefix),
            secret_hash=secret_hash,
            fingerprint=self.keyring.fingerprint(secret_hash, path),
            confidence=confidence,
            severity=check.severity if check.severity is not None else rule.severity,
            replacement=rule.replacement,
            identifier=check.identifier,
            commit=commit,
            details=dict(check.details),
        )

    def scan_bytes(self, data: bytes, path: str, commit: str | None = None) -> list[Finding]:
        """Scan one file's content; append its warnings and return findings that pass the
        confidence threshold and carry no `warden:allow`."""
        warnings = self.result.warnings
        if files.looks_binary(data):
            warnings.append(ScanWarning("binary", path, "skipped: binary content (NUL byte)"))
            self.result.stats.files_skipped += 1
            return []
        text = None if data.isascii() else files.decode(data, path, warnings)
        if files.has_long_line(data):
            warnings.append(
                ScanWarning(
                    "long_line",
                    path,
                    f"a line is longer than {files.LONG_LINE} bytes (minified or generated?); "
                    "scanned, and read around each match",
                )
            )
        self.result.stats.bytes_scanned += len(data)
        if manifests.might_hold_secrets(data, path):
            content = FileContent.from_text(
                data.decode("utf-8", "replace") if text is None else text
            )
            matches = self.detector.detect(data, content, path, code=False)
            secret, decoded = manifests.secret_matches(self.detector, content, path, warnings)
            matches = manifests.merge(matches, secret, decoded)
        else:
            matches = self.detector.detect(data, text, path, code=files.is_code(path))
        findings: list[Finding] = []
        for match in matches:
            finding = self._finding(match, path, commit)
            if match.inline_allowed:
                self.result.stats.findings_suppressed_inline += 1
            elif finding.confidence < self.min_confidence:
                self.result.stats.findings_below_confidence += 1
            else:
                findings.append(finding)
        return findings

    def scan_source(self, source: files.SourceFile) -> list[Finding]:
        """Read and scan one file; count it as scanned or skipped."""
        data = files.read(source, self.max_file_size, self.result.warnings)
        if data is None:
            self.result.stats.files_skipped += 1
            return []
        self.result.stats.files_scanned += 1
        return self.scan_bytes(data, source.relative)

    def scan_files(self, root_argument: Path, jobs: int = 1) -> None:
        """Scan a file or every file under a folder, in `jobs` worker processes (0: one per
        CPU when the files add up to `parallel.PARALLEL_BYTES`)."""
        if not root_argument.exists():
            raise FileNotFoundError(f"{root_argument}: no such file or folder")
        sources = list(files.walk(root_argument, self.result.warnings))
        sized = [(files.size_of(source), source) for source in sources]
        workers = parallel.worker_count(jobs, sum(size for size, _ in sized))
        if workers == 1:
            for source in sources:
                self.result.findings.extend(self.scan_source(source))
            return
        batches = parallel.batches_by_size(sized)
        with parallel.Pool(self._worker_settings(), workers, self) as pool:
            for batch in pool.scan_files(batches):
                self._merge(batch)
                for findings in batch.findings:
                    self.result.findings.extend(findings)
            self._warn_if_broken(pool)

    def scan_history(self, root_argument: Path, jobs: int = 1) -> None:
        """Scan every blob of every ref's history once, in `jobs` worker processes (0: one
        per CPU for large histories).

        Each finding names the oldest commit that introduced its blob, and a secret seen
        again in a later blob of the same path is reported once.
        """
        repository = gitsource.repository_root(root_argument.resolve())
        origins, commits = gitsource.blob_origins(repository)
        self.result.stats.commits += commits
        by_blob = {origin.blob: origin for origin in origins}
        wanted = [origin.blob for origin in origins if not files.has_binary_suffix(origin.path)]
        self.result.stats.files_skipped += len(origins) - len(wanted)
        seen: set[str] = set()

        def report(findings: list[Finding]) -> None:
            for finding in findings:
                if finding.fingerprint not in seen:
                    seen.add(finding.fingerprint)
                    self.result.findings.append(finding)

        workers = parallel.worker_count(jobs, gitsource.total_size(repository, wanted))
        if workers == 1:
            for content, path, commit in self._history_blobs(repository, wanted, by_blob):
                report(self.scan_bytes(content, path, commit))
            return
        # The pool starts before the blob reader, whose thread would prevent forking.
        with parallel.Pool(self._worker_settings(), workers, self) as pool:
            blobs = self._history_blobs(repository, wanted, by_blob)
            batches = parallel.batches_by_size((len(blob[0]), blob) for blob in blobs)
            for batch in pool.scan_blobs(batches):
                self._merge(batch)
                for findings in batch.findings:
                    report(findings)
            self._warn_if_broken(pool)

    def _history_blobs(
        self, repository: Path, wanted: list[str], by_blob: dict[str, gitsource.BlobOrigin]
    ) -> Iterator[tuple[bytes, str, str]]:
        """Read the blobs to scan as (content, path, commit), oldest first; count and warn
        about the ones above the size limit."""
        for blob, content, size in gitsource.read_blobs(repository, wanted, self.max_file_size):
            origin = by_blob[blob]
            if content is None:
                self.result.warnings.append(
                    ScanWarning(
                        "too_large",
                        origin.path,
                        f"blob {blob[:12]} skipped: {size} bytes is above the limit of "
                        f"{self.max_file_size} bytes",
                    )
                )
                self.result.stats.files_skipped += 1
                continue
            self.result.stats.blobs_scanned += 1
            yield content, origin.path, origin.commit

    def _worker_settings(self) -> parallel.WorkerSettings:
        rules = None if self.detector is _DEFAULT_DETECTOR else self.rule_ids
        return parallel.WorkerSettings(
            key=self.keyring.key,
            min_confidence=self.min_confidence,
            max_file_size=self.max_file_size,
            rules=rules,
            serialized=self.detector.engine.serialize(),
        )

    def _warn_if_broken(self, pool: parallel.Pool) -> None:
        if pool.broken:
            self.result.warnings.append(ScanWarning("engine", "", pool.broken))

    def _merge(self, batch: parallel.BatchResult) -> None:
        self.result.warnings.extend(batch.warnings)
        stats, counts = self.result.stats, batch.stats
        stats.files_scanned += counts.files_scanned
        stats.files_skipped += counts.files_skipped
        stats.bytes_scanned += counts.bytes_scanned
        stats.findings_suppressed_inline += counts.findings_suppressed_inline
        stats.findings_below_confidence += counts.findings_below_confidence

    def finish(self) -> ScanResult:
        self.result.findings.sort(
            key=lambda f: (f.path, f.line, f.column, f.rule_id, f.commit or "")
        )
        return self.result


def scan_paths(
    paths: Iterable[str | Path],
    *,
    git: bool = False,
    workspace: str | Path | None = None,
    min_confidence: Confidence = Confidence.MEDIUM,
    min_severity: Severity = Severity.INFO,
    max_file_size: int = files.DEFAULT_MAX_FILE_SIZE,
    rules: Sequence[str] | None = None,
    keyring: Keyring | None = None,
    jobs: int = 0,
) -> ScanResult:
    """Scan files and folders (or, with `git=True`, the full history of the repositories
    that contain them) and return the findings, sorted by path and line.

    `workspace` is the folder holding the HMAC key (see `warden.scan.workspace`). `jobs` is
    the number of worker processes: 0 starts one per CPU when a path contains 64 MB or more
    (see `warden.scan.parallel`), 1 scans in this process. Raises FileNotFoundError for a
    missing path, `gitsource.GitError` when git fails, `workspace.WorkspaceError` when the
    key cannot be loaded, and ValueError for unknown rules or a negative `jobs`.
    """
    keyring = keyring or Keyring.load(Path(workspace) if workspace else None)
    scanner = Scanner(
        keyring, min_confidence=min_confidence, max_file_size=max_file_size, rules=rules
    )
    for path in paths:
        if git:
            scanner.scan_history(Path(path), jobs)
        else:
            scanner.scan_files(Path(path), jobs)
    result = scanner.finish()
    result.findings = [finding for finding in result.findings if finding.severity >= min_severity]
    return result


def scan_text(
    text: str,
    path: str = "input.txt",
    *,
    keyring: Keyring,
    min_confidence: Confidence = Confidence.LOW,
) -> list[Finding]:
    """Scan a string as if it were the file `path`; for tests, editors and other callers
    that hold content in memory."""
    scanner = Scanner(keyring, min_confidence=min_confidence)
    return scanner.scan_bytes(text.encode("utf-8", "surrogateescape"), path)
