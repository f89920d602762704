"""The multi-pattern engine: one pass over a file finds every rule's candidates.

All anchors (one per pattern rule, one per keyed rule, plus the assignment shapes that keyed
rules read) are compiled into a single Hyperscan database, so a file is read once whatever
the number of rules. Python then checks only the lines where an anchor matched. When
Hyperscan cannot be imported (it needs x86-64 with SSSE3), the engine falls back to Python's
`re`, one regex per anchor: the results are the same, only slower.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from warden.scan.rule import Rule

logger = logging.getLogger(__name__)

# What follows a key before its value: closing quotes or brackets, then an operator, or a
# quote (Groovy's `password 'x'`), or ` value=` of XML attributes.
_KEY_TAIL = r"""[\w.$@-]{0,40}(?:\\?["'`\]]){0,3}\s*(?:[:=,]|!=|->|["'`]|value\s*=)"""

# Extra anchors that feed keyed rules: Terraform/Helm holders and XML `<add key=…>`.
HOLDER_ANCHOR = r"""\b(?:default|value|val|data|content)\s*[:=]\s*["'`]?[^\s"'`]"""
XML_ANCHOR = (
    r"""<add\s+(?:key|name)\s*=|<[A-Za-z_][\w.:-]{0,80}(?:pass|secret|token|key)[\w.:-]{0,40}>"""
)


@dataclass(frozen=True)
class Anchor:
    """One expression of the database: `rule` is None for the shared keyed-rule anchors."""

    expression: str
    caseless: bool
    rule: Rule | None


def _strip_edges(keys: str) -> str:
    return keys.replace("^", "").replace("$", "")


# Lookarounds such as `(?![A-Za-z0-9])` and `(?<![\w.])`, which Hyperscan does not support;
# an anchor without them matches a superset, and the rule's own regex decides.
_LOOKAROUND = re.compile(r"\(\?<?[!=](?:\[(?:\\.|[^\]])*\]|[^()\[\]])*\)")


def anchor_expression(rule: Rule) -> str:
    """Return the Hyperscan expression that finds a pattern rule's candidates."""
    return rule.anchor or _LOOKAROUND.sub("", rule.pattern or "")


def build_anchors(rules: Sequence[Rule]) -> list[Anchor]:
    anchors: list[Anchor] = []
    for rule in rules:
        if rule.is_keyed:
            expression = f"(?:{_strip_edges(rule.keys or '')}){_KEY_TAIL}"
            anchors.append(Anchor(expression, True, rule))
        else:
            anchors.append(Anchor(anchor_expression(rule), rule.ignore_case, rule))
    anchors.append(Anchor(HOLDER_ANCHOR, True, None))
    anchors.append(Anchor(XML_ANCHOR, True, None))
    return anchors


def _without_inline_flags(expression: str) -> tuple[str, bool]:
    if expression.startswith("(?i)"):
        return expression[4:], True
    return expression, False


class Engine:
    """Find anchor matches in a byte string: `scan` returns (anchor index, end offset) pairs."""

    def __init__(self, rules: Sequence[Rule], *, use_hyperscan: bool = True) -> None:
        self.anchors = build_anchors(rules)
        self.name = "re"
        self.warning: str | None = None
        self._database = None
        self._compiled: list[re.Pattern[bytes]] = []
        if use_hyperscan:
            try:
                self._database = self._compile_hyperscan()
                self.name = "hyperscan"
            except ImportError as error:
                self.warning = (
                    f"hyperscan is not available ({error}); scanning with Python's re, which is "
                    "several times slower. Install hyperscan on x86-64 for full speed."
                )
                logger.warning("scan engine fallback: %s", self.warning)
        if self._database is None:
            self._compiled = [self._compile_re(anchor) for anchor in self.anchors]

    def _compile_hyperscan(self) -> object:
        import hyperscan

        expressions: list[bytes] = []
        flags: list[int] = []
        for anchor in self.anchors:
            expression, caseless = _without_inline_flags(anchor.expression)
            expressions.append(expression.encode())
            flags.append(hyperscan.HS_FLAG_CASELESS if caseless or anchor.caseless else 0)
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
        return database

    @staticmethod
    def _compile_re(anchor: Anchor) -> re.Pattern[bytes]:
        expression, caseless = _without_inline_flags(anchor.expression)
        flags = re.IGNORECASE if caseless or anchor.caseless else 0
        return re.compile(expression.encode(), flags)

    def scan(self, data: bytes) -> list[tuple[int, int]]:
        """Return (anchor index, end offset) for every anchor match in `data`."""
        hits: list[tuple[int, int]] = []
        if self._database is not None:

            def on_match(anchor_id: int, start: int, end: int, flags: int, context: object) -> None:
                hits.append((anchor_id, end))

            self._database.scan(data, match_event_handler=on_match)  # type: ignore[attr-defined]
            return hits
        for index, pattern in enumerate(self._compiled):
            hits.extend((index, match.end()) for match in pattern.finditer(data))
        return hits
