"""Signing certificate templates: self-signed roots and intermediates."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from warden.spiffe import (
    X509CA,
    TrustDomain,
    X509SvidError,
    build_intermediate_ca,
    build_self_signed_ca,
)


def test_ca_basic_constraints_ca_true_critical(ca: X509CA) -> None:
    extension = ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints)

    assert extension.critical
    assert extension.value.ca is True


def test_ca_key_usage_cert_and_crl_sign(ca: X509CA) -> None:
    extension = ca.certificate.extensions.get_extension_for_class(x509.KeyUsage)

    assert extension.critical
    assert extension.value.key_cert_sign
    assert extension.value.crl_sign
    assert not extension.value.digital_signature


def test_ca_uri_san_is_trust_domain_id(ca: X509CA) -> None:
    san = ca.certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value

    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://example.org"]
    assert ca.trust_domain == TrustDomain("example.org")


def test_ca_subject_ends_with_serial_number(ca: X509CA) -> None:
    serials = ca.certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)

    assert [attribute.value for attribute in serials] == [str(ca.certificate.serial_number)]
    assert ca.certificate.issuer == ca.certificate.subject


def test_ca_subject_keeps_configured_names(trust_domain: TrustDomain, now: datetime) -> None:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme"),
        ]
    )

    ca = build_self_signed_ca(
        ec.generate_private_key(ec.SECP256R1()), trust_domain, now, subject=subject
    )

    assert (
        ca.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Acme"
    )
    assert ca.certificate.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "US"


def test_ca_validity_backdated_and_ttl(
    ca_key: ec.EllipticCurvePrivateKey, trust_domain: TrustDomain, now: datetime
) -> None:
    ca = build_self_signed_ca(ca_key, trust_domain, now, timedelta(hours=6))

    assert ca.not_before == now - timedelta(seconds=10)
    assert ca.not_after == now + timedelta(hours=6)


def test_self_signed_ca_chain_is_leaf_only(ca: X509CA) -> None:
    assert ca.intermediates == ()
    assert ca.upstream_chain == ()


def test_intermediate_capped_at_issuer_not_after(
    ca: X509CA, trust_domain: TrustDomain, now: datetime
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())

    certificate = build_intermediate_ca(
        key.public_key(), trust_domain, ca, now, timedelta(days=365)
    )
    intermediate = X509CA(certificate, key)

    assert intermediate.not_after == ca.not_after
    assert certificate.issuer == ca.certificate.subject
    assert intermediate.intermediates == (certificate,)


def test_intermediate_path_length(ca: X509CA, trust_domain: TrustDomain, now: datetime) -> None:
    key = ec.generate_private_key(ec.SECP256R1())

    certificate = build_intermediate_ca(key.public_key(), trust_domain, ca, now, path_length=0)

    assert (
        certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    )


def test_intermediate_rejects_expired_issuer(ca: X509CA, trust_domain: TrustDomain) -> None:
    key = ec.generate_private_key(ec.SECP256R1())

    with pytest.raises(X509SvidError, match="expired"):
        build_intermediate_ca(
            key.public_key(), trust_domain, ca, ca.not_after + timedelta(seconds=1)
        )


def test_x509ca_rejects_mismatched_key(ca: X509CA) -> None:
    with pytest.raises(X509SvidError, match="does not match"):
        X509CA(ca.certificate, ec.generate_private_key(ec.SECP256R1()))


def test_x509ca_rejects_leaf_certificate(
    forge_leaf: object, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    leaf = forge_leaf()  # type: ignore[operator]

    with pytest.raises(X509SvidError, match="cA=true"):
        X509CA(leaf, leaf_key)


def test_ca_rejects_non_positive_ttl(
    ca_key: ec.EllipticCurvePrivateKey, trust_domain: TrustDomain, now: datetime
) -> None:
    with pytest.raises(X509SvidError, match="must be positive"):
        build_self_signed_ca(ca_key, trust_domain, now, timedelta(0))


def test_ca_subjects_differ_between_rotations(
    ca_key: ec.EllipticCurvePrivateKey, trust_domain: TrustDomain, now: datetime
) -> None:
    first = build_self_signed_ca(ca_key, trust_domain, now)
    second = build_self_signed_ca(ca_key, trust_domain, now)

    assert first.certificate.subject != second.certificate.subject
