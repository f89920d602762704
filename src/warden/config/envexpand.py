"""Expansion of `$VAR` and `${VAR}` in a configuration file, as SPIRE's `-expandEnv` does it.

SPIRE expands the whole text with Go's `os.Expand` before parsing it, so Go's rules apply.
`${NAME}` takes everything up to the closing brace as the name, and `$NAME` takes letters,
digits and underscores. A `$` followed by one of `*#$@!?-` or a digit names that single
character, and `$$` gives a literal `$`. A `$` followed by anything else is kept, while a
`${` with no closing brace and the empty `${}` are dropped. An unset variable expands to
the empty string, and the loader reports each one as a warning.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

_SPECIAL = frozenset("*#$@!?-0123456789")


def _is_name_char(char: str) -> bool:
    return char == "_" or ("0" <= char <= "9") or ("a" <= char <= "z") or ("A" <= char <= "Z")


@dataclass(frozen=True, slots=True)
class Expansion:
    """The expanded text, the variables that were unset, and the line map back to the source.

    `unset` contains `(name, line)` pairs, with the line in the original text.
    `original_lines[i]` is the original line of line `i + 1` of `text`. The two differ only
    when a variable's value contains a line break.
    """

    text: str
    unset: tuple[tuple[str, int], ...] = ()
    original_lines: tuple[int, ...] = field(default=(), repr=False)

    def original_line(self, line: int) -> int:
        """Return the line of the original text that line `line` of `text` came from."""
        if 1 <= line <= len(self.original_lines):
            return self.original_lines[line - 1]
        return line


def _shell_name(rest: str) -> tuple[str, int]:
    """Read the variable name after a `$`; return it and how many characters it used.

    An empty name with a positive width is invalid syntax, whose characters are dropped.
    An empty name with width 0 means that the `$` is kept as written.
    """
    if rest[0] == "{":
        if len(rest) > 2 and rest[1] in _SPECIAL and rest[2] == "}":
            return rest[1], 3
        closing = rest.find("}", 1)
        if closing == -1:
            return "", 1
        if closing == 1:
            return "", 2
        return rest[1:closing], closing + 1
    if rest[0] in _SPECIAL:
        return rest[0], 1
    width = 0
    while width < len(rest) and _is_name_char(rest[width]):
        width += 1
    return rest[:width], width


def expand_env(text: str, environ: Mapping[str, str] | None = None) -> Expansion:
    """Expand `$VAR` and `${VAR}` in `text` from `environ` (the process environment by default)."""
    env = os.environ if environ is None else environ
    pieces: list[str] = []
    unset: list[tuple[str, int]] = []
    original_lines: list[int] = [1]
    line = 1

    index = 0
    while index < len(text):
        char = text[index]
        if char != "$" or index + 1 == len(text):
            pieces.append(char)
            if char == "\n":
                line += 1
                original_lines.append(line)
            index += 1
            continue

        name, width = _shell_name(text[index + 1 :])
        if (name == "" and width == 0) or name == "$":
            pieces.append("$")
        elif name:
            value = env.get(name)
            if value is None:
                unset.append((name, line))
                value = ""
            pieces.append(value)
            # A line break inside a value adds lines that all come from this source line.
            original_lines.extend([line] * value.count("\n"))
        # A name that spans lines (only possible inside braces) moves the source line on.
        line += text.count("\n", index + 1, index + 1 + width)
        index += 1 + width

    return Expansion("".join(pieces), tuple(unset), tuple(original_lines))
