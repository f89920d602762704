"""Offline validation of credential formats: checksums, parsed keys, decoded tokens.

Nothing here contacts a provider. A failed validation lowers confidence instead of dropping
the candidate where the format alone is already telling (a `ghp_` token with a wrong
checksum is reported with low confidence: most likely edited or made up).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import zlib
from datetime import UTC, datetime
from typing import Any

from warden.scan import entropy
from warden.scan.model import Confidence, Severity
from warden.scan.rule import Candidate, Check, Lifetime
from warden.scan.workspace import redact

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def base62_crc32(text: str) -> str:
    """Encode the CRC32 of `text` in base62, left-padded to 6 characters.

    This is the checksum GitHub and npm append to their tokens: `ghp_` + 30 random base62
    characters + the base62 CRC32 of those 30 characters.
    """
    number = zlib.crc32(text.encode())
    digits = ""
    while number:
        number, remainder = divmod(number, 62)
        digits = _BASE62[remainder] + digits
    return digits.rjust(6, "0")


def _checksum_confidence(body: str) -> Confidence:
    random_part, checksum = body[:-6], body[-6:]
    return Confidence.HIGH if base62_crc32(random_part) == checksum else Confidence.LOW


_GITHUB_TYPES = {
    "ghp": "classic personal access token",
    "gho": "OAuth access token",
    "ghu": "GitHub App user access token",
    "ghs": "GitHub App installation token",
    "ghr": "GitHub App refresh token",
}


def github_token(candidate: Candidate) -> Check:
    """Validate the CRC32 checksum of a `gh?_` token; the identifier is the token type."""
    prefix, _, body = candidate.secret.partition("_")
    lifetime = Lifetime.SHORT if prefix in ("ghs", "ghu") else None
    return Check(
        confidence=_checksum_confidence(body) if len(body) == 36 else Confidence.MEDIUM,
        identifier=f"{_GITHUB_TYPES.get(prefix, 'token')}, {prefix}_",
        lifetime=lifetime,
    )


def npm_token(candidate: Candidate) -> Check:
    """Validate the CRC32 checksum of an `npm_` token."""
    body = candidate.secret.removeprefix("npm_")
    return Check(confidence=_checksum_confidence(body), identifier="npm_ (access token)")


def aws_account_from_key_id(key_id: str) -> str | None:
    """Decode the AWS account id that an access key id carries.

    The 16 characters after the 4-letter prefix are base32; bits 7..46 of the first 6
    decoded bytes are the account number. Holds for key ids issued since about 2019, so the
    result is a hint for linking, not a proof.
    """
    body = key_id[4:]
    try:
        decoded = base64.b32decode(body + "=" * (-len(body) % 8))
    except (binascii.Error, ValueError):
        return None
    number = (int.from_bytes(decoded[:6], "big") & 0x7FFFFFFFFF80) >> 7
    return f"{number:012d}"


def aws_access_key(candidate: Candidate) -> Check:
    """Read an AWS access key id: `AKIA` long-lived (IAM user), `ASIA` temporary (STS)."""
    key_id = candidate.groups.get("id") or candidate.secret
    details: dict[str, str] = {"access_key_id": key_id}
    account = aws_account_from_key_id(key_id) if key_id.startswith(("AKIA", "ASIA")) else None
    if account:
        details["aws_account_id"] = account
    paired = bool(candidate.groups.get("pair"))
    if paired:
        details["secret_access_key"] = "found beside the key id"  # noqa: S105 - a note, not a secret
    lifetime = Lifetime.SHORT if key_id.startswith("ASIA") else Lifetime.LONG
    if key_id.startswith("A3T"):
        lifetime = Lifetime.UNKNOWN
    return Check(
        identifier=key_id,
        lifetime=lifetime,
        details=details,
        confidence=Confidence.HIGH if paired else Confidence.MEDIUM,
        severity=None if paired else Severity.HIGH,
    )


def _b64decode(text: str) -> bytes | None:
    cleaned = re.sub(r"\s+", "", text).replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _json_object(segment: str) -> dict[str, Any] | None:
    raw = _b64decode(segment)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def decode_jwt(token: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Decode a JWS compact token's header and payload without verifying the signature."""
    parts = token.split(".")
    if len(parts) < 2:
        return None, None
    return _json_object(parts[0]), _json_object(parts[1])


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def jwt_token(candidate: Candidate, now: datetime | None = None) -> Check | None:
    """Decode a JWT offline; read `iss`, `sub`, `exp` and `iat` into the details.

    Rejects a candidate whose header and payload do not decode to JSON objects, or whose
    header has no `alg` (TeamCity's and Grafana's tokens look alike but are no JWTs). A token
    without `exp` never expires and is long-lived; an expired one is reported with low
    severity.
    """
    header, payload = decode_jwt(candidate.secret)
    if payload is None and header is None:
        return None
    if header is not None and "alg" not in header:
        return None
    details: dict[str, str] = {}
    if header is not None:
        details["alg"] = str(header.get("alg"))
    claims = payload or {}
    for claim in ("iss", "sub", "aud"):
        if claim in claims:
            details[claim] = str(claims[claim])[:200]
    identifier = details.get("sub") or details.get("iss")
    if details.get("iss") and details.get("sub"):
        identifier = f"{details['iss']} {details['sub']}"
    expires = _timestamp(claims.get("exp"))
    issued = _timestamp(claims.get("iat"))
    lifetime = Lifetime.LONG
    severity = None
    if expires is not None:
        details["exp"] = expires.isoformat().replace("+00:00", "Z")
        if issued is not None and (expires - issued).total_seconds() > 86_400 * 30:
            lifetime = Lifetime.LONG
        else:
            lifetime = Lifetime.SHORT
        if expires < (now or datetime.now(UTC)):
            details["expired"] = "true"
            severity = Severity.LOW
    else:
        details["exp"] = "none (never expires)"
    confidence = (
        Confidence.HIGH if header is not None and payload is not None else Confidence.MEDIUM
    )
    return Check(
        identifier=identifier,
        lifetime=lifetime,
        severity=severity,
        details=details,
        confidence=confidence,
    )


