"""Decoding of positioned HCL blocks into frozen pydantic models, with located diagnostics.

Each block of a configuration file is one `Section` subclass. Its fields are the keys that
Warden implements, under the HCL key as name or alias. Class variables list the SPIRE keys
that Warden accepts without implementing them (a warning), and those it rejects because
ignoring them would weaken security (an error when set). Any other key is an error with a
suggestion, so that a typo never passes silently.

The shape of a field's type determines how its key may be written:

- a `Section` subclass: one block, `ca_subject { ... }`;
- a tuple of a `Section` subclass: a block that may be repeated;
- a dict of str to a `Section` subclass: labelled blocks, `federates_with "name" { ... }`;
- anything else: a value, written once.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from warden.config.errors import Diagnostic
from warden.config.hcl import Block, Entry
from warden.config.values import describe

S = TypeVar("S", bound="Section")


class Section(BaseModel):
    """Base of every configuration block: frozen, and strict about unknown keys."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        validate_default=True,
        populate_by_name=True,
        arbitrary_types_allowed=True,
    )

    #: SPIRE keys that Warden accepts but does not implement, each with an explanation
    #: for the warning ("" for the generic one).
    spire_ignored: ClassVar[Mapping[str, str]] = {}
    #: SPIRE keys that restrict what is accepted. Ignoring one would admit what SPIRE
    #: rejects, so setting it is an error whose message explains the alternative. An empty
    #: or false value is only a warning.
    spire_rejected: ClassVar[Mapping[str, str]] = {}

    def config_problems(self) -> Iterable[tuple[str, str]]:
        """Return `(field, message)` pairs for settings that are invalid together.

        The decoder reports each at the line of the field's key. Checks of one value belong
        in the field's type instead.
        """
        return ()

    def config_warnings(self) -> Iterable[tuple[str, str]]:
        """Return `(field, message)` pairs for settings that are valid but risky."""
        return ()


@dataclass
class DecodeContext:
    """The state of one load: where the file is, and the diagnostics found so far."""

    file: str
    base_dir: Path
    problems: list[Diagnostic] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)
    #: Values that validators read through pydantic's validation context (`data_dir`).
    values: dict[str, Any] = field(default_factory=dict)

    def problem(self, line: int | None, key: str, message: str) -> None:
        self.problems.append(Diagnostic(self.file, line, key, message))

    def warn(self, line: int | None, key: str, message: str) -> None:
        self.warnings.append(Diagnostic(self.file, line, key, message))

    @property
    def validation_context(self) -> dict[str, Any]:
        return {"base_dir": self.base_dir, **self.values}


@dataclass(frozen=True, slots=True)
class _Shape:
    kind: str  # "section", "sections", "labelled" or "value"
    section: type[Section] | None = None


def _unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        members = [member for member in get_args(annotation) if member is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def _is_section(candidate: Any) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, Section)


def field_shape(info: FieldInfo) -> _Shape:
    """Tell how the key of a field is written, from the field's type."""
    annotation = _unwrap_optional(info.annotation)
    if _is_section(annotation):
        return _Shape("section", annotation)
    origin = get_origin(annotation)
    arguments = get_args(annotation)
    if origin in (tuple, list) and arguments and _is_section(arguments[0]):
        return _Shape("sections", arguments[0])
    if origin in (dict, Mapping) and len(arguments) == 2 and _is_section(arguments[1]):
        return _Shape("labelled", arguments[1])
    return _Shape("value")


def _is_internal(info: FieldInfo) -> bool:
    extra = info.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("internal"))


def hcl_keys(model: type[Section]) -> dict[str, str]:
    """Map each HCL key of `model` to its field name. Internal fields have no key."""
    return {
        (info.alias or name): name
        for name, info in model.model_fields.items()
        if not _is_internal(info)
    }


def _join(path: str, key: str) -> str:
    if not key:
        return path
    return f"{path}.{key}" if path else key


