"""The `warden` command: one Typer application with a sub-application per family."""

from __future__ import annotations

import typer

from warden import __version__

app = typer.Typer(
    name="warden",
    help="Warden: SPIFFE identities, ephemeral credentials and governance for non-human identities.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def root() -> None:
    """Warden: SPIFFE identities, ephemeral credentials and governance for non-human identities."""


@app.command("version")
def version() -> None:
    """Print Warden's version."""
    typer.echo(__version__)


def main() -> None:
    app()
