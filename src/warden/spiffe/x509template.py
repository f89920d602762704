"""Fast X509-SVID signing from a DER template.

`build_x509_svid` goes through cryptography's `CertificateBuilder`, which converts every
extension from Python objects at each call; on the server's signing path that conversion
costs about three times the ECDSA signature itself. `LeafTemplate` signs the same
certificates faster: at creation it signs one reference leaf with `build_x509_svid` and keeps
the DER of every part that is the same for all leaves of its CA (version, signature
algorithm, issuer, basicConstraints, keyUsage, extKeyUsage, authorityKeyIdentifier). Each
new leaf then only encodes what changes (serial, validity, subject, public key, SAN, subject
key identifier) and signs the result.

The output is checked against `build_x509_svid`'s, field by field, in the tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from warden.spiffe._time import require_aware
from warden.spiffe._x509 import check_certified_key, check_dns_name, signature_hash
from warden.spiffe.errors import X509SvidError
from warden.spiffe.id import SpiffeId
from warden.spiffe.x509ca import BACKDATE, X509CA
from warden.spiffe.x509svid import (
    _LEAF_USAGE,
    _RSA_LEAF_USAGE,
    DEFAULT_X509_SVID_TTL,
    _leaf_subject,
    build_x509_svid,
)

_SEQUENCE = 0x30
_INTEGER = 0x02
_BIT_STRING = 0x03
_OCTET_STRING = 0x04
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18

# extnID values, DER-encoded: subjectAltName (2.5.29.17), subjectKeyIdentifier (2.5.29.14)
# and keyUsage (2.5.29.15).
_SAN_OID = bytes.fromhex("0603551d11")
_SKI_OID = bytes.fromhex("0603551d0e")
_KEY_USAGE_OID = bytes.fromhex("0603551d0f")
_CRITICAL = bytes.fromhex("0101ff")


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes((size,))
    encoded = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(encoded),)) + encoded


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + _length(len(content)) + content


def _integer(value: int) -> bytes:
    # One extra byte keeps the sign bit clear for positive values.
    return _tlv(_INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _time(moment: datetime) -> bytes:
    """UTCTime through 2049 and GeneralizedTime from 2050 on, as RFC 5280 requires."""
    moment = moment.astimezone(UTC)
    if 1950 <= moment.year < 2050:
        return _tlv(_UTC_TIME, moment.strftime("%y%m%d%H%M%SZ").encode())
    return _tlv(_GENERALIZED_TIME, moment.strftime("%Y%m%d%H%M%SZ").encode())


def _children(der: bytes) -> list[bytes]:
    """The encoded elements (tag, length and content) inside one DER constructed value."""
    offset = len(der) - len(_content(der))
    elements = []
    while offset < len(der):
        start = offset
        size = der[offset + 1]
        offset += 2
        if size & 0x80:
            count = size & 0x7F
            size = int.from_bytes(der[offset : offset + count], "big")
            offset += count
        offset += size
        elements.append(der[start:offset])
    return elements


def _content(element: bytes) -> bytes:
    """The content of one encoded DER element, without its tag and length."""
    header = 2 + (element[1] & 0x7F if element[1] & 0x80 else 0)
    return element[header:]


def _extension_oid(extension: bytes) -> bytes:
    return _children(extension)[0]


@dataclass(frozen=True)
class TemplateLeaf:
    """A leaf signed from a template: its DER, serial number and validity."""

    der: bytes
    serial_number: int
    not_before: datetime
    not_after: datetime


class LeafTemplate:
    """Signs X509-SVID leaves for one CA; see the module documentation."""

    def __init__(self, ca: X509CA, now: datetime) -> None:
        now = require_aware(now)
        trust_domain = ca.trust_domain
        if trust_domain is None:
            raise X509SvidError("a leaf template needs a CA with a trust domain")
        self.ca = ca
        reference_key = ec.generate_private_key(ec.SECP256R1())
        reference = build_x509_svid(
            ca,
            SpiffeId.from_segments(trust_domain, "template"),
            reference_key.public_key(),
            now,
            timedelta(minutes=1),
        )
        parts = _children(_children(reference.public_bytes(serialization.Encoding.DER))[0])
        # TBSCertificate: version, serial, signature, issuer, validity, subject, spki, extensions
        self._version = parts[0]
        self._signature_algorithm = parts[2]
        self._issuer = parts[3]
        extensions = _children(_children(parts[7])[0])
        self._constant_extensions = [
            e for e in extensions if _extension_oid(e) not in (_SAN_OID, _SKI_OID, _KEY_USAGE_OID)
        ]
        # keyUsage depends on the leaf's key type: RSA keys also get keyEncipherment.
        self._key_usage = {
            False: _tlv(
                _SEQUENCE,
                _KEY_USAGE_OID + _CRITICAL + _tlv(_OCTET_STRING, _LEAF_USAGE.public_bytes()),
            ),
            True: _tlv(
                _SEQUENCE,
                _KEY_USAGE_OID + _CRITICAL + _tlv(_OCTET_STRING, _RSA_LEAF_USAGE.public_bytes()),
            ),
        }
        self._extension_order = [_extension_oid(e) for e in extensions]
        self._default_subject = _leaf_subject([], None).public_bytes()
        self._private_key = ca.private_key
        self._hash = signature_hash(ca.private_key)
        self._chain_tail = [
            c.public_bytes(serialization.Encoding.DER) for c in ca.chain(reference)[1:]
        ]

    def sign(
        self,
        spiffe_id: SpiffeId,
        public_key: object,
        now: datetime,
        ttl: timedelta = DEFAULT_X509_SVID_TTL,
        dns_names: Iterable[str] = (),
        serial_number: int | None = None,
    ) -> TemplateLeaf:
        """Sign a leaf, with the same checks and fields as `build_x509_svid`."""
        now = require_aware(now)
        ca = self.ca
        if not spiffe_id.path:
            raise X509SvidError(
                f"cannot sign an X509-SVID for {spiffe_id}: a leaf SPIFFE ID must have a path "
                f"such as {spiffe_id}/workload"
            )
        if spiffe_id.trust_domain != ca.trust_domain:
            raise X509SvidError(
                f"cannot sign an X509-SVID for {spiffe_id}: the CA signs for trust domain "
                f"{ca.trust_domain} only"
            )
        if ttl <= timedelta(0):
            raise X509SvidError(
                f"cannot sign an X509-SVID for {spiffe_id}: TTL {ttl} is not positive"
            )
        key = check_certified_key(public_key, f"X509-SVID for {spiffe_id}")
        names = [check_dns_name(name) for name in dns_names]
        not_after = min(now + ttl, ca.not_after)
        if not_after <= now:
            raise X509SvidError(
                f"cannot sign an X509-SVID for {spiffe_id}: the CA expired at "
                f"{ca.not_after.isoformat()}; rotate the CA"
            )
        not_before = max(now - BACKDATE, ca.not_before)
        serial = serial_number if serial_number is not None else x509.random_serial_number()
        # Whole seconds, as the certificate encodes them.
        not_before = not_before.replace(microsecond=0)
        not_after = not_after.replace(microsecond=0)

        spki = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # The key identifier is the SHA-1 of the subjectPublicKey bits (RFC 5280 4.2.1.2 (1)).
        key_bits = _content(_children(spki)[1])[1:]  # after the unused-bits byte
        key_identifier = hashlib.sha1(key_bits).digest()  # noqa: S324 - an identifier, not a signature
        general_names = _tlv(0x86, str(spiffe_id).encode())
        for name in names:
            general_names += _tlv(0x82, name.encode())
        dynamic = {
            _KEY_USAGE_OID: self._key_usage[isinstance(key, rsa.RSAPublicKey)],
            _SAN_OID: _tlv(
                _SEQUENCE, _SAN_OID + _tlv(_OCTET_STRING, _tlv(_SEQUENCE, general_names))
            ),
            _SKI_OID: _tlv(
                _SEQUENCE, _SKI_OID + _tlv(_OCTET_STRING, _tlv(_OCTET_STRING, key_identifier))
            ),
        }
        constant = iter(self._constant_extensions)
        extensions = b"".join(
            dynamic[oid] if oid in dynamic else next(constant) for oid in self._extension_order
        )
        subject = self._default_subject if not names else _leaf_subject(names, None).public_bytes()

        tbs = _tlv(
            _SEQUENCE,
            self._version
            + _integer(serial)
            + self._signature_algorithm
            + self._issuer
            + _tlv(_SEQUENCE, _time(not_before) + _time(not_after))
            + subject
            + spki
            + _tlv(0xA3, _tlv(_SEQUENCE, extensions)),
        )
        private_key = self._private_key
        if isinstance(private_key, ec.EllipticCurvePrivateKey):
            signature = private_key.sign(tbs, ec.ECDSA(self._hash))
        elif isinstance(private_key, rsa.RSAPrivateKey):
            signature = private_key.sign(tbs, padding.PKCS1v15(), self._hash)
        else:  # pragma: no cover - X509CA accepts EC and RSA keys only
            raise X509SvidError(f"unsupported CA key type {type(private_key).__name__}")
        der = _tlv(
            _SEQUENCE, tbs + self._signature_algorithm + _tlv(_BIT_STRING, b"\x00" + signature)
        )
        return TemplateLeaf(der, serial, not_before, not_after)

    def chain(self, leaf: TemplateLeaf) -> list[bytes]:
        """The DER chain of a leaf: the leaf, the CA, then any upstream intermediates."""
        return [leaf.der, *self._chain_tail]
