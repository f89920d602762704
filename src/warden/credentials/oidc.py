"""OIDC discovery for cloud federation: the issuer, the discovery document and the JWKS.

Cloud providers (AWS IAM, GCP workload identity federation, Azure federated credentials)
fetch `<issuer>/.well-known/openid-configuration`, then its `jwks_uri`, and verify the
tokens Warden issues with those keys. Their limits shape what is published:

- the issuer is an `https://` URL without port, query or fragment, byte-equal to every
  token's `iss`, whatever address a request came to;
- AWS reads at most 100 keys from the JWKS, and GCP rejects keys that carry `x5c` or `x5t`;
- every key has a `kid` and `use: "sig"`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/keys"
TOKEN_PATH = "/v1/token"  # noqa: S105 - a URL path
#: AWS IAM reads at most this many keys from an OIDC provider's JWKS.
MAX_JWKS_KEYS = 100
# JWK members that point at or carry certificates; GCP rejects keys with x5c or x5t.
_CERTIFICATE_MEMBERS = ("x5c", "x5t", "x5t#S256", "x5u")
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105
# A host name as TLS certificates name it (RFC 1123 labels), and a path segment of RFC 3986.
_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
_PATH_SEGMENT = re.compile(r"([A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})+")


def validate_issuer(issuer: str) -> str:
    """Return `issuer` when cloud providers accept it as an OIDC issuer; else raise ValueError.

    It must be `https://host[/path]`: no port, query, fragment, user info or trailing slash,
    because providers compare it byte for byte with each token's `iss`.
    """
    parts = urlsplit(issuer)
    segments = parts.path.split("/")[1:]
    problem = ""
    if parts.scheme != "https":
        problem = "it must start with https://"
    elif any(not "!" <= character <= "~" for character in issuer):
        # urlsplit drops tabs and newlines silently, so the raw text is checked.
        problem = (
            "it contains a space, a control or a non-ASCII character; write it in ASCII, "
            "with %-escapes in the path"
        )
    elif not parts.hostname:
        problem = "it has no host name"
    elif parts.port is not None or parts.netloc.endswith(":"):
        problem = "it must not contain a port"
    elif parts.query or "?" in issuer:
        problem = "it must not contain a query"
    elif parts.fragment or "#" in issuer:
        problem = "it must not contain a fragment"
    elif parts.username is not None or "@" in parts.netloc:
        problem = "it must not contain user information"
    elif issuer.endswith("/"):
        problem = "remove the trailing '/', because providers compare it byte for byte with iss"
    elif parts.netloc != parts.netloc.lower():
        problem = "write the host name in lowercase"
    elif not _HOST_NAME.fullmatch(parts.netloc):
        problem = "the host must be a DNS name of letters, digits, '-' and '.'"
    elif any(
        segment in ("", ".", "..") or not _PATH_SEGMENT.fullmatch(segment) for segment in segments
    ):
        problem = (
            "its path must not contain empty, '.' or '..' segments or characters a URL escapes"
        )
    if problem:
        raise ValueError(
            f"invalid jwt_issuer {issuer!r} for OIDC federation: {problem}; set server.jwt_issuer "
            "to the public https:// URL of the HTTP API, such as https://oidc.example.org"
        )
    return issuer


def issuer_path(issuer: str) -> str:
    """Return the path part of the issuer (`""` for `https://oidc.example.org`)."""
    return urlsplit(issuer).path.rstrip("/")


def discovery_document(issuer: str, algorithms: Iterable[str]) -> dict[str, Any]:
    """Return the OpenID Provider metadata for `issuer`.

    `id_token_signing_alg_values_supported` always includes RS256, as OpenID Connect
    Discovery 1.0 requires, followed by the other algorithms of the published keys.
    """
    signing = ["RS256", *sorted(set(algorithms) - {"RS256"})]
    return {
        "issuer": issuer,
        "jwks_uri": issuer + JWKS_PATH,
        "token_endpoint": issuer + TOKEN_PATH,
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": signing,
        "grant_types_supported": [TOKEN_EXCHANGE_GRANT],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "jti", "act"],
    }


def public_jwks(jwks: Mapping[str, Any]) -> dict[str, Any]:
    """Return the federation keys as cloud providers accept them.

    Each key keeps its `kid`, gets `use: "sig"` and loses certificate members. When more than
    100 keys are live, the last 100 are kept and the rest dropped with a warning.
    """
    keys = []
    for key in jwks.get("keys", []):
        if not isinstance(key, Mapping) or not key.get("kid"):
            log.warning("federation key without kid left out of the JWKS")
            continue
        cleaned = {name: value for name, value in key.items() if name not in _CERTIFICATE_MEMBERS}
        cleaned["use"] = "sig"
        keys.append(cleaned)
    if len(keys) > MAX_JWKS_KEYS:
        # NOTE: keys are listed in the order the servers published them, oldest first, so the
        # newest are kept; a token signed with a dropped key no longer verifies. This happens
        # only with more than about 30 servers sharing one datastore.
        log.warning(
            "more federation keys than cloud providers read; the oldest are left out",
            extra={"count": len(keys), "maximum": MAX_JWKS_KEYS},
        )
        keys = keys[-MAX_JWKS_KEYS:]
    return {"keys": keys}


def key_algorithms(jwks: Mapping[str, Any]) -> list[str]:
    """Return the `alg` of each key of a JWK Set, in order, without repeats."""
    seen: dict[str, None] = {}
    for key in jwks.get("keys", []):
        algorithm = key.get("alg") if isinstance(key, Mapping) else None
        if isinstance(algorithm, str):
            seen.setdefault(algorithm)
    return list(seen)
