"""Helpers shared by the command modules: output, errors, durations and time formats."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

console = Console(highlight=False, soft_wrap=True)
error_console = Console(stderr=True, highlight=False, soft_wrap=True)

OUTPUT_FORMATS = ("pretty", "json")


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `message` on standard error and exit with `code`."""
    error_console.print(f"[bold red]Error:[/] {escape(printable(message))}", markup=True)
    raise typer.Exit(code)


def check_output_format(value: str) -> str:
    if value not in OUTPUT_FORMATS:
        fail(f"invalid -output {value!r}: use 'pretty' or 'json'")
    return value


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False, default=str) + "\n")


def parse_ttl(value: str, flag: str) -> int:
    """Seconds from `value`, written as an integer of seconds (as SPIRE) or a duration ("1h")."""
    if value == "":
        return 0
    try:
        seconds = int(value)
    except ValueError:
        from warden.config.duration import DurationError, parse_duration

        try:
            seconds = int(parse_duration(value).total_seconds())
        except DurationError as error:
            fail(f"invalid {flag} {value!r}: {error}; write seconds (3600) or a duration (1h)")
    if seconds < 0:
        fail(f"invalid {flag} {value!r}: must not be negative")
    return seconds


def format_time(seconds: int) -> str:
    if not seconds:
        return ""
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_ttl(seconds: int) -> str:
    return "default" if not seconds else f"{seconds}s"


def printable(value: object) -> str:
    """`value` as text with control characters shown as escapes, so that a stored string
    cannot move the cursor, retitle the terminal or hide text."""
    text = "" if value is None else str(value)
    return "".join(
        f"\\x{ord(character):02x}"
        if (ord(character) < 0x20 and character != "\n") or 0x7F <= ord(character) < 0xA0
        else character
        for character in text
    )


def cell(value: object) -> Text:
    """A table cell that shows stored text as it is: no Rich markup, no control characters."""
    return Text(printable(value))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    result = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        result.add_column(column, overflow="fold")
    for row in rows:
        result.add_row(*(cell(value) for value in row))
    return result


def say(template: str, *values: object) -> None:
    """Print `template` (Rich markup) with `values` inserted as plain, escaped text."""
    console.print(template.format(*(escape(printable(value)) for value in values)))


def operating_system_user() -> str:
    """The name of the user running the CLI, the default owner of what it creates."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        import os

        return f"uid-{os.getuid()}"
