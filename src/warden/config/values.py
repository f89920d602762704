"""Value types of configuration settings, with the coercions SPIRE's HCL decoder applies.

SPIRE decodes its files with Go's HCL 1 library, which is lenient in known ways, and
operators' files rely on them. A number may be written as a string (`bind_port = "8081"`),
parsed like Go's `strconv.ParseInt` with base 0. A boolean may be a string or number
(`"true"`, `"FALSE"`, `1`, `0`), and a string may be a bare number or boolean. Durations are Go
duration strings (`"1h30m"`); the bare number 0 is zero. Each type here applies exactly
those rules and raises ValueError with a message that names what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, PlainValidator, SecretStr, ValidationInfo

from warden.config.duration import DurationError, parse_duration
from warden.spiffe import SpiffeError, SpiffeId, TrustDomain


def describe(value: Any) -> str:
    """Describe a decoded HCL value for an error message, without quoting long text."""
    if isinstance(value, dict):
        return "a block"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return repr(value) if len(value) <= 80 else repr(value[:77] + "...")
    return type(value).__name__


def go_string(value: Any) -> str:
    """Accept a string, or a number or boolean written where a string is expected."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise ValueError(f"expected a string, got {describe(value)}")


def _secret_string(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, dict | list):
        # The message must not quote the value: it may be a credential.
        raise ValueError(f"expected a string, got {describe(value)}")
    return go_string(value)


_GO_INT = re.compile(
    r"[+-]?(?:0[xX](?:_?[0-9a-fA-F])+|0[bB](?:_?[01])+|0[oO](?:_?[0-7])+|0(?:_?[0-7])*|[1-9](?:_?[0-9])*)"
)


def go_int(value: Any) -> int:
    """Accept an integer, or a string of one as Go's `strconv.ParseInt(s, 0, 64)` reads it.

    Base prefixes 0x, 0o, 0b and a leading 0 for octal are honoured, as in Go.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {describe(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _GO_INT.fullmatch(value.strip()):
        text = value.strip().replace("_", "")
        sign = -1 if text.startswith("-") else 1
        digits = text.lstrip("+-")
        if len(digits) > 1 and digits[0] == "0" and digits[1] in "0123456789_":
            return sign * int(digits, 8)
        return sign * int(digits, 0)
    raise ValueError(f"expected a whole number, got {describe(value)}")


def go_bool(value: Any) -> bool:
    """Accept true or false, or the strings and numbers SPIRE's decoder takes for them."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str | int) and not isinstance(value, bool):
        text = str(value).strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
    raise ValueError(f"expected true or false, got {describe(value)}")


def _port(value: Any) -> int:
    number = go_int(value)
    if not 0 <= number <= 65535:
        raise ValueError(f"expected a port number from 0 to 65535, got {number}")
    return number


def _remote_port(value: Any) -> int:
    number = go_int(value)
    if not 1 <= number <= 65535:
        raise ValueError(f"expected a port number from 1 to 65535, got {number}")
    return number


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value != 0:
        # Go's HCL decoder passes the number's text to time.ParseDuration, which needs a unit.
        raise ValueError(
            f'invalid duration {value}: missing unit; write for example "{value}s" for seconds'
        )
    try:
        return parse_duration(go_string(value))
    except DurationError as error:
        raise ValueError(str(error)) from None


def _positive(duration: timedelta) -> timedelta:
    if duration <= timedelta(0):
        raise ValueError("expected a duration greater than zero")
    return duration


def _non_negative(duration: timedelta) -> timedelta:
    if duration < timedelta(0):
        raise ValueError("expected a duration of zero or more")
    return duration


def _string_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, tuple):
        return tuple(go_string(item) for item in value)
    if not isinstance(value, list):
        raise ValueError(f'expected a list of strings such as ["a", "b"], got {describe(value)}')
    return tuple(go_string(item) for item in value)


def _resolve_path(value: Any, info: ValidationInfo) -> Path:
    """Resolve a relative path against the configuration file's directory.

    Without a loader context (a model built in code), the working directory is the base,
    as in SPIRE.
    """
    path = value if isinstance(value, Path) else Path(go_string(value))
    if str(path) == "":
        raise ValueError("expected a path, got an empty string")
    if path.is_absolute():
        return path
    context = info.context or {}
    base = context.get("base_dir")
    return (Path(base) if base is not None else Path.cwd()) / path


def _trust_domain(value: Any) -> TrustDomain:
    if isinstance(value, TrustDomain):
        return value
    try:
        return TrustDomain.parse(go_string(value))
    except SpiffeError as error:
        raise ValueError(str(error)) from None


