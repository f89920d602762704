"""The CA journal's JSON form and the bundle record's decoding errors."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from warden.pki import (
    AuthorityKind,
    AuthorityStatus,
    BundleRecord,
    BundleRecordError,
    JournalEntry,
    JournalError,
)
from warden.pki.journal import decode_journal, encode_journal
from warden.spiffe import TrustDomain, build_self_signed_ca


@pytest.fixture
def entries(now: datetime, trust_domain: TrustDomain) -> list[JournalEntry]:
    key = ec.generate_private_key(ec.SECP256R1())
    ca = build_self_signed_ca(key, trust_domain, now)
    return [
        JournalEntry(
            AuthorityKind.X509_CA,
            "server.x509-ca.1",
            AuthorityStatus.ACTIVE,
            ca.not_before,
            ca.not_after,
            certificate=ca.certificate,
            roots=(ca.certificate,),
        ),
        JournalEntry(
            AuthorityKind.JWT_KEY,
            "server.jwt-key.1",
            AuthorityStatus.PREPARED,
            now,
            now + timedelta(hours=24),
            public_key=key.public_key(),
            kid="kid-1",
        ),
    ]


def test_journal_round_trip(entries: list[JournalEntry]) -> None:
    assert decode_journal(encode_journal(entries)) == entries


def test_journal_holds_no_private_key(entries: list[JournalEntry]) -> None:
    assert b"PRIVATE KEY" not in encode_journal(entries)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{", "not valid JSON"),
        (b"[]", "no 'entries' array"),
        (b'{"version": 2, "entries": []}', "version 2 is not supported"),
        (b'{"version": 1, "entries": [1]}', "expected a JSON object"),
        (b'{"version": 1, "entries": [{"kind": "x509-ca"}]}', "missing or invalid member"),
    ],
)
def test_journal_decode_errors(data: bytes, message: str) -> None:
    with pytest.raises(JournalError, match=message):
        decode_journal(data)


def test_journal_entry_needs_its_public_part(entries: list[JournalEntry]) -> None:
    document = json.loads(encode_journal(entries))
    del document["entries"][0]["certificate"]
    del document["entries"][1]["kid"]

    with pytest.raises(JournalError, match="needs its certificate"):
        decode_journal(json.dumps(document).encode())
    document["entries"].pop(0)
    with pytest.raises(JournalError, match="needs public_key and kid"):
        decode_journal(json.dumps(document).encode())


def test_empty_record_for_missing_bundle(trust_domain: TrustDomain) -> None:
    record = BundleRecord.decode(trust_domain, None)

    assert record.bundle.is_empty
    assert record.federation_keys == ()


@pytest.mark.parametrize(
    "data",
    [
        b"{",
        b'{"keys": 3}',
        b'{"keys": [], "warden_federation_keys": {}}',
        b'{"keys": [], "warden_federation_keys": [{"kid": "a"}]}',
    ],
)
def test_bundle_record_decode_errors(trust_domain: TrustDomain, data: bytes) -> None:
    with pytest.raises(BundleRecordError):
        BundleRecord.decode(trust_domain, data)
