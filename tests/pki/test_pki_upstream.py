"""UpstreamAuthority "disk": the server's CA as an intermediate under an operator's CA.

The operator's CA is made with the openssl CLI, as an operator would, so these tests run
at the real current time.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from warden.pki import (
    AuthorityKind,
    AuthorityStatus,
    CertificateAuthority,
    DiskKeyManager,
    DiskUpstreamAuthority,
    UpstreamAuthorityError,
    open_upstream_authority,
)
from warden.spiffe import SpiffeId, TrustDomain, validate_x509_svid

MakeCA = Callable[..., CertificateAuthority]
WORKLOAD = SpiffeId.parse("spiffe://example.org/workload")
OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")

CA_EXTENSIONS = (
    "basicConstraints=critical,CA:TRUE\n"
    "keyUsage=critical,keyCertSign,cRLSign\n"
    "subjectKeyIdentifier=hash\n"
    "authorityKeyIdentifier=keyid\n"
)


def _openssl(*arguments: str, cwd: Path) -> None:
    subprocess.run(
        [OPENSSL or "openssl", *arguments], cwd=cwd, check=True, capture_output=True, timeout=60
    )


@dataclass
class OperatorCA:
    directory: Path
    root_cert: Path
    root_key: Path
    issuing_cert: Path
    issuing_key: Path

    def certificate(self, path: Path) -> x509.Certificate:
        return x509.load_pem_x509_certificate(path.read_bytes())


@pytest.fixture(scope="module")
def operator_ca(tmp_path_factory: pytest.TempPathFactory) -> OperatorCA:
    """A root valid for 3 days and an issuing CA under it valid for 2 days."""
    directory = tmp_path_factory.mktemp("operator")
    (directory / "ca.cnf").write_text(CA_EXTENSIONS)
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384", "-nodes",
        "-keyout", "root.key", "-out", "root.crt", "-days", "3", "-subj", "/O=Acme/CN=Acme Root",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "issuing.key", "-out", "issuing.csr", "-subj", "/O=Acme/CN=Acme Issuing",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "issuing.csr", "-CA", "root.crt", "-CAkey", "root.key",
        "-CAcreateserial", "-out", "issuing.crt", "-days", "2", "-extfile", "ca.cnf",
        cwd=directory,
    )  # fmt: skip
    return OperatorCA(
        directory,
        directory / "root.crt",
        directory / "root.key",
        directory / "issuing.crt",
        directory / "issuing.key",
    )


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture(scope="module")
def workload_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_file(path: Path, *certificates: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates))
    return path


def _openssl_verify(
    tmp_path: Path, roots: tuple[x509.Certificate, ...], chain: list[x509.Certificate]
) -> subprocess.CompletedProcess[str]:
    bundle = _pem_file(tmp_path / "bundle.pem", *roots)
    leaf = _pem_file(tmp_path / "leaf.pem", chain[0])
    untrusted = _pem_file(tmp_path / "untrusted.pem", *chain[1:])
    command = [
        OPENSSL or "openssl",
        "verify",
        "-CAfile",
        str(bundle),
        "-untrusted",
        str(untrusted),
        str(leaf),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def test_ca_signed_by_self_signed_upstream(
    tmp_path: Path,
    make_ca: MakeCA,
    operator_ca: OperatorCA,
    workload_key: ec.EllipticCurvePrivateKey,
    now: datetime,
) -> None:
    root = operator_ca.certificate(operator_ca.root_cert)
    ca = make_ca(upstream=DiskUpstreamAuthority(operator_ca.root_cert, operator_ca.root_key))
    ca.start(now)

    chain = ca.sign_x509_svid(WORKLOAD, workload_key.public_key(), now=now)

    assert ca.x509_ca.certificate.issuer == root.subject
    assert chain == [chain[0], ca.x509_ca.certificate]
    assert ca.bundle().x509_authorities == (root,)
    assert validate_x509_svid(chain, ca.bundle(), now) == WORKLOAD
    result = _openssl_verify(tmp_path, ca.bundle().x509_authorities, chain)
    assert result.returncode == 0, result.stderr


def test_ca_under_upstream_intermediate(
    tmp_path: Path,
    make_ca: MakeCA,
    operator_ca: OperatorCA,
    workload_key: ec.EllipticCurvePrivateKey,
    now: datetime,
) -> None:
    root = operator_ca.certificate(operator_ca.root_cert)
    issuing = operator_ca.certificate(operator_ca.issuing_cert)
    upstream = DiskUpstreamAuthority(
        operator_ca.issuing_cert, operator_ca.issuing_key, operator_ca.root_cert
    )
    ca = make_ca(upstream=upstream)
    ca.start(now)

    chain = ca.sign_x509_svid(WORKLOAD, workload_key.public_key(), now=now)

    assert chain[1:] == [ca.x509_ca.certificate, issuing]
    assert ca.bundle().x509_authorities == (root,)
    assert validate_x509_svid(chain, ca.bundle(), now) == WORKLOAD
    result = _openssl_verify(tmp_path, ca.bundle().x509_authorities, chain)
    assert result.returncode == 0, result.stderr


def test_ca_lifetime_capped_at_upstream(
    make_ca: MakeCA, operator_ca: OperatorCA, now: datetime
) -> None:
    issuing = operator_ca.certificate(operator_ca.issuing_cert)
    upstream = DiskUpstreamAuthority(
        operator_ca.issuing_cert, operator_ca.issuing_key, operator_ca.root_cert
    )
    ca = make_ca(upstream=upstream, ca_ttl=timedelta(days=30))

    ca.start(now)

    assert ca.x509_ca.not_after == issuing.not_valid_after_utc


def test_switch_to_upstream_replaces_ca(
    tmp_path: Path, make_ca: MakeCA, operator_ca: OperatorCA, now: datetime
) -> None:
    self_signed = make_ca(DiskKeyManager(tmp_path / "keys"))
    self_signed.start(now)
    first = self_signed.x509_ca.certificate

    upstream = make_ca(
        DiskKeyManager(tmp_path / "keys"),
        upstream=DiskUpstreamAuthority(operator_ca.root_cert, operator_ca.root_key),
    )
    upstream.start(now)

    assert upstream.x509_ca.certificate != first
    assert first in upstream.bundle().x509_authorities
    old = [
        e
        for e in upstream.authorities()
        if e.kind is AuthorityKind.X509_CA and e.status is AuthorityStatus.OLD
    ]
    assert [e.certificate for e in old] == [first]


def test_rotation_reads_upstream_files_again(
    tmp_path: Path, make_ca: MakeCA, operator_ca: OperatorCA, now: datetime
) -> None:
    cert_file = Path(shutil.copy(operator_ca.root_cert, tmp_path / "upstream.crt"))
    key_file = Path(shutil.copy(operator_ca.root_key, tmp_path / "upstream.key"))
    bundle_file = Path(shutil.copy(operator_ca.root_cert, tmp_path / "roots.crt"))
    ca = make_ca(
        upstream=DiskUpstreamAuthority(cert_file, key_file, bundle_file),
        ca_ttl=timedelta(minutes=2),
    )
    ca.start(now)
    assert ca.x509_ca.certificate.issuer == operator_ca.certificate(operator_ca.root_cert).subject

    # The operator moves signing to the issuing CA under the same root.
    shutil.copy(operator_ca.issuing_cert, cert_file)
    shutil.copy(operator_ca.issuing_key, key_file)
    ca.rotate(now + timedelta(seconds=60))

    prepared = [
        e
        for e in ca.authorities()
        if e.status is AuthorityStatus.PREPARED and e.kind is AuthorityKind.X509_CA
    ]
    assert prepared[0].certificate is not None
    assert (
        prepared[0].certificate.issuer == operator_ca.certificate(operator_ca.issuing_cert).subject
    )
    assert prepared[0].upstream_chain == (operator_ca.certificate(operator_ca.issuing_cert),)


def _expect_error(upstream: DiskUpstreamAuthority, now: datetime, message: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(UpstreamAuthorityError, match=message):
        upstream.mint_x509_ca(key.public_key(), TrustDomain("example.org"), timedelta(hours=1), now)


def test_upstream_missing_file(tmp_path: Path, operator_ca: OperatorCA, now: datetime) -> None:
    _expect_error(
        DiskUpstreamAuthority(tmp_path / "absent.crt", operator_ca.root_key),
        now,
        "cannot read cert_file_path",
    )


def test_upstream_key_must_match_certificate(operator_ca: OperatorCA, now: datetime) -> None:
    _expect_error(
        DiskUpstreamAuthority(operator_ca.root_cert, operator_ca.issuing_key),
        now,
        "private key does not match",
    )


def test_upstream_intermediate_needs_bundle(operator_ca: OperatorCA, now: datetime) -> None:
    _expect_error(
        DiskUpstreamAuthority(operator_ca.issuing_cert, operator_ca.issuing_key),
        now,
        "bundle_file_path must name",
    )


def test_upstream_chain_must_link_to_roots(
    tmp_path: Path, operator_ca: OperatorCA, now: datetime
) -> None:
    stranger = tmp_path / "stranger.crt"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "stranger.key", "-out", "stranger.crt", "-days", "1", "-subj", "/CN=Stranger",
        "-addext", "basicConstraints=critical,CA:TRUE",
        cwd=tmp_path,
    )  # fmt: skip

    _expect_error(
        DiskUpstreamAuthority(operator_ca.issuing_cert, operator_ca.issuing_key, stranger),
        now,
        "is not signed by",
    )


def test_upstream_certificate_must_be_a_ca(tmp_path: Path, now: datetime) -> None:
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "leaf.key", "-out", "leaf.crt", "-days", "1", "-subj", "/CN=leaf",
        "-addext", "basicConstraints=critical,CA:FALSE",
        cwd=tmp_path,
    )  # fmt: skip

    _expect_error(
        DiskUpstreamAuthority(tmp_path / "leaf.crt", tmp_path / "leaf.key"), now, "cA=true"
    )


def test_upstream_expired(operator_ca: OperatorCA, now: datetime) -> None:
    _expect_error(
        DiskUpstreamAuthority(operator_ca.root_cert, operator_ca.root_key),
        now + timedelta(days=10),
        "expired at",
    )


def test_open_upstream_authority(operator_ca: OperatorCA) -> None:
    upstream = open_upstream_authority(
        "disk",
        {"cert_file_path": str(operator_ca.root_cert), "key_file_path": str(operator_ca.root_key)},
    )

    assert isinstance(upstream, DiskUpstreamAuthority)
    with pytest.raises(UpstreamAuthorityError, match="unknown UpstreamAuthority 'vault'"):
        open_upstream_authority("vault", {})
    with pytest.raises(UpstreamAuthorityError, match="needs cert_file_path and key_file_path"):
        open_upstream_authority("disk", {})
    with pytest.raises(UpstreamAuthorityError, match="does not know"):
        open_upstream_authority("disk", {"cert_file_path": "a", "key_file_path": "b", "ttl": "1h"})
