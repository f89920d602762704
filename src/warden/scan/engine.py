"""The multi-pattern engine: one pass over a file finds every rule's candidates.

All anchors (one per pattern rule, one per keyed rule, plus the assignment shapes that keyed
rules read) are compiled into one Hyperscan database per `Profile`, so a file is read once
whatever the number of rules. Python then checks only the lines where an anchor matched, so the
anchors decide the speed. Each keyed anchor spans the key, the operator and the first
characters of a value long enough for its rule. In source code it also requires the quote
that opens a literal.

When Hyperscan cannot be imported (it needs x86-64 with SSSE3), the engine falls back to
Python's `re`, one regex per anchor: the results are the same, only slower.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from warden.scan import compiled
from warden.scan.rule import Rule

logger = logging.getLogger(__name__)


class Profile(enum.Enum):
    """The reading of a file's content.

    CODE: source code, where an unquoted value after `=` is an expression, so a keyed rule
    needs a quoted literal and enclosing blocks are never read as parent keys. TEXT:
    configuration, documentation and everything else, where `password: hunter2` is a value.
    """

    CODE = "code"
    TEXT = "text"


class AnchorKind(enum.Enum):
    """The work that an anchor's match sends to Python.

    PATTERN: the line, to the anchor's pattern rule. KEYED: the line's assignments, to every
    keyed rule. CONCATENATION: string literals joined with `+` or `.` on one line, to the
    pattern rules once joined.
    """

    PATTERN = "pattern"
    KEYED = "keyed"
    CONCATENATION = "concatenation"


# Keyed anchors require at most this many value characters: enough to skip `token = x`,
# `password: ""` and `api_key, ` without making the database slow to compile.
_MAX_HEAD = 16
# Comparisons (`password == "letmein42"`) are held to the password rules, whatever the key.
_COMPARISON_HEAD = 4

# A character of a key as `warden.scan.assignments` reads it, and the start of a key: the
# start of the data or a character that cannot belong to a key.
_KEY_CHAR = r"[\w.$@-]"
_KEY_START = r"(?:^|[^\w.$@-])"
# After a key: up to 40 more key characters (`_SECRET_ACCESS_KEY`) unless the key must end
# there, then closing quotes or brackets of a quoted or indexed key (`"password":`,
# `['token'] =`). Spaces never include a newline, because the assignment reader reads one
# line.
_KEY_MORE = _KEY_CHAR + "{0,40}"
_KEY_CLOSE = r"""(?:\\?["'`\]]){0,3}"""
_QUOTE = r"""\\?["'`]"""
# Assignment operators of the formats that `warden.scan.assignments` reads, the `value=`
# of XML attributes, and (in code) a type annotation: `password: str = "…"`. A comma
# (`set("password", "…")`) has an anchor of its own: its key is a whole quoted string.
_OPERATOR = r"""(?::=|=>|->|[:=]|value[ \t]*=)"""
_ANNOTATION = r""":[ \t]*[A-Za-z_][\w.\[\], |]{0,60}="""
_COMPARISON = r"""(?:===?|!==?)"""

# Holders of a value for an enclosing named block: Terraform `variable "x" { default = … }`,
# Helm and CloudFormation `value:`. Only configuration reads parent keys.
HOLDER_ANCHOR = r"""\b(?i:default|value|val|data|content)[ \t]*[:=][ \t]*["'`]?[^\s"'`][^\n]{3}"""
XML_ANCHOR = (
    r"""(?i:<add\s+(?:key|name)\s*=|<[A-Za-z_][\w.:-]{0,80}(?:pass|secret|token|key)"""
    r"""[\w.:-]{0,40}>[^<>\s])"""
)
# Two or more string literals of token characters joined on one line: `"ghp_" + "…"` in
# Python, JavaScript and Java, `'sk_' . '…'` in PHP and Perl.
_PIECE = r"""["'][A-Za-z0-9_+/=.~-]{2,}["']"""
CONCATENATION_ANCHOR = rf"""{_PIECE}[ \t]*[+.][ \t]*{_PIECE}"""


@dataclass(frozen=True)
class Anchor:
    """One expression of a database; `rule` is set for PATTERN anchors only."""

    expression: str
    caseless: bool
    kind: AnchorKind
    rule: Rule | None = None


def _alternatives(expression: str) -> list[str]:
    """Split a regex at its top-level `|`, outside groups and character classes."""
    parts: list[str] = []
    depth = 0
    in_class = False
    current = ""
    index = 0
    while index < len(expression):
        char = expression[index]
        if char == "\\":
            current += expression[index : index + 2]
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if expression.startswith(("[^]", "[]"), index):
                # A `]` right after `[` or `[^` is a literal member, not the end.
                step = 3 if expression[index + 1] == "^" else 2
                current += expression[index : index + step]
                index += step
                continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(current)
            current = ""
            index += 1
            continue
        current += char
        index += 1
    parts.append(current)
    return parts


def _replace_edges(expression: str, start: str) -> str:
    """Replace `^` (outside character classes) with `start` and drop `$`, which Hyperscan
    cannot express without lookahead: the result matches a superset."""
    result = ""
    in_class = False
    index = 0
    while index < len(expression):
        char = expression[index]
        if char == "\\":
            result += expression[index : index + 2]
            index += 2
            continue
        if in_class:
            in_class = char != "]"
            result += char
        elif char == "[":
            in_class = True
            step = 1
            if expression.startswith("[^", index):
                step = 2
            if expression.startswith("]", index + step):
                step += 1
            result += expression[index : index + step]
            index += step
            continue
        elif char == "^":
            result += start
        elif char != "$":
            result += char
        index += 1
    return result


def key_expression(keys: str, *, start: str = _KEY_START) -> str:
    """Return the anchor part that matches a key whose name `keys` (a rule's regex over
    key names) searches, up to the end of a quoted key's closing quote.

    `^` in `keys` becomes `start`: by default a character that cannot be part of a key. An
    alternative that ends with `$` (`^token$`) must end the key there; the others may be
    followed by more key characters (`secret` in `client_secret_value`).
    """
    parts = []
    for alternative in _alternatives(keys):
        exact = alternative.endswith("$") and not alternative.endswith("\\$")
        body = _replace_edges(alternative, start)
        parts.append(f"(?i:{body})" + ("" if exact else _KEY_MORE))
    return f"(?:{'|'.join(parts)}){_KEY_CLOSE}"


# Lookarounds such as `(?![A-Za-z0-9])` and `(?<![\w.])`, which Hyperscan does not support;
# an anchor without them matches a superset, and the rule's own regex decides.
_LOOKAROUND = re.compile(r"\(\?<?[!=](?:\[(?:\\.|[^\]])*\]|[^()\[\]])*\)")


def anchor_expression(rule: Rule) -> str:
    """Return the Hyperscan expression that finds a pattern rule's candidates."""
    return rule.anchor or _LOOKAROUND.sub("", rule.pattern or "")


def _value_head(length: int, *, quoted: bool = True) -> str:
    """Match the first `length` characters of a value: no space first, then any characters
    of the line (a quoted password may hold spaces and quotes of another kind). An unquoted
    value cannot start with a quote or a bracket: `password: {` opens an object and
    `token: [` a list."""
    length = max(1, min(length, _MAX_HEAD))
    rest = f"[^\\n]{{{length - 1}}}" if length > 1 else ""
    first = "[^\\s]" if quoted else "[^\\s\"'`{[(]"
    return first + rest


def keyed_expression(
    keys: str, min_length: int, profile: Profile, value_anchor: str | None = None
) -> str:
    """Return the anchor of an assignment to a key matching `keys` (case-insensitively)
    whose value has at least `min_length` characters, or starts as `value_anchor` does.

    The forms: `key <operator> value`, `key 'value'` (Groovy, Gradle, nginx: a space, then
    a quote) and `"key", "value"` (a call or a pair, where the key is a whole quoted string).
    In code the value must be quoted.
    """
    key = key_expression(keys)
    if value_anchor is None:
        quoted = f"(?:{_QUOTE}){{1,2}}{_value_head(min_length)}"
        unquoted = _value_head(min_length, quoted=False)
    else:
        quoted = f"(?:{_QUOTE}){{1,2}}(?:{value_anchor})"
        unquoted = f"(?:{value_anchor})"
    operator = f"{_OPERATOR}|{_ANNOTATION}" if profile is Profile.CODE else _OPERATOR
    value = quoted if profile is Profile.CODE else f"(?:{quoted}|{unquoted})"
    # The opening quote of a key at the start of a line may sit on the line before.
    quoted_key = f"(?:{_QUOTE}|^|\\n){_KEY_CHAR}{{0,40}}{key_expression(keys, start='')}"
    return (
        f"{key}(?:[ \\t]*(?:{operator})[ \\t]*{value}|[ \\t]+{quoted})"
        f"|{quoted_key}[ \\t]*,[ \\t]*{quoted}"
    )


def _comparison_expression(keys: str, profile: Profile) -> str:
    key = f"{key_expression(keys)}[ \\t]*{_COMPARISON}[ \\t]*"
    quoted = f"(?:{_QUOTE}){{1,2}}{_value_head(_COMPARISON_HEAD)}"
    if profile is Profile.CODE:
        return key + quoted
    return f"{key}(?:{quoted}|{_value_head(_COMPARISON_HEAD, quoted=False)})"


def build_anchors(rules: Sequence[Rule], profile: Profile) -> list[Anchor]:
    """Return the anchors of `rules` for one profile; pattern anchors come first, in
    catalogue order."""
    anchors: list[Anchor] = []
    keyed = [rule for rule in rules if rule.is_keyed]
    for rule in rules:
        if not rule.is_keyed:
            anchors.append(
                Anchor(anchor_expression(rule), rule.ignore_case, AnchorKind.PATTERN, rule)
            )
    for rule in keyed:
        expression = keyed_expression(rule.keys or "", rule.min_length, profile, rule.value_anchor)
        anchors.append(Anchor(expression, False, AnchorKind.KEYED))
        if rule.nested_keys and profile is Profile.TEXT:
            # Only configuration reads parent keys.
            nested = keyed_expression(rule.nested_keys, rule.min_length, profile)
            anchors.append(Anchor(nested, False, AnchorKind.KEYED))
    if keyed:
        union = "|".join(f"(?:{rule.keys})" for rule in keyed)
        anchors.append(Anchor(_comparison_expression(union, profile), False, AnchorKind.KEYED))
    anchors.append(Anchor(XML_ANCHOR, False, AnchorKind.KEYED))
    if profile is Profile.TEXT:
        anchors.append(Anchor(HOLDER_ANCHOR, False, AnchorKind.KEYED))
    else:
        anchors.append(Anchor(CONCATENATION_ANCHOR, False, AnchorKind.CONCATENATION))
    return anchors


def _without_inline_flags(expression: str) -> tuple[str, bool]:
    if expression.startswith("(?i)"):
        return expression[4:], True
    return expression, False


class _Database:
    """The anchors of one profile, compiled for Hyperscan or for `re`.

    A Hyperscan database comes from `serialized` when given (a parent process's, sent to a
    worker), else from the per-user cache (`warden.scan.compiled`), else from compiling.
    """

    def __init__(
        self,
        anchors: list[Anchor],
        use_hyperscan: bool,
        *,
        serialized: bytes | None = None,
        cache: bool = True,
    ) -> None:
        self.anchors = anchors
        self.hyperscan: Any = None  # a hyperscan.Database; the package ships no types
        self.compiled: list[re.Pattern[bytes]] = []
        if use_hyperscan:
            self.hyperscan = self._load_hyperscan(serialized, cache)
        else:
            self.compiled = [self._compile_re(anchor) for anchor in anchors]

    def _expressions(self) -> tuple[list[bytes], list[int]]:
        import hyperscan

        expressions: list[bytes] = []
        flags: list[int] = []
        for anchor in self.anchors:
            expression, caseless = _without_inline_flags(anchor.expression)
            expressions.append(expression.encode())
            flags.append(hyperscan.HS_FLAG_CASELESS if caseless or anchor.caseless else 0)
        return expressions, flags

    def _load_hyperscan(self, serialized: bytes | None, cache: bool) -> Any:
        import hyperscan

        expressions, flags = self._expressions()
        key = compiled.cache_key(
            compiled.package_version("hyperscan").encode(),
            b"\0".join(expressions),
            bytes(str(flags), "ascii"),
        )
        stored = serialized
        if stored is None and cache:
            stored = compiled.load(key)
        if stored is not None:
            try:
                database = hyperscan.loadb(stored, hyperscan.HS_MODE_BLOCK)
                database.scratch = hyperscan.Scratch(database)
                return database
            except hyperscan.error as error:
                logger.debug("recompiling the scan database: the stored one failed: %s", error)
        database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        try:
            database.compile(
                expressions=expressions,
                ids=list(range(len(expressions))),
                elements=len(expressions),
                flags=flags,
            )
        except hyperscan.error as error:
            raise ValueError(f"hyperscan rejected a scan rule anchor: {error}") from error
        if cache:
            compiled.store(key, hyperscan.dumpb(database))
        return database

    def serialize(self) -> bytes | None:
        if self.hyperscan is None:
            return None
        import hyperscan

        data: bytes = hyperscan.dumpb(self.hyperscan)
        return data

    @staticmethod
    def _compile_re(anchor: Anchor) -> re.Pattern[bytes]:
        expression, caseless = _without_inline_flags(anchor.expression)
        flags = re.IGNORECASE if caseless or anchor.caseless else 0
        return re.compile(expression.encode(), flags)

    def scan(self, data: bytes) -> list[tuple[int, int]]:
        hits: list[tuple[int, int]] = []
        if self.hyperscan is not None:

            def on_match(anchor_id: int, start: int, end: int, flags: int, context: object) -> None:
                hits.append((anchor_id, end))

            self.hyperscan.scan(data, match_event_handler=on_match)
            return hits
        for index, pattern in enumerate(self.compiled):
            hits.extend((index, match.end()) for match in pattern.finditer(data))
        return hits


class Engine:
    """Find anchor matches in a byte string: `scan` returns (anchor index, end offset) pairs,
    the index pointing into `anchors(profile)`.

    `serialized` takes the databases of `serialize()` from another process with the same
    rules; `cache=False` compiles without reading or writing the per-user cache.
    """

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        use_hyperscan: bool = True,
        serialized: dict[str, bytes] | None = None,
        cache: bool = True,
    ) -> None:
        self.name = "re"
        self.warning: str | None = None
        if use_hyperscan:
            try:
                import hyperscan  # noqa: F401
            except ImportError as error:
                use_hyperscan = False
                self.warning = (
                    f"hyperscan is not available ({error}); scanning with Python's re, which is "
                    "several times slower. Install hyperscan on x86-64 for full speed."
                )
                logger.warning("scan engine fallback: %s", self.warning)
            else:
                self.name = "hyperscan"
        stored = serialized or {}
        self._databases = {
            profile: _Database(
                build_anchors(rules, profile),
                use_hyperscan,
                serialized=stored.get(profile.value),
                cache=cache,
            )
            for profile in Profile
        }

    def anchors(self, profile: Profile = Profile.TEXT) -> list[Anchor]:
        return self._databases[profile].anchors

    def serialize(self) -> dict[str, bytes]:
        """Return the compiled Hyperscan databases by profile name (empty without Hyperscan)."""
        serialized: dict[str, bytes] = {}
        for profile, database in self._databases.items():
            data = database.serialize()
            if data is not None:
                serialized[profile.value] = data
        return serialized

    def scan(self, data: bytes, profile: Profile = Profile.TEXT) -> list[tuple[int, int]]:
        """Return (anchor index, end offset) for every anchor match in `data`."""
        return self._databases[profile].scan(data)
