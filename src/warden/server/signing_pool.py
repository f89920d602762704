"""Signing X509-SVIDs in worker processes, so that a server uses every core it has.

pyca/cryptography holds the GIL while it signs and verifies, so threads do not add signing
throughput; processes do. The pool is started on the first large batch. Each task carries
the current CA (certificate chain and private key, PEM) with a digest; a worker parses a CA
once per digest and keeps it, so rotation needs no coordination. The workers are children of
the server, run as the same user, and receive the key over a pipe; nothing is written to
disk.

The main process keeps everything that decides and records: authorisation, the audit log and
the responses. Workers only check CSR signatures and build certificates.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from warden.spiffe import X509CA, SpiffeId
from warden.spiffe.x509template import LeafTemplate

log = logging.getLogger(__name__)

# Batches smaller than this are signed in the server process: the round trip to a worker
# costs more than it saves.
MIN_POOL_BATCH = 16


@dataclass(frozen=True)
class SignRequest:
    spiffe_id: str
    csr_der: bytes
    ttl_seconds: float
    dns_names: tuple[str, ...] = ()


def default_worker_count() -> int:
    """Workers for `signing_workers = -1` (auto): one per core, none on a single core."""
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    return cores if cores > 1 else 0


def ca_material(ca: X509CA) -> tuple[str, bytes]:
    """The PEM of an `X509CA` (key, certificate, upstream chain) and its digest."""
    parts = [
        ca.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        ca.certificate.public_bytes(serialization.Encoding.PEM),
        *(c.public_bytes(serialization.Encoding.PEM) for c in ca.upstream_chain),
    ]
    material = b"".join(parts)
    return hashlib.sha256(material).hexdigest(), material


@dataclass(frozen=True)
class SignedChain:
    """A signed X509-SVID: its DER chain (leaf first), serial number and expiry (Unix seconds)."""

    chain: list[bytes]
    serial_number: int
    not_after: int


class TemplateCache:
    """The `LeafTemplate` of the CA that signs now; a new one after each CA rotation."""

    def __init__(self) -> None:
        self._ca: object = None
        self._template: LeafTemplate | None = None

    def get(self, ca: X509CA, now: datetime) -> LeafTemplate:
        if self._template is None or self._ca is not ca:
            self._template = LeafTemplate(ca, now)
            self._ca = ca
        return self._template


@functools.lru_cache(maxsize=65536)
def _spiffe_id(text: str) -> SpiffeId:
    # Entries sign again and again for the same IDs; SpiffeId values are immutable.
    return SpiffeId.parse(text)


def sign_with_template(template: LeafTemplate, request: SignRequest, now: datetime) -> SignedChain:
    """Check the request's CSR and sign its SVID. Raises SpiffeError or ValueError."""
    from warden.spiffe.x509svid import load_csr

    public_key = load_csr(request.csr_der).public_key()
    leaf = template.sign(
        _spiffe_id(request.spiffe_id),
        public_key,
        now,
        timedelta(seconds=request.ttl_seconds),
        request.dns_names,
    )
    return SignedChain(template.chain(leaf), leaf.serial_number, int(leaf.not_after.timestamp()))


def sign_or_explain(
    template: LeafTemplate, request: SignRequest, now: datetime
) -> SignedChain | str:
    """`sign_with_template`, with a refusal returned as its message instead of raised."""
    from warden.spiffe import SpiffeError

    try:
        return sign_with_template(template, request, now)
    except (SpiffeError, ValueError) as error:
        return str(error)


_worker_templates = TemplateCache()
_worker_cas: dict[str, X509CA] = {}


def _worker_ca(digest: str, material: bytes) -> X509CA:
    ca = _worker_cas.get(digest)
    if ca is None:
        key = serialization.load_pem_private_key(material, password=None)
        certificates = x509.load_pem_x509_certificates(material)
        ca = X509CA(certificates[0], key, tuple(certificates[1:]))  # type: ignore[arg-type]
        _worker_cas.clear()
        _worker_cas[digest] = ca
    return ca


def sign_chunk(
    digest: str, material: bytes, requests: Sequence[SignRequest], now_timestamp: float
) -> list[SignedChain | str]:
    """Worker side: check each CSR and sign; return signed chains, or refusal messages."""
    now = datetime.fromtimestamp(now_timestamp, tz=UTC)
    template = _worker_templates.get(_worker_ca(digest, material), now)
    return [sign_or_explain(template, request, now) for request in requests]


class SigningPool:
    """A lazily started pool of signing processes."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None

    @property
    def enabled(self) -> bool:
        return self.workers > 0

    def _start(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # spawn, not fork: forking a process that runs gRPC is unsafe.
            context = multiprocessing.get_context("spawn")
            self._executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
            log.info("signing workers started", extra={"count": self.workers})
        return self._executor

    async def sign(
        self, ca: X509CA, requests: Sequence[SignRequest], now: datetime
    ) -> list[SignedChain | str]:
        """Sign `requests` across the workers and return the results in request order.

        A worker that died (killed, out of memory) breaks the whole pool: the pool is then
        started again and the batch retried once.
        """
        try:
            return await self._sign(ca, requests, now)
        except BrokenProcessPool as error:
            log.error(
                "a signing worker died; starting the workers again", extra={"error": str(error)}
            )
            self._discard()
            return await self._sign(ca, requests, now)

    def _discard(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def _sign(
        self, ca: X509CA, requests: Sequence[SignRequest], now: datetime
    ) -> list[SignedChain | str]:
        executor = self._start()
        digest, material = ca_material(ca)
        size = -(-len(requests) // self.workers)
        chunks = [requests[i : i + size] for i in range(0, len(requests), size)]
        loop = asyncio.get_running_loop()
        parts = await asyncio.gather(
            *(
                loop.run_in_executor(executor, sign_chunk, digest, material, chunk, now.timestamp())
                for chunk in chunks
            )
        )
        return [result for part in parts for result in part]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
