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


class X509SvidError(SpiffeError):
    """An X509-SVID, its chain or the request to build one breaks the X509-SVID standard."""


class JwtSvidError(SpiffeError):
    """A JWT-SVID is malformed, breaks the JWT-SVID standard or fails validation."""


class BundleError(SpiffeError):
    """A SPIFFE bundle is malformed or does not match its trust domain."""