def _is_set(value: Any) -> bool:
    if isinstance(value, Block):
        return bool(value.entries)
    return value not in (None, "", False, 0, [], {}) and str(value).lower() not in ("false", "0")


def suggest(key: str, candidates: Iterable[str]) -> str | None:
    """Return the closest known key to a misspelt one, if one is close enough."""
    matches = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_key_message(key: str, known: Iterable[str], kind: str = "key") -> str:
    """Word the error for an unknown key, with the closest known key or the list of keys."""
    known = sorted(set(known))
    guess = suggest(key, known)
    if guess is not None:
        return f"unknown {kind}; did you mean {guess}?"
    if len(known) <= 12:
        return f"unknown {kind}; valid keys here: {', '.join(known) or 'none'}"
    return f"unknown {kind}; see docs/configuration.md for the keys of this block"


def decode_section(
    model: type[S],
    block: Block,
    path: str,
    context: DecodeContext,
    preset: Mapping[str, Any] | None = None,
) -> S | None:
    """Validate `block` into `model`, recording located problems and warnings in `context`.

    Keys named in `preset` were decoded by the caller, which passes their values there,
    or None when that failed (and was reported). Returns None when the block has problems;
    they are in `context.problems`.
    """
    keys = hcl_keys(model)
    presets = dict(preset or {})
    data: dict[str, Any] = {name: value for name, value in presets.items() if value is not None}
    field_lines: dict[str, int] = {}
    failed: set[str] = {name for name, value in presets.items() if value is None}

    for key in block.distinct_keys():
        entries = block.get_all(key)
        key_path = _join(path, key)
        if preset and key in preset:
            continue
        if key in keys:
            name = keys[key]
            field_lines[name] = entries[0].line
            value = _decode_field(model.model_fields[name], entries, key_path, context)
            if value is _FAILED:
                failed.add(name)
            elif value is not _UNSET:
                data[name] = value
        elif key in model.spire_rejected:
            _reject_or_warn(model, key, entries[0], key_path, context)
        elif key in model.spire_ignored:
            reason = model.spire_ignored[key]
            message = "SPIRE setting that Warden does not implement; it is ignored"
            if reason:
                message += f" ({reason})"
            context.warn(entries[0].line, key_path, message)
        else:
            known = [*keys, *model.spire_ignored, *model.spire_rejected]
            context.problem(entries[0].line, key_path, unknown_key_message(key, known))

    try:
        section = model.model_validate(data, context=context.validation_context)
    except ValidationError as error:
        _report_validation_error(error, model, block, path, field_lines, failed, context)
        return None
    if failed:
        return None

    names = {name: key for key, name in keys.items()}
    problems = list(section.config_problems())
    for field_name, message in problems:
        key = names.get(field_name, field_name)
        context.problem(field_lines.get(field_name, block.line), _join(path, key), message)
    if problems:
        return None
    for field_name, message in section.config_warnings():
        key = names.get(field_name, field_name)
        context.warn(field_lines.get(field_name, block.line), _join(path, key), message)
    return section


_FAILED = object()
_UNSET = object()


def _decode_field(
    info: FieldInfo, entries: list[Entry], key_path: str, context: DecodeContext
) -> Any:
    shape = field_shape(info)
    if shape.kind == "sections":
        assert shape.section is not None
        sections = []
        for index, entry in enumerate(entries):
            if not isinstance(entry.node, Block):
                got = describe(entry.node.value)
                context.problem(entry.line, key_path, f"expected a block, got {got}")
                return _FAILED
            element_path = key_path if len(entries) == 1 else f"{key_path}[{index}]"
            decoded = decode_section(shape.section, entry.node, element_path, context)
            if decoded is None:
                return _FAILED
            sections.append(decoded)
        return tuple(sections)

    if shape.kind == "labelled":
        assert shape.section is not None
        return _decode_labelled(shape.section, entries, key_path, context)

    if len(entries) > 1:
        lines = ", ".join(str(entry.line) for entry in entries)
        context.problem(entries[1].line, key_path, f"set more than once (lines {lines}); keep one")
        return _FAILED
    entry = entries[0]

    if shape.kind == "section":
        assert shape.section is not None
        if not isinstance(entry.node, Block):
            if entry.node.value in ("", None) and not info.is_required():
                return _UNSET
            got = describe(entry.node.value)
            context.problem(entry.line, key_path, f"expected a block {{ ... }}, got {got}")
            return _FAILED
        decoded = decode_section(shape.section, entry.node, key_path, context)
        return _FAILED if decoded is None else decoded

    value = entry.node.to_plain() if isinstance(entry.node, Block) else entry.node.value
    if value == "":
        # SPIRE treats an empty string as unset, so "${VAR}" with VAR unset keeps the
        # default, or leaves a required key missing.
        return _UNSET
    return value


