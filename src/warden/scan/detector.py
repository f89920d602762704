"""Detect credentials in the content of one file.

The engine finds the lines where an anchor matched; this module runs, on those lines only,
each pattern rule's regex and each keyed rule's key and value tests, then resolves overlaps:
when two rules claim overlapping text, the higher tier wins (a `ghp_` token inside a URL is a
GitHub token, not URL credentials), and the loser's identifier and details are kept when the
winner has none.
"""

from __future__ import annotations

import bisect
import codecs
import itertools
import operator
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from warden.scan import context
from warden.scan.assignments import (
    HOLDER_KEYS,
    Assignment,
    assignment_after_key,
    concatenations,
    parent_keys,
    xml_assignments,
)
from warden.scan.engine import AnchorKind, Engine, Profile
from warden.scan.model import Confidence
from warden.scan.rule import Candidate, Check, PlaceholderPolicy, Rule, Tier

# Lines longer than this (minified code, data on one line) are read only in windows around
# each anchor match: `_BEFORE` characters before the match's end and `_AFTER` after it.
MAX_LINE = 4096
_BEFORE = 1024
_AFTER = 16384
# On long lines a keyed anchor's match is read backwards from its end. The value starts at
# most `_VALUE_SLACK` characters before that end, because an anchor spans quotes and at most
# 101 characters of the value (the generic secret rule's value anchor). The key and its
# operator lie within `_KEY_WINDOW` characters before the end, and an XML element's value
# within `_VALUE_WINDOW` after it.
_KEY_WINDOW = 384
# Characters on each side of a match that a rule's check reads as context on long lines.
_CONTEXT = MAX_LINE
_VALUE_WINDOW = 1024
_VALUE_SLACK = 128
_KEY_CACHE_SIZE = 50_000
_ALLOW = "warden:allow"
# A comment line that starts with the marker, perhaps followed by a reason.
_ALLOW_COMMENT = re.compile(r"\s*(?:#+|//+|/\*+|\*|--|;+|<!--|%+|'|::|(?i:rem)\b)\s*warden:allow\b")
# On long lines, how far after a match's end its `warden:allow` may be.
_ALLOW_REACH = 256
# Any run of key characters followed by an assignment operator or a quote.
_KEY_OPERATOR = re.compile(
    r"""(?P<key>[A-Za-z_$@][\w.$@-]{0,120})(?:\\?["'`\]]){0,3}\s*(?:===|!==|==|!=|:=|=>|->|=|:|,|(?=\\?["'`]))"""
)
# Findings of these rules give way to the rule named when both carry the same identifier.
_MERGE_INTO = {"aws-secret-access-key": "aws-access-key"}
_COMPARISONS = frozenset({"==", "!=", "===", "!=="})


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
    # Inside a Python docstring (a triple-quoted string), where code shows examples.
    in_documentation: bool = False
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
    # Enclosing keys of the lines read so far (see `parent_keys`).
    parents: dict[int, list[str]] = field(default_factory=dict)

    @classmethod
    def from_text(cls, text: str) -> FileContent:
        lines = text.split("\n")
        # starts[i] = len(lines[0]) + … + len(lines[i-1]) + i (the newlines), in C loops.
        lengths = itertools.accumulate(map(len, lines), initial=0)
        starts = list(map(operator.add, lengths, itertools.count()))
        return cls(text, lines, starts)

    def window(self, index: int, before: int, after: int) -> tuple[int, str]:
        first = max(0, index - before)
        last = min(len(self.lines) - 1, index + after)
        if first == last:
            return first, self.lines[first]
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


