"""Acceptance cross-checks of what the CA signs, with clients Warden does not share code with.

openssl verifies X509-SVIDs against the bundle in PEM, also across CA rotations, with
`-attime` for the injected clock. The `spiffe` package parses them. joserfc validates
JWT-SVIDs against the keys of the SPIFFE bundle JSON, and federation tokens against the
federation JWKS.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from warden.pki import CertificateAuthority, KeyType
from warden.spiffe import SpiffeId

MakeCA = Callable[..., CertificateAuthority]
WORKLOAD = SpiffeId.parse("spiffe://example.org/workload")
OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def workload_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_pem(
    path: Path, certificates: list[x509.Certificate] | tuple[x509.Certificate, ...]
) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates))
    return path


def _openssl_verify(
    tmp_path: Path, bundle_pem: str, chain: list[x509.Certificate], at: datetime | None = None
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "bundle.pem").write_text(bundle_pem)
    command = [OPENSSL or "openssl", "verify", "-CAfile", str(tmp_path / "bundle.pem")]
    if at is not None:
        command += ["-attime", str(int(at.timestamp()))]
    if len(chain) > 1:
        command += ["-untrusted", str(_write_pem(tmp_path / "untrusted.pem", chain[1:]))]
    command.append(str(_write_pem(tmp_path / "leaf.pem", chain[:1])))
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


@needs_openssl
def test_server_svid_passes_openssl_verify(
    tmp_path: Path, make_ca: MakeCA, workload_key: ec.EllipticCurvePrivateKey, now: datetime
) -> None:
    ca = make_ca()
    ca.start(now)
    chain = ca.sign_x509_svid(
        WORKLOAD, workload_key.public_key(), dns_names=["web.example.org"], now=now
    )

    result = _openssl_verify(tmp_path, ca.bundle().to_pem(), chain)

    assert result.returncode == 0, result.stderr


@needs_openssl
def test_openssl_verifies_across_rotations(
    tmp_path: Path, make_ca: MakeCA, workload_key: ec.EllipticCurvePrivateKey, now: datetime
) -> None:
    # A CA TTL of two minutes; the clock steps 20 s at a time through several rotations.
    # At each step openssl checks, at that time, the SVID just signed and the one signed
    # 20 s earlier against the bundle of that moment.
    ca = make_ca(ca_ttl=timedelta(minutes=2), x509_svid_ttl=timedelta(seconds=30))
    ca.start(now)
    serials = set()
    previous: list[x509.Certificate] | None = None

    for step in range(0, 16):
        moment = now + timedelta(seconds=20 * step)
        ca.rotate(moment)
        serials.add(ca.x509_ca.certificate.serial_number)
        chain = ca.sign_x509_svid(WORKLOAD, workload_key.public_key(), now=moment)
        bundle_pem = ca.bundle().to_pem()
        for checked in (chain, previous):
            if checked is not None:
                result = _openssl_verify(tmp_path, bundle_pem, checked, at=moment)
                assert result.returncode == 0, f"at +{20 * step}s: {result.stderr}"
        previous = chain

    assert len(serials) >= 3


SPIFFE_PARSE_SCRIPT = """
import sys
from pathlib import Path
from spiffe import X509Bundle, X509Svid, TrustDomain
svid = X509Svid.parse_raw(Path(sys.argv[1]).read_bytes(), Path(sys.argv[2]).read_bytes())
bundle = X509Bundle.parse(TrustDomain("example.org"), Path(sys.argv[3]).read_bytes())
print(svid.spiffe_id, len(bundle.x509_authorities))
"""


def test_server_svid_parses_with_spiffe_package(
    tmp_path: Path, make_ca: MakeCA, workload_key: ec.EllipticCurvePrivateKey, now: datetime
) -> None:
    ca = make_ca()
    ca.start(now)
    chain = ca.sign_x509_svid(WORKLOAD, workload_key.public_key(), now=now)
    (tmp_path / "chain.der").write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.DER) for c in chain)
    )
    (tmp_path / "key.der").write_bytes(
        workload_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "bundle.pem").write_text(ca.bundle().to_pem())

    result = subprocess.run(
        [
            sys.executable,
            "-c",
            SPIFFE_PARSE_SCRIPT,
            *(str(tmp_path / n) for n in ("chain.der", "key.der", "bundle.pem")),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(WORKLOAD), "1"]


def test_server_jwt_svid_validates_with_joserfc(make_ca: MakeCA, now: datetime) -> None:
    ca = make_ca(ca_ttl=timedelta(minutes=2))
    ca.start(now)
    tokens = []
    for second in range(0, 120, 20):
        moment = now + timedelta(seconds=second)
        ca.rotate(moment)
        tokens.append((ca.sign_jwt_svid(WORKLOAD, "db", now=moment), moment))
    # A relying party reads the SPIFFE bundle JSON, keeps the jwt-svid entries and drops
    # their SPIFFE `use`, which joserfc does not accept.
    bundle = json.loads(ca.bundle().to_jwks_json())
    keys = [
        {k: v for k, v in key.items() if k != "use"}
        for key in bundle["keys"]
        if key["use"] == "jwt-svid"
    ]
    key_set = KeySet.import_key_set({"keys": keys})  # type: ignore[arg-type]

    # Every token verifies with the final bundle, and its claims hold when it is used.
    for token, minted_at in tokens:
        decoded = jose_jwt.decode(token, key_set, algorithms=["ES256"])
        JWTClaimsRegistry(
            now=int(minted_at.timestamp()) + 1,
            aud={"essential": True, "value": "db"},
            exp={"essential": True},
            sub={"essential": True},
        ).validate(decoded.claims)
        assert decoded.claims["sub"] == str(WORKLOAD)
    assert len(keys) >= 2


def test_federation_token_validates_with_joserfc(make_ca: MakeCA, now: datetime) -> None:
    ca = make_ca(federation_key_type=KeyType.RSA_2048)
    ca.start(now)
    token = ca.sign_federation_token(
        {"iss": "https://oidc.example.org", "sub": str(WORKLOAD), "aud": "sts.amazonaws.com"},
        now=now,
    )

    key_set = KeySet.import_key_set(ca.federation_jwks(now))  # type: ignore[arg-type]
    decoded = jose_jwt.decode(token, key_set, algorithms=["RS256"])
    JWTClaimsRegistry(
        iss={"essential": True, "value": "https://oidc.example.org"},
        aud={"essential": True, "value": "sts.amazonaws.com"},
        exp={"essential": True},
    ).validate(decoded.claims)

    assert decoded.header["alg"] == "RS256"