def _decode_labelled(
    section: type[Section], entries: list[Entry], key_path: str, context: DecodeContext
) -> Any:
    decoded: dict[str, Section] = {}
    lines: dict[str, int] = {}
    failed = False
    for entry in entries:
        if not isinstance(entry.node, Block):
            example = f'{key_path.rsplit(".", 1)[-1]} "name" {{ ... }}'
            context.problem(entry.line, key_path, f"expected labelled blocks such as {example}")
            return _FAILED
        for labelled in entry.node.entries:
            label_path = f'{key_path}["{labelled.key}"]'
            if labelled.key in lines:
                first = lines[labelled.key]
                message = f"defined more than once (lines {first} and {labelled.line}); keep one"
                context.problem(labelled.line, label_path, message)
                failed = True
                continue
            lines[labelled.key] = labelled.line
            if not isinstance(labelled.node, Block):
                got = describe(labelled.node.value)
                context.problem(labelled.line, label_path, f"expected a block, got {got}")
                failed = True
                continue
            value = decode_section(section, labelled.node, label_path, context)
            if value is None:
                failed = True
            else:
                decoded[labelled.key] = value
    return _FAILED if failed else decoded


def _reject_or_warn(
    model: type[Section], key: str, entry: Entry, key_path: str, context: DecodeContext
) -> None:
    value = entry.node if isinstance(entry.node, Block) else entry.node.value
    message = "SPIRE setting that Warden does not implement"
    if _is_set(value):
        context.problem(entry.line, key_path, f"{message}; {model.spire_rejected[key]}")
    else:
        context.warn(entry.line, key_path, f"{message}; it is unset here, so it is ignored")


def _report_validation_error(
    error: ValidationError,
    model: type[Section],
    block: Block,
    path: str,
    field_lines: dict[str, int],
    failed: set[str],
    context: DecodeContext,
) -> None:
    names = {name: key for key, name in hcl_keys(model).items()}
    for detail in error.errors(include_url=False):
        location = detail["loc"]
        field_name = str(location[0]) if location else ""
        if field_name in failed:
            continue
        key = names.get(field_name, field_name)
        key_path = _join(path, key) if key else path
        for part in location[1:]:
            key_path += f"[{part}]" if isinstance(part, int) else f".{part}"
        line = field_lines.get(field_name, block.line)
        info = model.model_fields.get(field_name)
        secret = info is not None and "SecretStr" in repr(info.annotation)
        context.problem(line, key_path, _message(detail, secret))


def _message(detail: Mapping[str, Any], secret: bool) -> str:
    """Word a pydantic error for people; for a secret, never with the rejected value."""
    kind = detail["type"]
    if secret and kind not in ("missing", "value_error"):
        return "invalid value (not shown, because this setting contains a secret)"
    if kind == "missing":
        return "missing required key"
    if kind in ("value_error", "assertion_error"):
        cause = detail.get("ctx", {}).get("error")
        return str(cause) if cause is not None else str(detail["msg"])
    if kind.endswith("_type") and "input" in detail:
        expected = kind.removesuffix("_type").replace("_", " ")
        return f"expected a {expected}, got {describe(detail['input'])}"
    return str(detail["msg"])
