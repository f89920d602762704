"""Read `key <operator> value` pairs out of one line, whatever the file format.

One reader serves YAML (`password: x`), JSON (`"password": "x"`), `.env` and shell
(`export TOKEN=x`), `.properties` and INI (`password = x`), HCL and Terraform (`password =
"x"`), XML (`<add key="Password" value="x"/>`), Groovy (`password 'x'`), code (`PASSWORD =
"x"`, `password == "x"`, `{password: 'x'}`, `:password => 'x'`) and URL queries
(`?token=x&`). `parent_keys` supplies the enclosing keys, so that `secret:` under `jwt:` and
`default = …` inside `variable "okta_token" { … }` are read as `jwt.secret` and
`okta_token.default`.

Whether an unquoted value is a literal depends on the format: in source code it is an
identifier or an expression (`password = get_password()`), in configuration it is the value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_OPERATORS = ("===", "!==", "==", "!=", ":=", "=>", "->", "=", ":", ",")
_UNQUOTED_END = re.compile(r"""[\s,;"'`()}\]<>&|]""")
_XML_ADD = re.compile(
    r"""<add\s+(?:key|name)\s*=\s*"(?P<key>[^"]{1,120})"\s+(?:value|connectionString)\s*=\s*"(?P<value>[^"]*)\"""",
    re.IGNORECASE,
)
# A type between a key and `=` in code: `str`, `Optional[str]`, `string | null`.
_ANNOTATION = re.compile(r"""[A-Za-z_][\w.\[\], |]{0,60}?\s*=(?!=)\s*""")
_LITERAL_START = re.compile(r"""["']""")
_LEADING_BLANK = re.compile(r"[ \t]*")
# The rest of a line after an opening quote that never closes: one word, then blanks.
_TO_END_OF_LINE = re.compile(r"(?P<value>\S+)\s*$")
# An ARN or URN running up to the end of the searched text (the 256 characters before a
# key): its segments are no keys.
_NAME_SEGMENT = re.compile(r"""(?:^|[\s"'`(=,])(?:arn|urn):[^\s"'`]*$""", re.IGNORECASE)
_XML_ELEMENT = re.compile(
    r"<(?P<key>[A-Za-z_][\w.:-]{0,80})>(?P<value>[^<>\s][^<>]{0,500})</(?P=key)>"
)
# Keys that only hold a value for an enclosing named block: Terraform `variable "x" {
# default = … }`, Helm and CloudFormation `value:`.
HOLDER_KEYS = frozenset({"default", "value", "val", "data", "content"})


@dataclass(frozen=True)
class Assignment:
    """One key and its value on a line; offsets are columns in that line."""

    key: str
    value: str
    value_start: int
    value_end: int
    quoted: bool
    operator: str


def _skip_spaces(line: str, position: int) -> int:
    while position < len(line) and line[position] in " \t":
        position += 1
    return position


def _read_quoted(line: str, position: int) -> tuple[str, int, int] | None:
    """Read a quoted string at `position`, including escaped quotes (`\\"x\\"`).

    Returns the content, its start and end column, or None when the string does not close
    on this line (a multi-line string, which the line reader cannot judge).
    """
    escaped = line.startswith("\\", position)
    if escaped:
        position += 1
    if position >= len(line) or line[position] not in "\"'`":
        return None
    quote = line[position]
    start = position + 1
    if escaped:
        end = line.find("\\" + quote, start)
        return None if end < 0 else (line[start:end], start, end)
    index = start
    while True:
        end = line.find(quote, index)
        if end < 0:
            return None
        if quote != "'":
            # An odd run of backslashes escapes the quote (single quotes escape nothing).
            backslash = end
            while backslash > start and line[backslash - 1] == "\\":
                backslash -= 1
            if (end - backslash) % 2:
                index = end + 1
                continue
        return line[start:end], start, end


_KEY_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.$@-")


def _key_bounds(line: str, start: int, end: int) -> tuple[int, int]:
    while start > 0 and line[start - 1] in _KEY_CHARS:
        start -= 1
    while end < len(line) and line[end] in _KEY_CHARS:
        end += 1
    return start, end