class _Columns:
    """Turn byte offsets of anchor matches into character columns of their lines.

    Byte and character columns differ only after non-ASCII characters, and only long lines
    need exact columns. A long non-ASCII line is therefore decoded incrementally as matches
    move along it (they arrive sorted by offset), not from its start for every match.
    """

    def __init__(self, data: bytes, content: FileContent) -> None:
        self.data = data
        self.content = content
        self.ascii = data.isascii()
        self.line = -1
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.byte = 0
        self.characters = 0

    def column(self, line_index: int, line_start: int, end: int) -> int:
        if self.ascii or len(self.content.lines[line_index]) <= MAX_LINE:
            return end - line_start
        if line_index != self.line or end < self.byte:
            self.line, self.byte, self.characters = line_index, line_start, 0
            self.decoder.reset()
        # A match may end inside a multi-byte character, which then counts from the next call.
        self.characters += len(self.decoder.decode(self.data[self.byte : end]))
        self.byte = end
        return self.characters


def _around(text: str, start: int, end: int) -> str:
    """Return the context a rule's check reads around the match at `start`..`end` of `text`:
    all of it, or `_CONTEXT` characters on each side when it is longer than `MAX_LINE`.

    Checks search their context (an AWS key id looks for its secret nearby), so on a
    minified line holding thousands of matches each would otherwise read the whole line.
    """
    if len(text) <= MAX_LINE:
        return text
    return text[max(0, start - _CONTEXT) : end + _CONTEXT]


