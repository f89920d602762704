"""Signing throughput of the CA: X509-SVIDs from CSRs, and JWT-SVIDs.

The reference is OpenSSL's own ECDSA P-256 speed from `openssl speed -seconds 1 ecdsap256`,
measured in the same run. Signing an X509-SVID from a CSR costs at least one ECDSA verify
(the CSR's proof of possession) and one ECDSA sign (the certificate). Its reference is
therefore the combined rate 1 / (1/sign + 1/verify). A JWT-SVID costs one sign.

The helpers `make_csrs`, `measure_rate` and `openssl_ecdsa_p256` are public so that the
server's benchmark can measure its full signing path (authorisation, audit) the same way.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from warden.pki import (
    CASettings,
    CertificateAuthority,
    MemoryBundleStore,
    MemoryJournalStore,
    MemoryKeyManager,
)
from warden.spiffe import SpiffeId, TrustDomain

T = TypeVar("T")

COMMAND = "python -m bench --only pki"


@dataclass(frozen=True)
class OpensslRates:
    """Operations per second that `openssl speed` reports for ECDSA P-256."""

    sign: float
    verify: float

    @property
    def sign_and_verify(self) -> float:
        return 1 / (1 / self.sign + 1 / self.verify)


def openssl_ecdsa_p256(seconds: int = 1) -> OpensslRates | None:
    """Run `openssl speed -seconds N ecdsap256`; return None when openssl is missing."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    result = subprocess.run(
        [openssl, "speed", "-seconds", str(seconds), "ecdsap256"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    match = re.search(r"ecdsa \(nistp256\)\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)", result.stdout)
    if match is None:
        raise RuntimeError(f"unexpected openssl speed output:\n{result.stdout}")
    return OpensslRates(sign=float(match.group(1)), verify=float(match.group(2)))


def make_csrs(count: int) -> list[bytes]:
    """Return `count` DER CSRs for distinct EC P-256 keys, as agents send them."""
    requests = []
    for _ in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        request = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .sign(key, hashes.SHA256())
        )
        requests.append(request.public_bytes(serialization.Encoding.DER))
    return requests


def measure_rate(operation: Callable[[T], object], inputs: Sequence[T], seconds: float) -> float:
    """Call `operation` on `inputs` in turn for about `seconds`; return calls per second."""
    calls = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for item in inputs:
            operation(item)
        calls += len(inputs)
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - started)


def _started_ca(now: datetime) -> CertificateAuthority:
    settings = CASettings(TrustDomain("example.org"), federation_key_type=None)
    ca = CertificateAuthority(
        settings, MemoryKeyManager(), MemoryJournalStore(), MemoryBundleStore()
    )
    ca.start(now)
    return ca


def run(quick: bool) -> str:
    seconds = 1.0 if quick else 5.0
    now = datetime.now(UTC)
    ca = _started_ca(now)
    spiffe_id = SpiffeId.parse("spiffe://example.org/ns/prod/sa/web")
    csrs = make_csrs(50 if quick else 200)

    x509_rate = measure_rate(
        lambda csr: ca.sign_x509_svid_from_csr(spiffe_id, csr, now=now), csrs, seconds
    )
    audiences = ["db", "cache", "queue", "search"]
    jwt_rate = measure_rate(
        lambda audience: ca.sign_jwt_svid(spiffe_id, audience, now=now), audiences, seconds
    )
    reference = openssl_ecdsa_p256()

    lines = [
        "## PKI: CA signing throughput",
        "",
        f"Command: `{COMMAND}{' --quick' if quick else ''}` (one thread, EC P-256 CA and JWT keys, "
        f"{len(csrs)} distinct CSRs, {seconds:.0f} s per figure).",
        "",
        "| operation | Warden | reference (`openssl speed -seconds 1 ecdsap256`) | ratio |",
        "|---|---|---|---|",
    ]
    if reference is None:
        lines.append(f"| X509-SVID from CSR | {x509_rate:,.0f}/s | openssl not installed | - |")
        lines.append(f"| JWT-SVID | {jwt_rate:,.0f}/s | openssl not installed | - |")
    else:
        lines.append(
            f"| X509-SVID from CSR (verify CSR, sign certificate) | {x509_rate:,.0f}/s | "
            f"{reference.sign_and_verify:,.0f}/s (1 / (1/{reference.sign:,.0f} + "
            f"1/{reference.verify:,.0f})) | {x509_rate / reference.sign_and_verify:.2f} |"
        )
        lines.append(
            f"| JWT-SVID (sign) | {jwt_rate:,.0f}/s | {reference.sign:,.0f}/s sign | "
            f"{jwt_rate / reference.sign:.2f} |"
        )
    lines += [
        "",
        "The reference is the raw cost of the public-key operations in C; the gap is the",
        "work around them in Python: parsing the CSR, building and encoding the certificate",
        "or token.",
        "",
    ]
    return "\n".join(lines)
