"""SPIFFE ID and trust domain rules of the SPIFFE ID standard."""

from __future__ import annotations

import pytest

from warden.spiffe import (
    InvalidSpiffeIdError,
    InvalidTrustDomainError,
    SpiffeId,
    TrustDomain,
)
from warden.spiffe.id import MAX_SPIFFE_ID_BYTES, MAX_TRUST_DOMAIN_BYTES


@pytest.mark.parametrize(
    "text",
    [
        "spiffe://example.org",
        "spiffe://example.org/web",
        "spiffe://example.org/ns/prod/sa/web-1",
        "spiffe://a_b-c.d/X.Y_z-0",
        "spiffe://10.0.0.1/workload",
        "spiffe://example.org/...x/.a/a.",
    ],
)
def test_parse_accepts_valid_ids(text: str) -> None:
    spiffe_id = SpiffeId.parse(text)

    assert str(spiffe_id) == text


def test_parse_splits_trust_domain_and_path() -> None:
    spiffe_id = SpiffeId.parse("spiffe://example.org/ns/prod")

    assert spiffe_id.trust_domain == TrustDomain("example.org")
    assert spiffe_id.path == "/ns/prod"
    assert spiffe_id.segments == ("ns", "prod")


@pytest.mark.parametrize(
    "text", ["https://example.org/web", "SPIFFE://example.org/web", "example.org/web", ""]
)
def test_scheme_must_be_spiffe(text: str) -> None:
    with pytest.raises(InvalidSpiffeIdError):
        SpiffeId.parse(text)


def test_trust_domain_must_not_be_empty() -> None:
    with pytest.raises(InvalidSpiffeIdError, match="empty"):
        SpiffeId.parse("spiffe:///web")


def test_query_rejected() -> None:
    with pytest.raises(InvalidSpiffeIdError, match="query"):
        SpiffeId.parse("spiffe://example.org/web?x=1")


def test_fragment_rejected() -> None:
    with pytest.raises(InvalidSpiffeIdError, match="fragment"):
        SpiffeId.parse("spiffe://example.org/web#part")


def test_userinfo_rejected() -> None:
    with pytest.raises(InvalidSpiffeIdError, match="userinfo"):
        SpiffeId.parse("spiffe://user@example.org/web")


def test_port_rejected() -> None:
    with pytest.raises(InvalidSpiffeIdError, match="port"):
        SpiffeId.parse("spiffe://example.org:8443/web")


def test_trust_domain_uppercase_rejected() -> None:
    with pytest.raises(InvalidSpiffeIdError, match="lowercase"):
        SpiffeId.parse("spiffe://Example.org/web")
    with pytest.raises(InvalidTrustDomainError, match="lowercase"):
        TrustDomain("EXAMPLE.ORG")


@pytest.mark.parametrize("name", ["exa mple.org", "example.org!", "exa/mple", "é.org", "[::1]"])
def test_trust_domain_characters_limited(name: str) -> None:
    with pytest.raises(InvalidTrustDomainError):
        TrustDomain(name)


def test_trust_domain_percent_encoding_rejected() -> None:
    with pytest.raises(InvalidSpiffeIdError, match="percent"):
        SpiffeId.parse("spiffe://exa%6Dple.org/web")


def test_trust_domain_at_most_255_bytes() -> None:
    TrustDomain("a" * MAX_TRUST_DOMAIN_BYTES)

    with pytest.raises(InvalidTrustDomainError, match="255"):
        TrustDomain("a" * (MAX_TRUST_DOMAIN_BYTES + 1))


@pytest.mark.parametrize("path", ["/we b", "/web!", "/wéb", "/a/b:c", "/a/~b"])
def test_path_segment_characters_limited(path: str) -> None:
    with pytest.raises(InvalidSpiffeIdError):
        SpiffeId.parse("spiffe://example.org" + path)


def test_path_empty_segment_rejected() -> None:
    with pytest.raises(InvalidSpiffeIdError, match="empty segment"):
        SpiffeId.parse("spiffe://example.org/a//b")


@pytest.mark.parametrize("segment", [".", ".."])
def test_path_dot_segments_rejected(segment: str) -> None:
    with pytest.raises(InvalidSpiffeIdError, match="segment"):
        SpiffeId.parse(f"spiffe://example.org/a/{segment}/b")
    with pytest.raises(InvalidSpiffeIdError):
        SpiffeId.from_segments("example.org", "a", segment)


def test_path_trailing_slash_rejected() -> None:
    with pytest.raises(InvalidSpiffeIdError, match="ends with '/'"):
        SpiffeId.parse("spiffe://example.org/web/")
    with pytest.raises(InvalidSpiffeIdError):
        SpiffeId.parse("spiffe://example.org/")


def test_path_percent_encoding_rejected() -> None:
    with pytest.raises(InvalidSpiffeIdError, match="percent"):
        SpiffeId.parse("spiffe://example.org/w%65b")


def test_accepts_ids_of_2048_bytes() -> None:
    prefix = "spiffe://example.org/"
    text = prefix + "a" * (MAX_SPIFFE_ID_BYTES - len(prefix))

    assert len(text) == MAX_SPIFFE_ID_BYTES
    assert str(SpiffeId.parse(text)) == text


def test_never_generates_ids_over_2048_bytes() -> None:
    prefix = "spiffe://example.org/"
    with pytest.raises(InvalidSpiffeIdError, match="2048"):
        SpiffeId.parse(prefix + "a" * (MAX_SPIFFE_ID_BYTES - len(prefix) + 1))
    with pytest.raises(InvalidSpiffeIdError, match="2048"):
        SpiffeId.from_segments("example.org", *(["abcdefgh"] * 300))


def test_from_segments_rejects_slash_in_segment() -> None:
    with pytest.raises(InvalidSpiffeIdError, match="separately"):
        SpiffeId.from_segments("example.org", "ns/prod")


def test_from_segments_builds_path() -> None:
    spiffe_id = SpiffeId.from_segments(TrustDomain("example.org"), "ns", "prod")

    assert str(spiffe_id) == "spiffe://example.org/ns/prod"


def test_trust_domain_id_has_no_path() -> None:
    domain = TrustDomain("example.org")

    assert str(domain.id) == "spiffe://example.org"
    assert domain.id.segments == ()


def test_trust_domain_parse_accepts_name_or_id() -> None:
    assert TrustDomain.parse("example.org") == TrustDomain("example.org")
    assert TrustDomain.parse("spiffe://example.org") == TrustDomain("example.org")
    with pytest.raises(InvalidTrustDomainError, match="no path"):
        TrustDomain.parse("spiffe://example.org/web")


def test_is_member_of_compares_trust_domains() -> None:
    spiffe_id = SpiffeId.parse("spiffe://example.org/web")

    assert spiffe_id.is_member_of(TrustDomain("example.org"))
    assert not spiffe_id.is_member_of(TrustDomain("example.com"))


def test_error_message_names_rejected_value() -> None:
    with pytest.raises(InvalidSpiffeIdError) as raised:
        SpiffeId.parse("spiffe://example.org/a//b")

    assert "spiffe://example.org/a//b" in str(raised.value)


def test_non_string_input_rejected() -> None:
    with pytest.raises(InvalidSpiffeIdError, match="string"):
        SpiffeId.parse(42)  # type: ignore[arg-type]
