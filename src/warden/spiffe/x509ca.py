"""Signing (CA) certificates of a trust domain: the `X509CA` value and its templates.

A signing certificate has basicConstraints cA=true (critical), keyUsage keyCertSign and
cRLSign (critical), and as its only URI SAN the ID of the trust domain, with no path. Its
subject ends with a serialNumber attribute equal to the certificate's serial, so that every
CA of a rotation has a distinct name and path builders never confuse two of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from warden.spiffe._time import require_aware
from warden.spiffe._x509 import (
    CertifiedKey,
    SigningKey,
    check_certified_key,
    describe,
    signature_hash,
    signing_spiffe_id,
)
from warden.spiffe.errors import X509SvidError
from warden.spiffe.id import TrustDomain

#: SPIRE's default lifetime of a CA certificate.
DEFAULT_CA_TTL = timedelta(hours=24)
#: NotBefore is moved this far into the past so that peers whose clocks lag accept the
#: certificate at once, as SPIRE does.
BACKDATE = timedelta(seconds=10)
#: Subject of a CA when the operator configures none, as in SPIRE.
DEFAULT_CA_SUBJECT = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SPIFFE"),
    ]
)


def _basic_constraints(certificate: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


def _key_usage(certificate: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


def is_self_signed(certificate: x509.Certificate) -> bool:
    """Tell whether `certificate` is self-issued and its signature verifies with its own key."""
    if certificate.issuer != certificate.subject:
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def check_signing_certificate(certificate: x509.Certificate) -> None:
    """Raise X509SvidError unless `certificate` may sign others (cA=true and keyCertSign)."""
    constraints = _basic_constraints(certificate)
    if constraints is None or not constraints.ca:
        raise X509SvidError(
            f"{describe(certificate)}: a signing certificate must have basicConstraints cA=true"
        )
    usage = _key_usage(certificate)
    if usage is not None and not usage.key_cert_sign:
        raise X509SvidError(
            f"{describe(certificate)}: a signing certificate must set keyCertSign in keyUsage"
        )


@dataclass(frozen=True, eq=False)
class X509CA:
    """A signing CA: its certificate, its private key and the chain that links it to a root.

    `upstream_chain` lists the certificates between this CA and a root of the bundle, nearest
    first, excluding the root itself. It is empty for a self-signed CA and for a CA signed
    directly by an upstream root.
    """

    certificate: x509.Certificate
    private_key: SigningKey
    upstream_chain: tuple[x509.Certificate, ...] = ()
    trust_domain: TrustDomain | None = field(init=False)
    intermediates: tuple[x509.Certificate, ...] = field(init=False)
    authority_key_identifier: x509.AuthorityKeyIdentifier = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_signing_certificate(self.certificate)
        if self.certificate.public_key() != self.private_key.public_key():
            raise X509SvidError(
                f"{describe(self.certificate)}: the private key does not match the "
                "certificate's public key"
            )
        spiffe_id = signing_spiffe_id(self.certificate)
        object.__setattr__(self, "upstream_chain", tuple(self.upstream_chain))
        object.__setattr__(self, "trust_domain", spiffe_id.trust_domain if spiffe_id else None)
        # A self-signed CA is itself a root of the bundle, so chains it signs need nothing
        # beyond the leaf. An intermediate CA travels with every chain it signs.
        if not self.upstream_chain and is_self_signed(self.certificate):
            object.__setattr__(self, "intermediates", ())
        else:
            object.__setattr__(self, "intermediates", (self.certificate, *self.upstream_chain))
        try:
            ski = self.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)
        except x509.ExtensionNotFound:
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(
                check_certified_key(self.certificate.public_key(), describe(self.certificate))
            )
        object.__setattr__(self, "authority_key_identifier", aki)

    @property
    def not_before(self) -> datetime:
        return self.certificate.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        return self.certificate.not_valid_after_utc

    def chain(self, leaf: x509.Certificate) -> list[x509.Certificate]:
        """Return the chain to hand out with `leaf`: the leaf first, then the intermediates."""
        return [leaf, *self.intermediates]


def _ca_subject(subject: x509.Name | None, serial: int) -> x509.Name:
    attributes = list(subject or DEFAULT_CA_SUBJECT)
    attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, str(serial)))
    return x509.Name(attributes)


def _ca_builder(
    public_key: CertifiedKey,
    trust_domain: TrustDomain,
    subject: x509.Name | None,
    issuer_name: x509.Name | None,
    not_before: datetime,
    not_after: datetime,
    path_length: int | None,
) -> x509.CertificateBuilder:
    """Start a CA certificate; `issuer_name` None means self-issued."""
    serial = x509.random_serial_number()
    subject_name = _ca_subject(subject, serial)
    return (
        x509.CertificateBuilder()
        .subject_name(subject_name)
        .issuer_name(subject_name if issuer_name is None else issuer_name)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(str(trust_domain.id))]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _check_ttl(ttl: timedelta, kind: str) -> None:
    if ttl <= timedelta(0):
        raise X509SvidError(f"invalid {kind} TTL {ttl}: it must be positive")


def build_self_signed_ca(
    private_key: SigningKey,
    trust_domain: TrustDomain,
    now: datetime,
    ttl: timedelta = DEFAULT_CA_TTL,
    subject: x509.Name | None = None,
) -> X509CA:
    """Build a self-signed root CA for `trust_domain`, valid from `now` (backdated) for `ttl`."""
    now = require_aware(now)
    _check_ttl(ttl, "CA")
    public_key = check_certified_key(private_key.public_key(), f"CA key for {trust_domain}")
    builder = _ca_builder(
        public_key, trust_domain, subject, None, now - BACKDATE, now + ttl, None
    ).add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False)
    certificate = builder.sign(private_key, signature_hash(private_key))
    return X509CA(certificate, private_key)


def build_intermediate_ca(
    public_key: object,
    trust_domain: TrustDomain,
    issuer: X509CA,
    now: datetime,
    ttl: timedelta = DEFAULT_CA_TTL,
    subject: x509.Name | None = None,
    path_length: int | None = None,
) -> x509.Certificate:
    """Sign a CA certificate for `public_key` with `issuer`.

    Used twice: an operator's upstream CA signs the server's CA this way, and the server's
    CA signs the CA of a downstream server. NotAfter is capped at the issuer's NotAfter,
    because a certificate cannot outlive the one that vouches for it.
    """
    now = require_aware(now)
    _check_ttl(ttl, "CA")
    key = check_certified_key(public_key, f"CA key for {trust_domain}")
    not_after = min(now + ttl, issuer.not_after)
    if not_after <= now:
        raise X509SvidError(
            f"cannot sign a CA for {trust_domain}: the issuing {describe(issuer.certificate)} "
            f"expired at {issuer.not_after.isoformat()}; renew the issuing CA"
        )
    not_before = max(now - BACKDATE, issuer.not_before)
    builder = _ca_builder(
        key,
        trust_domain,
        subject,
        issuer.certificate.subject,
        not_before,
        not_after,
        path_length,
    ).add_extension(issuer.authority_key_identifier, critical=False)
    return builder.sign(issuer.private_key, signature_hash(issuer.private_key))