def _spiffe_ids(value: Any) -> tuple[SpiffeId, ...]:
    ids = []
    for text in _string_list(value) if not isinstance(value, tuple) else value:
        if isinstance(text, SpiffeId):
            ids.append(text)
            continue
        try:
            ids.append(SpiffeId.parse(text))
        except SpiffeError as error:
            raise ValueError(str(error)) from None
    return tuple(ids)


def one_of(*choices: str, aliases: dict[str, str] | None = None) -> Callable[[Any], str]:
    """Build a validator that accepts one of `choices`, case-insensitively.

    `aliases` maps other accepted spellings to a choice (SPIRE's `warning` to `warn`).
    """
    lookup = {choice.lower(): choice for choice in choices}
    lookup.update({alias.lower(): target for alias, target in (aliases or {}).items()})

    def validate(value: Any) -> str:
        text = go_string(value)
        chosen = lookup.get(text.strip().lower())
        if chosen is None:
            raise ValueError(f"expected one of {', '.join(choices)}, got {describe(text)}")
        return chosen

    return validate


def _host(value: Any) -> str:
    # SPIRE strips the brackets of an IPv6 literal such as "[::]" before listening.
    return go_string(value).strip().strip("[]")


#: A host name or IP address to listen on or connect to; "[::1]" is read as "::1".
Host = Annotated[str, BeforeValidator(_host)]
#: A string; numbers and booleans are taken as written, as SPIRE does.
Str = Annotated[str, BeforeValidator(go_string)]
#: A string that contains a credential. Its repr hides it and no error message quotes it.
Secret = Annotated[SecretStr, BeforeValidator(_secret_string)]
#: A whole number, written bare or as a string ("0x1f" and "017" too, as in Go).
Int = Annotated[int, BeforeValidator(go_int)]
#: A boolean: true, false, or a string or number SPIRE's decoder reads as one.
Bool = Annotated[bool, BeforeValidator(go_bool)]
#: A port to listen on; 0 lets the operating system choose a free one.
ListenPort = Annotated[int, BeforeValidator(_port)]
#: A port to connect to.
Port = Annotated[int, BeforeValidator(_remote_port)]
#: A Go duration string such as "1h30m", zero or more.
Duration = Annotated[timedelta, BeforeValidator(_duration), AfterValidator(_non_negative)]
#: A Go duration string greater than zero, such as a TTL.
PositiveDuration = Annotated[timedelta, BeforeValidator(_duration), AfterValidator(_positive)]
#: A list of strings.
StrList = Annotated[tuple[str, ...], BeforeValidator(_string_list)]
#: A file system path; a relative one is resolved against the configuration file's directory.
ConfigPath = Annotated[Path, PlainValidator(_resolve_path)]
#: A trust domain name, or the `spiffe://` ID of one.
TrustDomainName = Annotated[TrustDomain, PlainValidator(_trust_domain)]
#: A list of SPIFFE IDs.
SpiffeIdList = Annotated[tuple[SpiffeId, ...], PlainValidator(_spiffe_ids)]

#: Key types of SPIRE's `ca_key_type`, `jwt_key_type` and `workload_x509_svid_key_type`.
KEY_TYPES = ("ec-p256", "ec-p384", "rsa-2048", "rsa-4096")
KeyType = Annotated[str, PlainValidator(one_of(*KEY_TYPES))]
#: Log levels, with logrus's other names mapped onto Warden's four.
LogLevel = Annotated[
    str,
    PlainValidator(
        one_of(
            "debug",
            "info",
            "warn",
            "error",
            aliases={"trace": "debug", "warning": "warn", "fatal": "error", "panic": "error"},
        )
    ),
]
LogFormat = Annotated[str, PlainValidator(one_of("text", "json"))]


def _path_list(value: Any, info: ValidationInfo) -> tuple[Path, ...]:
    items = value if isinstance(value, tuple) else _string_list(value)
    return tuple(_resolve_path(item, info) for item in items)


def _http_url(value: Any) -> str:
    text = go_string(value)
    scheme, separator, rest = text.partition("://")
    if not separator or scheme.lower() not in ("http", "https") or not rest or rest.startswith("/"):
        raise ValueError(f"expected an http:// or https:// URL, got {describe(text)}")
    return text.rstrip("/")


#: A list of file system paths, each resolved like ConfigPath.
ConfigPathList = Annotated[tuple[Path, ...], PlainValidator(_path_list)]
#: An http:// or https:// URL, kept without a trailing slash.
HttpUrl = Annotated[str, PlainValidator(_http_url)]
