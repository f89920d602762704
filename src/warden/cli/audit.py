"""Commands of the audit family (not written yet)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this family's commands to `app`."""
