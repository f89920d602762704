"""The `plugins { Kind "name" { plugin_data { ... } } }` block, and the tables of plugins.

Warden runs built-in plugins only. Each plugin is registered by kind and name with the
model of its `plugin_data`, one line per plugin in the tables of `server_plugins` and
`agent_plugins`. Code elsewhere adds one with `register_plugin`. A plugin that SPIRE has and
Warden does not is an error that lists the supported ones, because silently running
without a configured security component is worse than not starting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import SecretStr

from warden.config.decode import DecodeContext, Section, decode_section, suggest
from warden.config.duration import format_duration
from warden.config.errors import ConfigError
from warden.config.hcl import Block, Entry, Value, parse_hcl
from warden.config.values import describe, go_bool


class PluginData(Section):
    """Base of the model of one plugin's `plugin_data` block."""

    def plain_settings(self) -> dict[str, Any]:
        """Return the settings as plain values, for a plugin that validates its own.

        Durations become Go duration strings, paths strings, and secrets their text, so the
        result contains credentials when the settings do: never log it.
        """
        return {name: _plain_value(getattr(self, name)) for name in type(self).model_fields}


def _plain_value(value: Any) -> Any:
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, tuple):
        return [_plain_value(item) for item in value]
    if isinstance(value, Section):
        return {name: _plain_value(getattr(value, name)) for name in type(value).model_fields}
    return value


D = TypeVar("D", bound=PluginData)


@dataclass(frozen=True, slots=True)
class PluginConfig(Generic[D]):
    """One configured plugin: its kind (`NodeAttestor`), name (`aws_iid`) and settings."""

    kind: str
    name: str
    data: D
    #: Line of the declaration, or None for a plugin that Warden added as a default.
    line: int | None = None


@dataclass
class PluginCatalog:
    """The plugins one process implements, by kind and name, and SPIRE's plugin names."""

    process: str
    implemented: dict[str, dict[str, type[PluginData]]]
    #: SPIRE's plugin names by kind, including kinds for which Warden has none.
    spire_names: dict[str, frozenset[str]] = field(default_factory=dict)

    def supported(self, kind: str) -> list[str]:
        return sorted(self.implemented.get(kind, {}))

    def known_kinds(self) -> list[str]:
        return sorted({*self.implemented, *self.spire_names})


def register_plugin(
    catalog: PluginCatalog, kind: str, name: str, data_model: type[PluginData]
) -> None:
    """Add a plugin to a catalog, so that configurations may name it."""
    catalog.implemented.setdefault(kind, {})[name] = data_model


#: Keys of a plugin declaration itself, around `plugin_data`.
_DECLARATION_KEYS = (
    "plugin_cmd",
    "plugin_args",
    "plugin_checksum",
    "plugin_data",
    "plugin_data_file",
    "enabled",
)


def decode_plugins(
    block: Block | None, catalog: PluginCatalog, context: DecodeContext
) -> list[PluginConfig[Any]]:
    """Decode the `plugins` block into plugin configurations, in file order.

    Disabled plugins (`enabled = false`) are left out with a warning. The caller checks how
    many plugins of each kind are allowed.
    """
    if block is None:
        return []
    plugins: list[PluginConfig[Any]] = []
    declared: dict[tuple[str, str], int] = {}
    for entry in block.entries:
        kind_path = f"plugins.{entry.key}"
        if entry.key not in catalog.known_kinds():
            context.problem(entry.line, kind_path, _unknown_kind(entry.key, catalog))
            continue
        if not isinstance(entry.node, Block) or not entry.node.entries:
            context.problem(
                entry.line,
                kind_path,
                f'expected {entry.key} "<name>" {{ plugin_data {{ ... }} }}, '
                f"got {_describe_node(entry)}",
            )
            continue
        for declaration in entry.node.entries:
            identity = (entry.key, declaration.key)
            path = f"{kind_path}.{declaration.key}"
            if identity in declared:
                context.problem(
                    declaration.line,
                    path,
                    f"declared more than once (lines {declared[identity]} and "
                    f"{declaration.line}); keep one",
                )
                continue
            declared[identity] = declaration.line
            plugin = _decode_declaration(entry.key, declaration, path, catalog, context)
            if plugin is not None:
                plugins.append(plugin)
    return plugins


def _describe_node(entry: Entry) -> str:
    if isinstance(entry.node, Block):
        return "an empty block"
    return describe(entry.node.value)


def _unknown_kind(kind: str, catalog: PluginCatalog) -> str:
    guess = suggest(kind, catalog.known_kinds())
    hint = f"did you mean {guess}? " if guess else ""
    return (
        f"unknown plugin type; {hint}the {catalog.process} accepts "
        f"{', '.join(sorted(catalog.implemented))}"
    )


