"""Property tests for the parsers and validators of the SPIFFE core.

For any input, each parser either returns a value that satisfies every rule or raises the
module's own error. Valid values survive a round trip through their text form.
"""

from __future__ import annotations

import contextlib
import json
import re
import string
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from warden.spiffe import (
    Bundle,
    BundleError,
    InvalidSelectorError,
    InvalidSpiffeIdError,
    InvalidTrustDomainError,
    JwtSvidError,
    Selector,
    SpiffeId,
    TrustDomain,
    X509SvidError,
    check_x509_svid_leaf,
    validate_jwt_svid,
)

TRUST_DOMAIN_CHARS = string.ascii_lowercase + string.digits + ".-_"
SEGMENT_CHARS = string.ascii_letters + string.digits + ".-_"
VALID_ID_RE = re.compile(r"spiffe://[a-z0-9._-]{1,255}(/[A-Za-z0-9._-]+)*")

trust_domain_names = st.text(TRUST_DOMAIN_CHARS, min_size=1, max_size=40)
segments = st.text(SEGMENT_CHARS, min_size=1, max_size=20).filter(lambda s: s not in (".", ".."))
# Text close to a SPIFFE ID, so that the parser's rejections are exercised, not only its
# scheme check.
near_ids = st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from(["spiffe://", "SPIFFE://", "spiffe:/", "https://", ""]),
    st.text(TRUST_DOMAIN_CHARS + SEGMENT_CHARS + "/%?#@:é ", max_size=60),
)
any_text = st.one_of(st.text(max_size=80), near_ids)


@given(trust_domain_names, st.lists(segments, max_size=6))
def test_valid_id_round_trips(name: str, path: list[str]) -> None:
    spiffe_id = SpiffeId.from_segments(name, *path)

    assert SpiffeId.parse(str(spiffe_id)) == spiffe_id
    assert spiffe_id.segments == tuple(path)


@given(any_text)
@example("spiffe://.")
@example("spiffe://a/./b")
def test_id_parser_accepts_only_valid_ids(text: str) -> None:
    try:
        spiffe_id = SpiffeId.parse(text)
    except InvalidSpiffeIdError:
        return
    assert VALID_ID_RE.fullmatch(text)
    # Dot segments are forbidden in the path only: "." is a valid trust domain name.
    path = "/" + text.removeprefix("spiffe://").partition("/")[2] + "/"
    assert "/./" not in path
    assert "/../" not in path
    assert str(spiffe_id) == text


@given(any_text)
def test_trust_domain_accepts_only_valid_names(text: str) -> None:
    try:
        domain = TrustDomain(text)
    except InvalidTrustDomainError:
        return
    assert re.fullmatch(r"[a-z0-9._-]{1,255}", text)
    assert domain.name == text


@given(
    st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=64),
    st.text(min_size=1, max_size=60),
)
def test_selector_round_trips(selector_type: str, value: str) -> None:
    try:
        selector = Selector(selector_type, value)
    except InvalidSelectorError:
        assert any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value)
        return
    assert Selector.parse(str(selector)) == selector


@given(st.text(max_size=80))
def test_selector_parser_raises_only_its_error(text: str) -> None:
    try:
        selector = Selector.parse(text)
    except InvalidSelectorError:
        return
    assert str(selector) == text


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
jwk_like = st.fixed_dictionaries(
    {},
    optional={
        "kty": st.sampled_from(["EC", "RSA", "OKP", "oct", 3]),
        "use": st.sampled_from(["x509-svid", "jwt-svid", "sig", None]),
        "kid": st.text(max_size=5) | st.integers(),
        "crv": st.sampled_from(["P-256", "P-384", "Ed25519", "X"]),
        "x": st.text(max_size=50),
        "y": st.text(max_size=50),
        "n": st.text(max_size=50),
        "e": st.text(max_size=8),
        "x5c": st.lists(st.text(max_size=40), max_size=2) | json_values,
    },
)
bundle_documents = st.fixed_dictionaries(
    {"keys": st.lists(jwk_like, max_size=4) | json_values},
    optional={"spiffe_sequence": json_values, "spiffe_refresh_hint": json_values},
)


@given(st.one_of(bundle_documents, json_values))
def test_bundle_parser_raises_only_bundle_error(document: Any) -> None:
    with contextlib.suppress(BundleError):
        Bundle.from_jwks_json(TrustDomain("example.org"), json.dumps(document))


@given(
    st.text(max_size=200)
    | st.lists(st.text(string.ascii_letters + "-_=", max_size=60), min_size=3, max_size=3).map(
        ".".join
    )
)
def test_jwt_validator_raises_only_jwt_error(token: str) -> None:
    bundle = Bundle(TrustDomain("example.org"))
    try:
        validate_jwt_svid(token, "db", bundle, datetime.fromisoformat("2030-01-01T00:00:00+00:00"))
    except JwtSvidError:
        pass
    else:
        pytest.fail(f"validated a token against an empty bundle: {token!r}")


USAGE_FLAGS = (
    "digital_signature",
    "key_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)
EKU_CHOICES = {
    "none": None,
    "both": (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
    "server": (ExtendedKeyUsageOID.SERVER_AUTH,),
    "client": (ExtendedKeyUsageOID.CLIENT_AUTH,),
}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ca_flag=st.sampled_from([None, False, True]),
    usage=st.none() | st.fixed_dictionaries({flag: st.booleans() for flag in USAGE_FLAGS}),
    usage_critical=st.booleans(),
    extended=st.sampled_from(sorted(EKU_CHOICES)),
    uris=st.lists(
        st.sampled_from(
            ["spiffe://example.org/w", "spiffe://example.org", "https://x.org/w", "spiffe://a/b//c"]
        ),
        max_size=2,
    ),
)
def test_leaf_rules_match_the_standard(
    forge_leaf: Callable[..., x509.Certificate],
    ca_flag: bool | None,
    usage: dict[str, bool] | None,
    usage_critical: bool,
    extended: str,
    uris: list[str],
) -> None:
    # A leaf is accepted exactly when every rule of the standard holds.
    leaf = forge_leaf(
        ca=ca_flag,
        usage=usage,
        usage_critical=usage_critical,
        extended_usage=EKU_CHOICES[extended],
        uris=uris,
    )
    expected = (
        len(uris) == 1
        and uris[0] == "spiffe://example.org/w"
        and ca_flag is False
        and usage is not None
        and usage_critical
        and usage["digital_signature"]
        and not usage["key_cert_sign"]
        and not usage["crl_sign"]
        and extended in ("none", "both")
    )

    try:
        check_x509_svid_leaf(leaf)
        accepted = True
    except X509SvidError:
        accepted = False

    assert accepted == expected
