"""Validation of registration entries before they are written.

The server validates too, but the store does not trust its callers: a bad entry is rejected
here with an InvalidEntry that names the value and the fix, and nothing is written.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from warden.spiffe import Selector, SpiffeError, SpiffeId, TrustDomain
from warden.store.columns import require_aware
from warden.store.errors import InvalidEntry
from warden.store.models import EntrySpec
from warden.store.schema import MAX_ENTRY_ID_LENGTH

#: Largest TTL accepted, in seconds (a signed 32-bit integer, the column's range).
MAX_TTL_SECONDS = 2**31 - 1
MAX_OWNER_LENGTH = 255
MAX_DESCRIPTION_LENGTH = 4096
MAX_HINT_LENGTH = 1024
MAX_DNS_NAMES = 100

_ENTRY_ID_RE = re.compile(r"[A-Za-z0-9._:-]+")
_DNS_LABEL_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


@dataclass(frozen=True, slots=True)
class ValidEntry:
    """An EntrySpec after validation, in canonical form."""

    spiffe_id: str
    parent_id: str
    selectors: tuple[Selector, ...]
    owner: str
    x509_svid_ttl: int
    jwt_svid_ttl: int
    dns_names: tuple[str, ...]
    federates_with: tuple[str, ...]
    admin: bool
    downstream: bool
    hint: str
    expires_at: datetime | None
    description: str
    similarity_key: str


def similarity_key(spiffe_id: str, parent_id: str, selectors: tuple[Selector, ...]) -> str:
    """Return the key two entries share when they have the same IDs and selector set."""
    digest = hashlib.sha256()
    for part in (spiffe_id, parent_id, *sorted(str(s) for s in set(selectors))):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def validate_entry_id(entry_id: str) -> str:
    """Check a caller-chosen entry id: 1 to 255 of letters, digits, '.', '_', ':' and '-'."""
    if not isinstance(entry_id, str) or not _ENTRY_ID_RE.fullmatch(entry_id):
        raise InvalidEntry(
            f"invalid entry id {entry_id!r}: use 1 to {MAX_ENTRY_ID_LENGTH} of A-Z, a-z, 0-9, "
            "'.', '_', ':' and '-', or leave it empty to get a UUID"
        )
    if len(entry_id) > MAX_ENTRY_ID_LENGTH:
        raise InvalidEntry(
            f"invalid entry id {entry_id[:40]!r}...: longer than {MAX_ENTRY_ID_LENGTH} characters"
        )
    return entry_id


def _dns_name_problem(name: str) -> str | None:
    if not name:
        return "it is empty"
    if len(name) > 253:
        return "it is longer than 253 characters"
    labels = name.split(".")
    if labels[0] == "*":
        if len(labels) < 3:
            return "a wildcard needs at least two labels after '*.'"
        labels = labels[1:]
    for label in labels:
        if "*" in label:
            return "'*' is allowed only as the whole first label"
        if not _DNS_LABEL_RE.fullmatch(label):
            return (
                f"label {label!r} must be 1 to 63 of a-z, A-Z, 0-9 and '-', not starting or "
                "ending with '-'"
            )
    return None


def _check_ttl(label: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEntry(f"{label}: {name} {value!r} is not a whole number of seconds")
    if value < 0:
        raise InvalidEntry(
            f"{label}: {name} {value} is negative; give seconds >= 0 (0 uses the server default)"
        )
    if value > MAX_TTL_SECONDS:
        raise InvalidEntry(f"{label}: {name} {value} is larger than {MAX_TTL_SECONDS} seconds")
    return value


def _check_text(label: str, name: str, value: object, maximum: int) -> str:
    if not isinstance(value, str):
        raise InvalidEntry(f"{label}: {name} must be a string, not {type(value).__name__}")
    if len(value) > maximum:
        raise InvalidEntry(f"{label}: {name} is longer than {maximum} characters")
    if any(ord(ch) < 0x20 and ch not in "\n\t" for ch in value):
        raise InvalidEntry(f"{label}: {name} contains a control character")
    return value


def _parse_spiffe_id(label: str, name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidEntry(f"{label}: {name} is required; give a spiffe:// ID")
    try:
        return str(SpiffeId.parse(value))
    except SpiffeError as error:
        raise InvalidEntry(f"{label}: {name} is invalid: {error}") from None


def _parse_selectors(label: str, values: object) -> tuple[Selector, ...]:
    if isinstance(values, str) or not isinstance(values, list | tuple | set | frozenset):
        raise InvalidEntry(
            f"{label}: selectors must be a list of 'type:value' strings, not {values!r}"
        )
    if not values:
        raise InvalidEntry(
            f"{label}: at least one selector is required; pass -selector type:value "
            "(for example unix:uid:1000)"
        )
    parsed: list[Selector] = []
    for value in values:
        if isinstance(value, Selector):
            parsed.append(value)
            continue
        if not isinstance(value, str):
            raise InvalidEntry(f"{label}: selector {value!r} is not a 'type:value' string")
        try:
            parsed.append(Selector.parse(value))
        except SpiffeError as error:
            raise InvalidEntry(f"{label}: {error}") from None
    # Duplicates carry no meaning; keep the first occurrence of each, in the order given.
    return tuple(dict.fromkeys(parsed))


def _parse_dns_names(label: str, values: object) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, list | tuple):
        raise InvalidEntry(f"{label}: dns_names must be a list of names, not {values!r}")
    if len(values) > MAX_DNS_NAMES:
        raise InvalidEntry(f"{label}: {len(values)} DNS names; the maximum is {MAX_DNS_NAMES}")
    names: list[str] = []
    for value in values:
        problem = _dns_name_problem(value) if isinstance(value, str) else "it is not a string"
        if problem is not None:
            raise InvalidEntry(f"{label}: invalid DNS name {value!r}: {problem}")
        names.append(value.lower())
    return tuple(dict.fromkeys(names))


def _parse_federates_with(label: str, values: object) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, list | tuple):
        raise InvalidEntry(
            f"{label}: federates_with must be a list of trust domains, not {values!r}"
        )
    domains: list[str] = []
    for value in values:
        try:
            domains.append(TrustDomain.parse(value).name)
        except (SpiffeError, TypeError, AttributeError) as error:
            raise InvalidEntry(f"{label}: invalid federates_with trust domain: {error}") from None
    return tuple(dict.fromkeys(domains))


def reserved_id_problem(spiffe_id: str) -> str | None:
    """Why `spiffe_id` may not be given to a workload, or None when it may.

    Paths under /spire/ name the server (/spire/server) and agents (/spire/agent/...), as in
    SPIRE: an entry, alias or minted SVID with such an ID would let its holder pose as them.
    """
    path = SpiffeId.parse(spiffe_id).path
    if path == "/spire" or path.startswith("/spire/"):
        return (
            f"SPIFFE ID {spiffe_id} is reserved: paths under /spire/ name Warden's server "
            "and agents; choose another path"
        )
    return None


def _check_parent_namespace(label: str, parent_id: str) -> None:
    path = SpiffeId.parse(parent_id).path
    reserved = path == "/spire" or path.startswith("/spire/")
    if reserved and path != "/spire/server" and not path.startswith("/spire/agent/"):
        raise InvalidEntry(
            f"{label}: parent_id {parent_id} is in the reserved /spire/ namespace but is neither "
            "the server (/spire/server) nor an agent (/spire/agent/...)"
        )


def validate_entry(spec: EntrySpec) -> ValidEntry:
    """Check every field of `spec` and return it in canonical form, or raise InvalidEntry."""
    label = f"entry {spec.spiffe_id}" if isinstance(spec.spiffe_id, str) else "entry"
    spiffe_id = _parse_spiffe_id(label, "spiffe_id", spec.spiffe_id)
    label = f"entry {spiffe_id}"
    parent_id = _parse_spiffe_id(label, "parent_id", spec.parent_id)
    if parent_id == spiffe_id:
        raise InvalidEntry(f"{label}: parent_id is the entry's own SPIFFE ID; name its parent")
    problem = reserved_id_problem(spiffe_id)
    if problem is not None:
        raise InvalidEntry(f"{label}: {problem}")
    _check_parent_namespace(label, parent_id)

    owner = spec.owner.strip() if isinstance(spec.owner, str) else ""
    if not owner:
        raise InvalidEntry(f"{label}: owner is required; pass -owner <person or team>")
    owner = _check_text(label, "owner", owner, MAX_OWNER_LENGTH)

    selectors = _parse_selectors(label, spec.selectors)
    x509_ttl = _check_ttl(label, "x509_svid_ttl", spec.x509_svid_ttl)
    jwt_ttl = _check_ttl(label, "jwt_svid_ttl", spec.jwt_svid_ttl)
    dns_names = _parse_dns_names(label, spec.dns_names)
    federates_with = _parse_federates_with(label, spec.federates_with)
    for name in ("admin", "downstream"):
        if not isinstance(getattr(spec, name), bool):
            raise InvalidEntry(f"{label}: {name} must be true or false")
    hint = _check_text(label, "hint", spec.hint, MAX_HINT_LENGTH)
    description = _check_text(label, "description", spec.description, MAX_DESCRIPTION_LENGTH)

    expires_at = spec.expires_at
    if expires_at is not None:
        if not isinstance(expires_at, datetime):
            raise InvalidEntry(f"{label}: expires_at must be a datetime, not {expires_at!r}")
        try:
            expires_at = require_aware(expires_at, "expires_at")
        except ValueError as error:
            raise InvalidEntry(f"{label}: {error}") from None

    return ValidEntry(
        spiffe_id=spiffe_id,
        parent_id=parent_id,
        selectors=selectors,
        owner=owner,
        x509_svid_ttl=x509_ttl,
        jwt_svid_ttl=jwt_ttl,
        dns_names=dns_names,
        federates_with=federates_with,
        admin=spec.admin,
        downstream=spec.downstream,
        hint=hint,
        expires_at=expires_at,
        description=description,
        similarity_key=similarity_key(spiffe_id, parent_id, selectors),
    )
