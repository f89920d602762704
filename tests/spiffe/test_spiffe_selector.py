"""Selectors: `type:value` parsing and its limits."""

from __future__ import annotations

import pytest

from warden.spiffe import InvalidSelectorError, Selector, parse_selectors
from warden.spiffe.selector import MAX_SELECTOR_VALUE_BYTES


def test_parse_keeps_colons_in_value() -> None:
    selector = Selector.parse("unix:uid:1000")

    assert selector == Selector("unix", "uid:1000")
    assert str(selector) == "unix:uid:1000"


@pytest.mark.parametrize("text", ["unix", "", ":uid:0", "un ix:uid:0", "unix:"])
def test_parse_rejects_malformed(text: str) -> None:
    with pytest.raises(InvalidSelectorError):
        Selector.parse(text)


def test_value_rejects_control_characters() -> None:
    with pytest.raises(InvalidSelectorError, match="control"):
        Selector("unix", "uid:0\n")


def test_value_length_bounded() -> None:
    Selector("k8s", "a" * MAX_SELECTOR_VALUE_BYTES)

    with pytest.raises(InvalidSelectorError, match="longer"):
        Selector("k8s", "a" * (MAX_SELECTOR_VALUE_BYTES + 1))


def test_parse_selectors_returns_set() -> None:
    selectors = parse_selectors(["unix:uid:0", "unix:gid:0", "unix:uid:0"])

    assert selectors == frozenset({Selector("unix", "uid:0"), Selector("unix", "gid:0")})
