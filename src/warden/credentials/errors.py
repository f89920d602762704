"""Errors of the credential brokers.

`ExchangeError` carries an OAuth 2.0 error code (RFC 6749 section 5.2, RFC 8693 section
2.2.2), which the HTTP layer returns as `error`. The lease errors each map to one HTTP
status, named in their docstrings.
"""

from __future__ import annotations


class CredentialError(Exception):
    """Base class of the credential brokers' errors."""


class ExchangeError(CredentialError):
    """A token exchange request was rejected; no token was issued.

    `error` is the OAuth error code (`invalid_request`, `invalid_target`, ...) and
    `description` the human-readable `error_description`. `subject` and `actor` are the
    verified SPIFFE IDs when the rejection came after their tokens were validated, for the
    audit record.
    """

    def __init__(self, error: str, description: str, *, subject: str = "", actor: str = "") -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.subject = subject
        self.actor = actor


class LeaseError(CredentialError):
    """A lease operation failed: HTTP 400 unless a subclass sets another status."""

    status = 400


class NotAuthorized(LeaseError):
    """The caller may not do this (HTTP 403)."""

    status = 403


class NotFoundError(LeaseError):
    """The role, connection or lease does not exist (HTTP 404)."""

    status = 404


class LeaseBusy(LeaseError):
    """Another server is revoking the lease right now (HTTP 409)."""

    status = 409


class BackendError(LeaseError):
    """The database server refused or failed a statement (HTTP 502)."""

    status = 502


class BackendUnavailable(LeaseError):
    """The database server could not be reached (HTTP 503)."""

    status = 503
