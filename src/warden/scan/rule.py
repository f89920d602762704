"""The `Rule` type: one credential format, how to find it and what replaces it.

A rule finds its credential in one of two ways:

- by **pattern**: a regular expression whose group `secret` (or the whole match) is the
  credential, for formats that stand out on their own (`ghp_…`, `AKIA…`, PEM blocks);
- by **key**: a regular expression over the key name of an assignment (`AWS_SECRET_ACCESS_KEY
  = …`, `password: …`, the `default` of a Terraform `variable "okta_token"`) plus one over the
  value, for formats that are only recognisable by where they are assigned.

Every rule carries a `check` run on each candidate, which may reject it (return None) or add
what it learned offline (identifier, lifetime, confidence). Rules are matched against their
own `examples` and `negative_examples` by the test suite.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from warden.scan.model import Confidence, Replacement, Severity


class Tier(enum.IntEnum):
    """Which rule wins when two rules claim overlapping text: the higher tier.

    PROVIDER: a provider's own token format. KEYED: a provider's format recognised through its
    key name. STRUCTURAL: a format that says what it is but not whose it is (PEM, JWT, URL
    credentials, connection strings). GENERIC: a secret-like key with a secret-like value.
    """

    GENERIC = 1
    STRUCTURAL = 2
    KEYED = 3
    PROVIDER = 4


class Lifetime(enum.Enum):
    LONG = "long"
    SHORT = "short"
    UNKNOWN = "unknown"


class PlaceholderPolicy(enum.Enum):
    """How strictly a candidate value is tested for being a placeholder.

    FORMAT: only values with too little variety (`xxxx…`, `0000…`) are placeholders, because
    a provider format with a fixed prefix rarely collides with prose. VALUE: also words such
    as `changeme`, `example`, `your_token`, and values that name their own key.
    """

    FORMAT = "format"
    VALUE = "value"


@dataclass(frozen=True)
class Candidate:
    """A rule's match, handed to its `check`.

    `groups` holds the pattern's named groups, or `key` and `value` for keyed rules; `text`
    is the text the rule ran on (the matched line, or a few lines around it).
    """

    secret: str
    groups: Mapping[str, str]
    text: str
    path: str


@dataclass(frozen=True)
class Check:
    """What a rule's `check` learned about a candidate; None fields leave the rule's default."""

    confidence: Confidence | None = None
    severity: Severity | None = None
    lifetime: Lifetime | None = None
    identifier: str | None = None
    details: Mapping[str, str] = field(default_factory=dict)


CheckFunction = Callable[[Candidate], Check | None]


def accept(candidate: Candidate) -> Check | None:
    """Accept every candidate as it is."""
    return Check()


@dataclass(frozen=True)
class Rule:
    """One credential format. See the module docstring for pattern and keyed rules."""

    id: str
    name: str
    provider: str
    kind: str
    tier: Tier
    severity: Severity
    replacement: Replacement
    description: str
    examples: tuple[str, ...]
    negative_examples: tuple[str, ...] = ()
    pattern: str | None = None
    anchor: str | None = None
    keys: str | None = None
    value: str | None = None
    check: CheckFunction = accept
    lifetime: Lifetime = Lifetime.LONG
    confidence: Confidence = Confidence.MEDIUM
    placeholder: PlaceholderPolicy = PlaceholderPolicy.FORMAT
    # Literal text at the start of the secret that is safe to show when redacting.
    prefix: str = ""
    # Extra lines above and below the matched line that the pattern may span or look at.
    lines_before: int = 0
    lines_after: int = 0
    # A regex that must occur (case-insensitively) in those lines, for short formats that
    # collide with ordinary text unless a keyword such as "vault" or "bootstrap" is near.
    context: str | None = None
    # A keyed rule whose key matched owns the assignment even when its value fails: the
    # generic rules do not report it again (a 42-character `aws_secret_access_key` is no
    # AWS secret, so reporting it as a generic secret would be noise).
    claims_key: bool = False
    ignore_case: bool = False
    # Keyed rules: the shortest value the check accepts. The engine's anchor requires that
    # many characters after the operator (at most 16), so shorter values never reach Python.
    min_length: int = 1
    # Keyed rules: an anchor expression (Hyperscan syntax) for the start of every value the
    # check can accept, used instead of `min_length` characters when it is tighter.
    value_anchor: str | None = None
    # Keyed rules that read a key nested under a parent they name (`secret:` under `jwt:`):
    # a regex over the nested key alone, anchored with this rule's `min_length`. Other
    # nested keys are found through the generic rules' anchors.
    nested_keys: str | None = None

    def __post_init__(self) -> None:
        if (self.pattern is None) == (self.keys is None):
            raise ValueError(f"rule {self.id}: set exactly one of pattern and keys")
        if self.keys is not None and self.value is None:
            raise ValueError(f"rule {self.id}: a keyed rule needs a value pattern")

    @property
    def is_keyed(self) -> bool:
        return self.keys is not None

    def compiled_pattern(self) -> re.Pattern[str]:
        return _compile(self.pattern or "", self.ignore_case)

    def compiled_keys(self) -> re.Pattern[str]:
        return _compile(self.keys or "", True)

    def compiled_value(self) -> re.Pattern[str]:
        return _compile(self.value or "", self.ignore_case)

    def compiled_context(self) -> re.Pattern[str] | None:
        return _compile(self.context, True) if self.context else None


_CACHE: dict[tuple[str, bool], re.Pattern[str]] = {}


def _compile(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    key = (pattern, ignore_case)
    compiled = _CACHE.get(key)
    if compiled is None:
        flags = re.ASCII | (re.IGNORECASE if ignore_case else 0)
        compiled = re.compile(pattern, flags)
        _CACHE[key] = compiled
    return compiled