def _segments(
    line_length: int, columns: list[int], before: int = _BEFORE, after: int = _AFTER
) -> list[tuple[int, int]]:
    """Return the parts of a line to read: all of it when it is short, else the merged
    windows around the columns where anchors ended."""
    if line_length <= MAX_LINE:
        return [(0, line_length)]
    segments: list[tuple[int, int]] = []
    for column in sorted(columns):
        first, last = max(0, column - before), min(line_length, column + after)
        if segments and first <= segments[-1][1]:
            segments[-1] = (segments[-1][0], max(segments[-1][1], last))
        else:
            segments.append((first, last))
    return segments


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
        # Key name -> ids of the keyed rules whose key regex finds it. Files repeat the same
        # few key names, so each is searched once per process.
        self._rules_by_key: dict[str, frozenset[str]] = {}

    def detect(
        self, data: bytes, text: str | FileContent | None, path: str, *, code: bool
    ) -> list[Match]:
        """Return the accepted matches in `data`, overlaps resolved, sorted by position.

        `text` is the decoded content (or its lines), or None to decode `data` as UTF-8 with
        replacement characters. It is split into lines only when an anchor matched. `code`
        says whether the file is source code, where an unquoted value is an expression and
        not a literal.
        """
        profile = Profile.CODE if code else Profile.TEXT
        hits = self.engine.scan(data, profile)
        if not hits:
            return []
        if isinstance(text, FileContent):
            content = text
        else:
            content = FileContent.from_text(
                data.decode("utf-8", "replace") if text is None else text
            )
        anchors = self.engine.anchors(profile)
        # Per anchor and per line: the columns where the anchor's matches ended, which long
        # lines need to know which parts to read.
        by_anchor: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
        column_of = _Columns(data, content)
        newline_count = 0
        position = 0
        line_start = 0
        for anchor_index, end in sorted(hits, key=lambda hit: hit[1]):
            newlines = data.count(b"\n", position, end)
            if newlines:
                newline_count += newlines
                line_start = data.rfind(b"\n", position, end) + 1
            position = end
            line_index = newline_count
            start_of_line = line_start
            # An anchor ending exactly at a newline belongs to the line before it.
            if end > 0 and data[end - 1] == 0x0A:
                line_index -= 1
                start_of_line = data.rfind(b"\n", 0, end - 1) + 1
            column = column_of.column(line_index, start_of_line, end)
            by_anchor[anchor_index][line_index].append(column)

        matches: list[Match] = []
        keyed_lines: dict[int, list[int]] = defaultdict(list)
        concatenation_lines: dict[int, list[int]] = defaultdict(list)
        for anchor_index, by_line in by_anchor.items():
            anchor = anchors[anchor_index]
            if anchor.kind is AnchorKind.PATTERN and anchor.rule is not None:
                matches.extend(self._pattern_matches(anchor.rule, by_line, content, path))
                continue
            lines = keyed_lines if anchor.kind is AnchorKind.KEYED else concatenation_lines
            for line_index, columns in by_line.items():
                lines[line_index].extend(columns)
        for line_index in sorted(keyed_lines):
            matches.extend(
                self._keyed_matches(line_index, keyed_lines[line_index], content, path, code=code)
            )
        for line_index in sorted(concatenation_lines):
            matches.extend(
                self._concatenated_matches(
                    line_index, concatenation_lines[line_index], content, path
                )
            )
        kept = _resolve(matches)
        for match in kept:
            match.inline_allowed = allowed(
                content, match.line - 1, match.secret.count("\n"), match.end
            )
        if kept and path.endswith((".py", ".pyi")):
            _mark_documentation(kept, context.triple_quoted_spans(content.text))
        return kept

    def detect_value(self, value: str, key: str | None, path: str) -> list[Match]:
        """Run the rules on one value read out of a file's structure, such as the decoded
        value of a Kubernetes Secret.

        The pattern rules and the assignments inside the value run as on a configuration
        file. With `key`, the keyed rules also read the whole value as assigned to `key`.
        Offsets and lines of the returned matches are relative to `value`; inline
        allowances are left to the caller, who knows where the value sits.
        """
        content = FileContent.from_text(value)
        data = value.encode("utf-8", "surrogateescape")
        matches = self.detect(data, content, path, code=False)
        stripped = value.strip()
        if key and stripped and "\n" not in stripped:
            start = value.index(stripped)
            assignment = Assignment(key, stripped, start, start + len(stripped), True, ":")
            matches.extend(
                self._assignment_matches(assignment, key, key, content, 0, start, path, code=False)
            )
        return _resolve(matches)

    def _pattern_matches(
        self, rule: Rule, by_line: dict[int, list[int]], content: FileContent, path: str
    ) -> list[Match]:
        pattern = rule.compiled_pattern()
        required = rule.compiled_context()
        found: dict[int, Match] = {}
        for line_index in sorted(by_line):
            first, text = content.window(line_index, rule.lines_before, rule.lines_after)
            base = content.starts[first]
            segments = [(0, len(text))]
            if len(text) > MAX_LINE and first == line_index:
                # A long single line: the secret sits around the anchor's end.
                segments = _segments(len(text), by_line[line_index])
            for segment_start, segment_end in segments:
                segment = text[segment_start:segment_end]
                if required is not None and not required.search(segment):
                    continue
                self._pattern_segment(
                    rule, pattern, segment, base + segment_start, first, content, path, found
                )
        return list(found.values())

    def _pattern_segment(
        self,
        rule: Rule,
        pattern: re.Pattern[str],
        text: str,
        base: int,
        first: int,
        content: FileContent,
        path: str,
        found: dict[int, Match],
    ) -> None:
        has_secret_group = "secret" in pattern.groupindex
        for match in pattern.finditer(text):
            group = "secret" if has_secret_group and match.group("secret") is not None else 0
            start = base + match.start(group)
            if start in found:
                continue
            secret = match.group(group)
            if not secret or context.is_placeholder(secret, "", rule.placeholder):
                continue
            groups = {name: value for name, value in match.groupdict().items() if value is not None}
            around = _around(text, match.start(), match.end())
            check = rule.check(Candidate(secret, groups, around, path))
            if check is None:
                continue
            secret_line = content.line_of(start, first)
            column = start - content.starts[secret_line] + 1
            found[start] = Match(
                rule, secret, secret_line + 1, column, start, start + len(secret), check
            )

    def _assignments(self, line: str, *, code: bool) -> list[Assignment]:
        # XML pairs first: `<add key="K" value="V"/>` also reads as `key="K"`, `value="V"`.
        found: dict[int, Assignment] = {
            assignment.value_start: assignment for assignment in xml_assignments(line)
        }
        for match in _KEY_OPERATOR.finditer(line):
            assignment = assignment_after_key(
                line, match.start("key"), match.end("key"), unquoted_literals=not code
            )
            if assignment is not None and assignment.value_start not in found:
                found[assignment.value_start] = assignment
        return list(found.values())

    def _assignments_at(self, line: str, columns: list[int], *, code: bool) -> list[Assignment]:
        """Read, on a long line, only the assignments whose value starts where an anchor
        ended: minified files hold thousands of other assignments on the same line."""
        found: dict[int, Assignment] = {}
        for column in sorted(set(columns)):
            first = max(0, column - _KEY_WINDOW)
            candidates = [
                replace(
                    assignment,
                    value_start=first + assignment.value_start,
                    value_end=first + assignment.value_end,
                )
                for assignment in xml_assignments(line[first : column + _VALUE_WINDOW])
            ]
            # Keys whose operator ends just before the anchor's end; the value is read from
            # the whole line, so that a long value is not cut.
            for match in _KEY_OPERATOR.finditer(line, first, column):
                if column - match.end() > _VALUE_SLACK:
                    continue
                assignment = assignment_after_key(
                    line, match.start("key"), match.end("key"), unquoted_literals=not code
                )
                if assignment is not None:
                    candidates.append(assignment)
            for assignment in candidates:
                distance = column - assignment.value_start
                if 0 <= distance <= _VALUE_SLACK and assignment.value_start not in found:
                    found[assignment.value_start] = assignment
        return list(found.values())

    def _keyed_matches(
        self, line_index: int, columns: list[int], content: FileContent, path: str, *, code: bool
    ) -> list[Match]:
        line = content.lines[line_index]
        if len(line) <= MAX_LINE:
            assignments = self._assignments(line, code=code)
        else:
            assignments = self._assignments_at(line, columns, code=code)
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
                parents = parent_keys(content.lines, line_index, memo=content.parents)
            path_key = ".".join([*reversed(parents), key]) if parents else key
            generic_key = parents[0] if (key.lower() in HOLDER_KEYS and parents) else key
            if not self._rules_for(path_key) and not self._rules_for(generic_key):
                continue
            start = content.starts[line_index] + assignment.value_start
            matches.extend(
                self._assignment_matches(
                    assignment, path_key, generic_key, content, line_index, start, path, code=code
                )
            )
        return matches

    def _assignment_matches(
        self,
        assignment: Assignment,
        path_key: str,
        generic_key: str,
        content: FileContent,
        line_index: int,
        start: int,
        path: str,
        *,
        code: bool,
    ) -> list[Match]:
        """Run the keyed rules, highest tier first, on one assignment.

        `path_key` is the key with its enclosing keys (`jwt.secret`), `generic_key` the key
        the generic rules read (the enclosing key for a holder such as `default`).
        """
        key = assignment.key
        by_key = self._rules_for(key)
        by_path_key = self._rules_for(path_key)
        by_generic_key = self._rules_for(generic_key)
        matches: list[Match] = []
        claimed = False
        for rule in self.keyed:
            if rule.tier is Tier.GENERIC and claimed:
                break
            if rule.tier is Tier.GENERIC:
                target = generic_key if rule.id in by_generic_key else None
            elif rule.id in by_key:
                target = key
            else:
                target = path_key if rule.id in by_path_key else None
            if target is None:
                continue
            if rule.claims_key:
                claimed = True
            match = self._keyed_match(rule, assignment, target, content, line_index, start, path)
            if match is not None:
                matches.append(match)
                if rule.tier is not Tier.GENERIC:
                    claimed = True
        return matches

    def _rules_for(self, key: str) -> frozenset[str]:
        """Return the ids of the keyed rules whose key regex finds `key`."""
        found = self._rules_by_key.get(key)
        if found is None:
            if len(self._rules_by_key) > _KEY_CACHE_SIZE:
                self._rules_by_key.clear()
            found = frozenset(rule.id for rule in self.keyed if self._keys[rule.id].search(key))
            self._rules_by_key[key] = found
        return found

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
        # Comparisons have their own anchor, with the minimum of the password rules.
        if len(value) < rule.min_length and assignment.operator not in _COMPARISONS:
            return None
        if not rule.compiled_value().fullmatch(value):
            return None
        if rule.placeholder is PlaceholderPolicy.VALUE and (
            context.is_reference(value) or context.is_placeholder(value, key)
        ):
            return None
        if context.is_placeholder(value, key, PlaceholderPolicy.FORMAT):
            return None
        first, text = content.window(line_index, rule.lines_before, rule.lines_after)
        value_start = content.starts[line_index] - content.starts[first] + assignment.value_start
        text = _around(text, value_start, value_start + len(value))
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
        span = assignment.value_end - assignment.value_start
        return Match(
            rule,
            value,
            line_index + 1,
            assignment.value_start + 1,
            start,
            start + max(span, len(value)),
            check,
        )

    def _concatenated_matches(
        self, line_index: int, columns: list[int], content: FileContent, path: str
    ) -> list[Match]:
        """Run the pattern rules on string literals joined on one line (`"ghp_" + "…"`);
        a match spans the whole chain of literals."""
        line = content.lines[line_index]
        matches: list[Match] = []
        for segment_start, segment_end in _segments(len(line), columns):
            base = content.starts[line_index] + segment_start
            for joined, start, end in concatenations(line[segment_start:segment_end]):
                for inner in self.detect_value(joined, None, path):
                    matches.append(
                        Match(
                            inner.rule,
                            inner.secret,
                            line_index + 1,
                            segment_start + start + 1,
                            base + start,
                            base + end,
                            inner.check,
                        )
                    )
        return matches


