"""The `warden` command: one Typer application, with the commands of each family
registered from their own module.

Command modules import heavy libraries (gRPC, DuckDB, scikit-learn) inside the command
functions, so that `warden --help` and small commands start fast.
"""

from __future__ import annotations

import importlib

import typer

from warden import __version__

app = typer.Typer(
    name="warden",
    help="Warden: SPIFFE identities, ephemeral credentials and governance for non-human identities.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Each module defines `register(app)`, which adds its commands or sub-applications.
COMMAND_MODULES = (
    "warden.cli.server",
    "warden.cli.agent",
    "warden.cli.workload",
    "warden.cli.credentials",
    "warden.cli.audit",
    "warden.cli.detect",
    "warden.cli.scan",
)


@app.callback()
def root() -> None:
    """Warden: SPIFFE identities, ephemeral credentials and governance for non-human identities."""


@app.command("version")
def version() -> None:
    """Print Warden's version."""
    typer.echo(__version__)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(app)


_register_all()


def main() -> None:
    app()
