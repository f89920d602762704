"""Errors raised by the key managers, the upstream authorities and the CA."""

from __future__ import annotations


class PkiError(Exception):
    """Base class of the PKI errors."""


class KeyManagerError(PkiError):
    """A key manager failed to generate, store, load or delete a key."""


class KeyNotFoundError(KeyManagerError):
    """No key exists under the requested key id."""


class UpstreamAuthorityError(PkiError):
    """The upstream authority's files are missing or invalid, or it failed to sign."""


class JournalError(PkiError):
    """The CA journal cannot be decoded."""


class CAError(PkiError):
    """The CA cannot sign, start or rotate."""
