"""Detect credentials in the content of one file.

The engine finds the lines where an anchor matched; this module runs, on those lines only,
each pattern rule's regex and each keyed rule's key and value tests, then resolves overlaps:
when two rules claim overlapping text, the higher tier wins (a `ghp_` token inside a URL is a
GitHub token, not URL credentials), and the loser's identifier and details are kept when the
winner has none.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from warden.scan import context
from warden.scan.assignments import (
    HOLDER_KEYS,
    Assignment,
    assignment_after_key,
    parent_keys,
    xml_assignments,
)
from warden.scan.engine import Engine
from warden.scan.model import Confidence
from warden.scan.rule import Candidate, Check, PlaceholderPolicy, Rule, Tier

# Lines longer than this are read for keyed rules only around each anchor match, because
# minified files put megabytes on one line.
MAX_LINE = 4096
_ALLOW = "warden:allow"
# Any run of key characters followed by an assignment operator or a quote.
_KEY_OPERATOR = re.compile(
    r"""(?P<key>[A-Za-z_$@][\w.$@-]{0,120})(?:\\?["'`\]]){0,3}\s*(?:===|!==|==|!=|:=|=>|->|=|:|,|(?=\\?["'`]))"""
)
# Findings of these rules give way to the rule named when both carry the same identifier.
_MERGE_INTO = {"aws-secret-access-key": "aws-access-key"}


@dataclass
class Match:
    """A rule's accepted match; `start` and `end` are character offsets in the file."""

    rule: Rule
    secret: str
    line: int
    column: int
    start: int
    end: int
    check: Check
    inline_allowed: bool = False
    claimed_keys: set[tuple[int, int]] = field(default_factory=set)

    @property
    def confidence(self) -> Confidence:
        return self.check.confidence or self.rule.confidence


@dataclass
class FileContent:
    """A decoded file split into lines, with the character offset where each line starts."""

    text: str
    lines: list[str]
    starts: list[int]

    @classmethod
    def from_text(cls, text: str) -> FileContent:
        lines = text.split("\n")
        starts = [0, *itertools.accumulate(len(line) + 1 for line in lines)]
        return cls(text, lines, starts)

    def window(self, index: int, before: int, after: int) -> tuple[int, str]:
        first = max(0, index - before)
        last = min(len(self.lines) - 1, index + after)
        return first, "\n".join(self.lines[first : last + 1])

    def line_of(self, offset: int, first_hint: int = 0) -> int:
        low, high = first_hint, len(self.lines) - 1
        while low < high:
            middle = (low + high + 1) // 2
            if self.starts[middle] <= offset:
                low = middle
            else:
                high = middle - 1
        return low


class Detector:
    """Run the rule catalogue over file contents."""

    def __init__(self, rules: Sequence[Rule], engine: Engine) -> None:
        self.rules = list(rules)
        self.engine = engine
        # Highest tier first, so that a provider's keyed rule claims a key before the generic ones.
        self.keyed = sorted(
            (rule for rule in self.rules if rule.is_keyed), key=lambda rule: -rule.tier
        )
        self._keys = {rule.id: rule.compiled_keys() for rule in self.keyed}
        # One regex for "any keyed rule could care about this key", to skip most assignments.
        self._any_key = re.compile(
            "|".join(f"(?:{rule.keys})" for rule in self.keyed) or "(?!)", re.IGNORECASE | re.ASCII
        )

    def detect(
        self, data: bytes, content: FileContent | None, path: str, *, code: bool
    ) -> list[Match]:
        """Return the accepted matches in `data`, overlaps resolved, sorted by position.

        `content` is the decoded text, or None to decode `data` as UTF-8 with replacement
        characters. `code` says whether the file is source code, where an unquoted value is an
        expression and not a literal.
        """
        hits = self.engine.scan(data)
        if not hits:
            return []
        if content is None:
            content = FileContent.from_text(data.decode("utf-8", "replace"))
        pattern_lines: dict[int, set[int]] = defaultdict(set)
        keyed_lines: set[int] = set()
        newline_count = 0
        position = 0
        for anchor_index, end in sorted(hits, key=lambda hit: hit[1]):
            newline_count += data.count(b"\n", position, end)
            position = end
            line_index = newline_count
            # An anchor ending exactly at a newline belongs to the line before it.
            if end > 0 and data[end - 1 : end] == b"\n":
                line_index -= 1
            anchor = self.engine.anchors[anchor_index]
            if anchor.rule is not None and not anchor.rule.is_keyed:
                # build_anchors emits one anchor per rule, in catalogue order.
                pattern_lines[anchor_index].add(line_index)
            else:
                keyed_lines.add(line_index)

        matches: list[Match] = []
        for rule_index, line_indexes in pattern_lines.items():
            matches.extend(
                self._pattern_matches(self.rules[rule_index], sorted(line_indexes), content, path)
            )
        for line_index in sorted(keyed_lines):
            matches.extend(self._keyed_matches(line_index, content, path, code=code))
        return _resolve(matches, content)

    def _pattern_matches(
        self, rule: Rule, line_indexes: list[int], content: FileContent, path: str
    ) -> list[Match]:
        pattern = rule.compiled_pattern()
        required = rule.compiled_context()
        found: dict[int, Match] = {}
        for line_index in line_indexes:
            first, text = content.window(line_index, rule.lines_before, rule.lines_after)
            if required is not None and not required.search(text):
                continue
            base = content.starts[first]
            for match in pattern.finditer(text):
                group = (
                    "secret"
                    if "secret" in pattern.groupindex and match.group("secret") is not None
                    else 0
                )
                start = base + match.start(group)
                if start in found:
                    continue
                secret = match.group(group)
                if not secret or context.is_placeholder(secret, "", rule.placeholder):
                    continue
                groups = {
                    name: value for name, value in match.groupdict().items() if value is not None
                }
                check = rule.check(Candidate(secret, groups, text, path))
                if check is None:
                    continue
                secret_line = content.line_of(start, first)
                column = start - content.starts[secret_line] + 1
                found[start] = Match(
                    rule, secret, secret_line + 1, column, start, start + len(secret), check
                )
        return list(found.values())

    def _assignments(self, line: str, *, code: bool) -> list[Assignment]:
        # XML pairs first: `<add key="K" value="V"/>` also reads as `key="K"`, `value="V"`.
        found: dict[int, Assignment] = {
            assignment.value_start: assignment for assignment in xml_assignments(line[:MAX_LINE])
        }
        for match in _KEY_OPERATOR.finditer(line[:MAX_LINE]):
            assignment = assignment_after_key(
                line, match.start("key"), match.end("key"), unquoted_literals=not code
            )
            if assignment is not None and assignment.value_start not in found:
                found[assignment.value_start] = assignment
        return list(found.values())

    def _keyed_matches(
        self, line_index: int, content: FileContent, path: str, *, code: bool
    ) -> list[Match]:
        line = content.lines[line_index]
        assignments = self._assignments(line, code=code)
        if not assignments:
            return []
        parents: list[str] | None = None
        matches: list[Match] = []
        for assignment in assignments:
            key = assignment.key
            if not key:
                continue
            # Enclosing keys matter only for short keys (`secret:` under `jwt:`) and holders
            # (`default = …` in a Terraform variable); walking up is the costly step.
            if parents is None and (code or len(context.words(key)) > 2):
                parents = []
            elif parents is None:
                parents = parent_keys(content.lines, line_index)
            path_key = ".".join([*reversed(parents), key]) if parents else key
            generic_key = parents[0] if (key.lower() in HOLDER_KEYS and parents) else key
            if key.lower() not in HOLDER_KEYS and not self._any_key.search(key) and code:
                continue
            start = content.starts[line_index] + assignment.value_start
            claimed = False
            for rule in self.keyed:
                if rule.tier is Tier.GENERIC and claimed:
                    break
                keys = self._keys[rule.id]
                if rule.tier is Tier.GENERIC:
                    target = generic_key if keys.search(generic_key) else None
                else:
                    target = (
                        key if keys.search(key) else path_key if keys.search(path_key) else None
                    )
                if target is None:
                    continue
                if rule.claims_key:
                    claimed = True
                match = self._keyed_match(
                    rule, assignment, target, content, line_index, start, path
                )
                if match is not None:
                    matches.append(match)
                    if rule.tier is not Tier.GENERIC:
                        claimed = True
        return matches

    def _keyed_match(
        self,
        rule: Rule,
        assignment: Assignment,
        key: str,
        content: FileContent,
        line_index: int,
        start: int,
        path: str,
    ) -> Match | None:
        value = assignment.value
        if not rule.compiled_value().fullmatch(value):
            return None
        if rule.placeholder is PlaceholderPolicy.VALUE and (
            context.is_reference(value) or context.is_placeholder(value, key)
        ):
            return None
        if context.is_placeholder(value, key, PlaceholderPolicy.FORMAT):
            return None
        _first, text = content.window(line_index, rule.lines_before, rule.lines_after)
        required = rule.compiled_context()
        if required is not None and not required.search(text):
            return None
        groups = {
            "key": key,
            "value": value,
            "quoted": "1" if assignment.quoted else "",
            "operator": assignment.operator,
        }
        check = rule.check(Candidate(value, groups, text, path))
        if check is None:
            return None
        return Match(
            rule,
            value,
            line_index + 1,
            assignment.value_start + 1,
            start,
            start + len(value),
            check,
        )


def _resolve(matches: list[Match], content: FileContent) -> list[Match]:
    """Keep, of overlapping matches, the one of the highest tier; mark inline allowances."""
    ranked = sorted(
        matches,
        key=lambda match: (
            -match.rule.tier,
            -match.confidence,
            -(match.end - match.start),
            match.start,
        ),
    )
    kept: list[Match] = []
    for match in ranked:
        winner = next(
            (other for other in kept if match.start < other.end and other.start < match.end), None
        )
        if winner is None:
            kept.append(match)
            continue
        if winner.check.identifier is None and match.check.identifier is not None:
            winner.check = replace(winner.check, identifier=match.check.identifier)
        if match.check.details:
            merged = {**match.check.details, **winner.check.details}
            winner.check = replace(winner.check, details=merged)

    by_rule_identifier = {(match.rule.id, match.check.identifier) for match in kept}
    kept = [
        match
        for match in kept
        if not (
            match.rule.id in _MERGE_INTO
            and (_MERGE_INTO[match.rule.id], match.check.identifier) in by_rule_identifier
        )
    ]
    for match in kept:
        match.inline_allowed = _allowed(content, match.line - 1, match.secret.count("\n"))
    return sorted(kept, key=lambda match: (match.start, match.rule.id))


def _allowed(content: FileContent, index: int, extra_lines: int) -> bool:
    """Tell whether `warden:allow` is on the match's lines or alone on the line above."""
    for line in content.lines[index : index + extra_lines + 1]:
        if _ALLOW in line:
            return True
    if index > 0:
        above = content.lines[index - 1].strip()
        return _ALLOW in above and len(above) < 80
    return False
