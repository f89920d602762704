"""Go duration strings: examples from Go's own rules, and properties over random input."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warden.config.duration import (
    DurationError,
    format_duration,
    parse_duration,
    parse_duration_ns,
)

UNITS_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
MAX_NS = (1 << 63) - 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", timedelta(0)),
        ("+0", timedelta(0)),
        ("-0", timedelta(0)),
        ("0s", timedelta(0)),
        ("1h", timedelta(hours=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("90s", timedelta(seconds=90)),
        ("500ms", timedelta(milliseconds=500)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        (".5s", timedelta(milliseconds=500)),
        ("1.s", timedelta(seconds=1)),
        ("2us", timedelta(microseconds=2)),
        ("2µs", timedelta(microseconds=2)),
        ("2μs", timedelta(microseconds=2)),
        ("1000ns", timedelta(microseconds=1)),
        ("-1m", timedelta(minutes=-1)),
        ("+5m", timedelta(minutes=5)),
        ("1h1h", timedelta(hours=2)),
        ("720h", timedelta(days=30)),
    ],
)
def test_parse_duration_examples(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "write a number and a unit"),
        ("-", "write a number and a unit"),
        ("1", "missing unit"),
        ("1.5", "missing unit"),
        ("h", "expected a number"),
        (".", "'.' without digits"),
        (".s", "'.' without digits"),
        ("1d", "unknown unit 'd'"),
        ("1 h", "unknown unit ' h'"),
        ("1hh", "unknown unit 'hh'"),
        ("1h-1m", "unknown unit 'h-'"),
        ("9223372036854775808ns", "out of range"),
        ("3000000h", "out of range"),
        ("1ns", "precision of one microsecond"),
    ],
)
def test_parse_duration_rejects(text: str, reason: str) -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration(text)

    assert reason in str(caught.value)
    assert repr(text) in str(caught.value)


def test_day_unit_hint() -> None:
    with pytest.raises(DurationError, match='write "24h"'):
        parse_duration("2d")


def test_nanosecond_limits_match_go() -> None:
    assert parse_duration_ns("9223372036854775807ns") == MAX_NS
    assert parse_duration_ns("-9223372036854775808ns") == -(1 << 63)
    assert parse_duration_ns("2562047h47m16.854775807s") == MAX_NS
    with pytest.raises(DurationError):
        parse_duration_ns("2562047h47m16.854775808s")


def test_fraction_beyond_63_bits_is_ignored() -> None:
    # Go keeps consuming digits of a fraction it can no longer represent.
    assert parse_duration_ns("1.00000000000000000000001s") == 1_000_000_000


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(hours=1), "1h"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(days=2), "48h"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(milliseconds=1500), "1.5s"),
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(microseconds=1500), "1.5ms"),
        (timedelta(microseconds=250), "250us"),
        (timedelta(minutes=-5), "-5m"),
        (timedelta(hours=1, microseconds=1), "1h0.000001s"),
    ],
)
def test_format_duration_examples(duration: timedelta, text: str) -> None:
    assert format_duration(duration) == text


# Every timedelta that Go's int64 nanoseconds can hold, at microsecond resolution.
durations = st.integers(min_value=-(MAX_NS // 1000), max_value=MAX_NS // 1000).map(
    lambda microseconds: timedelta(microseconds=microseconds)
)


@given(durations)
def test_format_then_parse_round_trips(duration: timedelta) -> None:
    assert parse_duration(format_duration(duration)) == duration


@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=10**6), st.sampled_from(sorted(UNITS_NS))),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from(["", "+", "-"]),
)
def test_whole_number_terms_add_up(terms: list[tuple[int, str]], sign: str) -> None:
    text = sign + "".join(f"{number}{unit}" for number, unit in terms)
    expected = sum(number * UNITS_NS[unit] for number, unit in terms)
    limit = (1 << 63) if sign == "-" else MAX_NS

    if expected > limit:
        with pytest.raises(DurationError, match="out of range"):
            parse_duration_ns(text)
    else:
        assert parse_duration_ns(text) == (-expected if sign == "-" else expected)


@given(
    st.integers(min_value=0, max_value=10**6),
    st.integers(min_value=0, max_value=999),
    st.sampled_from(["ms", "s", "m", "h"]),
)
def test_fraction_matches_exact_value_within_a_nanosecond(
    whole: int, thousandths: int, unit: str
) -> None:
    nanoseconds = parse_duration_ns(f"{whole}.{thousandths:03d}{unit}")
    exact = whole * UNITS_NS[unit] + thousandths * UNITS_NS[unit] / 1000

    assert abs(nanoseconds - exact) <= 1


@given(st.text(alphabet="0123456789.+-hmsunµμd x", max_size=12))
def test_any_text_parses_or_raises_duration_error(text: str) -> None:
    try:
        result = parse_duration_ns(text)
    except DurationError:
        return
    assert -(1 << 63) <= result <= MAX_NS


@given(st.text(max_size=20))
def test_arbitrary_text_never_crashes(text: str) -> None:
    with contextlib.suppress(DurationError):
        parse_duration(text)
