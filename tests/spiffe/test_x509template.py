"""Template-signed leaves are the same certificates as `build_x509_svid` makes."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from warden.spiffe import (
    X509CA,
    SpiffeId,
    TrustDomain,
    build_self_signed_ca,
    build_x509_svid,
    validate_x509_svid,
)
from warden.spiffe.bundle import Bundle
from warden.spiffe.errors import X509SvidError
from warden.spiffe.x509template import LeafTemplate

NOW = datetime(2026, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
TRUST_DOMAIN = TrustDomain("example.org")
WORKLOAD = SpiffeId.parse("spiffe://example.org/ns/prod/sa/web")


def make_ca(key) -> X509CA:
    return build_self_signed_ca(key, TRUST_DOMAIN, NOW - timedelta(hours=1))


CA_KEYS = {
    "ec-p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "ec-p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "rsa-2048": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
}
LEAF_KEYS = {
    "ec-p256": lambda: ec.generate_private_key(ec.SECP256R1()).public_key(),
    "rsa-2048": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(),
}


@pytest.mark.parametrize("ca_key", sorted(CA_KEYS))
@pytest.mark.parametrize("leaf_key", sorted(LEAF_KEYS))
@pytest.mark.parametrize("dns_names", [(), ("web.example.org", "web")])
def test_template_leaf_matches_builder(
    ca_key: str, leaf_key: str, dns_names: tuple[str, ...]
) -> None:
    ca = make_ca(CA_KEYS[ca_key]())
    public_key = LEAF_KEYS[leaf_key]()
    template = LeafTemplate(ca, NOW)

    leaf = template.sign(
        WORKLOAD, public_key, NOW, timedelta(minutes=30), dns_names, serial_number=12345
    )
    made = x509.load_der_x509_certificate(leaf.der)
    expected = build_x509_svid(ca, WORKLOAD, public_key, NOW, timedelta(minutes=30), dns_names)

    assert made.version == expected.version
    assert made.serial_number == 12345
    assert made.issuer == expected.issuer
    assert made.subject == expected.subject
    assert made.not_valid_before_utc == expected.not_valid_before_utc
    assert made.not_valid_after_utc == expected.not_valid_after_utc
    assert made.public_key() == expected.public_key()
    assert made.signature_algorithm_oid == expected.signature_algorithm_oid
    assert list(made.extensions) == list(expected.extensions)
    made.verify_directly_issued_by(ca.certificate)
    bundle = Bundle(TRUST_DOMAIN, (ca.certificate,))
    assert len(template.chain(leaf)) == len(ca.chain(expected))
    assert validate_x509_svid([made, ca.certificate], bundle, NOW) == WORKLOAD


def test_template_leaf_verifies_with_openssl(tmp_path: Path) -> None:
    ca = make_ca(ec.generate_private_key(ec.SECP256R1()))
    leaf = LeafTemplate(ca, NOW).sign(
        WORKLOAD, ec.generate_private_key(ec.SECP256R1()).public_key(), NOW
    )
    (tmp_path / "leaf.pem").write_bytes(
        x509.load_der_x509_certificate(leaf.der).public_bytes(serialization.Encoding.PEM)
    )
    (tmp_path / "ca.pem").write_bytes(ca.certificate.public_bytes(serialization.Encoding.PEM))

    result = subprocess.run(
        [
            "openssl",
            "verify",
            "-attime",
            str(int(NOW.timestamp())),
            "-CAfile",
            str(tmp_path / "ca.pem"),
            str(tmp_path / "leaf.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr


def test_template_caps_at_ca_expiry_and_checks_inputs() -> None:
    ca = make_ca(ec.generate_private_key(ec.SECP256R1()))
    template = LeafTemplate(ca, NOW)
    key = ec.generate_private_key(ec.SECP256R1()).public_key()

    capped = template.sign(WORKLOAD, key, NOW, timedelta(days=3650))
    assert capped.not_after == ca.not_after.replace(microsecond=0)
    with pytest.raises(X509SvidError, match="must have a path"):
        template.sign(SpiffeId.parse("spiffe://example.org"), key, NOW)
    with pytest.raises(X509SvidError, match=r"trust domain example\.org only"):
        template.sign(SpiffeId.parse("spiffe://other.org/web"), key, NOW)
    with pytest.raises(X509SvidError, match="not positive"):
        template.sign(WORKLOAD, key, NOW, timedelta(0))
    with pytest.raises(X509SvidError):
        template.sign(WORKLOAD, key, NOW, dns_names=["not a dns name"])
    with pytest.raises(X509SvidError, match="too short"):
        template.sign(
            WORKLOAD,
            rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key(),  # noqa: S505 - the weak key under test
            NOW,
        )


def test_template_encodes_dates_after_2049_as_generalized_time() -> None:
    late = datetime(2049, 12, 31, 23, 0, tzinfo=UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    ca = build_self_signed_ca(key, TRUST_DOMAIN, late - timedelta(hours=1), timedelta(days=2))

    leaf = LeafTemplate(ca, late).sign(
        WORKLOAD, ec.generate_private_key(ec.SECP256R1()).public_key(), late, timedelta(hours=2)
    )
    made = x509.load_der_x509_certificate(leaf.der)

    assert made.not_valid_after_utc == datetime(2050, 1, 1, 1, 0, tzinfo=UTC)
