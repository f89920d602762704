"""Helpers shared by the X509-SVID and CA certificate modules: key checks, names, SANs."""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID

from warden.spiffe.errors import InvalidSpiffeIdError, X509SvidError
from warden.spiffe.id import SpiffeId

#: Private keys that may sign certificates and JWTs: the key types SPIFFE implementations share.
SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
#: Public keys that Warden certifies.
CertifiedKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

#: RSA keys shorter than this are rejected: 2048 bits is the floor of NIST SP 800-131A.
MIN_RSA_KEY_BITS = 2048
#: The curves of RFC 7518's ES256, ES384 and ES512, which every SPIFFE implementation accepts.
ALLOWED_CURVES = ("secp256r1", "secp384r1", "secp521r1")

_DNS_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_MAX_DNS_NAME_LENGTH = 253


def check_certified_key(public_key: object, subject: str) -> CertifiedKey:
    """Return `public_key` when Warden may certify it; raise X509SvidError naming `subject`."""
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_KEY_BITS:
            raise X509SvidError(
                f"{subject}: RSA key of {public_key.key_size} bits is too short; use at least "
                f"{MIN_RSA_KEY_BITS} bits or an EC P-256 key"
            )
        return public_key
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in ALLOWED_CURVES:
            raise X509SvidError(
                f"{subject}: EC curve {public_key.curve.name} is not supported; use P-256, "
                "P-384 or P-521"
            )
        return public_key
    raise X509SvidError(
        f"{subject}: key type {type(public_key).__name__} is not supported; use an EC "
        "(P-256, P-384, P-521) or RSA (2048 bits or more) key"
    )


def signature_hash(private_key: SigningKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512:
    """Pick the digest that matches the key's strength, as SPIRE and Go's x509 package do."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        if private_key.curve.key_size >= 521:
            return hashes.SHA512()
        if private_key.curve.key_size >= 384:
            return hashes.SHA384()
    return hashes.SHA256()


def uri_sans(certificate: x509.Certificate) -> list[str]:
    """Return the certificate's URI subject alternative names, in order."""
    try:
        extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return extension.value.get_values_for_type(x509.UniformResourceIdentifier)


def san_is_critical(certificate: x509.Certificate) -> bool:
    """Tell whether the subject alternative name extension is present and critical."""
    try:
        extension = certificate.extensions.get_extension_for_oid(
            ExtensionOID.SUBJECT_ALTERNATIVE_NAME
        )
    except x509.ExtensionNotFound:
        return False
    return extension.critical


def describe(certificate: x509.Certificate) -> str:
    """Name a certificate in messages by its URI SAN when it has one, else by its subject."""
    uris = uri_sans(certificate)
    if uris:
        return f"certificate {uris[0]} (serial {certificate.serial_number:x})"
    subject = certificate.subject.rfc4514_string()
    return f"certificate {subject!r} (serial {certificate.serial_number:x})"


def signing_spiffe_id(certificate: x509.Certificate) -> SpiffeId | None:
    """Return the SPIFFE ID of a signing certificate, or None when it carries none.

    A signing certificate need not be an SVID (an operator's root usually is not), and URIs
    of other schemes are not SPIFFE IDs. When it carries a SPIFFE ID, that ID has no path,
    and it carries at most one.
    """
    uris = [uri for uri in uri_sans(certificate) if uri.lower().startswith("spiffe:")]
    if not uris:
        return None
    if len(uris) > 1:
        raise X509SvidError(
            f"{describe(certificate)}: a signing certificate has {len(uris)} SPIFFE IDs; "
            "an SVID carries exactly one"
        )
    try:
        spiffe_id = SpiffeId.parse(uris[0])
    except InvalidSpiffeIdError as error:
        raise X509SvidError(f"{describe(certificate)}: {error}") from None
    if spiffe_id.path:
        raise X509SvidError(
            f"{describe(certificate)}: the SPIFFE ID of a signing certificate must have no "
            f"path; use {spiffe_id.trust_domain.id}"
        )
    return spiffe_id


def check_dns_name(name: str) -> str:
    """Return `name` when it is a valid DNS SAN (a `*.` wildcard prefix allowed), else raise."""
    candidate = name[2:] if name.startswith("*.") else name
    if not candidate or len(name) > _MAX_DNS_NAME_LENGTH:
        raise X509SvidError(
            f"invalid DNS name {name!r}: expected 1 to {_MAX_DNS_NAME_LENGTH} characters"
        )
    for label in candidate.split("."):
        if not _DNS_LABEL_RE.fullmatch(label):
            raise X509SvidError(
                f"invalid DNS name {name!r}: label {label!r} must be 1 to 63 letters, digits "
                "or '-', not starting or ending with '-'; only the first label may be '*'"
            )
    return name
