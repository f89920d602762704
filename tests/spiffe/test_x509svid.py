"""X509-SVID building (SPIRE's template) and validation (the X509-SVID standard's rules)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from warden.spiffe import (
    X509CA,
    Bundle,
    BundleSet,
    SpiffeId,
    TrustDomain,
    X509SvidError,
    build_intermediate_ca,
    build_self_signed_ca,
    build_x509_svid,
    build_x509_svid_from_csr,
    check_x509_svid_leaf,
    load_csr,
    validate_x509_svid,
)

WORKLOAD = SpiffeId.parse("spiffe://example.org/workload")
Forge = Callable[..., x509.Certificate]


def _sign(
    ca: X509CA, now: datetime, key: ec.EllipticCurvePrivateKey, **kwargs: object
) -> x509.Certificate:
    return build_x509_svid(ca, WORKLOAD, key.public_key(), now, **kwargs)  # type: ignore[arg-type]


# Building.


def test_leaf_has_one_uri_san_equal_to_id(
    ca: X509CA, now: datetime, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    leaf = _sign(ca, now, leaf_key, dns_names=["web.example.org"])

    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [str(WORKLOAD)]


def test_leaf_basic_constraints_not_ca_critical(
    ca: X509CA, now: datetime, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    extension = _sign(ca, now, leaf_key).extensions.get_extension_for_class(x509.BasicConstraints)

    assert extension.critical
    assert extension.value.ca is False


def test_leaf_key_usage_digital_signature_critical(
    ca: X509CA, now: datetime, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    extension = _sign(ca, now, leaf_key).extensions.get_extension_for_class(x509.KeyUsage)

    assert extension.critical
    assert extension.value.digital_signature
    assert not extension.value.key_encipherment
    assert not extension.value.key_cert_sign
    assert not extension.value.crl_sign


def test_rsa_leaf_adds_key_encipherment(ca: X509CA, now: datetime) -> None:
    key = rsa.generate_private_key(65537, 2048)

    leaf = build_x509_svid(ca, WORKLOAD, key.public_key(), now)

    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert usage.key_encipherment


def test_leaf_eku_server_and_client_auth(
    ca: X509CA, now: datetime, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    usage = _sign(ca, now, leaf_key).extensions.get_extension_for_class(x509.ExtendedKeyUsage)

    assert list(usage.value) == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]


def test_leaf_not_before_backdated_ten_seconds(
    ca: X509CA, now: datetime, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    leaf = _sign(ca, now, leaf_key)

    assert leaf.not_valid_before_utc == now - timedelta(seconds=10)
    assert leaf.not_valid_after_utc == now + timedelta(hours=1)


def test_leaf_not_after_capped_at_ca(
    ca: X509CA, now: datetime, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    leaf = _sign(ca, now, leaf_key, ttl=timedelta(days=30))

    assert leaf.not_valid_after_utc == ca.not_after


def test_leaf_dns_names_first_is_common_name(
    ca: X509CA, now: datetime, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    leaf = _sign(ca, now, leaf_key, dns_names=["web.example.org", "*.web.example.org"])

    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["web.example.org", "*.web.example.org"]
    common_names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [attribute.value for attribute in common_names] == ["web.example.org"]


def test_leaf_key_identifiers_link_to_ca(
    ca: X509CA, now: datetime, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    leaf = _sign(ca, now, leaf_key)

    ski = leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(leaf_key.public_key())
    assert aki.key_identifier == ca_ski.digest
    assert leaf.issuer == ca.certificate.subject


def test_leaf_serials_random(
    ca: X509CA, now: datetime, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    serials = {_sign(ca, now, leaf_key).serial_number for _ in range(20)}

    assert len(serials) == 20
    assert all(serial.bit_length() > 64 for serial in serials)


def test_build_rejects_id_without_path(
    ca: X509CA, now: datetime, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    with pytest.raises(X509SvidError, match="must have a path"):
        build_x509_svid(ca, SpiffeId.parse("spiffe://example.org"), leaf_key.public_key(), now)


def test_build_rejects_foreign_trust_domain(
    ca: X509CA, now: datetime, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    with pytest.raises(X509SvidError, match=r"trust domain example\.org only"):
        build_x509_svid(ca, SpiffeId.parse("spiffe://other.org/w"), leaf_key.public_key(), now)


def test_build_rejects_weak_keys(ca: X509CA, now: datetime) -> None:
    short_rsa = rsa.generate_private_key(65537, 1024)  # noqa: S505 - the weak key under test
    small_curve = ec.generate_private_key(ec.SECP224R1())

    with pytest.raises(X509SvidError, match="1024 bits"):
        build_x509_svid(ca, WORKLOAD, short_rsa.public_key(), now)
    with pytest.raises(X509SvidError, match="secp224r1"):
        build_x509_svid(ca, WORKLOAD, small_curve.public_key(), now)


@pytest.mark.parametrize("name", ["-bad.example.org", "a..b", "bad_name.org", "a.*.org", ""])
def test_build_rejects_invalid_dns_name(
    ca: X509CA, now: datetime, leaf_key: ec.EllipticCurvePrivateKey, name: str
) -> None:
    with pytest.raises(X509SvidError, match="invalid DNS name"):
        _sign(ca, now, leaf_key, dns_names=[name])


def test_build_rejects_expired_ca(ca: X509CA, leaf_key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(X509SvidError, match="CA expired"):
        _sign(ca, ca.not_after + timedelta(seconds=1), leaf_key)


def test_build_rejects_non_positive_ttl(
    ca: X509CA, now: datetime, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    with pytest.raises(X509SvidError, match="not positive"):
        _sign(ca, now, leaf_key, ttl=timedelta(0))


def test_build_rejects_naive_now(
    ca: X509CA, now: datetime, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    with pytest.raises(ValueError, match="time zone"):
        _sign(ca, now.replace(tzinfo=None), leaf_key)


def _csr(
    key: ec.EllipticCurvePrivateKey, uri: str = "spiffe://example.org/evil"
) -> x509.CertificateSigningRequest:
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evil")]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False
        )
        .sign(key, hashes.SHA256())
    )


def test_build_from_csr_takes_id_from_caller(
    ca: X509CA, now: datetime, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    der = _csr(leaf_key).public_bytes(serialization.Encoding.DER)

    leaf = build_x509_svid_from_csr(ca, WORKLOAD, der, now)

    assert check_x509_svid_leaf(leaf) == WORKLOAD
    assert leaf.public_key() == leaf_key.public_key()
    assert not leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)


def test_build_from_csr_rejects_bad_signature(
    ca: X509CA, now: datetime, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    der = bytearray(_csr(leaf_key).public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # Flip a bit of the signature.

    with pytest.raises(X509SvidError, match="signature does not verify"):
        build_x509_svid_from_csr(ca, WORKLOAD, bytes(der), now)


@pytest.mark.parametrize("padding_name", ["pkcs1", "pss"])
def test_load_csr_checks_rsa_signatures(padding_name: str) -> None:
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rsa-workload")])
    )
    if padding_name == "pss":
        request = builder.sign(
            key,
            hashes.SHA256(),
            rsa_padding=padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        )
    else:
        request = builder.sign(key, hashes.SHA256())
    der = bytearray(request.public_bytes(serialization.Encoding.DER))

    assert load_csr(bytes(der)).public_key() == key.public_key()
    der[der.index(b"rsa-workload")] ^= 0x01  # Change the signed subject, not the signature.
    with pytest.raises(X509SvidError, match="signature does not verify"):
        load_csr(bytes(der))


def test_load_csr_rejects_changed_ec_request(leaf_key: ec.EllipticCurvePrivateKey) -> None:
    der = bytearray(_csr(leaf_key).public_bytes(serialization.Encoding.DER))
    der[der.index(b"evil")] ^= 0x01

    with pytest.raises(X509SvidError, match="signature does not verify"):
        load_csr(bytes(der))


def test_load_csr_accepts_pem_and_der(leaf_key: ec.EllipticCurvePrivateKey) -> None:
    request = _csr(leaf_key)

    assert load_csr(request.public_bytes(serialization.Encoding.PEM)) == request
    assert load_csr(request.public_bytes(serialization.Encoding.DER)) == request


def test_load_csr_rejects_garbage() -> None:
    with pytest.raises(X509SvidError, match="invalid CSR"):
        load_csr(b"not a csr")


# Validation: the leaf rules.


def test_validate_accepts_built_svid(
    ca: X509CA, bundle: Bundle, now: datetime, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    leaf = _sign(ca, now, leaf_key)

    assert validate_x509_svid(ca.chain(leaf), bundle, now) == WORKLOAD


def test_validate_rejects_two_uri_sans(forge_leaf: Forge, bundle: Bundle, now: datetime) -> None:
    leaf = forge_leaf(uris=["spiffe://example.org/a", "spiffe://example.org/b"])

    with pytest.raises(X509SvidError, match="exactly one URI SAN, found 2"):
        validate_x509_svid([leaf], bundle, now)


def test_validate_rejects_no_uri_san(forge_leaf: Forge, bundle: Bundle, now: datetime) -> None:
    with pytest.raises(X509SvidError, match="exactly one URI SAN, found 0"):
        validate_x509_svid([forge_leaf(uris=())], bundle, now)


def test_validate_rejects_non_spiffe_uri(forge_leaf: Forge, bundle: Bundle, now: datetime) -> None:
    with pytest.raises(X509SvidError, match="not a valid SPIFFE ID"):
        validate_x509_svid([forge_leaf(uris=["https://example.org/w"])], bundle, now)


def test_validate_rejects_leaf_id_without_path(
    forge_leaf: Forge, bundle: Bundle, now: datetime
) -> None:
    with pytest.raises(X509SvidError, match="must have a path"):
        validate_x509_svid([forge_leaf(uris=["spiffe://example.org"])], bundle, now)


def test_validate_rejects_leaf_with_ca_flag(
    forge_leaf: Forge, bundle: Bundle, now: datetime
) -> None:
    leaf = forge_leaf(ca=True, usage={"digital_signature": True})

    with pytest.raises(X509SvidError, match="cA=true"):
        validate_x509_svid([leaf], bundle, now)


def test_validate_rejects_missing_basic_constraints(
    forge_leaf: Forge, bundle: Bundle, now: datetime
) -> None:
    with pytest.raises(X509SvidError, match="basicConstraints is missing"):
        validate_x509_svid([forge_leaf(ca=None)], bundle, now)


def test_validate_rejects_missing_key_usage(
    forge_leaf: Forge, bundle: Bundle, now: datetime
) -> None:
    with pytest.raises(X509SvidError, match="keyUsage is missing"):
        validate_x509_svid([forge_leaf(usage=None)], bundle, now)


def test_validate_rejects_non_critical_key_usage(
    forge_leaf: Forge, bundle: Bundle, now: datetime
) -> None:
    with pytest.raises(X509SvidError, match="critical"):
        validate_x509_svid([forge_leaf(usage_critical=False)], bundle, now)


def test_validate_rejects_leaf_without_digital_signature(
    forge_leaf: Forge, bundle: Bundle, now: datetime
) -> None:
    leaf = forge_leaf(usage={"key_encipherment": True})

    with pytest.raises(X509SvidError, match="digitalSignature"):
        validate_x509_svid([leaf], bundle, now)


@pytest.mark.parametrize(
    ("flag", "name"), [("key_cert_sign", "keyCertSign"), ("crl_sign", "cRLSign")]
)
def test_validate_rejects_leaf_with_signing_usage(
    forge_leaf: Forge, bundle: Bundle, now: datetime, flag: str, name: str
) -> None:
    leaf = forge_leaf(usage={"digital_signature": True, flag: True})

    with pytest.raises(X509SvidError, match=f"must not set {name}"):
        validate_x509_svid([leaf], bundle, now)


@pytest.mark.parametrize(
    ("usages", "missing"),
    [
        ([ExtendedKeyUsageOID.SERVER_AUTH], "clientAuth"),
        ([ExtendedKeyUsageOID.CLIENT_AUTH], "serverAuth"),
        ([ExtendedKeyUsageOID.CODE_SIGNING], "serverAuth"),
    ],
)
def test_validate_rejects_eku_without_both_auths(
    forge_leaf: Forge,
    bundle: Bundle,
    now: datetime,
    usages: list[x509.ObjectIdentifier],
    missing: str,
) -> None:
    with pytest.raises(X509SvidError, match=f"without {missing}"):
        validate_x509_svid([forge_leaf(extended_usage=usages)], bundle, now)


def test_validate_accepts_leaf_without_eku(
    forge_leaf: Forge, bundle: Bundle, now: datetime
) -> None:
    assert validate_x509_svid([forge_leaf(extended_usage=None)], bundle, now) == WORKLOAD


def test_validate_rejects_empty_subject_with_non_critical_san(
    forge_leaf: Forge, bundle: Bundle, now: datetime
) -> None:
    with pytest.raises(X509SvidError, match="SAN extension must be critical"):
        validate_x509_svid([forge_leaf(subject=x509.Name([]))], bundle, now)
    leaf = forge_leaf(subject=x509.Name([]), san_critical=True)
    assert validate_x509_svid([leaf], bundle, now) == WORKLOAD


# Validation: time, trust domain and path.


def test_validate_rejects_expired_leaf(forge_leaf: Forge, bundle: Bundle, now: datetime) -> None:
    leaf = forge_leaf(not_after=now - timedelta(seconds=1))

    with pytest.raises(X509SvidError, match="expired"):
        validate_x509_svid([leaf], bundle, now)


def test_validate_rejects_leaf_not_yet_valid(
    forge_leaf: Forge, bundle: Bundle, now: datetime
) -> None:
    leaf = forge_leaf(not_before=now + timedelta(minutes=5))

    with pytest.raises(X509SvidError, match="not valid before"):
        validate_x509_svid([leaf], bundle, now)


def test_validate_rejects_naive_now(
    ca: X509CA, bundle: Bundle, now: datetime, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    with pytest.raises(ValueError, match="time zone"):
        validate_x509_svid([_sign(ca, now, leaf_key)], bundle, now.replace(tzinfo=None))


def test_validate_rejects_empty_chain(bundle: Bundle, now: datetime) -> None:
    with pytest.raises(X509SvidError, match="empty"):
        validate_x509_svid([], bundle, now)


def test_validate_rejects_unknown_trust_domain(
    ca: X509CA, now: datetime, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    leaf = _sign(ca, now, leaf_key)
    other = Bundle(TrustDomain("other.org"), (ca.certificate,))

    with pytest.raises(X509SvidError, match=r"no bundle for trust domain example\.org"):
        validate_x509_svid([leaf], other, now)


def test_validate_rejects_bundle_without_x509_authorities(
    ca: X509CA, trust_domain: TrustDomain, now: datetime, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    with pytest.raises(X509SvidError, match=r"no X\.509 authorities"):
        validate_x509_svid([_sign(ca, now, leaf_key)], Bundle(trust_domain), now)


def test_validate_uses_only_leaf_trust_domain_bundle(
    forge_any: Forge,
    trust_domain: TrustDomain,
    ca: X509CA,
    now: datetime,
    leaf_key: ec.EllipticCurvePrivateKey,
) -> None:
    # A CA trusted for other.org signs a leaf claiming example.org: trust is never merged.
    other_domain = TrustDomain("other.org")
    other_key = ec.generate_private_key(ec.SECP256R1())
    other_ca = build_self_signed_ca(other_key, other_domain, now - timedelta(hours=1))
    forged = forge_any(other_key, other_ca.certificate.subject, leaf_key)
    bundles = BundleSet(
        [Bundle(trust_domain, (ca.certificate,)), Bundle(other_domain, (other_ca.certificate,))]
    )

    with pytest.raises(
        X509SvidError, match=r"does not verify against the bundle of trust domain example\.org"
    ):
        validate_x509_svid([forged], bundles, now)


def test_validate_rejects_leaf_from_other_ca(
    bundle: Bundle, trust_domain: TrustDomain, now: datetime, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    rogue = build_self_signed_ca(
        ec.generate_private_key(ec.SECP256R1()), trust_domain, now - timedelta(hours=1)
    )

    with pytest.raises(X509SvidError, match="does not verify"):
        validate_x509_svid([_sign(rogue, now, leaf_key)], bundle, now)


def test_validate_rejects_tampered_leaf(
    ca: X509CA, bundle: Bundle, now: datetime, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    der = bytearray(_sign(ca, now, leaf_key).public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0x01  # Inside the signature.
    tampered = x509.load_der_x509_certificate(bytes(der))

    with pytest.raises(X509SvidError, match="does not verify"):
        validate_x509_svid([tampered], bundle, now)


@pytest.fixture
def upstream(trust_domain: TrustDomain, now: datetime) -> X509CA:
    return build_self_signed_ca(
        ec.generate_private_key(ec.SECP384R1()),
        trust_domain,
        now - timedelta(hours=2),
        timedelta(days=2),
    )


def _intermediate(
    upstream: X509CA, trust_domain: TrustDomain, now: datetime, path_length: int | None = None
) -> X509CA:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = build_intermediate_ca(
        key.public_key(), trust_domain, upstream, now - timedelta(hours=1), path_length=path_length
    )
    return X509CA(certificate, key)


def test_validate_accepts_chain_through_intermediate(
    upstream: X509CA, trust_domain: TrustDomain, now: datetime, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    intermediate = _intermediate(upstream, trust_domain, now)
    chain = intermediate.chain(_sign(intermediate, now, leaf_key))

    assert len(chain) == 2
    assert validate_x509_svid(chain, Bundle(trust_domain, (upstream.certificate,)), now) == WORKLOAD


def test_validate_rejects_missing_intermediate(
    upstream: X509CA, trust_domain: TrustDomain, now: datetime, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    intermediate = _intermediate(upstream, trust_domain, now)
    leaf = _sign(intermediate, now, leaf_key)

    with pytest.raises(X509SvidError, match="intermediate may be missing"):
        validate_x509_svid([leaf], Bundle(trust_domain, (upstream.certificate,)), now)


def test_validate_enforces_path_length(
    upstream: X509CA, trust_domain: TrustDomain, now: datetime, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    first = _intermediate(upstream, trust_domain, now, path_length=0)
    second_key = ec.generate_private_key(ec.SECP256R1())
    second = X509CA(
        build_intermediate_ca(
            second_key.public_key(), trust_domain, first, now - timedelta(minutes=30)
        ),
        second_key,
        upstream_chain=(first.certificate,),
    )
    chain = second.chain(_sign(second, now, leaf_key))

    with pytest.raises(X509SvidError, match="path length"):
        validate_x509_svid(chain, Bundle(trust_domain, (upstream.certificate,)), now)


def test_validate_rejects_intermediate_without_ca_flag(
    forge_any: Forge,
    ca: X509CA,
    ca_key: ec.EllipticCurvePrivateKey,
    bundle: Bundle,
    now: datetime,
    leaf_key: ec.EllipticCurvePrivateKey,
) -> None:
    middle_key = ec.generate_private_key(ec.SECP256R1())
    middle = forge_any(
        ca_key,
        ca.certificate.subject,
        middle_key,
        uris=["spiffe://example.org"],
        ca=False,
        usage={"key_cert_sign": True, "digital_signature": True},
    )
    leaf = forge_any(middle_key, middle.subject, leaf_key)

    with pytest.raises(X509SvidError, match="cA=true"):
        validate_x509_svid([leaf, middle], bundle, now)


def test_validate_rejects_intermediate_without_key_cert_sign(
    forge_any: Forge,
    ca: X509CA,
    ca_key: ec.EllipticCurvePrivateKey,
    bundle: Bundle,
    now: datetime,
    leaf_key: ec.EllipticCurvePrivateKey,
) -> None:
    middle_key = ec.generate_private_key(ec.SECP256R1())
    middle = forge_any(
        ca_key,
        ca.certificate.subject,
        middle_key,
        uris=["spiffe://example.org"],
        ca=True,
        usage={"crl_sign": True},
    )
    leaf = forge_any(middle_key, middle.subject, leaf_key)

    with pytest.raises(X509SvidError, match="keyCertSign"):
        validate_x509_svid([leaf, middle], bundle, now)


def test_validate_rejects_signing_certificate_id_with_path(
    forge_any: Forge,
    ca: X509CA,
    ca_key: ec.EllipticCurvePrivateKey,
    bundle: Bundle,
    now: datetime,
    leaf_key: ec.EllipticCurvePrivateKey,
) -> None:
    middle_key = ec.generate_private_key(ec.SECP256R1())
    middle = forge_any(
        ca_key, ca.certificate.subject, middle_key, uris=["spiffe://example.org/ca"], ca=True
    )
    leaf = forge_any(middle_key, middle.subject, leaf_key)

    with pytest.raises(X509SvidError, match="signing certificate must have no path"):
        validate_x509_svid([leaf, middle], bundle, now)


def test_check_leaf_returns_spiffe_id(
    ca: X509CA, now: datetime, leaf_key: ec.EllipticCurvePrivateKey
) -> None:
    assert check_x509_svid_leaf(_sign(ca, now, leaf_key)) == WORKLOAD
