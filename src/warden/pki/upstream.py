"""Upstream authorities: an operator's CA that signs the server's CA as an intermediate.

With an upstream authority, the server's CA certificate is signed by the operator's CA
instead of by itself, the trust bundle contains the operator's roots (not the server's CA), and
every X509-SVID chain carries the server's CA and any certificates between it and a root.
Each upstream authority is one class registered by name in `UPSTREAM_AUTHORITIES`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from warden.pki.errors import UpstreamAuthorityError
from warden.spiffe import X509CA, SpiffeError, TrustDomain, build_intermediate_ca
from warden.spiffe._x509 import CertifiedKey, SigningKey
from warden.spiffe.x509ca import check_signing_certificate, is_self_signed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpstreamSignedCA:
    """A CA certificate signed upstream, with the certificates that link it to a root.

    `upstream_chain` lists the certificates between the new CA and a root, nearest first,
    without the root. `roots` are the upstream roots that go into the trust bundle.
    """

    certificate: x509.Certificate
    upstream_chain: tuple[x509.Certificate, ...]
    roots: tuple[x509.Certificate, ...]


class UpstreamAuthority(Protocol):
    """Signs the server's CA certificates."""

    def mint_x509_ca(
        self,
        public_key: CertifiedKey,
        trust_domain: TrustDomain,
        ttl: timedelta,
        now: datetime,
        subject: x509.Name | None = None,
    ) -> UpstreamSignedCA:
        """Sign a CA certificate for `public_key`, valid from `now` for at most `ttl`."""
        ...


