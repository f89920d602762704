"""SPIFFE IDs and trust domains as value types that validate on construction.

The rules follow the SPIFFE ID standard (spiffe/spiffe, standards/SPIFFE-ID.md):
`spiffe://<trust-domain>/<path>` with no query, fragment, userinfo or port; a trust domain of
lowercase letters, digits, `.`, `-` and `_`; path segments of letters, digits, `.`, `-` and
`_`, none of them empty, `.` or `..`. Code that holds a `SpiffeId` never checks it again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from warden.spiffe.errors import InvalidSpiffeIdError, InvalidTrustDomainError

SCHEME = "spiffe"
SCHEME_PREFIX = "spiffe://"

#: Maximum length in bytes of a trust domain name.
MAX_TRUST_DOMAIN_BYTES = 255
#: Maximum length in bytes of a whole SPIFFE ID that Warden accepts and generates.
MAX_SPIFFE_ID_BYTES = 2048

_TRUST_DOMAIN_RE = re.compile(r"[a-z0-9._-]+")
_SEGMENT_RE = re.compile(r"[a-zA-Z0-9._-]+")


def _trust_domain_problem(name: str) -> str | None:
    """Return why `name` is not a valid trust domain name, or None when it is."""
    if not name:
        return "the trust domain is empty"
    if len(name.encode()) > MAX_TRUST_DOMAIN_BYTES:
        return f"the trust domain is longer than {MAX_TRUST_DOMAIN_BYTES} bytes"
    if "%" in name:
        return "the trust domain contains percent-encoding"
    if ":" in name:
        return "the trust domain contains a port or userinfo (':' is not allowed)"
    if "@" in name:
        return "the trust domain contains userinfo ('@' is not allowed)"
    if name.lower() != name and _TRUST_DOMAIN_RE.fullmatch(name.lower()):
        return "the trust domain contains uppercase letters; write it in lowercase"
    if not _TRUST_DOMAIN_RE.fullmatch(name):
        bad = next(ch for ch in name if not _TRUST_DOMAIN_RE.fullmatch(ch))
        return f"the trust domain contains {bad!r}; only a-z, 0-9, '.', '-' and '_' are allowed"
    return None


def _path_problem(path: str) -> str | None:
    """Return why `path` is not a valid SPIFFE ID path, or None when it is.

    The empty path is valid (the ID of the trust domain itself). Any other path starts with
    `/` and has no empty, `.` or `..` segment and no trailing `/`.
    """
    if path == "":
        return None
    if not path.startswith("/"):
        return "the path does not start with '/'"
    if path.endswith("/"):
        return "the path ends with '/'"
    for segment in path[1:].split("/"):
        if segment == "":
            return "the path contains an empty segment ('//')"
        if segment in (".", ".."):
            return f"the path contains a {segment!r} segment"
        if "%" in segment:
            return "the path contains percent-encoding"
        if not _SEGMENT_RE.fullmatch(segment):
            bad = next(ch for ch in segment if not _SEGMENT_RE.fullmatch(ch))
            return (
                f"the path contains {bad!r}; only a-z, A-Z, 0-9, '.', '-' and '_' "
                "are allowed in segments"
            )
    return None


@dataclass(frozen=True, slots=True, order=True)
class TrustDomain:
    """A SPIFFE trust domain name such as `example.org`."""

    name: str

    def __post_init__(self) -> None:
        problem = _trust_domain_problem(self.name)
        if problem is not None:
            raise InvalidTrustDomainError(f"invalid trust domain {self.name!r}: {problem}")

    @classmethod
    def parse(cls, text: str) -> TrustDomain:
        """Parse a trust domain given as a bare name or as a `spiffe://` ID of the domain."""
        if text.startswith(SCHEME_PREFIX) or text.lower().startswith(SCHEME_PREFIX):
            spiffe_id = SpiffeId.parse(text)
            if spiffe_id.path:
                raise InvalidTrustDomainError(
                    f"invalid trust domain {text!r}: a trust domain has no path; "
                    f"use {spiffe_id.trust_domain.name!r}"
                )
            return spiffe_id.trust_domain
        return cls(text)

    @property
    def id(self) -> SpiffeId:
        """The SPIFFE ID of the trust domain itself, `spiffe://<name>`."""
        return SpiffeId(self, "")

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True, order=True)
class SpiffeId:
    """A validated SPIFFE ID. `str()` gives its canonical form."""

    trust_domain: TrustDomain
    path: str = ""

    def __post_init__(self) -> None:
        problem = _path_problem(self.path)
        if problem is not None:
            raise InvalidSpiffeIdError(
                f"invalid SPIFFE ID path {self.path!r} in trust domain "
                f"{self.trust_domain.name!r}: {problem}"
            )
        length = len(SCHEME_PREFIX) + len(self.trust_domain.name.encode()) + len(self.path.encode())
        if length > MAX_SPIFFE_ID_BYTES:
            raise InvalidSpiffeIdError(
                f"invalid SPIFFE ID spiffe://{self.trust_domain.name}{self.path[:40]}...: "
                f"it is {length} bytes long; the maximum is {MAX_SPIFFE_ID_BYTES}"
            )

    @classmethod
    def parse(cls, text: str) -> SpiffeId:
        """Parse `spiffe://<trust-domain>[/<path>]`, rejecting anything the standard forbids."""
        if not isinstance(text, str):
            raise InvalidSpiffeIdError(f"invalid SPIFFE ID {text!r}: expected a string")
        if not text:
            raise InvalidSpiffeIdError("invalid SPIFFE ID '': it is empty")
        if len(text.encode()) > MAX_SPIFFE_ID_BYTES:
            raise InvalidSpiffeIdError(
                f"invalid SPIFFE ID {text[:60]!r}...: it is longer than {MAX_SPIFFE_ID_BYTES} bytes"
            )
        if not text.startswith(SCHEME_PREFIX):
            if text.lower().startswith(SCHEME_PREFIX):
                reason = "the scheme must be written in lowercase as 'spiffe://'"
            elif "://" in text:
                reason = f"the scheme is {text.split('://', 1)[0]!r}; it must be 'spiffe'"
            else:
                reason = "it does not start with 'spiffe://'"
            raise InvalidSpiffeIdError(f"invalid SPIFFE ID {text!r}: {reason}")
        rest = text[len(SCHEME_PREFIX) :]
        if "?" in rest:
            raise InvalidSpiffeIdError(f"invalid SPIFFE ID {text!r}: a query is not allowed")
        if "#" in rest:
            raise InvalidSpiffeIdError(f"invalid SPIFFE ID {text!r}: a fragment is not allowed")
        name, slash, path = rest.partition("/")
        problem = _trust_domain_problem(name)
        if problem is not None:
            raise InvalidSpiffeIdError(f"invalid SPIFFE ID {text!r}: {problem}")
        try:
            return cls(TrustDomain(name), slash + path)
        except InvalidSpiffeIdError:
            problem = _path_problem(slash + path)
            raise InvalidSpiffeIdError(f"invalid SPIFFE ID {text!r}: {problem}") from None

    @classmethod
    def from_segments(cls, trust_domain: TrustDomain | str, *segments: str) -> SpiffeId:
        """Build an ID from a trust domain and path segments, each validated on its own."""
        domain = (
            trust_domain if isinstance(trust_domain, TrustDomain) else TrustDomain(trust_domain)
        )
        for segment in segments:
            if "/" in segment:
                raise InvalidSpiffeIdError(
                    f"invalid SPIFFE ID path segment {segment!r}: it contains '/'; "
                    "pass each segment separately"
                )
        return cls(domain, "".join("/" + segment for segment in segments))

    @property
    def segments(self) -> tuple[str, ...]:
        """The path split into its segments; empty for the trust domain's own ID."""
        return tuple(self.path[1:].split("/")) if self.path else ()

    def is_member_of(self, trust_domain: TrustDomain) -> bool:
        """Tell whether this ID belongs to `trust_domain`."""
        return self.trust_domain == trust_domain

    def __str__(self) -> str:
        return f"{SCHEME_PREFIX}{self.trust_domain.name}{self.path}"
