"""Attested nodes: attestation, re-attestation rules, renewal, bans and eviction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from warden.spiffe import Selector
from warden.store import AgentBanned, AlreadyExists, Datastore, InvalidInput, NotFound

AGENT = "spiffe://example.org/spire/agent/join_token/5b1c"
EXPIRY = datetime(2030, 1, 2, tzinfo=UTC)


def attest(store: Datastore, **changes: object) -> object:
    arguments: dict[str, object] = {
        "attestation_type": "join_token",
        "serial_number": "0a1b",
        "expires_at": EXPIRY,
        "owner": "alice",
        "selectors": ["join_token:5b1c"],
        "actor": "server",
    }
    arguments.update(changes)
    return store.record_attestation(AGENT, **arguments)  # type: ignore[arg-type]


def test_attestation_stores_node_and_audit(datastore: Datastore) -> None:
    node = attest(datastore)
    assert node.spiffe_id == AGENT  # type: ignore[attr-defined]
    assert node.owner == "alice"  # type: ignore[attr-defined]
    assert node.selectors == (Selector("join_token", "5b1c"),)  # type: ignore[attr-defined]
    assert node.serial_number == "0a1b"  # type: ignore[attr-defined]
    assert node.banned is False  # type: ignore[attr-defined]
    assert datastore.get_attested_node(AGENT) == node
    records = list(datastore.iter_audit(action="agent.attest"))
    assert [(r.subject, r.details["owner"]) for r in records] == [(AGENT, "alice")]


def test_attestation_needs_owner(datastore: Datastore) -> None:
    with pytest.raises(InvalidInput, match="owner is required"):
        attest(datastore, owner="")
    assert datastore.find_attested_node(AGENT) is None


def test_second_attestation_needs_eviction(datastore: Datastore) -> None:
    attest(datastore)
    with pytest.raises(AlreadyExists, match="evict it with 'warden agent evict"):
        attest(datastore, serial_number="ffff")
    datastore.evict_node(AGENT, actor="unix:root")
    assert datastore.find_attested_node(AGENT) is None
    assert attest(datastore, serial_number="ffff").serial_number == "ffff"  # type: ignore[attr-defined]


def test_reattestable_node_updates_in_place(datastore: Datastore) -> None:
    first = attest(datastore, attestation_type="x509pop", can_reattest=True)
    second = attest(
        datastore,
        attestation_type="x509pop",
        can_reattest=True,
        serial_number="cafe",
        selectors=["x509pop:subject:cn:node-1"],
    )
    assert second.serial_number == "cafe"  # type: ignore[attr-defined]
    assert second.created_at == first.created_at  # type: ignore[attr-defined]
    assert second.selectors == (Selector("x509pop", "subject:cn:node-1"),)  # type: ignore[attr-defined]


def test_banned_node_cannot_attest(datastore: Datastore) -> None:
    attest(datastore, can_reattest=True)
    banned = datastore.ban_node(AGENT, actor="unix:root")
    assert banned.banned is True
    assert banned.serial_number == ""
    with pytest.raises(AgentBanned, match="is banned"):
        attest(datastore, can_reattest=True)
    with pytest.raises(NotFound, match="banned"):
        datastore.update_node_svid(AGENT, serial_number="01", expires_at=EXPIRY)
    datastore.evict_node(AGENT, actor="unix:root")
    attest(datastore)
    actions = [r.action for r in datastore.iter_audit()]
    assert actions == ["agent.attest", "agent.ban", "agent.evict", "agent.attest"]


def test_renewal_sets_and_activates_serials(datastore: Datastore) -> None:
    attest(datastore)
    later = EXPIRY + timedelta(hours=1)
    pending = datastore.update_node_svid(AGENT, new_serial_number="0b", new_expires_at=later)
    assert (pending.serial_number, pending.new_serial_number) == ("0a1b", "0b")
    active = datastore.update_node_svid(
        AGENT, serial_number="0b", expires_at=later, new_serial_number="", new_expires_at=None
    )
    assert (active.serial_number, active.expires_at, active.new_serial_number) == ("0b", later, "")


def test_last_seen_never_moves_back(datastore: Datastore) -> None:
    attest(datastore)
    t1 = datetime(2031, 1, 1, tzinfo=UTC)
    datastore.record_agents_seen([(AGENT, t1), (AGENT, t1 - timedelta(hours=1))])
    datastore.record_agents_seen([(AGENT, t1 - timedelta(days=1))])
    assert datastore.get_attested_node(AGENT).last_seen_at == t1


def test_list_nodes_filters(datastore: Datastore) -> None:
    attest(datastore)
    datastore.record_attestation(
        "spiffe://example.org/spire/agent/x509pop/node-2",
        attestation_type="x509pop",
        serial_number="02",
        expires_at=EXPIRY - timedelta(days=1),
        owner="bob",
        actor="server",
    )
    assert len(datastore.list_attested_nodes()) == 2
    assert [n.owner for n in datastore.list_attested_nodes(attestation_type="x509pop")] == ["bob"]
    assert [n.owner for n in datastore.list_attested_nodes(expires_before=EXPIRY)] == ["bob"]
    datastore.ban_node(AGENT, actor="a")
    assert [n.owner for n in datastore.list_attested_nodes(banned=True)] == ["alice"]


def test_set_node_selectors_replaces(datastore: Datastore) -> None:
    attest(datastore)
    datastore.set_node_selectors(AGENT, ["aws_iid:tag:env:prod", "aws_iid:region:eu-west-1"])
    assert [str(s) for s in datastore.get_attested_node(AGENT).selectors] == [
        "aws_iid:tag:env:prod",
        "aws_iid:region:eu-west-1",
    ]
    with pytest.raises(NotFound):
        datastore.set_node_selectors("spiffe://example.org/none", ["a:b"])
