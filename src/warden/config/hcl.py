"""HCL 1 parsing into a tree that keeps the line of every key.

pyhcl parses the text into dictionaries but keeps no positions, so this module also walks
pyhcl's own lexer tokens to find the line of each key, and pairs the two. The tree keeps
what HCL 1 merges: a key written twice appears twice, so the decoder can tell a repeated
block (`NodeAttestor "a" {}` and `NodeAttestor "b" {}`) from a setting written twice by
mistake. Block labels nest as in HCL 1: `NodeAttestor "aws_iid" { ... }` is the key
`NodeAttestor` whose block holds the key `aws_iid`.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from hcl.lexer import Lexer
from hcl.parser import HclParser

from warden.config.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Value:
    """A scalar or list value as pyhcl decoded it, with the line of its key."""

    value: Any
    line: int


@dataclass(slots=True)
class Block:
    """An object (`key { ... }` or `key = { ... }`) with its entries in file order."""

    line: int
    entries: list[Entry] = field(default_factory=list)

    def distinct_keys(self) -> list[str]:
        """Return the distinct keys in file order."""
        seen: dict[str, None] = {}
        for entry in self.entries:
            seen.setdefault(entry.key, None)
        return list(seen)

    def get_all(self, key: str) -> list[Entry]:
        """Return every entry written with `key`, in file order."""
        return [entry for entry in self.entries if entry.key == key]

    def to_plain(self) -> dict[str, Any]:
        """Return the block as plain dictionaries; a repeated key gives a list."""
        plain: dict[str, Any] = {}
        for key in self.distinct_keys():
            values = [_plain(entry.node) for entry in self.get_all(key)]
            plain[key] = values[0] if len(values) == 1 else values
        return plain


@dataclass(frozen=True, slots=True)
class Entry:
    """One occurrence of a key in a block."""

    key: str
    line: int
    node: Block | Value


def _plain(node: Block | Value) -> Any:
    return node.to_plain() if isinstance(node, Block) else node.value


# --- Positions from pyhcl's lexer -------------------------------------------------------


@dataclass(slots=True)
class _Item:
    """A key found by the token walk, with the walk of its object value when it has one."""

    key: str
    line: int
    children: list[_Item] | None = None
    list_objects: list[tuple[int, list[_Item]]] | None = None


_VALUE_TAIL = frozenset(
    {
        "ADD",
        "MINUS",
        "MULTIPLY",
        "DIVIDE",
        "PERIOD",
        "QMARK",
        "COLON",
        "EPLUS",
        "EMINUS",
        "GT",
        "LT",
        "EQ",
        "NE",
        "LE",
        "GE",
        "ASTERISK_PERIOD",
    }
)
_KEY_TOKENS = frozenset({"IDENTIFIER", "STRING"})


class _TokenWalk:
    """A forgiving walk over tokens of text that pyhcl has already accepted.

    It only needs to find keys and their lines; anything it does not recognise is skipped.
    """

    def __init__(self, tokens: list[Any]) -> None:
        self.tokens = tokens
        self.index = 0

    def peek(self) -> Any | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> Any:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def object_items(self, closed_by_brace: bool) -> list[_Item]:
        items: list[_Item] = []
        while (token := self.peek()) is not None:
            if token.type == "RIGHTBRACE":
                self.take()
                if closed_by_brace:
                    return items
                continue
            if token.type in _KEY_TOKENS:
                self.take()
                items.append(self.item_after_key(token))
                continue
            self.take()
        return items

    def item_after_key(self, key: Any) -> _Item:
        item = _Item(str(key.value), key.lineno)
        following = self.peek()
        if following is None:
            return item
        if following.type in ("EQUAL", "COLON"):
            self.take()
            self.value_into(item)
        elif following.type == "LEFTBRACE":
            self.take()
            item.children = self.object_items(closed_by_brace=True)
        elif following.type in ("STRING", "IDENTIFIER"):
            label = self.take()
            item.children = [self.item_after_key(label)]
        return item

    def value_into(self, item: _Item) -> None:
        token = self.peek()
        if token is None:
            return
        if token.type == "LEFTBRACE":
            self.take()
            item.children = self.object_items(closed_by_brace=True)
            return
        if token.type == "LEFTBRACKET":
            self.take()
            item.list_objects = self.list_objects()
            return
        self.take()
        self.skip_value_tail(token)

    def list_objects(self) -> list[tuple[int, list[_Item]]]:
        """Walk a list up to its `]`, returning the objects it contains with their lines."""
        objects: list[tuple[int, list[_Item]]] = []
        while (token := self.peek()) is not None:
            self.take()
            if token.type == "RIGHTBRACKET":
                break
            if token.type == "LEFTBRACE":
                objects.append((token.lineno, self.object_items(closed_by_brace=True)))
            elif token.type == "LEFTBRACKET":
                self.list_objects()
        return objects

    def skip_value_tail(self, first: Any) -> None:
        """Skip what follows a value token: operators with operands, calls and indexing."""
        previous = first
        while (token := self.peek()) is not None:
            if token.type in ("LEFTPAREN", "LEFTBRACKET") and previous.type == "IDENTIFIER":
                self.skip_balanced(token.type)
            elif token.type in _VALUE_TAIL:
                self.take()
                operand = self.peek()
                if operand is not None and operand.type not in ("RIGHTBRACE", "COMMA"):
                    previous = self.take()
                    continue
            else:
                return
            previous = token

    def skip_balanced(self, opening: str) -> None:
        closing = {"LEFTPAREN": "RIGHTPAREN", "LEFTBRACKET": "RIGHTBRACKET"}[opening]
        depth = 0
        while (token := self.peek()) is not None:
            self.take()
            if token.type == opening:
                depth += 1
            elif token.type == closing:
                depth -= 1
                if depth == 0:
                    return


def _tokens(text: str) -> list[Any]:
    lexer = Lexer()
    lexer.input(text)
    tokens = []
    while (token := lexer.token()) is not None:
        tokens.append(token)
    return tokens


def _walk(tokens: list[Any]) -> list[_Item]:
    walk = _TokenWalk(tokens)
    # A file in HCL's JSON form is one object in braces.
    if tokens and tokens[0].type == "LEFTBRACE":
        walk.take()
    return walk.object_items(closed_by_brace=False)


# --- Pairing pyhcl's values with the positions ------------------------------------------


def _build_block(values: dict[str, Any], items: list[_Item], line: int) -> Block:
    block = Block(line)
    by_key: dict[str, list[_Item]] = {}
    for item in items:
        by_key.setdefault(item.key, []).append(item)

    for key, occurrences in by_key.items():
        if key not in values:
            continue
        value = values[key]
        if len(occurrences) == 1:
            block.entries.extend(_entries(key, value, occurrences[0]))
        elif isinstance(value, list) and len(value) == len(occurrences):
            for item, item_value in zip(occurrences, value, strict=True):
                block.entries.extend(_entries(key, item_value, item))
        else:
            # pyhcl merged the occurrences in a way that cannot be split again (it does so
            # at the top level). Each occurrence stays visible, so the decoder reports the
            # key as written more than once; the merged value is kept on the first.
            block.entries.extend(_entries(key, value, occurrences[0]))
            block.entries.extend(
                Entry(key, item.line, Value(None, item.line)) for item in occurrences[1:]
            )

    # Keys that the walk did not find (exotic syntax) still take part, at the block's line.
    found = set(by_key)
    for key, value in values.items():
        if key not in found:
            block.entries.extend(_entries(str(key), value, _Item(str(key), line)))
    block.entries.sort(key=lambda entry: entry.line)
    return block


def _entries(key: str, value: Any, item: _Item) -> list[Entry]:
    """Build the entries of one written key; a list of objects becomes one block each."""
    if isinstance(value, dict):
        return [Entry(key, item.line, _build_block(value, item.children or [], item.line))]
    if isinstance(value, list) and value and all(isinstance(element, dict) for element in value):
        objects = item.list_objects or []
        entries = []
        for position, element in enumerate(value):
            object_line, object_items = (
                objects[position] if position < len(objects) else (item.line, [])
            )
            entries.append(
                Entry(key, object_line, _build_block(element, object_items, object_line))
            )
        return entries
    return [Entry(key, item.line, Value(value, item.line))]


# --- Parsing and its errors ---------------------------------------------------------------

_parser_lock = threading.Lock()
_parser: Any = None

_TOKEN_WORDS = {
    "STRING": "a string",
    "NUMBER": "a number",
    "FLOAT": "a number",
    "BOOL": "true or false",
    "IDENTIFIER": "a key",
    "LEFTBRACE": "'{'",
    "RIGHTBRACE": "'}'",
    "LEFTBRACKET": "'['",
    "RIGHTBRACKET": "']'",
    "EQUAL": "'='",
    "COMMA": "','",
    "$end": "the end of the file",
}
_PARSER_ERROR = re.compile(r"Line (\d+), column (\d+): unexpected ([^;\s]+)(?:; expected (.*))?")
_LEXER_ERROR = re.compile(r"Line (\d+), column (\d+), index (\d+): (.*)")


def _hcl_parser() -> Any:
    global _parser
    if _parser is None:
        _parser = HclParser()
    return _parser


def parse_hcl(text: str, file: str) -> Block:
    """Parse HCL 1 text into a positioned tree.

    Raises ConfigError naming the file, the line and what was expected when the text is not
    valid HCL.
    """
    if text.lstrip().startswith("{"):
        # HCL's JSON form, which SPIRE's parser also accepts.
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError.single(
                file, error.lineno, "", f"invalid JSON at column {error.colno}: {error.msg}"
            ) from None
    else:
        _check_nesting(text, file)
        try:
            with _parser_lock:
                values = _hcl_parser().parse(text)
        except RecursionError:
            raise _too_deep(file) from None
        except ValueError as error:
            try:
                problem = _syntax_error(text, file, str(error))
            except (ValueError, RecursionError):
                # Locating the error re-runs the lexer, which can fail on the same text.
                problem = _fallback_syntax_error(text, file, str(error))
            raise problem from None
    if not isinstance(values, dict):
        raise ConfigError.single(
            file, 1, "", "invalid HCL: expected blocks and keys at the top level"
        )
    try:
        # The lexer accepted the text, since the parser did.
        return _build_block(values, _walk(_tokens(text)), 1)
    except RecursionError:
        raise _too_deep(file) from None


def _fallback_syntax_error(text: str, file: str, detail: str) -> ConfigError:
    """Describe a syntax error when the lexer cannot locate it: an unclosed string is the
    usual cause, so point at the first line whose quotes do not pair up."""
    for number, line in enumerate(text.splitlines(), start=1):
        code = line.split("#", 1)[0].split("//", 1)[0]
        quotes = len(re.findall(r'(?<!\\)"', code))
        if quotes % 2:
            return ConfigError.single(
                file, number, "", "invalid HCL: this line opens a string that it does not close"
            )
    position = re.search(r"Line (\d+)", detail)
    line_number = int(position.group(1)) if position else None
    return ConfigError.single(file, line_number, "", f"invalid HCL: {detail}")


#: Deepest block nesting accepted; SPIRE's files use four or five levels.
MAX_NESTING = 64


def _check_nesting(text: str, file: str) -> None:
    """Reject absurdly deep nesting before the recursive parser does, naming the block.

    Braces inside strings and comments do not count.
    """
    depth = 0
    line = 1
    top_key = ""
    word = ""
    index = 0
    length = len(text)
    while index < length:
        character = text[index]
        if character == "\n":
            line += 1
        elif character == '"':
            index += 1
            while index < length and text[index] != '"':
                if text[index] == "\\":
                    index += 1
                elif text[index] == "\n":
                    line += 1
                index += 1
        elif character == "#" or text.startswith("//", index):
            while index < length and text[index] != "\n":
                index += 1
            continue
        elif text.startswith("/*", index):
            end = text.find("*/", index + 2)
            end = length if end < 0 else end + 2
            line += text.count("\n", index, end)
            index = end
            continue
        elif character == "{":
            if depth == 0:
                top_key = word
            depth += 1
            if depth > MAX_NESTING:
                raise ConfigError.single(
                    file,
                    line,
                    top_key,
                    f"invalid HCL: blocks are nested more than {MAX_NESTING} levels deep",
                )
        elif character == "}":
            depth = max(0, depth - 1)
        elif character.isalnum() or character in "_-":
            if not word or not (text[index - 1].isalnum() or text[index - 1] in "_-"):
                word = ""
            word += character
        index += 1


def _too_deep(file: str) -> ConfigError:
    return ConfigError.single(
        file,
        None,
        "",
        "invalid HCL: blocks are nested too deeply; a configuration needs a few levels",
    )


def _syntax_error(text: str, file: str, detail: str) -> ConfigError:
    lexer_match = _LEXER_ERROR.match(detail)
    if lexer_match:
        line = int(lexer_match.group(1))
        column = int(lexer_match.group(2)) + 1
        reason = lexer_match.group(4)
        if reason.startswith("EOF before closing string quote"):
            opened = _unclosed_string_line(text)
            return ConfigError.single(
                file, opened, "", "invalid HCL: this string has no closing '\"'"
            )
        return ConfigError.single(file, line, "", f"invalid HCL at column {column}: {reason}")

    tokens = _tokens(text)
    missing_equals = _missing_equals(tokens)
    parser_match = _PARSER_ERROR.match(detail)
    if parser_match:
        line = int(parser_match.group(1))
        position = int(parser_match.group(2))
        token = next((token for token in tokens if token.lexpos == position), None)
        column = position - text.rfind("\n", 0, position)
        found = parser_match.group(3)
        if found == "IDENTIFIER" and token is not None:
            unexpected = f"the name {token.value!r}"
        else:
            unexpected = _TOKEN_WORDS.get(found, found.lower())
        message = f"invalid HCL at column {column}: unexpected {unexpected}"
        if (
            found == "RIGHTBRACE"
            and _unclosed_block([before for before in tokens if before.lexpos < position]) is None
        ):
            message += "; this '}' closes no block"
        else:
            expected = _expected_words(parser_match.group(4) or "")
            if expected:
                message += f"; expected {expected}"
        if missing_equals is not None and missing_equals[0] <= line:
            return ConfigError.single(file, missing_equals[0], "", missing_equals[1])
        return ConfigError.single(file, line, "", message)

    # The parser reached the end of the file inside a block.
    last_line = text.count("\n") + (0 if text.endswith("\n") else 1)
    if missing_equals is not None:
        return ConfigError.single(file, missing_equals[0], "", missing_equals[1])
    unclosed = _unclosed_block(tokens)
    if unclosed is not None:
        key, opened = unclosed
        return ConfigError.single(
            file,
            max(last_line, 1),
            "",
            f"invalid HCL: the file ends inside the block {key!r} opened on line {opened}; "
            "add the missing '}'",
        )
    message = "invalid HCL: unexpected end of file"
    expected = _expected_words(detail.partition("; expected ")[2])
    if expected:
        message += f"; expected {expected}"
    return ConfigError.single(file, max(last_line, 1), "", message)


def _unclosed_string_line(text: str) -> int:
    """Return the line of the opening quote of a string that the lexer found unterminated."""
    lexer = Lexer()
    lexer.input(text)
    end = 0
    try:
        while (token := lexer.token()) is not None:
            end = token.lexpos + len(str(token.value))
    except ValueError:
        pass
    opening = text.find('"', end)
    return text.count("\n", 0, opening if opening >= 0 else len(text)) + 1


_VALUE_TOKENS = frozenset({"BOOL", "STRING", "NUMBER", "LEFTBRACE", "LEFTBRACKET"})


def _expected_words(names: str) -> str:
    """Turn the parser's list of expected token names into words for people."""
    expected = {name.strip() for name in names.split(",")}
    if expected >= _VALUE_TOKENS:
        return "a value (a string, number, true or false, list or block)"
    if "IDENTIFIER" in expected:
        # pyhcl also allows arithmetic in keys, which no configuration uses, so say "a key".
        expected -= {"STRING", "NUMBER", "FLOAT", "MINUS"}
    words: dict[str, None] = {}
    for name in names.split(","):
        if name.strip() in expected and (word := _TOKEN_WORDS.get(name.strip())):
            words.setdefault(word, None)
    return " or ".join(words) if len(words) <= 2 else ", ".join(words)


