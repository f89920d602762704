"""Recall and flag rate on Nosey Parker's rule examples (see tests/scan/noseyparker.py)."""

from __future__ import annotations

import pytest

from warden.scan.model import Confidence

from .noseyparker import MAPPING, NOT_COVERED, evaluate, load

pytestmark = pytest.mark.datasets

# Negatives that Warden flags on purpose. A Nosey Parker label of 0 only means that one
# particular regex must not match. Each of these contains a credential by Warden's reading.
KNOWN_FLAGS = {
    (
        "np.auth0.1",
        "AUTH0_CLIENT_SECRET",
    ): "a 64-character client secret assigned to AUTH0_CLIENT_SECRET, as in the rule's "
    "positive examples; only the tenant domain beside it differs",
    (
        "np.generic.4",
        "password = 'open_sesame'",
    ): "a quoted literal password; np.generic.3 labels `password = 'open sesame'` positive",
    (
        "np.generic.5",
        "password = super$ecret",
    ): "an unquoted value in a configuration-like file is the value itself",
    (
        "np.generic.5",
        "password = 'super$ecret'",
    ): "a single-quoted literal, where `$` expands nothing; the double-quoted line is "
    "labelled positive",
    (
        "np.gitalk.1",
        '"clientSecret": "d151',
    ): "a 40-hex GitHub OAuth client secret, as in the rule's positive example, with quoted keys",
    (
        "np.mongodb.1",
        "D1fficultP%40ssw0rd@%2Ftmp",
    ): "a password in a URI whose host is a Unix socket: still a working database password",
    (
        "np.postgres.1",
        "@[2001:db8::1234]",
    ): "a password for an address reserved for documentation (RFC 3849): reported with low "
    "confidence, so hidden at the default",
}


@pytest.fixture(scope="module")
def examples(datasets_dir):
    return load(datasets_dir / "secrets" / "noseyparker_examples.jsonl")


@pytest.fixture(scope="module")
def evaluation(examples):
    return evaluate(examples, Confidence.LOW)


@pytest.fixture(scope="module")
def default_evaluation(examples):
    # What `warden scan` reports without --min-confidence.
    return evaluate(examples, Confidence.MEDIUM)


def _known(rule_id: str, text: str) -> bool:
    return any(rule_id == known_rule and marker in text for known_rule, marker in KNOWN_FLAGS)


def test_every_example_rule_is_mapped_or_listed(examples):
    rule_ids = {str(example["rule_id"]) for example in examples}
    assert rule_ids <= set(MAPPING) | set(NOT_COVERED)
    assert not set(MAPPING) & set(NOT_COVERED)


def test_recall_on_covered_positives(evaluation):
    missed = "\n".join(f"{rule}: {text[:80]!r}" for rule, text in evaluation.missed)
    assert evaluation.recall >= 0.95, missed


def test_every_flag_is_explained(evaluation):
    unexplained = [(rule, text) for rule, text in evaluation.false_flags if not _known(rule, text)]
    assert not unexplained


def test_flag_rate_at_default_confidence(default_evaluation):
    assert default_evaluation.flag_rate <= 0.05, default_evaluation.false_flags


def test_known_flags_still_occur(evaluation):
    # A known flag that no longer fires should leave the list, so it cannot hide a change.
    for rule, marker in KNOWN_FLAGS:
        assert any(
            rule == flagged and marker in text for flagged, text in evaluation.false_flags
        ), marker


def test_misses_are_placeholders_or_references(evaluation):
    # Warden skips placeholders (xxxx, aaaa, 0000, "password", YOUR…, ######, FakeValues)
    # and references (#{…}, concatenation); every miss must be one of those.
    markers = ("aaaa", "xxxx", "0000", "password", "YOUR", "######", "Fake", "#{", '" +')
    for rule, text in evaluation.missed:
        assert any(marker in text for marker in markers), (rule, text)
