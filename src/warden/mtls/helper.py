"""The certificate helper: keeps SVID, key and bundle files current for programs that read
certificates from disk (nginx, PostgreSQL, ...), and signals them to reload.

The configuration uses SPIRE's spiffe-helper keys (HCL, top-level): `agent_address`,
`cmd`, `cmd_args`, `pid_file_name`, `cert_dir`, `daemon_mode`, `add_intermediates_to_bundle`,
`renew_signal`, `svid_file_name`, `svid_key_file_name`, `svid_bundle_file_name`,
`jwt_svids`, `jwt_bundle_file_name`, `include_federated_domains`, `cert_file_mode`,
`key_file_mode`, `jwt_bundle_file_mode`, `jwt_svid_file_mode`, `hint`. Warden adds
`reload_cmd` and `reload_cmd_args`: a command run to completion after every update.

After every X.509 update the helper writes the files atomically (the key with mode 0600 unless
configured otherwise), then: starts `cmd` the first time; afterwards sends `renew_signal` to
it, and to the process in `pid_file_name`; and runs `reload_cmd`. If `cmd` exits, the helper
exits with its status.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import hcl
import jwt
import pydantic
from cryptography.hazmat.primitives import serialization

from warden.mtls.client import WorkloadApiClient, WorkloadApiError, X509Context
from warden.mtls.files import write_atomically
from warden.mtls.source import pick_by_hint
from warden.spiffe import BundleSet

log = logging.getLogger(__name__)

RELOAD_TIMEOUT_SECONDS = 60.0
#: spiffe-helper's older camelCase keys, still found in configurations.
LEGACY_KEYS = {
    "agentAddress": "agent_address",
    "cmdArgs": "cmd_args",
    "certDir": "cert_dir",
    "renewSignal": "renew_signal",
    "svidFileName": "svid_file_name",
    "svidKeyFileName": "svid_key_file_name",
    "svidBundleFileName": "svid_bundle_file_name",
    "addIntermediatesToBundle": "add_intermediates_to_bundle",
}
#: spiffe-helper keys Warden accepts without acting on them.
IGNORED_KEYS = ("health_checks", "timeout")


class HelperConfigError(ValueError):
    """The helper configuration is invalid; the message names the key."""


def _file_mode(value: Any) -> int:
    # HCL writes modes as octal literals (0644). pyhcl reads 0644 as the decimal 644, so an
    # integer made of octal digits is read as those digits: 0644 and 644 both mean rw-r--r--.
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or any(digit in "89" for digit in text):
        raise ValueError(f"invalid file mode {value!r}: write it in octal, such as 0644")
    mode = int(text, 8)
    if mode > 0o777:
        raise ValueError(f"invalid file mode {value!r}: at most 0777")
    return mode


class JwtSvidFile(pydantic.BaseModel):
    """One `jwt_svids` item: a JWT-SVID for an audience, kept in a file."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    jwt_audience: str
    jwt_extra_audiences: list[str] = pydantic.Field(default_factory=list)
    jwt_svid_file_name: str