def _decode_declaration(
    kind: str, declaration: Entry, path: str, catalog: PluginCatalog, context: DecodeContext
) -> PluginConfig[Any] | None:
    name = declaration.key
    body = declaration.node
    if not isinstance(body, Block):
        context.problem(
            declaration.line,
            path,
            f'expected {kind} "{name}" {{ plugin_data {{ ... }} }}, got {describe(body.value)}',
        )
        return None

    for key in body.distinct_keys():
        if key not in _DECLARATION_KEYS:
            guess = suggest(key, _DECLARATION_KEYS)
            hint = f"did you mean {guess}?" if guess else "settings go inside plugin_data { ... }"
            context.problem(body.get_all(key)[0].line, f"{path}.{key}", f"unknown key; {hint}")
    for key in _DECLARATION_KEYS:
        entries = body.get_all(key)
        if len(entries) > 1:
            context.problem(entries[1].line, f"{path}.{key}", "set more than once; keep one")
            return None

    enabled = _enabled(body, path, context)
    if enabled is None:
        return None
    if not enabled:
        context.warn(declaration.line, path, "disabled with enabled = false; Warden ignores it")
        return None

    external = [
        key for key in ("plugin_cmd", "plugin_checksum", "plugin_args") if body.get_all(key)
    ]
    if external:
        entry = body.get_all(external[0])[0]
        context.problem(
            entry.line,
            f"{path}.{external[0]}",
            "external plugins are not supported: Warden runs only its built-in plugins "
            f"({', '.join(catalog.supported(kind)) or 'none'} for {kind}); remove "
            f"{', '.join(external)}",
        )
        return None

    data_model = catalog.implemented.get(kind, {}).get(name)
    if data_model is None:
        context.problem(declaration.line, path, _unsupported_plugin(kind, name, catalog))
        return None

    data_block = _data_block(body, path, context)
    if data_block is None:
        return None
    block, data_context, data_path = data_block
    data = decode_section(data_model, block, data_path, data_context)
    if data is None:
        return None
    return PluginConfig(kind, name, data, declaration.line)


def _enabled(body: Block, path: str, context: DecodeContext) -> bool | None:
    entries = body.get_all("enabled")
    if not entries:
        return True
    node = entries[0].node
    try:
        if isinstance(node, Block):
            raise ValueError(f"expected true or false, got {describe(node.to_plain())}")
        return go_bool(node.value)
    except ValueError as error:
        context.problem(entries[0].line, f"{path}.enabled", str(error))
        return None


def _unsupported_plugin(kind: str, name: str, catalog: PluginCatalog) -> str:
    supported = catalog.supported(kind)
    listing = (
        f"supported {kind} plugins: {', '.join(supported)}"
        if supported
        else f"Warden implements no {kind} plugins; remove this block"
    )
    if name in catalog.spire_names.get(kind, frozenset()):
        return f"SPIRE plugin that Warden does not implement; {listing}"
    guess = suggest(name, supported)
    hint = f"did you mean {guess}? " if guess else ""
    return f"unknown {kind} plugin; {hint}{listing}"


def _data_block(
    body: Block, path: str, context: DecodeContext
) -> tuple[Block, DecodeContext, str] | None:
    """Return the plugin's settings block, from plugin_data or from plugin_data_file."""
    inline = body.get_all("plugin_data")
    from_file = body.get_all("plugin_data_file")
    if inline and from_file:
        context.problem(
            from_file[0].line,
            f"{path}.plugin_data_file",
            "set only one of plugin_data and plugin_data_file",
        )
        return None
    if from_file:
        return _data_file(from_file[0], path, context)
    if not inline:
        return Block(body.line), context, f"{path}.plugin_data"
    node = inline[0].node
    if isinstance(node, Value) and node.value in ("", None):
        return Block(inline[0].line), context, f"{path}.plugin_data"
    if not isinstance(node, Block):
        context.problem(
            inline[0].line,
            f"{path}.plugin_data",
            f"expected a block {{ ... }}, got {describe(node.value)}",
        )
        return None
    return node, context, f"{path}.plugin_data"


def _data_file(
    entry: Entry, path: str, context: DecodeContext
) -> tuple[Block, DecodeContext, str] | None:
    key_path = f"{path}.plugin_data_file"
    if (
        isinstance(entry.node, Block)
        or not isinstance(entry.node.value, str)
        or not entry.node.value
    ):
        context.problem(entry.line, key_path, "expected the path of a file of plugin settings")
        return None
    file_path = Path(entry.node.value)
    if not file_path.is_absolute():
        file_path = context.base_dir / file_path
    try:
        text = file_path.read_text(encoding="utf-8")
    except OSError as error:
        context.problem(entry.line, key_path, f"cannot read {file_path}: {error.strerror or error}")
        return None
    try:
        block = parse_hcl(text, str(file_path))
    except ConfigError as error:
        context.problems.extend(error.problems)
        return None
    # Paths inside the data file are resolved against the data file's own directory.
    data_context = DecodeContext(
        file=str(file_path),
        base_dir=file_path.parent,
        problems=context.problems,
        warnings=context.warnings,
        values=context.values,
    )
    return block, data_context, f"{path}.plugin_data"
