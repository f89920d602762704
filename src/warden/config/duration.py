"""Durations written as Go writes them (`"1h30m"`, `"90s"`, `"500ms"`), as SPIRE's files do.

The grammar and limits are those of Go's `time.ParseDuration`. A duration is an optional
sign and one or more decimal numbers, each with an optional fraction and a unit (`ns`,
`us`, `µs`, `μs`, `ms`, `s`, `m`, `h`). The bare string `"0"` is zero, and the total must
fit in a signed 64-bit count of nanoseconds. Warden stores durations as
`datetime.timedelta`, whose resolution is one microsecond, so a duration with a remainder
of nanoseconds is rejected rather than silently rounded.
"""

from __future__ import annotations

from datetime import timedelta

_NANOSECONDS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # MICRO SIGN
    "\u03bcs": 1_000,  # GREEK SMALL LETTER MU
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_UNIT_NAMES = "ns, us, ms, s, m, h"
_MAX_MAGNITUDE = 1 << 63  # Go's limit: int64 nanoseconds, one more for negative values
_DIGITS = "0123456789"
_EXAMPLES = 'such as "90s", "30m" or "24h"'


class DurationError(ValueError):
    """Invalid duration string. The message quotes it and shows how to write a valid one."""


def _leading_int(text: str, original: str) -> tuple[int, str]:
    """Consume the leading digits of `text`; raise on overflow as Go does."""
    value = 0
    index = 0
    while index < len(text) and text[index] in _DIGITS:
        value = value * 10 + int(text[index])
        if value > _MAX_MAGNITUDE:
            raise DurationError(f"invalid duration {original!r}: the value is out of range")
        index += 1
    return value, text[index:]


def _leading_fraction(text: str) -> tuple[int, float, str]:
    """Consume the digits after a decimal point, returning the digits, their scale and the rest.

    Digits beyond what fits in 63 bits are consumed but ignored, as in Go.
    """
    value = 0
    scale = 1.0
    overflow = False
    index = 0
    while index < len(text) and text[index] in _DIGITS:
        if not overflow:
            candidate = value * 10 + int(text[index])
            if candidate > _MAX_MAGNITUDE:
                overflow = True
            else:
                value = candidate
                scale *= 10
        index += 1
    return value, scale, text[index:]


def parse_duration_ns(text: str) -> int:
    """Parse a Go duration string and return it in nanoseconds.

    Raises DurationError with the rejected string and an example of a valid one.
    """
    original = text
    negative = False
    if text[:1] in ("-", "+"):
        negative = text[0] == "-"
        text = text[1:]
    if text == "0":
        return 0
    if text == "":
        raise DurationError(
            f"invalid duration {original!r}: write a number and a unit, {_EXAMPLES}"
        )

    total = 0
    while text:
        if text[0] != "." and text[0] not in _DIGITS:
            raise DurationError(
                f"invalid duration {original!r}: expected a number at {text!r}; "
                f"write a number and a unit, {_EXAMPLES}"
            )
        length = len(text)
        whole, text = _leading_int(text, original)
        has_whole = len(text) != length

        fraction, scale, has_fraction = 0, 1.0, False
        if text.startswith("."):
            text = text[1:]
            length = len(text)
            fraction, scale, text = _leading_fraction(text)
            has_fraction = len(text) != length
        if not has_whole and not has_fraction:
            raise DurationError(f"invalid duration {original!r}: '.' without digits")

        end = 0
        while end < len(text) and text[end] != "." and text[end] not in _DIGITS:
            end += 1
        if end == 0:
            example = f'"{original}s"' if original.strip("+-.0123456789") == "" else '"90s"'
            raise DurationError(
                f"invalid duration {original!r}: missing unit; write for example "
                f"{example} for seconds (units: {_UNIT_NAMES})"
            )
        unit_name, text = text[:end], text[end:]
        unit = _NANOSECONDS_PER_UNIT.get(unit_name)
        if unit is None:
            hint = ' (Go durations have no day unit: write "24h")' if unit_name == "d" else ""
            raise DurationError(
                f"invalid duration {original!r}: unknown unit {unit_name!r}; "
                f"valid units are {_UNIT_NAMES}{hint}"
            )

        if whole > _MAX_MAGNITUDE // unit:
            raise DurationError(f"invalid duration {original!r}: the value is out of range")
        amount = whole * unit
        if fraction > 0:
            # Go adds the fraction through float64 arithmetic and truncates; so does this.
            amount += int(float(fraction) * (float(unit) / scale))
            if amount > _MAX_MAGNITUDE:
                raise DurationError(f"invalid duration {original!r}: the value is out of range")
        total += amount
        if total > _MAX_MAGNITUDE:
            raise DurationError(f"invalid duration {original!r}: the value is out of range")

    if negative:
        return -total
    if total > _MAX_MAGNITUDE - 1:
        raise DurationError(f"invalid duration {original!r}: the value is out of range")
    return total


def parse_duration(text: str) -> timedelta:
    """Parse a Go duration string such as `"1h30m"` into a timedelta.

    Raises DurationError on bad syntax, on overflow, and on a remainder finer than one
    microsecond, which a timedelta cannot hold.
    """
    nanoseconds = parse_duration_ns(text)
    microseconds, remainder = divmod(abs(nanoseconds), 1_000)
    if remainder:
        raise DurationError(
            f"invalid duration {text!r}: Warden supports a precision of one microsecond; "
            "round it to whole microseconds"
        )
    return timedelta(microseconds=-microseconds if nanoseconds < 0 else microseconds)


def format_duration(duration: timedelta) -> str:
    """Write a timedelta the way `parse_duration` reads it, without zero parts.

    Examples: 1h30m, 24h, 1m30s, 1.5s, 500ms, 250us, 0s. Hours are not folded into days,
    because Go durations have no day unit.
    """
    total_us = (duration.days * 86_400 + duration.seconds) * 1_000_000 + duration.microseconds
    if total_us == 0:
        return "0s"
    sign = "-" if total_us < 0 else ""
    total_us = abs(total_us)

    if total_us < 1_000_000:
        if total_us % 1_000 == 0:
            return f"{sign}{total_us // 1_000}ms"
        if total_us >= 1_000:
            return f"{sign}{_decimal(total_us, 1_000)}ms"
        return f"{sign}{total_us}us"

    hours, rest = divmod(total_us, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if minutes:
        parts.append(f"{minutes}m")
    if rest:
        parts.append(f"{_decimal(rest, 1_000_000)}s")
    return sign + "".join(parts)


def _decimal(amount: int, per_unit: int) -> str:
    """Write `amount / per_unit` in decimal without trailing zeros, exactly."""
    whole, fraction = divmod(amount, per_unit)
    if fraction == 0:
        return str(whole)
    digits = len(str(per_unit)) - 1
    return f"{whole}.{fraction:0{digits}d}".rstrip("0")
