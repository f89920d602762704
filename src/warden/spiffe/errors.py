"""Errors raised by the SPIFFE core. Every message names the rejected value."""

from __future__ import annotations


class SpiffeError(ValueError):
    """Base class of the SPIFFE core's validation errors."""


class InvalidTrustDomainError(SpiffeError):
    """A trust domain name breaks the SPIFFE ID standard."""


class InvalidSpiffeIdError(SpiffeError):
    """A SPIFFE ID breaks the SPIFFE ID standard."""


class InvalidSelectorError(SpiffeError):
    """A selector is not of the form `type:value`."""
