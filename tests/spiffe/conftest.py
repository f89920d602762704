"""Fixtures for the SPIFFE core tests: a fixed clock, keys, a CA and a certificate forger.

The forger builds certificates that break one rule at a time, which Warden's own builders
never produce, so that each validator rule has a test that fails when the rule is dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from warden.spiffe import X509CA, Bundle, TrustDomain, build_self_signed_ca

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

SERVER_AND_CLIENT = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)

LEAF_USAGE = {"digital_signature": True}
CA_USAGE = {"key_cert_sign": True, "crl_sign": True}


def key_usage(**flags: bool) -> x509.KeyUsage:
    names = (
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
    )
    values = {name: flags.get(name, False) for name in names}
    return x509.KeyUsage(**values, encipher_only=False, decipher_only=False)


_MISSING: Any = object()


def forge(
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer_name: x509.Name,
    subject_key: ec.EllipticCurvePrivateKey,
    *,
    subject: x509.Name | None = None,
    uris: Sequence[str] = ("spiffe://example.org/workload",),
    san_critical: bool = False,
    ca: bool | None = False,
    path_length: int | None = None,
    usage: dict[str, bool] | None = _MISSING,
    usage_critical: bool = True,
    extended_usage: Sequence[x509.ObjectIdentifier] | None = SERVER_AND_CLIENT,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> x509.Certificate:
    """Build a certificate with exactly the properties given; defaults make a valid leaf."""
    if usage is _MISSING:
        usage = CA_USAGE if ca else LEAF_USAGE
    name = (
        subject
        if subject is not None
        else x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "forged")])
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - timedelta(minutes=1))
        .not_valid_after(not_after or NOW + timedelta(hours=1))
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length), critical=True
        )
    if usage is not None:
        builder = builder.add_extension(key_usage(**usage), critical=usage_critical)
    if extended_usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended_usage), critical=False)
    if uris:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=san_critical,
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def trust_domain() -> TrustDomain:
    return TrustDomain("example.org")


@pytest.fixture(scope="session")
def ca_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def leaf_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def ca(ca_key: ec.EllipticCurvePrivateKey, trust_domain: TrustDomain, now: datetime) -> X509CA:
    return build_self_signed_ca(ca_key, trust_domain, now - timedelta(hours=1))


@pytest.fixture
def bundle(ca: X509CA, trust_domain: TrustDomain) -> Bundle:
    return Bundle(trust_domain, (ca.certificate,))


@pytest.fixture
def forge_leaf(
    ca: X509CA, ca_key: ec.EllipticCurvePrivateKey, leaf_key: ec.EllipticCurvePrivateKey
) -> Callable[..., x509.Certificate]:
    """Forge a leaf signed by the test CA; keyword arguments as for `forge`."""

    def make(**overrides: Any) -> x509.Certificate:
        return forge(ca_key, ca.certificate.subject, leaf_key, **overrides)

    return make


@pytest.fixture
def forge_any() -> Callable[..., x509.Certificate]:
    """The `forge` function, for certificates with any issuer."""
    return forge
