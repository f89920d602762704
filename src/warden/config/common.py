"""Blocks that the server and the agent share: `health_checks` and `telemetry`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar

from pydantic import Field

from warden.config.decode import Section
from warden.config.values import Bool, Host, ListenPort, Str

_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")


class HealthChecks(Section):
    """`health_checks { ... }`: the HTTP liveness and readiness endpoints.

    The defaults are SPIRE's, including port 80, which only root may bind: set bind_port
    when enabling the listener as another user.
    """

    listener_enabled: Bool = False
    bind_address: Host = "localhost"
    bind_port: ListenPort = 80
    live_path: Str = "/live"
    ready_path: Str = "/ready"

    def config_problems(self) -> Iterable[tuple[str, str]]:
        for key in ("live_path", "ready_path"):
            if not getattr(self, key).startswith("/"):
                yield key, f"expected a path starting with '/', got {getattr(self, key)!r}"
        if self.live_path == self.ready_path:
            yield "ready_path", "must differ from live_path"


class Prometheus(Section):
    """`telemetry { Prometheus { ... } }`: a Prometheus scrape endpoint over plain HTTP."""

    spire_rejected: ClassVar[Mapping[str, str]] = {
        "tls": (
            "Warden serves Prometheus metrics without TLS or client authentication, so it "
            "cannot honour this block; remove it and limit who can reach the port"
        ),
    }

    host: Host = "localhost"
    port: ListenPort

    def config_warnings(self) -> Iterable[tuple[str, str]]:
        if self.host not in _LOCAL_HOSTS:
            yield (
                "host",
                (
                    f"metrics are served to the network on {self.host}; make sure only the "
                    "monitoring system can reach this port"
                ),
            )


_OTHER_SINK = "Warden exports metrics to Prometheus only"


class Telemetry(Section):
    """`telemetry { ... }`: where metrics go."""

    spire_ignored: ClassVar[Mapping[str, str]] = {
        "DogStatsd": _OTHER_SINK,
        "Statsd": _OTHER_SINK,
        "M3": _OTHER_SINK,
        "InMem": _OTHER_SINK,
        "MetricPrefix": "",
        "EnableTrustDomainLabel": "",
        "EnableHostnameLabel": "",
        "AllowedPrefixes": "",
        "BlockedPrefixes": "",
        "AllowedLabels": "",
        "BlockedLabels": "",
    }

    prometheus: Prometheus | None = Field(default=None, alias="Prometheus")
