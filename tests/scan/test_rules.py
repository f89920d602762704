"""Every rule finds its own examples, misses its negative examples, and is documented."""

from __future__ import annotations

import pytest

from warden.scan import RULES, Keyring, scan_text
from warden.scan.engine import Engine
from warden.scan.rule import Tier
from warden.scan.validators import base62_crc32, decode_jwt

_KEYRING = Keyring(b"\x02" * 32)


def _reported(text: str) -> set[str]:
    return {finding.rule_id for finding in scan_text(text, "snippet.txt", keyring=_KEYRING)}


def test_catalogue_has_sixty_formats():
    assert len(RULES) >= 60


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.id)
def test_rule_finds_its_examples(rule):
    assert rule.examples, f"{rule.id} has no examples"
    for example in rule.examples:
        assert rule.id in _reported(example), example


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.id)
def test_rule_skips_its_negative_examples(rule):
    for example in rule.negative_examples:
        assert rule.id not in _reported(example), example


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.id)
def test_rule_is_documented(rule):
    assert len(rule.description) > 20
    assert rule.replacement.summary
    assert rule.provider
    assert rule.kind


def test_every_tier_is_used():
    assert {rule.tier for rule in RULES} == set(Tier)


def test_python_re_fallback_finds_the_same(fake):
    token = fake.github()
    engine = Engine(RULES, use_hyperscan=False)
    data = f"GITHUB_TOKEN={token}\n".encode()
    names = {
        engine.anchors()[index].rule.id
        for index, _ in engine.scan(data)
        if engine.anchors()[index].rule
    }
    assert "github-pat" in names


def test_github_checksum_matches_documented_example_shape(fake):
    token = fake.github()
    assert base62_crc32(token[4:34]) == token[34:]


def test_jwt_decodes_header_and_claims(fake):
    token = fake.jwt('{"iss":"https://idp.example","sub":"svc","exp":4102444800}')
    header, claims = decode_jwt(token)
    assert header == {"alg": "RS256", "kid": "k1"}
    assert claims["sub"] == "svc"
