"""Selectors: the `type:value` properties that attestors observe and entries require."""

from __future__ import annotations

import re
from dataclasses import dataclass

from warden.spiffe.errors import InvalidSelectorError

#: Maximum length in bytes of a selector's value, a bound against oversized requests.
MAX_SELECTOR_VALUE_BYTES = 4096

_TYPE_RE = re.compile(r"[a-zA-Z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True, order=True)
class Selector:
    """One observed or required property, for example `unix:uid:1000` (type `unix`)."""

    type: str
    value: str

    def __post_init__(self) -> None:
        if not _TYPE_RE.fullmatch(self.type):
            raise InvalidSelectorError(
                f"invalid selector type {self.type!r}: use 1 to 64 of a-z, A-Z, 0-9, '_' "
                "and '-' (for example 'unix' or 'k8s')"
            )
        if not self.value:
            raise InvalidSelectorError(
                f"invalid selector {self.type}:'': the value is empty; "
                f"write it as '{self.type}:<value>'"
            )
        if len(self.value.encode()) > MAX_SELECTOR_VALUE_BYTES:
            raise InvalidSelectorError(
                f"invalid selector {self.type}:{self.value[:40]}...: the value is longer "
                f"than {MAX_SELECTOR_VALUE_BYTES} bytes"
            )
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in self.value):
            raise InvalidSelectorError(
                f"invalid selector {self.type}:{self.value!r}: the value contains a "
                "control character"
            )

    @classmethod
    def parse(cls, text: str) -> Selector:
        """Parse `type:value`; the value may itself contain colons (`unix:uid:1000`)."""
        selector_type, colon, value = text.partition(":")
        if not colon:
            raise InvalidSelectorError(
                f"invalid selector {text!r}: expected 'type:value', for example 'unix:uid:1000'"
            )
        return cls(selector_type, value)

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"


def parse_selectors(texts: list[str] | tuple[str, ...]) -> frozenset[Selector]:
    """Parse several `type:value` strings into a set."""
    return frozenset(Selector.parse(text) for text in texts)
