"""x509pop: the node proves possession of the key of a certificate issued by a CA the
operator trusts.

The agent sends its certificate chain (DER, leaf first); the server checks the chain against
the configured CA bundle, sends a random nonce, and checks the agent's signature over it.
Agent ID: `spiffe://<td>/spire/agent/x509pop/<SHA-1 fingerprint of the leaf>` by default,
as SPIRE forms it. Selectors: `x509pop:subject:cn:<cn>`, `x509pop:ca:fingerprint:<sha1>` for
each CA certificate in the verified chain, and `x509pop:serialnumber:<hex>`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from warden.server.nodeattest.base import (
    AttestationError,
    AttestationResult,
    AttestorContext,
    Challenger,
    agent_id,
)
from warden.spiffe import Selector, SpiffeError

NONCE_BYTES = 32
MAX_CHAIN_LENGTH = 8


def fingerprint(certificate: x509.Certificate) -> str:
    """The SHA-1 fingerprint of a certificate in lowercase hex, as SPIRE prints it."""
    return certificate.fingerprint(hashes.SHA1()).hex()  # noqa: S303 - an identifier, not a signature


def load_certificates(paths: Sequence[str]) -> list[x509.Certificate]:
    certificates: list[x509.Certificate] = []
    for path in paths:
        try:
            certificates.extend(x509.load_pem_x509_certificates(Path(path).read_bytes()))
        except (OSError, ValueError) as error:
            raise ValueError(f"x509pop: cannot read CA bundle {path}: {error}") from error
    if not certificates:
        raise ValueError("x509pop: ca_bundle_path names no certificates")
    return certificates


def verify_chain(
    chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate], now: datetime
) -> list[x509.Certificate]:
    """Verify `chain` (leaf first) up to one of `roots`; return the CA certificates used.

    Checks each signature, each validity period at `now`, and that every issuer is a CA.
    """
    if not chain:
        raise AttestationError(
            "x509pop: no certificate in the attestation data", permission_denied=False
        )
    path: list[x509.Certificate] = []
    current = chain[0]
    candidates = list(chain[1:])
    for _ in range(MAX_CHAIN_LENGTH):
        _check_validity(current, now)
        root = next((r for r in roots if _issued_by(current, r)), None)
        if root is not None:
            _check_validity(root, now)
            path.append(root)
            _check_path_lengths(path)
            return path
        issuer = next((c for c in candidates if _issued_by(current, c)), None)
        if issuer is None:
            raise AttestationError(
                f"x509pop: certificate {current.subject.rfc4514_string()!r} does not chain to "
                "the configured CA bundle"
            )
        if not _is_ca(issuer):
            raise AttestationError(
                f"x509pop: issuer {issuer.subject.rfc4514_string()!r} is not a CA certificate"
            )
        candidates.remove(issuer)
        path.append(issuer)
        current = issuer
    raise AttestationError(f"x509pop: the chain is longer than {MAX_CHAIN_LENGTH} certificates")


def _check_usage(certificate: x509.Certificate, usage: str, what: str) -> None:
    try:
        key_usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not getattr(key_usage, usage):
        raise AttestationError(
            f"x509pop: {what} {certificate.subject.rfc4514_string()!r} does not allow "
            f"{usage.replace('_', ' ')} in its key usage"
        )


def _check_path_lengths(path: list[x509.Certificate]) -> None:
    """Check pathLenConstraint and keyCertSign of each CA on the path (leaf's issuer first)."""
    for depth, ca in enumerate(path):
        _check_usage(ca, "key_cert_sign", "CA certificate")
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
        # `depth` CA certificates sit between this CA and the leaf.
        if constraints.path_length is not None and depth > constraints.path_length:
            raise AttestationError(
                f"x509pop: CA certificate {ca.subject.rfc4514_string()!r} allows "
                f"{constraints.path_length} intermediate CAs below it, the chain has {depth}"
            )


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    if certificate.issuer != issuer.subject:
        return False
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return _is_ca(issuer)


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _check_validity(certificate: x509.Certificate, now: datetime) -> None:
    if now < certificate.not_valid_before_utc:
        raise AttestationError(
            f"x509pop: certificate {certificate.subject.rfc4514_string()!r} is not valid "
            f"before {certificate.not_valid_before_utc.isoformat()}"
        )
    if now > certificate.not_valid_after_utc:
        raise AttestationError(
            f"x509pop: certificate {certificate.subject.rfc4514_string()!r} expired at "
            f"{certificate.not_valid_after_utc.isoformat()}"
        )


def sign_challenge(private_key: Any, nonce: bytes) -> bytes:
    """The agent's response to a challenge: a signature over the nonce with SHA-256."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        signature: bytes = private_key.sign(nonce, ec.ECDSA(hashes.SHA256()))
        return signature
    if isinstance(private_key, rsa.RSAPrivateKey):
        signature = private_key.sign(
            nonce,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH),
            hashes.SHA256(),
        )
        return signature
    raise TypeError(f"x509pop: unsupported key type {type(private_key).__name__}")


def _verify_challenge(certificate: x509.Certificate, nonce: bytes, signature: bytes) -> None:
    public_key = certificate.public_key()
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, nonce, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(
                signature,
                nonce,
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO),
                hashes.SHA256(),
            )
        else:
            raise AttestationError(f"x509pop: unsupported key type {type(public_key).__name__}")
    except InvalidSignature:
        raise AttestationError(
            "x509pop: the challenge response is not a signature by the certificate's key"
        ) from None


def encode_payload(chain: Sequence[x509.Certificate]) -> bytes:
    """The agent's attestation payload: its chain, leaf first, as base64 DER in JSON."""
    import base64

    from cryptography.hazmat.primitives import serialization

    return json.dumps(
        {
            "certificates": [
                base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain
            ]
        }
    ).encode()


def _decode_payload(payload: bytes) -> list[x509.Certificate]:
    import base64
    import binascii

    try:
        document = json.loads(payload)
        certificates = [
            x509.load_der_x509_certificate(base64.b64decode(item, validate=True))
            for item in document["certificates"]
        ]
    except (ValueError, KeyError, TypeError, binascii.Error) as error:
        raise AttestationError(
            f"x509pop: malformed attestation data ({error}); expected "
            '{"certificates": [base64 DER, leaf first]}',
            permission_denied=False,
        ) from None
    if not certificates or len(certificates) > MAX_CHAIN_LENGTH:
        raise AttestationError(
            f"x509pop: expected 1 to {MAX_CHAIN_LENGTH} certificates, got {len(certificates)}",
            permission_denied=False,
        )
    return certificates


class X509PopAttestor:
    name = "x509pop"

    def __init__(self, plugin_data: Mapping[str, Any], context: AttestorContext) -> None:
        self._context = context
        paths = plugin_data.get("ca_bundle_paths") or []
        if isinstance(paths, str):
            paths = [paths]
        single = plugin_data.get("ca_bundle_path")
        if single:
            paths = [single, *paths]
        if not paths:
            raise ValueError(
                'NodeAttestor "x509pop": ca_bundle_path is required; point it at a PEM file '
                "of the CA certificates that issue node certificates"
            )
        self._roots = load_certificates(paths)
        self._template = plugin_data.get("agent_path_template") or ""

    async def attest(self, payload: bytes, challenge: Challenger) -> AttestationResult:
        chain = _decode_payload(payload)
        now = self._context.now()
        cas = verify_chain(chain, self._roots, now)
        leaf = chain[0]
        nonce = os.urandom(NONCE_BYTES)
        response = await challenge(nonce)
        _verify_challenge(leaf, nonce, response)

        leaf_fingerprint = fingerprint(leaf)
        segments = self._agent_path(leaf, leaf_fingerprint)
        try:
            spiffe_id = agent_id(self._context.trust_domain, *segments)
        except SpiffeError as error:
            raise AttestationError(f"x509pop: cannot form the agent ID: {error}") from None
        selectors = [Selector("x509pop", f"serialnumber:{leaf.serial_number:x}")]
        common_names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if common_names:
            selectors.append(Selector("x509pop", f"subject:cn:{common_names[0].value!s}"))
        selectors.extend(Selector("x509pop", f"ca:fingerprint:{fingerprint(ca)}") for ca in cas)
        return AttestationResult(
            agent_id=spiffe_id,
            selectors=tuple(selectors),
            reattestable=True,
            details={"fingerprint": leaf_fingerprint},
        )

    def _agent_path(self, leaf: x509.Certificate, leaf_fingerprint: str) -> list[str]:
        if not self._template:
            return ["x509pop", leaf_fingerprint]
        common_names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        values = {
            "PluginName": "x509pop",
            "Fingerprint": leaf_fingerprint,
            "Subject.CommonName": str(common_names[0].value) if common_names else "",
            "SerialNumberHex": f"{leaf.serial_number:x}",
        }
        path = self._template
        for key, value in values.items():
            path = path.replace("{{ ." + key + " }}", value).replace("{{." + key + "}}", value)
        return [segment for segment in path.strip("/").split("/") if segment]
