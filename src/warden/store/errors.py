"""Errors raised by the datastore.

Each class maps to one gRPC status code, so the server can translate without inspecting
messages: NotFound -> NOT_FOUND, AlreadyExists -> ALREADY_EXISTS, InvalidInput and its
subclasses -> INVALID_ARGUMENT, RevisionConflict -> ABORTED, TokenInvalid and AgentBanned ->
PERMISSION_DENIED, DatabaseUnavailable -> UNAVAILABLE. Every message names the value that
failed and says what to do next.
"""

from __future__ import annotations

import enum


class StoreError(Exception):
    """Base class of the datastore's errors."""


class NotFound(StoreError):
    """The requested row does not exist."""


class AlreadyExists(StoreError):
    """A row with the same identity, or a similar registration entry, already exists."""

    def __init__(self, message: str, existing_id: str | None = None) -> None:
        super().__init__(message)
        self.existing_id = existing_id


class InvalidInput(StoreError, ValueError):
    """A value passed to the datastore breaks a rule; nothing was written."""


class InvalidEntry(InvalidInput):
    """A registration entry breaks a rule; nothing was written."""


class RevisionConflict(StoreError):
    """An update named a revision that is no longer the entry's current one."""


class AgentBanned(StoreError):
    """A banned agent tried to attest again."""


class SchemaError(StoreError):
    """The database schema cannot be used or upgraded by this version of Warden."""


class DatabaseUnavailable(StoreError):
    """The database could not be reached or refused the connection."""


class TokenProblem(enum.StrEnum):
    """Why a join token was rejected."""

    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"


class TokenInvalid(StoreError):
    """A join token was rejected; `reason` says whether it is unknown, used or expired."""

    def __init__(self, message: str, reason: TokenProblem) -> None:
        super().__init__(message)
        self.reason = reason
