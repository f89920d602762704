"""The CA journal: which keys and certificates a server uses, and in which role.

Each entry is one authority of one kind (an X.509 CA, a JWT-SVID signing key, a federation
token signing key) in one status: `prepared` (published, not yet signing), `active`
(signing) or `old` (retired, kept until it expires). The private keys stay in the key
manager. The journal contains only their ids and the public parts, which is all a restarted
server needs to resume with the same CA. Serialized as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from warden.pki.errors import JournalError
from warden.spiffe.bundle import PublicKey

JOURNAL_VERSION = 1


class AuthorityKind(StrEnum):
    """The kind of credential an authority signs."""

    X509_CA = "x509-ca"
    JWT_KEY = "jwt-key"
    FEDERATION_KEY = "federation-key"


class AuthorityStatus(StrEnum):
    """The stage of an authority in its rotation."""

    PREPARED = "prepared"
    ACTIVE = "active"
    OLD = "old"


@dataclass(frozen=True)
class JournalEntry:
    """One authority of the server.

    For an X.509 CA, `certificate` is the CA certificate, `upstream_chain` the certificates
    between it and a root (nearest first), and `roots` the certificates that go into the
    trust bundle: the CA itself when self-signed, else the upstream roots. For a JWT or
    federation key, `public_key` and `kid` (the JWS key id) are set.
    """

    kind: AuthorityKind
    key_id: str
    status: AuthorityStatus
    not_before: datetime
    not_after: datetime
    certificate: x509.Certificate | None = None
    upstream_chain: tuple[x509.Certificate, ...] = ()
    roots: tuple[x509.Certificate, ...] = ()
    public_key: PublicKey | None = None
    kid: str | None = None

    def with_status(self, status: AuthorityStatus) -> JournalEntry:
        return JournalEntry(
            self.kind,
            self.key_id,
            status,
            self.not_before,
            self.not_after,
            self.certificate,
            self.upstream_chain,
            self.roots,
            self.public_key,
            self.kid,
        )


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _entry_to_json(entry: JournalEntry) -> dict[str, Any]:
    document: dict[str, Any] = {
        "kind": entry.kind.value,
        "key_id": entry.key_id,
        "status": entry.status.value,
        "not_before": entry.not_before.isoformat(),
        "not_after": entry.not_after.isoformat(),
    }
    if entry.certificate is not None:
        document["certificate"] = _pem(entry.certificate)
        document["upstream_chain"] = [_pem(c) for c in entry.upstream_chain]
        document["roots"] = [_pem(c) for c in entry.roots]
    if entry.public_key is not None:
        document["public_key"] = entry.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")
    if entry.kid is not None:
        document["kid"] = entry.kid
    return document


def _certificate(text: Any, where: str) -> x509.Certificate:
    if not isinstance(text, str):
        raise JournalError(f"{where}: expected a PEM certificate")
    try:
        return x509.load_pem_x509_certificate(text.encode("ascii"))
    except ValueError as error:
        raise JournalError(f"{where}: invalid PEM certificate: {error}") from None


def _entry_from_json(document: Any, index: int) -> JournalEntry:
    where = f"CA journal entry {index}"
    if not isinstance(document, dict):
        raise JournalError(f"{where}: expected a JSON object")
    try:
        kind = AuthorityKind(document["kind"])
        status = AuthorityStatus(document["status"])
        key_id = document["key_id"]
        not_before = datetime.fromisoformat(document["not_before"])
        not_after = datetime.fromisoformat(document["not_after"])
    except (KeyError, ValueError, TypeError) as error:
        raise JournalError(f"{where}: missing or invalid member: {error}") from None
    if not isinstance(key_id, str) or not_before.tzinfo is None or not_after.tzinfo is None:
        raise JournalError(f"{where}: key_id must be a string and times must carry a zone")

    certificate = None
    if "certificate" in document:
        certificate = _certificate(document["certificate"], f"{where} certificate")
    chain = tuple(
        _certificate(text, f"{where} upstream_chain") for text in document.get("upstream_chain", [])
    )
    roots = tuple(_certificate(text, f"{where} roots") for text in document.get("roots", []))
    public_key: PublicKey | None = None
    if "public_key" in document:
        try:
            loaded = serialization.load_pem_public_key(str(document["public_key"]).encode("ascii"))
        except ValueError as error:
            raise JournalError(f"{where}: invalid public key: {error}") from None
        if not isinstance(loaded, PublicKey):
            raise JournalError(f"{where}: unsupported public key {type(loaded).__name__}")
        public_key = loaded
    kid = document.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise JournalError(f"{where}: kid must be a string")

    if kind is AuthorityKind.X509_CA and certificate is None:
        raise JournalError(f"{where}: an X.509 CA entry needs its certificate")
    if kind is not AuthorityKind.X509_CA and (public_key is None or not kid):
        raise JournalError(f"{where}: a {kind.value} entry needs public_key and kid")
    return JournalEntry(
        kind, key_id, status, not_before, not_after, certificate, chain, roots, public_key, kid
    )


def encode_journal(entries: Iterable[JournalEntry]) -> bytes:
    """Serialize journal entries as JSON bytes."""
    document = {"version": JOURNAL_VERSION, "entries": [_entry_to_json(e) for e in entries]}
    return json.dumps(document, indent=1).encode("utf-8")


def decode_journal(data: bytes) -> list[JournalEntry]:
    """Read journal entries written by `encode_journal`; raise JournalError when malformed."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise JournalError(f"CA journal is not valid JSON: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("entries"), list):
        raise JournalError("CA journal has no 'entries' array")
    version = document.get("version")
    if version != JOURNAL_VERSION:
        raise JournalError(
            f"CA journal version {version!r} is not supported; this server reads version "
            f"{JOURNAL_VERSION}"
        )
    return [_entry_from_json(entry, index) for index, entry in enumerate(document["entries"])]