def kubernetes_service_account_token(candidate: Candidate) -> Check | None:
    """Accept only JWTs issued by Kubernetes for a service account (legacy Secret tokens)."""
    _, payload = decode_jwt(candidate.secret)
    if payload is None or payload.get("iss") != "kubernetes/serviceaccount":
        return None
    namespace = str(payload.get("kubernetes.io/serviceaccount/namespace", "?"))
    name = str(payload.get("kubernetes.io/serviceaccount/service-account.name", "?"))
    return Check(
        confidence=Confidence.HIGH,
        identifier=f"system:serviceaccount:{namespace}:{name}",
        details={"iss": "kubernetes/serviceaccount", "exp": "none (legacy token)"},
    )


def _load_private_key(pem: bytes) -> tuple[str, str] | None:
    """Parse a PEM or OpenSSH private key; return its type and public key fingerprint."""
    from cryptography.hazmat.primitives import serialization

    loaders = (
        serialization.load_ssh_private_key
        if b"OPENSSH PRIVATE KEY" in pem
        else serialization.load_pem_private_key
    )
    try:
        key = loaders(pem, password=None)
    except TypeError:
        return ("encrypted", "")
    except (ValueError, binascii.Error, AssertionError):
        return None
    except Exception:  # the parsers raise library-specific errors on junk input
        return None
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fingerprint = "SHA256:" + base64.b64encode(hashlib.sha256(public).digest()).decode().rstrip("=")
    return (type(key).__name__.lstrip("_").replace("PrivateKey", ""), fingerprint)


# A quote that opens a line of a PEM block quoted in code, with the `+` that may precede it.
_OPENING_QUOTE = re.compile(r"""\+?\s*["']""")


def normalise_pem(text: str) -> str:
    """Undo the quoting that code puts around a PEM block: `\\n` escapes, quotes and the
    `+`, `,` or `;` after a closing quote.

    Base64 and PEM armour never contain a quote, so everything from a line's last quote on
    is syntax, and so is a line of operators only (`' +` closing a string). A `+` is removed
    only before an opening quote, because base64 lines may start or end with `+`.
    """
    text = text.replace("\\r\\n", "\n").replace("\\n", "\n").replace("\r\n", "\n")
    lines = []
    for raw in text.split("\n"):
        line = raw.strip()
        opening = _OPENING_QUOTE.match(line)
        if opening:
            line = line[opening.end() :]
        closing = max(line.rfind('"'), line.rfind("'"))
        if closing >= 0:
            line = line[:closing]
        line = line.strip()
        if line.strip("+,;()"):
            lines.append(line)
    return "\n".join(lines) + "\n"


# Base64 characters a key body needs at least: the smallest keys (Ed25519 in PKCS#8) have
# 64, so fewer is the armour alone (`-----BEGIN … PRIVATE KEY-----` as a constant in code)
# or a placeholder such as `<your key here>`.
_MIN_KEY_BODY = 40
_BODY_CHARACTERS = re.compile(r"[A-Za-z0-9+/=]")