class HelperConfig(pydantic.BaseModel):
    """The helper configuration file."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    agent_address: str | None = None
    cmd: str = ""
    cmd_args: str = ""
    pid_file_name: str = ""
    cert_dir: str = "."
    daemon_mode: bool = True
    add_intermediates_to_bundle: bool = False
    renew_signal: str = ""
    svid_file_name: str = ""
    svid_key_file_name: str = ""
    svid_bundle_file_name: str = ""
    jwt_svids: list[JwtSvidFile] = pydantic.Field(default_factory=list)
    jwt_bundle_file_name: str = ""
    include_federated_domains: bool = False
    cert_file_mode: int = 0o644
    key_file_mode: int = 0o600
    jwt_bundle_file_mode: int = 0o600
    jwt_svid_file_mode: int = 0o600
    hint: str = ""
    reload_cmd: str = ""
    reload_cmd_args: str = ""

    @pydantic.field_validator(
        "cert_file_mode",
        "key_file_mode",
        "jwt_bundle_file_mode",
        "jwt_svid_file_mode",
        mode="before",
    )
    @classmethod
    def _mode(cls, value: Any) -> int:
        return _file_mode(value)

    @pydantic.field_validator("renew_signal")
    @classmethod
    def _signal(cls, value: str) -> str:
        if value:
            signal_number(value)
        return value

    @pydantic.model_validator(mode="after")
    def _files(self) -> HelperConfig:
        x509_names = (self.svid_file_name, self.svid_key_file_name, self.svid_bundle_file_name)
        if any(x509_names) and not all(x509_names):
            raise ValueError(
                "svid_file_name, svid_key_file_name and svid_bundle_file_name must be set together"
            )
        if not any(x509_names) and not self.jwt_svids and not self.jwt_bundle_file_name:
            raise ValueError(
                "nothing to write: set svid_file_name, svid_key_file_name and "
                "svid_bundle_file_name, or jwt_svids, or jwt_bundle_file_name"
            )
        return self

    @property
    def directory(self) -> Path:
        return Path(self.cert_dir)


def signal_number(name: str) -> signal.Signals:
    """Return the signal named `name` (`SIGHUP` or `HUP`)."""
    key = name.upper() if name.upper().startswith("SIG") else f"SIG{name.upper()}"
    try:
        return signal.Signals[key]
    except KeyError:
        raise ValueError(
            f"invalid renew_signal {name!r}: use a name such as SIGHUP or SIGUSR1"
        ) from None


def parse_config(text: str, source: str = "helper.conf") -> HelperConfig:
    """Parse helper configuration text (HCL) into a validated `HelperConfig`."""
    try:
        document = hcl.loads(text)
    except ValueError as error:
        raise HelperConfigError(f"{source}: invalid HCL: {error}") from None
    if not isinstance(document, dict):
        raise HelperConfigError(f"{source}: expected key = value settings at the top level")
    values: dict[str, Any] = {}
    for key, value in document.items():
        if key in IGNORED_KEYS:
            log.warning(
                "helper configuration key is not implemented and is ignored",
                extra={"path": f"{source}:{key}"},
            )
            continue
        if key in LEGACY_KEYS:
            log.warning(
                "deprecated helper configuration key; rename it",
                extra={"path": f"{source}:{key}", "error": f"use {LEGACY_KEYS[key]}"},
            )
            key = LEGACY_KEYS[key]
        values[key] = value
    try:
        return HelperConfig.model_validate(values)
    except pydantic.ValidationError as error:
        problems = []
        for item in error.errors():
            key = ".".join(str(part) for part in item["loc"]) or "configuration"
            if item["type"] == "extra_forbidden":
                problems.append(f"unknown key {key!r}")
            else:
                problems.append(f"{key}: {item['msg']}")
        raise HelperConfigError(f"{source}: " + "; ".join(problems)) from None


def load_config(path: Path) -> HelperConfig:
    try:
        text = path.read_text()
    except OSError as error:
        raise HelperConfigError(
            f"cannot read helper configuration {path}: {error.strerror}"
        ) from None
    return parse_config(text, str(path))


class Helper:
    """Runs the helper for one configuration. `run()` blocks until stopped."""

    def __init__(self, config: HelperConfig, client: WorkloadApiClient | None = None) -> None:
        self.config = config
        self.client = client or WorkloadApiClient(config.agent_address)
        self.process: subprocess.Popen[bytes] | None = None
        self.updates = 0
        self.exit_code: int | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ready = threading.Event()

    # Files.

    def write_x509(self, context: X509Context) -> None:
        """Write the SVID, key and bundle files for `context`."""
        config = self.config
        svid = pick_by_hint(config.hint)(context.svids) if config.hint else context.default_svid
        pem = serialization.Encoding.PEM
        leaf_only = config.add_intermediates_to_bundle
        certificates = svid.chain[:1] if leaf_only else svid.chain
        bundle_certificates = list(svid.chain[1:]) if leaf_only else []
        own = context.bundles.get_bundle_for_trust_domain(svid.spiffe_id.trust_domain)
        if own is not None:
            bundle_certificates.extend(own.x509_authorities)
        if config.include_federated_domains:
            for bundle in context.bundles:
                if bundle.trust_domain != svid.spiffe_id.trust_domain:
                    bundle_certificates.extend(bundle.x509_authorities)

        directory = config.directory
        write_atomically(
            directory / config.svid_key_file_name, svid.key_pem(), config.key_file_mode
        )
        write_atomically(
            directory / config.svid_file_name,
            b"".join(c.public_bytes(pem) for c in certificates),
            config.cert_file_mode,
        )
        write_atomically(
            directory / config.svid_bundle_file_name,
            b"".join(c.public_bytes(pem) for c in bundle_certificates),
            config.cert_file_mode,
        )
        log.info(
            "X.509 SVID files written",
            extra={"spiffe_id": str(svid.spiffe_id), "serial": f"{svid.leaf.serial_number:x}"},
        )

    def write_jwt_bundles(self, bundles: BundleSet) -> None:
        document = {str(bundle.trust_domain): bundle.to_jwks() for bundle in bundles}
        write_atomically(
            self.config.directory / self.config.jwt_bundle_file_name,
            json.dumps(document, indent=2).encode(),
            self.config.jwt_bundle_file_mode,
        )
        log.info("JWT bundle file written", extra={"trust_domain": sorted(document)})

    def refresh_jwt_svids(self) -> float:
        """Write every configured JWT-SVID; return seconds until the next refresh is due."""
        next_refresh = 300.0
        for item in self.config.jwt_svids:
            audience = [item.jwt_audience, *item.jwt_extra_audiences]
            token = self.client.fetch_jwt_svid(audience).token
            write_atomically(
                self.config.directory / item.jwt_svid_file_name,
                token.encode(),
                self.config.jwt_svid_file_mode,
            )
            claims = jwt.decode(token, options={"verify_signature": False})
            lifetime = float(claims["exp"]) - float(claims.get("iat", time.time()))
            next_refresh = min(next_refresh, max(lifetime / 2, 1.0))
            log.info(
                "JWT-SVID file written",
                extra={"audience": audience, "path": item.jwt_svid_file_name},
            )
        return next_refresh

    # Processes.

    def _after_update(self) -> None:
        config = self.config
        if config.cmd:
            if self.process is None:
                command = [config.cmd, *shlex.split(config.cmd_args)]
                try:
                    self.process = subprocess.Popen(command)
                except OSError as error:
                    # Nothing would use the files: stop with an error rather than keep
                    # writing them for a program that never ran.
                    log.error(
                        "cannot start the managed process; stopping",
                        extra={"path": config.cmd, "error": str(error)},
                    )
                    self.exit_code = 1
                    self._stop.set()
                    return
                log.info(
                    "started the managed process",
                    extra={"path": config.cmd, "caller": self.process.pid},
                )
                threading.Thread(
                    target=self._wait_process, name="warden-helper-cmd", daemon=True
                ).start()
            elif config.renew_signal and self.process.poll() is None:
                self.process.send_signal(signal_number(config.renew_signal))
                log.info("signalled the managed process", extra={"caller": self.process.pid})
        if config.pid_file_name and config.renew_signal:
            self._signal_pid_file()
        if config.reload_cmd:
            command = [config.reload_cmd, *shlex.split(config.reload_cmd_args)]
            try:
                result = subprocess.run(
                    command, capture_output=True, timeout=RELOAD_TIMEOUT_SECONDS
                )
            except (OSError, subprocess.TimeoutExpired) as error:
                log.error(
                    "reload command failed", extra={"path": config.reload_cmd, "error": str(error)}
                )
            else:
                if result.returncode != 0:
                    log.error(
                        "reload command failed",
                        extra={
                            "path": config.reload_cmd,
                            "error": f"exit status {result.returncode}: "
                            + result.stderr.decode(errors="replace")[-500:],
                        },
                    )
                else:
                    log.info("reload command ran", extra={"path": config.reload_cmd})

    def _signal_pid_file(self) -> None:
        path = Path(self.config.pid_file_name)
        try:
            owner = path.stat().st_uid
            pid = int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError) as error:
            log.error(
                "cannot read the PID file to signal", extra={"path": str(path), "error": str(error)}
            )
            return
        # Whoever owns the PID file chooses the pid. Unless that is root or the helper's own
        # user, signal only a process the owner could signal itself, so that the owner cannot
        # make a helper running as root send renew_signal to another user's process.
        if owner not in (0, os.geteuid()) and owner not in _process_uids(pid):
            log.error(
                "the PID file names a process of another user; not signalling it",
                extra={
                    "path": str(path),
                    "caller": pid,
                    "error": f"the PID file belongs to uid {owner}, the process does not",
                },
            )
            return
        try:
            os.kill(pid, signal_number(self.config.renew_signal))
        except OSError as error:
            log.error(
                "cannot signal the process of the PID file",
                extra={"path": str(path), "error": str(error)},
            )
            return
        log.info("signalled the process of the PID file", extra={"path": str(path), "caller": pid})

    def _wait_process(self) -> None:
        assert self.process is not None
        code = self.process.wait()
        if not self._stop.is_set():
            log.warning(
                "the managed process exited; stopping", extra={"error": f"exit status {code}"}
            )
            self.exit_code = code
            self._stop.set()

    # Main loop.

    def _on_x509(self, context: X509Context) -> None:
        with self._lock:
            try:
                self.write_x509(context)
            except (OSError, WorkloadApiError) as error:
                log.error("writing the X.509 SVID files failed", extra={"error": str(error)})
                return
            self.updates += 1
            self._ready.set()
            self._after_update()

    def _on_error(self, error: WorkloadApiError) -> None:
        log.warning("Workload API stream error", extra={"error": str(error)})

    def run_once(self) -> None:
        """Write every configured file once and return (daemon_mode = false)."""
        if self.config.svid_file_name:
            self.write_x509(self.client.fetch_x509_context())
        if self.config.jwt_bundle_file_name:
            self.write_jwt_bundles(self.client.fetch_jwt_bundles())
        if self.config.jwt_svids:
            self.refresh_jwt_svids()

    def run(self) -> int:
        """Keep the files current until `stop()` or until `cmd` exits; return the exit code."""
        if not self.config.daemon_mode:
            self.run_once()
            return 0
        watches = []
        if self.config.svid_file_name:
            watches.append(self.client.watch_x509_context(self._on_x509, self._on_error))
        if self.config.jwt_bundle_file_name:
            watches.append(
                self.client.watch_jwt_bundles(self._write_jwt_bundles_safely, self._on_error)
            )
        try:
            delay = 0.0
            while not self._stop.wait(delay):
                delay = 300.0
                if self.config.jwt_svids:
                    try:
                        delay = self.refresh_jwt_svids()
                    except (OSError, WorkloadApiError) as error:
                        log.warning(
                            "writing the JWT-SVID files failed; retrying",
                            extra={"error": str(error)},
                        )
                        delay = 5.0
        finally:
            for watch in watches:
                watch.cancel()
            self._stop_process()
        return self.exit_code or 0

    def _write_jwt_bundles_safely(self, bundles: BundleSet) -> None:
        try:
            self.write_jwt_bundles(bundles)
        except OSError as error:
            log.error("writing the JWT bundle file failed", extra={"error": str(error)})

    def wait_ready(self, timeout: float) -> bool:
        """Wait until the X.509 files have been written once."""
        return self._ready.wait(timeout)

    def stop(self) -> None:
        self._stop.set()

    def _stop_process(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _process_uids(pid: int) -> tuple[int, ...]:
    """Return the real and saved uid of `pid`, the ids a signal's sender must match."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return ()
    for line in status.splitlines():
        if line.startswith("Uid:"):
            real, _, saved = line.split()[1:4]
            return (int(real), int(saved))
    return ()


def config_from_mapping(values: Mapping[str, Any]) -> HelperConfig:
    """Build a configuration from Python values (for embedding the helper)."""
    return HelperConfig.model_validate(dict(values))
