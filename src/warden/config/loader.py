"""Steps shared by the server's and the agent's loaders: read, expand, parse, report."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from warden.config.decode import DecodeContext
from warden.config.envexpand import Expansion, expand_env
from warden.config.errors import ConfigError, Diagnostic
from warden.config.hcl import Block, Entry, Value, parse_hcl

log = logging.getLogger("warden.config")


def read_text(path: Path) -> str:
    """Read a configuration file, raising ConfigError with the reason when it cannot be read."""
    file = str(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError.single(
            file, None, "", "file not found; pass the path of your configuration with -config"
        ) from None
    except IsADirectoryError:
        raise ConfigError.single(
            file, None, "", "is a directory, not a configuration file"
        ) from None
    except PermissionError:
        raise ConfigError.single(
            file, None, "", "permission denied; run as a user that can read the file"
        ) from None
    except UnicodeDecodeError as error:
        raise ConfigError.single(
            file, None, "", f"not UTF-8 text (invalid byte at offset {error.start})"
        ) from None
    except OSError as error:
        raise ConfigError.single(
            file, None, "", f"cannot read the file: {error.strerror or error}"
        ) from None


def parse_text(text: str, file: str, base_dir: Path, expand: bool) -> tuple[Block, DecodeContext]:
    """Expand environment variables when asked, parse, and start a decoding context.

    Lines in diagnostics refer to the file as written, before expansion.
    """
    context = DecodeContext(file=file, base_dir=base_dir)
    expansion: Expansion | None = None
    if expand:
        expansion = expand_env(text)
        text = expansion.text
        for name, line in expansion.unset:
            context.warn(
                line, "", f"environment variable {name} is not set; it expands to an empty string"
            )
    try:
        block = parse_hcl(text, file)
    except ConfigError as error:
        if expansion is None:
            raise
        raise ConfigError(
            replace(problem, line=expansion.original_line(problem.line) if problem.line else None)
            for problem in error.problems
        ) from None
    if expansion is not None and expansion.original_lines != tuple(
        range(1, len(expansion.original_lines) + 1)
    ):
        block = _remap_lines(block, expansion)
    return block, context


def _remap_lines(block: Block, expansion: Expansion) -> Block:
    remapped = Block(expansion.original_line(block.line))
    for entry in block.entries:
        node: Block | Value
        if isinstance(entry.node, Block):
            node = _remap_lines(entry.node, expansion)
        else:
            node = Value(entry.node.value, expansion.original_line(entry.node.line))
        remapped.entries.append(Entry(entry.key, expansion.original_line(entry.line), node))
    return remapped


def single_block(root: Block, key: str, context: DecodeContext) -> Block | None:
    """Return the one top-level block `key`, recording a problem when it is repeated or a value."""
    entries = root.get_all(key)
    if not entries:
        return None
    if len(entries) > 1:
        lines = ", ".join(str(entry.line) for entry in entries)
        context.problem(
            entries[1].line,
            key,
            f"block written more than once (lines {lines}); merge them into one",
        )
        return None
    node = entries[0].node
    if not isinstance(node, Block):
        context.problem(entries[0].line, key, f"expected a block: {key} {{ ... }}")
        return None
    return node


def raise_if_problems(context: DecodeContext) -> None:
    if context.problems:
        raise ConfigError(context.problems)


def log_diagnostics(warnings: Iterable[Diagnostic], logger: logging.Logger | None = None) -> None:
    """Log each warning through the `warden.config` logger (or `logger`)."""
    target = logger or log
    for warning in warnings:
        target.warning("configuration warning: %s", warning, extra={"path": warning.file})