def _read(path: Path, setting: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise UpstreamAuthorityError(
            f'UpstreamAuthority "disk": cannot read {setting} {path}: {error.strerror}'
        ) from None


def _certificates(path: Path, setting: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(_read(path, setting))
    except ValueError as error:
        raise UpstreamAuthorityError(
            f'UpstreamAuthority "disk": {setting} {path} contains no valid PEM certificate: {error}'
        ) from None
    return certificates


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


class DiskUpstreamAuthority:
    """The operator's CA certificate and key read from files, as SPIRE's `disk` plugin does.

    `cert_file_path` contains the upstream CA certificate first, then any intermediates up to
    the roots. `bundle_file_path` contains the roots; it may be omitted when the upstream CA
    certificate is itself self-signed. The files are read again at every signing, so an
    operator who replaces them is picked up at the next CA rotation.
    """

    name = "disk"

    def __init__(
        self,
        cert_file_path: str | os.PathLike[str],
        key_file_path: str | os.PathLike[str],
        bundle_file_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.cert_file_path = Path(cert_file_path)
        self.key_file_path = Path(key_file_path)
        self.bundle_file_path = Path(bundle_file_path) if bundle_file_path else None

    def load(self, now: datetime) -> tuple[X509CA, tuple[x509.Certificate, ...]]:
        """Read and check the files; return the upstream CA and the roots."""
        certificates = _certificates(self.cert_file_path, "cert_file_path")
        try:
            key = serialization.load_pem_private_key(
                _read(self.key_file_path, "key_file_path"), password=None
            )
        except (ValueError, TypeError) as error:
            raise UpstreamAuthorityError(
                f'UpstreamAuthority "disk": key_file_path {self.key_file_path} is not an '
                f"unencrypted PEM private key: {error}"
            ) from None
        if not isinstance(key, SigningKey):
            raise UpstreamAuthorityError(
                f'UpstreamAuthority "disk": key_file_path {self.key_file_path} contains a '
                f"{type(key).__name__}; use an EC or RSA key"
            )

        upstream = certificates[0]
        if self.bundle_file_path is not None:
            roots = tuple(_certificates(self.bundle_file_path, "bundle_file_path"))
        elif is_self_signed(upstream) and len(certificates) == 1:
            roots = (upstream,)
        else:
            raise UpstreamAuthorityError(
                f'UpstreamAuthority "disk": the certificate in {self.cert_file_path} is not '
                "self-signed, so bundle_file_path must name the file of upstream roots"
            )

        # The chain from the upstream CA to a root must be complete and verify, or every
        # SVID signed below it would fail validation.
        chain = [c for c in certificates if c not in roots]
        linked = list(chain)
        for index, certificate in enumerate(linked):
            issuers = linked[index + 1 : index + 2] or list(roots)
            if not any(_issued_by(certificate, issuer) for issuer in issuers):
                raise UpstreamAuthorityError(
                    f'UpstreamAuthority "disk": certificate {index} of {self.cert_file_path} '
                    f"({certificate.subject.rfc4514_string()}) is not signed by the next "
                    "certificate or by a root of bundle_file_path; list the chain in order"
                )
        for certificate in (*chain, *roots):
            if certificate.not_valid_after_utc <= now:
                raise UpstreamAuthorityError(
                    f'UpstreamAuthority "disk": certificate '
                    f"{certificate.subject.rfc4514_string()} expired at "
                    f"{certificate.not_valid_after_utc.isoformat()}; renew the upstream CA"
                )
        try:
            check_signing_certificate(upstream)
            upstream_ca = X509CA(upstream, key, upstream_chain=tuple(chain[1:]))
        except SpiffeError as error:
            raise UpstreamAuthorityError(
                f'UpstreamAuthority "disk": {self.cert_file_path}: {error}'
            ) from None
        return upstream_ca, roots

    def mint_x509_ca(
        self,
        public_key: CertifiedKey,
        trust_domain: TrustDomain,
        ttl: timedelta,
        now: datetime,
        subject: x509.Name | None = None,
    ) -> UpstreamSignedCA:
        upstream_ca, roots = self.load(now)
        try:
            certificate = build_intermediate_ca(
                public_key, trust_domain, upstream_ca, now, ttl, subject
            )
        except SpiffeError as error:
            raise UpstreamAuthorityError(f'UpstreamAuthority "disk": {error}') from None
        # The upstream CA travels in SVID chains unless it is itself one of the roots.
        upstream_chain = tuple(
            c for c in (upstream_ca.certificate, *upstream_ca.upstream_chain) if c not in roots
        )
        log.info(
            "upstream authority signed a CA",
            extra={"trust_domain": str(trust_domain), "serial": f"{certificate.serial_number:x}"},
        )
        return UpstreamSignedCA(certificate, upstream_chain, roots)


def _open_disk(options: Mapping[str, Any]) -> UpstreamAuthority:
    unknown = set(options) - {"cert_file_path", "key_file_path", "bundle_file_path"}
    if unknown:
        raise UpstreamAuthorityError(
            f'UpstreamAuthority "disk" does not know {sorted(unknown)}; it takes '
            "cert_file_path, key_file_path and bundle_file_path"
        )
    missing = [name for name in ("cert_file_path", "key_file_path") if not options.get(name)]
    if missing:
        raise UpstreamAuthorityError(f'UpstreamAuthority "disk" needs {" and ".join(missing)}')
    return DiskUpstreamAuthority(
        options["cert_file_path"], options["key_file_path"], options.get("bundle_file_path")
    )


#: Upstream authorities by the name used in configuration files.
UPSTREAM_AUTHORITIES: dict[str, Callable[[Mapping[str, Any]], UpstreamAuthority]] = {
    "disk": _open_disk,
}


def open_upstream_authority(
    name: str, options: Mapping[str, Any] | None = None
) -> UpstreamAuthority:
    """Create the upstream authority registered as `name` with its `options`."""
    factory = UPSTREAM_AUTHORITIES.get(name)
    if factory is None:
        raise UpstreamAuthorityError(
            f"unknown UpstreamAuthority {name!r}: Warden supports "
            f"{', '.join(sorted(UPSTREAM_AUTHORITIES))}"
        )
    return factory(options or {})
