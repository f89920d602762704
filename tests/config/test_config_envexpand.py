"""Expansion of environment variables, as SPIRE's -expandEnv does it with Go's os.Expand."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from warden.config import ConfigError, ServerConfig
from warden.config.envexpand import expand_env

ENV = {"TD": "example.org", "PORT": "9090", "EMPTY": "", "MULTI": "a\nb\nc", "_X1": "x"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$TD", "example.org"),
        ("${TD}", "example.org"),
        ("spiffe://$TD/x", "spiffe://example.org/x"),
        ("${TD}suffix", "example.orgsuffix"),
        ("$TDsuffix", ""),
        ("$_X1!", "x!"),
        ("a$$b", "a$b"),
        ("cost: $ 5", "cost: $ 5"),
        ("end$", "end$"),
        ("${}", ""),
        ("${TD", "TD"),
        ("$EMPTY.", "."),
        ("$1", ""),
        ("${1}", ""),
        ("${TD:-default}", ""),
        ('"${TD}" = "$PORT"', '"example.org" = "9090"'),
    ],
)
def test_expand_follows_go_rules(text: str, expected: str) -> None:
    assert expand_env(text, ENV).text == expected


def test_unset_variables_are_reported_with_lines() -> None:
    expansion = expand_env('a = 1\nb = "$NOPE"\nc = "${ALSO_NOPE}"\n', ENV)

    assert expansion.unset == (("NOPE", 2), ("ALSO_NOPE", 3))


def test_multiline_value_keeps_line_numbers() -> None:
    expansion = expand_env('a = "$MULTI"\nb = 1\n', ENV)

    assert expansion.text == 'a = "a\nb\nc"\nb = 1\n'
    assert [expansion.original_line(line) for line in (1, 2, 3, 4)] == [1, 1, 1, 2]


def test_load_expands_when_asked(
    load_server: Callable[..., ServerConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDEN_TEST_TD", "example.org")
    monkeypatch.setenv("WARDEN_TEST_PORT", "9090")
    text = """
    server {
      trust_domain = "${WARDEN_TEST_TD}"
      bind_port = "$WARDEN_TEST_PORT"
    }
    """

    config = load_server(text, expand_env=True)

    assert config.server.trust_domain.name == "example.org"
    assert config.server.bind_port == 9090


def test_load_without_expansion_keeps_dollar(
    load_server: Callable[..., ServerConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDEN_TEST_TD", "example.org")

    with pytest.raises(ConfigError) as caught:
        load_server('server {\n  trust_domain = "${WARDEN_TEST_TD}"\n}\n')

    assert caught.value.key == "server.trust_domain"
    assert "'$'" in caught.value.message


def test_unset_variable_keeps_default_and_warns(
    load_server: Callable[..., ServerConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WARDEN_TEST_UNSET_TTL", raising=False)
    text = """
    server {
      trust_domain = "example.org"
      ca_ttl = "${WARDEN_TEST_UNSET_TTL}"
    }
    """

    config = load_server(text, expand_env=True)

    assert config.server.ca_ttl.total_seconds() == 24 * 3600
    warning = next(w for w in config.warnings if "WARDEN_TEST_UNSET_TTL" in w.message)
    assert warning.line == 3
    assert "not set" in warning.message


def test_error_lines_refer_to_the_written_file(
    load_server: Callable[..., ServerConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDEN_TEST_MULTI", "first\nsecond\nthird")
    text = """
    server {
      trust_domain = "example.org"
      jwt_issuer = "$WARDEN_TEST_MULTI"
      bind_prot = 1
    }
    """

    with pytest.raises(ConfigError) as caught:
        load_server(text, expand_env=True)

    assert caught.value.line == 4
    assert caught.value.key == "server.bind_prot"