def _missing_equals(tokens: list[Any]) -> tuple[int, str] | None:
    """Find `key value` written without `=`, the most common hand-editing slip."""
    for index in range(len(tokens) - 1):
        key, value = tokens[index], tokens[index + 1]
        after = tokens[index + 2] if index + 2 < len(tokens) else None
        if key.type != "IDENTIFIER" or key.lineno != value.lineno:
            continue
        previous = tokens[index - 1] if index > 0 else None
        if (
            previous is not None
            and previous.lineno == key.lineno
            and previous.type in ("EQUAL", "COLON", "IDENTIFIER", "STRING")
        ):
            # The name is a value or a block label, not a key.
            continue
        scalar = value.type in ("NUMBER", "FLOAT", "BOOL") or (
            value.type == "STRING"
            and (
                after is None
                or after.type not in ("LEFTBRACE", "STRING", "IDENTIFIER", "EQUAL", "COLON")
            )
        )
        if value.type == "LEFTBRACKET":
            scalar = True
        if scalar:
            return key.lineno, f"invalid HCL: missing '=' between {key.value!r} and its value"
    return None


def _unclosed_block(tokens: list[Any]) -> tuple[str, int] | None:
    """Return the innermost block still open at the end of the tokens, with its line."""
    stack: list[tuple[str, int]] = []
    for index, token in enumerate(tokens):
        if token.type == "LEFTBRACE":
            stack.append((_block_name(tokens, index), token.lineno))
        elif token.type == "RIGHTBRACE" and stack:
            stack.pop()
    return stack[-1] if stack else None


def _block_name(tokens: list[Any], brace: int) -> str:
    """Return how the block opened at `tokens[brace]` was written: `NodeAttestor "aws_iid"`."""
    index = brace - 1
    if index >= 0 and tokens[index].type in ("EQUAL", "COLON"):
        index -= 1
    words: list[str] = []
    while index >= 0 and tokens[index].type in ("IDENTIFIER", "STRING"):
        token = tokens[index]
        words.append(f'"{token.value}"' if token.type == "STRING" else str(token.value))
        index -= 1
    return " ".join(reversed(words)) or "{"