def _resolve(matches: list[Match]) -> list[Match]:
    """Keep, of overlapping matches, the one of the highest tier."""
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
    # The kept matches never overlap, so sorted by start they are sorted by end too, and the
    # ones a match overlaps sit next to each other there: each match costs a binary search,
    # not a pass over every kept match. Each entry is (start, end, rank in `kept`).
    by_start: list[tuple[int, int, int]] = []
    for match in ranked:
        first = bisect.bisect_right(by_start, match.start, key=operator.itemgetter(1))
        last = bisect.bisect_left(by_start, match.end, key=operator.itemgetter(0))
        overlapped = [rank for _, _, rank in by_start[first:last]]
        if not overlapped:
            bisect.insort(by_start, (match.start, match.end, len(kept)))
            kept.append(match)
            continue
        # The winner is the overlapped match that ranks first, as in a pass over `kept`.
        winner = kept[min(overlapped)]
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
    return sorted(kept, key=lambda match: (match.start, match.rule.id))


def _mark_documentation(matches: list[Match], spans: list[tuple[int, int]]) -> None:
    starts = [start for start, _ in spans]
    for match in matches:
        position = bisect.bisect_right(starts, match.start) - 1
        if position >= 0 and match.start < spans[position][1]:
            match.in_documentation = True


def allowed(content: FileContent, index: int, extra_lines: int = 0, end: int | None = None) -> bool:
    """Tell whether `warden:allow` is on lines `index`..`index + extra_lines`, or starts a
    comment line above them.

    On a line longer than `MAX_LINE` (minified code) only a marker within `_ALLOW_REACH`
    characters after the match's `end` (an offset in the file) counts, so that one marker
    does not allow every match on the line.
    """
    last = min(index + extra_lines, len(content.lines) - 1)
    for line_index in range(index, last + 1):
        line = content.lines[line_index]
        if len(line) > MAX_LINE:
            if end is None or line_index != last:
                continue
            column = max(0, end - content.starts[line_index])
            line = line[column : column + _ALLOW_REACH]
        if _ALLOW in line:
            return True
    # Only a comment that is the marker (and its reason) allows the next line: a marker
    # after a value on the line above allows that value alone.
    return index > 0 and _ALLOW_COMMENT.match(content.lines[index - 1]) is not None
