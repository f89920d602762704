"""X.509 and JWT sources: the latest SVIDs and bundles, kept current from the Workload API.

A source follows its stream in a background thread, so it always holds what the agent sent
last. Subscribers are called after every change, from that thread. Sources are also bundle
sources (`get_bundle_for_trust_domain`) for the SPIFFE core's validators: each trust domain
keeps its own bundle.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from warden.mtls.client import (
    JwtSvidToken,
    Watch,
    WorkloadApiClient,
    WorkloadApiError,
    X509Context,
    X509Svid,
)
from warden.spiffe import Bundle, BundleSet, SpiffeId, TrustDomain

log = logging.getLogger(__name__)

DEFAULT_READY_TIMEOUT_SECONDS = 30.0

#: Chooses the SVID a source presents among the workload's SVIDs (default: the first).
SvidPicker = Callable[[Sequence[X509Svid]], X509Svid]


def pick_by_hint(hint: str) -> SvidPicker:
    """Return a picker of the SVID whose hint is `hint`."""

    def pick(svids: Sequence[X509Svid]) -> X509Svid:
        for svid in svids:
            if svid.hint == hint:
                return svid
        raise WorkloadApiError(f"no X509-SVID has the hint {hint!r}")

    return pick


def pick_by_id(spiffe_id: SpiffeId | str) -> SvidPicker:
    """Return a picker of the SVID of `spiffe_id`."""
    wanted = SpiffeId.parse(str(spiffe_id))

    def pick(svids: Sequence[X509Svid]) -> X509Svid:
        for svid in svids:
            if svid.spiffe_id == wanted:
                return svid
        raise WorkloadApiError(f"no X509-SVID for {wanted}")

    return pick


class _Subscribers:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def add(self, callback: Callable[[], None]) -> Callable[[], None]:
        with self._lock:
            self._callbacks.append(callback)

        def remove() -> None:
            with self._lock:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)

        return remove

    def notify(self) -> None:
        with self._lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback()
            except Exception as error:  # one broken subscriber must not stop the others
                log.error("an X.509 source subscriber failed", extra={"error": str(error)})


class X509Source:
    """The workload's current X509-SVID and X.509 bundles.

    The constructor waits up to `timeout` seconds for the first update and raises
    `WorkloadApiError` if none comes (for example when no entry matches the workload).
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        client: WorkloadApiClient | None = None,
        picker: SvidPicker | None = None,
        timeout: float = DEFAULT_READY_TIMEOUT_SECONDS,
    ) -> None:
        self._owns_client = client is None
        self._client = client or WorkloadApiClient(address)
        self._picker = picker
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._context: X509Context | None = None
        self._svid: X509Svid | None = None
        self._last_error: WorkloadApiError | None = None
        self._subscribers = _Subscribers()
        self._watch: Watch = self._client.watch_x509_context(self._update, self._failed)
        if not self._ready.wait(timeout):
            self.close()
            detail = f": {self._last_error}" if self._last_error else ""
            raise WorkloadApiError(
                f"no X509-SVID from the Workload API at {self._client.address} within "
                f"{timeout:g} s{detail}",
                self._last_error.code if self._last_error else None,
            )

    def _update(self, context: X509Context) -> None:
        try:
            svid = self._picker(context.svids) if self._picker else context.default_svid
        except WorkloadApiError as error:
            self._failed(error)
            return
        with self._lock:
            self._context = context
            self._svid = svid
        self._ready.set()
        self._subscribers.notify()

    def _failed(self, error: WorkloadApiError) -> None:
        self._last_error = error

    @property
    def context(self) -> X509Context:
        with self._lock:
            if self._context is None:
                raise WorkloadApiError("the X.509 source has no X509-SVID yet")
            return self._context

    @property
    def svid(self) -> X509Svid:
        """The SVID this workload presents (the default one unless a picker chose)."""
        with self._lock:
            if self._svid is None:
                raise WorkloadApiError("the X.509 source has no X509-SVID yet")
            return self._svid

    @property
    def bundles(self) -> BundleSet:
        return self.context.bundles

    def get_bundle_for_trust_domain(self, trust_domain: TrustDomain) -> Bundle | None:
        return self.context.bundles.get_bundle_for_trust_domain(trust_domain)

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` after every update; return a function that unsubscribes."""
        return self._subscribers.add(callback)

    def close(self) -> None:
        self._watch.cancel()
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> X509Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class JwtSource:
    """The JWT bundles the workload trusts, kept current, and JWT-SVIDs on demand."""

    def __init__(
        self,
        address: str | None = None,
        *,
        client: WorkloadApiClient | None = None,
        timeout: float = DEFAULT_READY_TIMEOUT_SECONDS,
    ) -> None:
        self._owns_client = client is None
        self._client = client or WorkloadApiClient(address)
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._bundles: BundleSet | None = None
        self._last_error: WorkloadApiError | None = None
        self._subscribers = _Subscribers()
        self._watch = self._client.watch_jwt_bundles(self._update, self._failed)
        if not self._ready.wait(timeout):
            self.close()
            detail = f": {self._last_error}" if self._last_error else ""
            raise WorkloadApiError(
                f"no JWT bundle from the Workload API at {self._client.address} within "
                f"{timeout:g} s{detail}",
                self._last_error.code if self._last_error else None,
            )

    def _update(self, bundles: BundleSet) -> None:
        with self._lock:
            self._bundles = bundles
        self._ready.set()
        self._subscribers.notify()

    def _failed(self, error: WorkloadApiError) -> None:
        self._last_error = error

    @property
    def bundles(self) -> BundleSet:
        with self._lock:
            if self._bundles is None:
                raise WorkloadApiError("the JWT source has no bundle yet")
            return self._bundles

    def get_bundle_for_trust_domain(self, trust_domain: TrustDomain) -> Bundle | None:
        return self.bundles.get_bundle_for_trust_domain(trust_domain)

    def fetch_svid(
        self, audience: Sequence[str], spiffe_id: SpiffeId | str | None = None
    ) -> JwtSvidToken:
        """Fetch a JWT-SVID for `audience` from the agent (it caches tokens)."""
        return self._client.fetch_jwt_svid(audience, spiffe_id)

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        return self._subscribers.add(callback)

    def close(self) -> None:
        self._watch.cancel()
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> JwtSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
