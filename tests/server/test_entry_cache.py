"""The server's entry index and agent authorisation."""

from __future__ import annotations

from warden.server.entry_cache import EntryCache, make_entry

SERVER = "spiffe://example.org/spire/server"
AGENT = "spiffe://example.org/spire/agent/join_token/abc"


def entry(entry_id: str, spiffe_id: str, parent_id: str, *selectors: str, expires_at: int = 0):
    return make_entry(
        id=entry_id,
        spiffe_id=spiffe_id,
        parent_id=parent_id,
        selectors=selectors,
        owner="team-a",
        expires_at=expires_at,
    )


def test_direct_children_are_authorized() -> None:
    cache = EntryCache(SERVER)
    cache.load([entry("1", "spiffe://example.org/web", AGENT, "unix:uid:1000")])
    cache.load(
        [
            entry(
                "2",
                "spiffe://example.org/db",
                "spiffe://example.org/spire/agent/other",
                "unix:uid:1",
            )
        ]
    )

    authorized = cache.authorized_entries(AGENT, frozenset(), now=100)

    assert set(authorized) == {"1"}


def test_node_alias_requires_all_selectors() -> None:
    cache = EntryCache(SERVER)
    cache.load(
        [
            entry(
                "alias",
                "spiffe://example.org/node/web-nodes",
                SERVER,
                "aws_iid:tag:role:web",
                "aws_iid:region:eu-west-1",
            ),
            entry(
                "w",
                "spiffe://example.org/web",
                "spiffe://example.org/node/web-nodes",
                "unix:uid:1000",
            ),
        ]
    )

    partial = cache.authorized_entries(AGENT, frozenset({"aws_iid:tag:role:web"}), now=100)
    full = cache.authorized_entries(
        AGENT,
        frozenset({"aws_iid:tag:role:web", "aws_iid:region:eu-west-1", "aws_iid:az:x"}),
        now=100,
    )

    assert partial == {}
    assert set(full) == {"w"}


def test_descendants_are_authorized_recursively() -> None:
    cache = EntryCache(SERVER)
    cache.load(
        [
            entry("a", "spiffe://example.org/nested-agent", AGENT, "unix:uid:0"),
            entry(
                "b",
                "spiffe://example.org/nested-workload",
                "spiffe://example.org/nested-agent",
                "unix:uid:5",
            ),
            entry(
                "c",
                "spiffe://example.org/deeper",
                "spiffe://example.org/nested-workload",
                "unix:uid:6",
            ),
        ]
    )

    assert set(cache.authorized_entries(AGENT, frozenset(), now=1)) == {"a", "b", "c"}


def test_parent_cycle_terminates() -> None:
    cache = EntryCache(SERVER)
    cache.load(
        [
            entry("a", "spiffe://example.org/x", AGENT, "unix:uid:0"),
            entry("b", "spiffe://example.org/y", "spiffe://example.org/x", "unix:uid:0"),
            entry("c", "spiffe://example.org/x", "spiffe://example.org/y", "unix:uid:0"),
        ]
    )

    assert set(cache.authorized_entries(AGENT, frozenset(), now=1)) == {"a", "b", "c"}


def test_expired_entries_authorize_nothing() -> None:
    cache = EntryCache(SERVER)
    cache.load(
        [
            entry("old", "spiffe://example.org/old", AGENT, "unix:uid:1", expires_at=50),
            entry("child", "spiffe://example.org/child", "spiffe://example.org/old", "unix:uid:1"),
        ]
    )

    assert set(cache.authorized_entries(AGENT, frozenset(), now=49)) == {"old", "child"}
    assert cache.authorized_entries(AGENT, frozenset(), now=50) == {}


def test_upsert_moves_entry_between_parents() -> None:
    cache = EntryCache(SERVER)
    cache.upsert(entry("1", "spiffe://example.org/web", AGENT, "unix:uid:1"))
    previous = cache.upsert(
        entry(
            "1", "spiffe://example.org/web", "spiffe://example.org/spire/agent/other", "unix:uid:1"
        )
    )

    assert previous is not None
    assert previous.parent_id == AGENT
    assert cache.authorized_entries(AGENT, frozenset(), now=1) == {}
    assert len(cache) == 1


def test_delete_removes_alias_index() -> None:
    cache = EntryCache(SERVER)
    cache.upsert(entry("alias", "spiffe://example.org/node/x", SERVER, "x509pop:subject:cn:n1"))
    cache.upsert(entry("w", "spiffe://example.org/w", "spiffe://example.org/node/x", "unix:uid:1"))
    cache.delete("alias")

    assert cache.authorized_entries(AGENT, frozenset({"x509pop:subject:cn:n1"}), now=1) == {}
    assert cache.get("alias") is None


def test_affects_detects_concerned_agents() -> None:
    cache = EntryCache(SERVER)
    mine = entry("1", "spiffe://example.org/web", AGENT, "unix:uid:1")
    other = entry(
        "2", "spiffe://example.org/db", "spiffe://example.org/spire/agent/other", "unix:uid:1"
    )
    alias = entry("3", "spiffe://example.org/node/n", SERVER, "k8s_psat:cluster:c1")
    grandchild = entry("4", "spiffe://example.org/g", "spiffe://example.org/web", "unix:uid:1")

    assert cache.affects([mine], AGENT, frozenset(), set())
    assert not cache.affects([other], AGENT, frozenset(), set())
    assert cache.affects([alias], AGENT, frozenset({"k8s_psat:cluster:c1"}), set())
    assert not cache.affects([alias], AGENT, frozenset({"k8s_psat:cluster:c2"}), set())
    assert cache.affects([grandchild], AGENT, frozenset(), {"spiffe://example.org/web"})
