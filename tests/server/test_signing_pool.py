"""Signing in worker processes gives the same SVIDs, audit records and errors as in-process."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from prometheus_client import CollectorRegistry
from server_helpers import make_csr, server_options

from warden.server.app import WardenServer
from warden.server.entry_cache import make_entry
from warden.server.metrics import Metrics
from warden.server.signing import SigningError
from warden.server.signing_pool import MIN_POOL_BATCH
from warden.spiffe import validate_x509_svid


async def test_batch_signed_by_workers(tmp_path: Path) -> None:
    server = WardenServer(
        server_options(tmp_path, signing_workers=2), metrics=Metrics(CollectorRegistry())
    )
    await server.start()
    try:
        entry = make_entry(
            id="e1",
            spiffe_id="spiffe://example.org/web",
            parent_id="spiffe://example.org/spire/agent/x",
            selectors=["unix:uid:1"],
            owner="web",
            dns_names=["web.example.org"],
        )
        csrs = [
            make_csr(ec.generate_private_key(ec.SECP256R1())) for _ in range(MIN_POOL_BATCH + 4)
        ]
        broken = bytearray(csrs[3])
        broken[-5] ^= 0x01
        csrs[3] = bytes(broken)

        results = await server.signing.sign_entries(
            "spiffe://example.org/spire/agent/x", [(entry, c) for c in csrs]
        )

        assert isinstance(results[3], SigningError)
        assert "signature does not verify" in str(results[3])
        signed = [r for r in results if not isinstance(r, SigningError)]
        assert len(signed) == len(csrs) - 1
        for message in signed:
            chain = [x509.load_der_x509_certificate(der) for der in message.cert_chain]
            assert (
                str(validate_x509_svid(chain, server.bundle, server.clock()))
                == "spiffe://example.org/web"
            )
            assert message.expires_at == int(chain[0].not_valid_after_utc.timestamp())
        records = list(server.datastore.iter_audit(action="svid.x509.sign"))
        assert len(records) == len(csrs) - 1
    finally:
        await server.stop()
