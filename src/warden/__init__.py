"""Warden: a control plane for non-human identities."""

__version__ = "0.1.0"