def assignment_after_key(
    line: str, key_start: int, key_end: int, *, unquoted_literals: bool
) -> Assignment | None:
    """Parse the assignment whose key covers columns `key_start`..`key_end` of `line`.

    The key is widened to the whole identifier around it, then an operator and a value are
    read after it. Returns None when no literal value follows.
    """
    start, end = _key_bounds(line, key_start, key_end)
    if start > 0 and line[start - 1] == "/" and not line.startswith("//", start - 2):
        return None  # the end of a path or route (`/forgot-password`), not a key
    key = line[start:end].strip(".-$@:")
    key_quoted = start > 0 and line[start - 1] in "\"'`"
    position = end
    # Closing quote or bracket of a quoted or indexed key: "password": / ['password'] =
    for _ in range(3):
        if position < len(line) and line[position] in "\"'`]\\":
            key_quoted = key_quoted or line[position] in "\"'`"
            position += 1
    if key_quoted and line.startswith("::", start - 2):
        return None  # a quoted type name such as "AWS::IAM::AccessKey", not a variable
    if (
        start > 0
        and line[start - 1] == ":"
        and _NAME_SEGMENT.search(line, max(0, start - 256), start)
    ):
        return None  # a segment of `arn:aws:secretsmanager:…:secret:name`, not a key
    position = _skip_spaces(line, position)

    operator = ""
    for candidate in _OPERATORS:
        if line.startswith(candidate, position):
            operator = candidate
            break
    if operator == "," and not (key_quoted and (start == 0 or line[start - 1] in "\"'`")):
        # `set("password", "x")`: the key must be a whole quoted string (or start the line),
        # so that the items of a list such as `"iam:ChangePassword","iam:CreateUser"` do
        # not pair up.
        return None
    if operator == ":" and line.startswith("//", position + 1):
        return None
    if operator:
        position = _skip_spaces(line, position + len(operator))
        if operator == ":" and not unquoted_literals:
            # A type annotation in code: `password: str = "…"`, `token: string = '…'`.
            annotated = _ANNOTATION.match(line, position)
            if annotated is not None:
                position, operator = annotated.end(), "="
    elif position == end or position >= len(line):
        return None
    elif line[position] not in "\"'" or not _starts_line(line, start):
        # Groovy, Gradle and nginx write `password 'x'` as a statement of its own: the key
        # starts the line and a quote follows. Anything else is prose ("pass `x` to …").
        return None
    operator = operator or " "

    quoted = _read_quoted(line, position)
    if quoted is None and position < len(line) and line[position] in "\"'`":
        # An unterminated quote: a value cut at the end of the line, or a multi-line string.
        rest = _TO_END_OF_LINE.match(line, position + 1)
        if rest is not None:
            quoted = (rest["value"], position + 1, rest.end("value"))
    if quoted is not None:
        value, value_start, value_end = quoted
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value, value_start, value_end = value[1:-1], value_start + 1, value_end - 1
            return Assignment(key, value, value_start, value_end, True, operator)
        chain = literal_chain(line, quoted)
        if chain is None:
            return None  # "prefix" + variable: computed, not a literal
        value, value_start, value_end = chain
        if operator == " " and not _ends_statement(line, _after_closing_quote(line, value_end)):
            return None  # `pass 'x' to the function`: prose, not a statement
        return Assignment(key, value, value_start, value_end, True, operator)

    if not unquoted_literals or position >= len(line):
        return None
    if line[position] in "([{\\":
        return None
    match = _UNQUOTED_END.search(line, position)
    value_end = match.start() if match else len(line)
    value = line[position:value_end]
    if value_end < len(line) and line[value_end] == "(":
        return None  # a function call
    if not value:
        return None
    return Assignment(key, value, position, value_end, False, operator)


def _starts_line(line: str, column: int) -> bool:
    """Tell whether only blanks precede `column`."""
    blank = _LEADING_BLANK.match(line)
    return blank is not None and blank.end() >= column


def _ends_statement(line: str, position: int) -> bool:
    """Tell whether only a statement's end follows `position`: nothing, `;`, `,`, a closing
    bracket or a comment."""
    position = _skip_spaces(line, position)
    return (
        position >= len(line) or line[position] in ";,)}]" or line.startswith(("#", "//"), position)
    )


def _after_closing_quote(line: str, end: int) -> int:
    # `_read_quoted` ends an escaped string (`\\"x\\"`) at its backslash.
    return end + 2 if line.startswith("\\", end) else end + 1


def literal_chain(line: str, first: tuple[str, int, int]) -> tuple[str, int, int] | None:
    """Join string literals concatenated with `+` (Python, JavaScript, Java) or `.` (PHP,
    Perl) on one line, starting from the literal `first` as `_read_quoted` returns it.

    Returns the joined value with the start of the first literal and the end of the last,
    or `first` itself when nothing is concatenated. Returns None when a piece is not a
    literal (`"Bearer " + token`), because then the value is computed at run time.
    """
    pieces = [first[0]]
    start, end = first[1], first[2]
    while True:
        operator = _skip_spaces(line, _after_closing_quote(line, end))
        if not line.startswith(("+", "."), operator) or line.startswith("...", operator):
            break
        position = _skip_spaces(line, operator + 1)
        if line.startswith("=", operator + 1):
            break  # `+=` or `.=`: a new statement, not this literal's continuation
        piece = _read_quoted(line, position) if position < len(line) else None
        if piece is None:
            return None
        pieces.append(piece[0])
        end = piece[2]
    return "".join(pieces), start, end


