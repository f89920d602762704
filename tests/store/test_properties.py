"""Property tests: entry validation and the audit chain's canonical form."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from warden.store.audit import ZERO_HASH, canonical_record, chain_hash
from warden.store.errors import InvalidEntry
from warden.store.models import EntrySpec
from warden.store.validation import validate_entry

texts = st.text(max_size=80)
spiffe_like = st.one_of(
    texts,
    st.builds(lambda path: f"spiffe://example.org/{path}", texts),
)


@settings(max_examples=300, deadline=None)
@given(
    spiffe_id=spiffe_like,
    parent_id=spiffe_like,
    owner=texts,
    selectors=st.lists(st.one_of(texts, st.builds(lambda v: f"unix:{v}", texts)), max_size=4),
    dns_names=st.lists(texts, max_size=3),
    federates_with=st.lists(texts, max_size=2),
    ttl=st.integers(min_value=-(2**40), max_value=2**40),
)
def test_validation_raises_only_invalid_entry(
    spiffe_id: str,
    parent_id: str,
    owner: str,
    selectors: list[str],
    dns_names: list[str],
    federates_with: list[str],
    ttl: int,
) -> None:
    spec = EntrySpec(
        spiffe_id=spiffe_id,
        parent_id=parent_id,
        selectors=selectors,
        owner=owner,
        x509_svid_ttl=ttl,
        dns_names=dns_names,
        federates_with=federates_with,
    )
    try:
        valid = validate_entry(spec)
    except InvalidEntry as error:
        message = str(error)
    else:
        message = ""
    if message:
        assert message.startswith("entry")
        return
    assert valid.owner.strip()
    assert valid.owner == valid.owner.strip()
    assert valid.selectors
    assert valid.x509_svid_ttl >= 0
    assert (
        validate_entry(
            EntrySpec(
                spiffe_id=valid.spiffe_id,
                parent_id=valid.parent_id,
                selectors=valid.selectors,
                owner=valid.owner,
                x509_svid_ttl=valid.x509_svid_ttl,
                dns_names=valid.dns_names,
                federates_with=valid.federates_with,
            )
        )
        == valid
    )


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(
    actor=st.text(min_size=1, max_size=30),
    subject=st.text(max_size=30),
    details=st.dictionaries(st.text(max_size=10), json_values, max_size=4),
    changed=st.text(max_size=30),
)
def test_any_changed_field_changes_the_hash(
    actor: str, subject: str, details: dict[str, object], changed: str
) -> None:
    moment = datetime(2030, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    original = chain_hash(
        ZERO_HASH, canonical_record(1, moment, actor, "entry.create", subject, details, "s")
    )
    assert original == chain_hash(
        ZERO_HASH, canonical_record(1, moment, actor, "entry.create", subject, details, "s")
    )
    if changed != subject:
        assert original != chain_hash(
            ZERO_HASH, canonical_record(1, moment, actor, "entry.create", changed, details, "s")
        )
    if changed != actor:
        assert original != chain_hash(
            ZERO_HASH, canonical_record(1, moment, changed, "entry.create", subject, details, "s")
        )
    assert original != chain_hash(
        ZERO_HASH, canonical_record(2, moment, actor, "entry.create", subject, details, "s")
    )
