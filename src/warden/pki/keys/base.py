"""Key types and the `KeyManager` interface that every key manager implements."""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from warden.pki.errors import KeyManagerError

#: Private keys the key managers hold.
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

# Key ids double as file names in the disk key manager, so they are restricted to
# characters that are safe in a file name and cannot climb out of the directory.
_KEY_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class KeyType(StrEnum):
    """A key algorithm and size, named as in SPIRE's configuration."""

    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    RSA_2048 = "rsa-2048"
    RSA_4096 = "rsa-4096"

    @classmethod
    def parse(cls, text: str) -> KeyType:
        """Parse a configured key type such as `ec-p256`, case-insensitively."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            choices = ", ".join(member.value for member in cls)
            raise KeyManagerError(f"invalid key type {text!r}: use one of {choices}") from None

    @classmethod
    def of(cls, key: PrivateKey) -> KeyType:
        """Return the type of an existing key, or raise KeyManagerError for other keys."""
        if isinstance(key, ec.EllipticCurvePrivateKey):
            by_curve = {"secp256r1": cls.EC_P256, "secp384r1": cls.EC_P384}
            if key.curve.name in by_curve:
                return by_curve[key.curve.name]
        elif isinstance(key, rsa.RSAPrivateKey):
            by_size = {2048: cls.RSA_2048, 4096: cls.RSA_4096}
            if key.key_size in by_size:
                return by_size[key.key_size]
        raise KeyManagerError(f"unsupported key {type(key).__name__}; use one of {list(cls)}")

    def generate(self) -> PrivateKey:
        """Generate a new private key of this type."""
        if self is KeyType.EC_P256:
            return ec.generate_private_key(ec.SECP256R1())
        if self is KeyType.EC_P384:
            return ec.generate_private_key(ec.SECP384R1())
        size = 2048 if self is KeyType.RSA_2048 else 4096
        return rsa.generate_private_key(public_exponent=65537, key_size=size)


def check_key_id(key_id: str) -> str:
    """Return `key_id` when it is a valid key id, else raise KeyManagerError."""
    if not isinstance(key_id, str) or not _KEY_ID_RE.fullmatch(key_id):
        raise KeyManagerError(
            f"invalid key id {key_id!r}: use 1 to 128 of A-Z, a-z, 0-9, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return key_id


def fingerprint(key: PrivateKey) -> str:
    """Return the SHA-256 of the public key's SubjectPublicKeyInfo, as 16 hex digits.

    This is what logs show in place of a key.
    """
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


class KeyManager(Protocol):
    """Stores the private keys of the CA under string key ids.

    Implementations are safe to call from several threads. `generate_key` replaces any key
    stored under the same id, as SPIRE's key managers do.

    NOTE: keys are returned as cryptography private key objects, which the certificate
    builder and PyJWT sign with directly. A manager whose keys never leave a device
    (PKCS#11, a cloud KMS) has yet to show that it can hand out such objects.
    """

    def generate_key(self, key_id: str, key_type: KeyType) -> PrivateKey:
        """Generate a key of `key_type`, store it under `key_id` and return it."""
        ...

    def get_key(self, key_id: str) -> PrivateKey:
        """Return the key stored under `key_id`; raise KeyNotFoundError when there is none."""
        ...

    def list_keys(self) -> list[str]:
        """Return the ids of the stored keys, sorted."""
        ...

    def delete_key(self, key_id: str) -> bool:
        """Delete the key under `key_id`; return False when there was none."""
        ...
