"""Building the server's CA (`warden.pki.CertificateAuthority`) from its options."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from warden.pki.ca import CASettings, CertificateAuthority
from warden.pki.keys import KeyType, open_key_manager
from warden.pki.upstream import open_upstream_authority
from warden.server.options import ServerOptions


def ca_subject(fields: dict[str, str]) -> x509.Name | None:
    """Build the CA subject from `ca_subject { country organization common_name }`."""
    attributes = []
    for country in filter(None, fields.get("country", "").split(",")):
        attributes.append(x509.NameAttribute(NameOID.COUNTRY_NAME, country))
    for organization in filter(None, fields.get("organization", "").split(",")):
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    if fields.get("common_name"):
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, fields["common_name"]))
    return x509.Name(attributes) if attributes else None


def key_directory(options: ServerOptions) -> Path:
    """Return the directory where the disk key manager keeps the CA's keys.

    SPIRE's `keys_path` names one JSON file; Warden keeps one PEM file (0600) per key in a
    directory, so a `keys_path` ending in `.json` becomes the directory beside it without the
    suffix (`keys.json` -> `keys/`).
    """
    if options.keys_path is None:
        return options.data_dir / "keys"
    if options.keys_path.suffix == ".json":
        return options.keys_path.with_suffix("")
    return options.keys_path


def start_authority(
    options: ServerOptions, server_id: str, datastore: Any, clock: Callable[[], datetime]
) -> CertificateAuthority:
    """Create the CA, resume it from its journal (or create its keys), and publish it."""
    if options.key_manager == "memory":
        key_manager = open_key_manager("memory")
    else:
        key_manager = open_key_manager("disk", {"directory": key_directory(options)})
    upstream = None
    if options.upstream is not None:
        upstream = open_upstream_authority(
            "disk",
            {
                "cert_file_path": options.upstream.cert_file_path,
                "key_file_path": options.upstream.key_file_path,
                "bundle_file_path": options.upstream.bundle_file_path,
            },
        )
    settings = CASettings(
        trust_domain=options.trust_domain,
        server_id=server_id,
        ca_ttl=options.ca_ttl,
        x509_svid_ttl=options.default_x509_svid_ttl,
        jwt_svid_ttl=options.default_jwt_svid_ttl,
        ca_key_type=KeyType.parse(options.ca_key_type),
        jwt_key_type=KeyType.parse(options.jwt_key_type),
        federation_key_type=KeyType.parse(options.federation_key_type),
        ca_subject=ca_subject(options.ca_subject),
        jwt_issuer=options.jwt_issuer or None,
    )
    authority = CertificateAuthority(settings, key_manager, datastore, datastore, upstream)
    authority.start(clock())
    return authority