def _key_body_length(pem: str) -> int:
    """Count the base64 characters of a PEM block, outside its armour and header lines."""
    length = 0
    for line in pem.split("\n"):
        if line.startswith("-----") or ":" in line:
            continue
        length += len(_BODY_CHARACTERS.findall(line))
    return length


def private_key(candidate: Candidate) -> Check | None:
    """Parse a PEM private key block; a key that parses gets high confidence.

    The identifier is the SHA-256 fingerprint of the public key (SubjectPublicKeyInfo), which
    matches the key to the certificate or authorized_keys entry that uses it. A block with
    no key material (the armour alone, a placeholder) is rejected.
    """
    label = candidate.groups.get("label", "PRIVATE KEY").strip()
    if _key_body_length(normalise_pem(candidate.secret)) < _MIN_KEY_BODY:
        return None
    if "ENCRYPTED" in label or "Proc-Type: 4,ENCRYPTED" in candidate.secret:
        return Check(
            confidence=Confidence.HIGH,
            severity=Severity.MEDIUM,
            identifier=label,
            details={"encrypted": "true"},
        )
    if "PGP" in label:
        return Check(confidence=Confidence.MEDIUM, identifier=label)
    parsed = _load_private_key(normalise_pem(candidate.secret).encode())
    if parsed is None:
        return Check(
            confidence=Confidence.MEDIUM,
            identifier=label,
            details={"parsed": "false (truncated or not a key)"},
        )
    key_type, fingerprint = parsed
    if key_type == "encrypted":
        return Check(
            confidence=Confidence.HIGH,
            severity=Severity.MEDIUM,
            identifier=label,
            details={"encrypted": "true"},
        )
    return Check(
        confidence=Confidence.HIGH,
        identifier=fingerprint,
        details={"key_type": key_type, "public_key_sha256": fingerprint},
    )


def base64_private_key(candidate: Candidate) -> Check | None:
    """Accept a base64 blob only when it decodes to a PEM private key block."""
    raw = _b64decode(candidate.secret)
    if raw is None or b"PRIVATE KEY" not in raw[:80]:
        # A blob cut short may not decode as a whole; decode its head alone.
        head = _b64decode(candidate.secret[:64])
        if head is None or b"PRIVATE KEY" not in head:
            return None
        return Check(confidence=Confidence.MEDIUM, identifier="base64-encoded PEM private key")
    inner = Candidate(raw.decode("ascii", "replace"), {}, candidate.text, candidate.path)
    check = private_key(inner)
    if check is None:
        return None
    return Check(
        confidence=check.confidence,
        severity=check.severity,
        identifier=check.identifier,
        details=check.details,
    )


def user_label(user: str) -> str:
    """Return a user name for an identifier, which reports print in full: redacted when the
    name looks like a credential itself.

    Some services take a token or API key as the user name of HTTP Basic or of a URL
    (`<token>:x-oauth-basic@github.com`, `<key>:X`). A name of 16 or more characters that
    is random for its character set and contains a digit or both cases is treated as one.
    """
    varied = any(c.isdigit() for c in user) or (
        any(c.islower() for c in user) and any(c.isupper() for c in user)
    )
    if len(user) >= 16 and varied and entropy.looks_random(user):
        return redact(user, "")
    return user


def basic_auth(candidate: Candidate) -> Check | None:
    """Accept an HTTP Basic credential only when it decodes to `user:password`."""
    raw = _b64decode(candidate.secret)
    if raw is None:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    user, colon, password = text.partition(":")
    if not colon or not password or not text.isprintable():
        return None
    return Check(
        identifier=f"user {user_label(user)}" if user else None, confidence=Confidence.HIGH
    )


def expiry_from_sas(candidate: Candidate) -> Check:
    """Read the `se` (signed expiry) of an Azure shared access signature."""
    match = re.search(r"[?&;]se=([0-9T:%A-Z-]+)", candidate.text)
    if not match:
        return Check()
    expiry = match.group(1).replace("%3A", ":")
    try:
        moment = datetime.fromisoformat(expiry.replace("Z", "+00:00"))
    except ValueError:
        return Check(details={"expires": expiry})
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # SAS times are UTC, and `se` may be a date alone
    lifetime = Lifetime.SHORT if (moment - datetime.now(UTC)).days < 31 else Lifetime.LONG
    return Check(lifetime=lifetime, details={"expires": expiry})
