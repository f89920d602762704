"""Cross-checks with independent implementations: openssl, the `spiffe` package, joserfc.

These run at the real current time, because openssl and the `spiffe` package read the clock
themselves. The `spiffe` package runs in a child process: it registers its own copy of the
Workload API proto in protobuf's default pool, which clashes with Warden's generated code.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from warden.spiffe import (
    X509CA,
    Bundle,
    JwtAuthority,
    JwtSigner,
    SpiffeId,
    TrustDomain,
    build_intermediate_ca,
    build_self_signed_ca,
    build_x509_svid,
    mint_jwt_svid,
)

WORKLOAD = SpiffeId.parse("spiffe://example.org/workload")
OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")


@pytest.fixture
def wall_clock() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def live_ca(trust_domain: TrustDomain, wall_clock: datetime) -> X509CA:
    return build_self_signed_ca(ec.generate_private_key(ec.SECP256R1()), trust_domain, wall_clock)


def _pem(*certificates: object) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)  # type: ignore[attr-defined]


def _openssl_verify(
    tmp_path: Path, bundle_pem: bytes, leaf_pem: bytes, untrusted: bytes = b"", *extra: str
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "bundle.pem").write_bytes(bundle_pem)
    (tmp_path / "leaf.pem").write_bytes(leaf_pem)
    command = [OPENSSL or "openssl", "verify", "-CAfile", str(tmp_path / "bundle.pem"), *extra]
    if untrusted:
        (tmp_path / "intermediates.pem").write_bytes(untrusted)
        command += ["-untrusted", str(tmp_path / "intermediates.pem")]
    command.append(str(tmp_path / "leaf.pem"))
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


@needs_openssl
@pytest.mark.parametrize("purpose", ["any", "sslserver", "sslclient"])
def test_openssl_verifies_svid_with_bundle_pem(
    tmp_path: Path, live_ca: X509CA, trust_domain: TrustDomain, wall_clock: datetime, purpose: str
) -> None:
    leaf = build_x509_svid(
        live_ca, WORKLOAD, ec.generate_private_key(ec.SECP256R1()).public_key(), wall_clock
    )
    bundle = Bundle(trust_domain, (live_ca.certificate,))

    result = _openssl_verify(
        tmp_path, bundle.to_pem().encode(), _pem(leaf), b"", "-purpose", purpose
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("leaf.pem: OK")


@needs_openssl
def test_openssl_verifies_chain_through_intermediate(
    tmp_path: Path, trust_domain: TrustDomain, wall_clock: datetime
) -> None:
    root = build_self_signed_ca(
        rsa.generate_private_key(65537, 2048), trust_domain, wall_clock, timedelta(days=2)
    )
    key = ec.generate_private_key(ec.SECP256R1())
    intermediate = X509CA(
        build_intermediate_ca(key.public_key(), trust_domain, root, wall_clock), key
    )
    chain = intermediate.chain(
        build_x509_svid(
            intermediate, WORKLOAD, rsa.generate_private_key(65537, 2048).public_key(), wall_clock
        )
    )
    bundle = Bundle(trust_domain, (root.certificate,))

    result = _openssl_verify(tmp_path, bundle.to_pem().encode(), _pem(chain[0]), _pem(*chain[1:]))

    assert result.returncode == 0, result.stderr


@needs_openssl
def test_openssl_rejects_svid_from_other_ca(
    tmp_path: Path, live_ca: X509CA, trust_domain: TrustDomain, wall_clock: datetime
) -> None:
    rogue = build_self_signed_ca(ec.generate_private_key(ec.SECP256R1()), trust_domain, wall_clock)
    leaf = build_x509_svid(
        rogue, WORKLOAD, ec.generate_private_key(ec.SECP256R1()).public_key(), wall_clock
    )

    result = _openssl_verify(tmp_path, _pem(live_ca.certificate), _pem(leaf))

    assert result.returncode != 0


SPIFFE_PARSE_SCRIPT = """
import sys
from pathlib import Path
from spiffe import X509Svid
svid = X509Svid.parse_raw(Path(sys.argv[1]).read_bytes(), Path(sys.argv[2]).read_bytes())
print(svid.spiffe_id, len(svid.cert_chain))
"""


def test_spiffe_package_parses_x509_svid(
    tmp_path: Path, trust_domain: TrustDomain, wall_clock: datetime
) -> None:
    root = build_self_signed_ca(ec.generate_private_key(ec.SECP384R1()), trust_domain, wall_clock)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    intermediate = X509CA(
        build_intermediate_ca(ca_key.public_key(), trust_domain, root, wall_clock), ca_key
    )
    key = ec.generate_private_key(ec.SECP256R1())
    chain = intermediate.chain(
        build_x509_svid(intermediate, WORKLOAD, key.public_key(), wall_clock)
    )
    (tmp_path / "chain.der").write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.DER) for c in chain)
    )
    (tmp_path / "key.der").write_bytes(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    result = subprocess.run(
        [
            sys.executable,
            "-c",
            SPIFFE_PARSE_SCRIPT,
            str(tmp_path / "chain.der"),
            str(tmp_path / "key.der"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(WORKLOAD), "2"]


SPIFFE_JWT_SCRIPT = """
import sys
from spiffe import JwtBundle, JwtSvid, TrustDomain
jwks, token = sys.argv[1].encode(), sys.argv[2]
bundle = JwtBundle.parse(TrustDomain("example.org"), jwks)
svid = JwtSvid.parse_and_validate(token, bundle, {"db"})
print(svid.spiffe_id)
"""


def _jwt_svid_keys(bundle_json: str) -> dict[str, object]:
    # A consumer extracts the jwt-svid entries before use, as the JWT-SVID standard requires.
    keys = [key for key in json.loads(bundle_json)["keys"] if key.get("use") == "jwt-svid"]
    return {"keys": keys}


def test_spiffe_package_validates_jwt_svid(
    trust_domain: TrustDomain, live_ca: X509CA, wall_clock: datetime
) -> None:
    signer = JwtSigner(ec.generate_private_key(ec.SECP256R1()), "key-1")
    bundle = Bundle(
        trust_domain, (live_ca.certificate,), (JwtAuthority("key-1", signer.public_key()),)
    )
    token = mint_jwt_svid(signer, WORKLOAD, "db", wall_clock)
    jwks = json.dumps(_jwt_svid_keys(bundle.to_jwks_json()))

    result = subprocess.run(
        [sys.executable, "-c", SPIFFE_JWT_SCRIPT, jwks, token],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(WORKLOAD)


@pytest.mark.parametrize("key_kind", ["ec", "rsa"])
def test_joserfc_validates_jwt_svid_with_bundle_keys(
    trust_domain: TrustDomain, live_ca: X509CA, wall_clock: datetime, key_kind: str
) -> None:
    private_key = (
        ec.generate_private_key(ec.SECP256R1())
        if key_kind == "ec"
        else rsa.generate_private_key(65537, 2048)
    )
    signer = JwtSigner(private_key, "key-1")
    bundle = Bundle(
        trust_domain, (live_ca.certificate,), (JwtAuthority("key-1", signer.public_key()),), 3
    )
    token = mint_jwt_svid(signer, WORKLOAD, "db", wall_clock)
    # joserfc accepts only the RFC 7517 `use` values, so the SPIFFE `use` is dropped after
    # the jwt-svid entries are selected by it.
    jwks = _jwt_svid_keys(bundle.to_jwks_json())
    for key in jwks["keys"]:  # type: ignore[attr-defined]
        del key["use"]

    decoded = jose_jwt.decode(token, KeySet.import_key_set(jwks), algorithms=[signer.algorithm])  # type: ignore[arg-type]
    JWTClaimsRegistry(
        aud={"essential": True, "value": "db"}, exp={"essential": True}, sub={"essential": True}
    ).validate(decoded.claims)

    assert decoded.claims["sub"] == str(WORKLOAD)
    assert decoded.header["kid"] == "key-1"