def concatenations(line: str) -> list[tuple[str, int, int]]:
    """Return every chain of two or more string literals joined on `line`, as (joined
    value, start column of the first literal, end column of the last)."""
    found: list[tuple[str, int, int]] = []
    position = 0
    while True:
        match = _LITERAL_START.search(line, position)
        if match is None:
            return found
        quoted = _read_quoted(line, match.start())
        if quoted is None:
            position = match.end()
            continue
        chain = literal_chain(line, quoted)
        if chain is not None and chain[2] != quoted[2]:
            found.append(chain)
            position = _after_closing_quote(line, chain[2])
        else:
            position = _after_closing_quote(line, quoted[2])


def xml_assignments(line: str) -> list[Assignment]:
    """Read `<add key="K" value="V"/>` and `<Key>V</Key>` pairs of .NET and Java XML files."""
    found = [
        Assignment(
            match["key"], match["value"], match.start("value"), match.end("value"), True, "="
        )
        for match in _XML_ADD.finditer(line)
    ]
    found.extend(
        Assignment(
            match["key"], match["value"], match.start("value"), match.end("value"), True, ">"
        )
        for match in _XML_ELEMENT.finditer(line)
    )
    return found


_YAML_PARENT = re.compile(
    r"""^(?P<indent>\s*)(?:-\s+)?["']?(?P<key>[\w.$-]+)["']?\s*:\s*(?:[|>][-+]?)?\s*(?:#.*)?$"""
)
_BLOCK_PARENT = re.compile(
    r"""^\s*(?:[\w-]+\s+)?["']?(?P<key>[\w.$-]+)["']?\s*(?:[:=]|=>)?\s*[{(\[]\s*(?:#.*|//.*)?$"""
)


def _sibling_parents(
    memo: dict[int, list[str]] | None, position: int, line: str, indent: int
) -> list[str] | None:
    """Return the known parents of line `position` when it is a sibling: reached with no
    bracket left open and no parent found yet, at the same indentation."""
    if memo is None:
        return None
    parents = memo.get(position)
    if parents is None or len(line) - len(line.lstrip()) != indent:
        return None
    return parents


def parent_keys(
    lines: list[str],
    index: int,
    limit: int = 3,
    lookback: int = 40,
    memo: dict[int, list[str]] | None = None,
) -> list[str]:
    """Return up to `limit` keys enclosing line `index`, innermost first.

    Recognises YAML nesting by indentation (`jwt:` above an indented `secret:`) and blocks
    opened by a brace at the end of a line (`variable "okta_token" {`, `"ConnectionStrings":
    {`, `credentials {`). Looks back at most `lookback` lines.

    Each parent's own parents are looked up from the parent's line, so `lookback` counts
    from the innermost block. `memo` keeps the result of each line asked for in one file:
    a sibling above (same indentation, no brackets) has the same parents, so consecutive
    keys of one block are read without walking back again.
    """
    found: list[str] = []
    current = lines[index]
    indent = len(current) - len(current.lstrip())
    depth = 0
    for position in range(index - 1, max(-1, index - lookback - 1), -1):
        line = lines[position]
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "//")):
            continue
        depth += stripped.count("}") + stripped.count("]") + stripped.count(")")
        opened = stripped.count("{") + stripped.count("[") + stripped.count("(")
        if opened:
            if depth >= opened:
                depth -= opened
                sibling = None if depth or found else _sibling_parents(memo, position, line, indent)
                if sibling is not None:
                    found = list(sibling)
                    break
                continue
            depth = 0
            block = _BLOCK_PARENT.match(line)
            if block:
                # The keys above the block are the block line's own parents.
                found.append(block["key"])
                found.extend(parent_keys(lines, position, limit, lookback, memo))
                break
            continue
        line_indent = len(line) - len(line.lstrip())
        if line_indent >= indent:
            sibling = None if depth or found else _sibling_parents(memo, position, line, indent)
            if sibling is not None:
                found = list(sibling)
                break
            continue
        yaml_parent = _YAML_PARENT.match(line)
        if yaml_parent:
            found.append(yaml_parent["key"])
            if line_indent > 0:
                found.extend(parent_keys(lines, position, limit, lookback, memo))
            break
    found = found[:limit]
    if memo is not None:
        memo[index] = found
    return found
