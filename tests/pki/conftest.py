"""Fixtures for the PKI tests: a fixed clock, in-memory stores and a CA factory."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from warden.pki import (
    CASettings,
    CertificateAuthority,
    KeyManager,
    MemoryBundleStore,
    MemoryJournalStore,
    MemoryKeyManager,
    UpstreamAuthority,
)
from warden.spiffe import TrustDomain

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
TRUST_DOMAIN = TrustDomain("example.org")


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def trust_domain() -> TrustDomain:
    return TRUST_DOMAIN


@pytest.fixture
def journal_store() -> MemoryJournalStore:
    return MemoryJournalStore()


@pytest.fixture
def bundle_store() -> MemoryBundleStore:
    return MemoryBundleStore()


MakeCA = Callable[..., CertificateAuthority]


@pytest.fixture
def make_ca(journal_store: MemoryJournalStore, bundle_store: MemoryBundleStore) -> MakeCA:
    """Build a CA on the shared test stores. Federation keys are off unless asked for,
    because RSA key generation is the slowest step of these tests."""

    def make(
        key_manager: KeyManager | None = None,
        upstream: UpstreamAuthority | None = None,
        **settings: Any,
    ) -> CertificateAuthority:
        settings.setdefault("trust_domain", TRUST_DOMAIN)
        settings.setdefault("federation_key_type", None)
        return CertificateAuthority(
            CASettings(**settings),
            key_manager if key_manager is not None else MemoryKeyManager(),
            journal_store,
            bundle_store,
            upstream,
        )

    return make


@pytest.fixture
def started_ca(make_ca: MakeCA, now: datetime) -> CertificateAuthority:
    ca = make_ca(ca_ttl=timedelta(hours=24))
    ca.start(now)
    return ca
