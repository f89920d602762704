"""Prometheus metrics named with SPIRE's telemetry keys.

SPIRE joins a metric's keys with `_` under the service name in its Prometheus sink, so the
call counter of the keys `ca, manager, x509_ca, prepare` is
`spire_server_ca_manager_x509_ca_prepare`.
Warden keeps those names so that dashboards built for SPIRE servers work. Call counters carry
a `status` label and have an `_elapsed_time` summary beside them, in seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Summary

PREFIX = "spire_server"


class Metrics:
    """The server's metrics. One instance per registry (tests use their own registry)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY, prefix: str = PREFIX) -> None:
        self.registry = registry
        self._registry = registry
        self._prefix = prefix
        self._counters: dict[str, Counter] = {}
        self._summaries: dict[str, Summary] = {}
        self._gauges: dict[str, Gauge] = {}
        self.started = self.gauge(("started",), "Unix time at which the server started")
        self.uptime = self.gauge(
            ("uptime_in_ms",), "Time since the server started, in milliseconds"
        )

    def _name(self, keys: tuple[str, ...]) -> str:
        return "_".join((self._prefix, *keys))

    def counter(
        self, keys: tuple[str, ...], documentation: str, labels: tuple[str, ...] = ()
    ) -> Counter:
        name = self._name(keys)
        if name not in self._counters:
            self._counters[name] = Counter(name, documentation, labels, registry=self._registry)
        return self._counters[name]

    def gauge(self, keys: tuple[str, ...], documentation: str) -> Gauge:
        name = self._name(keys)
        if name not in self._gauges:
            self._gauges[name] = Gauge(name, documentation, registry=self._registry)
        return self._gauges[name]

    @contextmanager
    def call(self, *keys: str) -> Iterator[None]:
        """Count one call of `keys` with its status and time it."""
        name = self._name(keys)
        counter = self.counter(keys, f"Calls of {'.'.join(keys)}", ("status",))
        summary = self._summaries.get(name)
        if summary is None:
            summary = Summary(
                name + "_elapsed_time",
                f"Duration of {'.'.join(keys)} in seconds",
                registry=self._registry,
            )
            self._summaries[name] = summary
        started = time.perf_counter()
        status = "OK"
        try:
            yield
        except BaseException as error:
            status = getattr(getattr(error, "code", None), "name", None) or type(error).__name__
            raise
        finally:
            counter.labels(status=status).inc()
            summary.observe(time.perf_counter() - started)

    def count(self, *keys: str, amount: float = 1.0) -> None:
        self.counter(keys, f"Count of {'.'.join(keys)}").inc(amount)


api_log = logging.getLogger("warden.server.api")


def _status_name(error: BaseException, context: Any) -> str:
    code = context.code() if hasattr(context, "code") else None
    if code is not None and hasattr(code, "name"):
        return str(code.name)
    return type(error).__name__


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


class RpcMetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times every RPC as SPIRE's `rpc.<service>.<method>` call counter."""

    def __init__(self, metrics: Metrics, describe_caller: Any = None) -> None:
        self._metrics = metrics
        # With a function of the call's context, every call is also logged with its caller.
        self._describe_caller = describe_caller

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = await continuation(details)
        if handler is None:
            return None
        # "/warden.server.v1.AgentAPI/AttestAgent" -> ("rpc", "warden_server_v1", "agent_api", "attest_agent")
        service, _, method = details.method.lstrip("/").rpartition("/")
        package, _, service_name = service.rpartition(".")
        keys = ("rpc", package.replace(".", "_"), _snake(service_name), _snake(method))
        metrics = self._metrics

        describe = self._describe_caller

        def log_call(context: Any, status: str) -> None:
            if describe is not None:
                api_log.info(
                    "api call",
                    extra={"method": details.method, "caller": describe(context), "status": status},
                )

        def wrap_unary(function: Any) -> Any:
            async def wrapped(request: Any, context: Any) -> Any:
                status = "OK"
                try:
                    with metrics.call(*keys):
                        return await function(request, context)
                except BaseException as error:
                    status = _status_name(error, context)
                    raise
                finally:
                    log_call(context, status)

            return wrapped

        def wrap_stream(function: Any) -> Any:
            async def wrapped(request: Any, context: Any) -> Any:
                status = "OK"
                try:
                    with metrics.call(*keys):
                        result = function(request, context)
                        if hasattr(result, "__aiter__"):
                            async for item in result:
                                yield item
                        else:
                            await result
                except BaseException as error:
                    status = _status_name(error, context)
                    raise
                finally:
                    log_call(context, status)

            return wrapped

        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                wrap_unary(handler.unary_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                wrap_unary(handler.stream_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                wrap_stream(handler.unary_stream),
                handler.request_deserializer,
                handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            wrap_stream(handler.stream_stream),
            handler.request_deserializer,
            handler.response_serializer,
        )
