"""Two servers sharing one PostgreSQL database: changes made through one reach the other."""

from __future__ import annotations

from typing import Any

import pytest

from warden.store import Datastore, EntryEventFollower, EntrySpec

pytestmark = pytest.mark.postgres


def test_entry_created_on_one_server_reaches_the_other(
    postgres_cluster: Any, postgres_url: str
) -> None:
    first = Datastore.open(postgres_url, server_id="server-1")
    second = Datastore.open(postgres_url, server_id="server-2")
    try:
        cache = {entry.id: entry for entry in second.iter_all_entries()}
        follower = EntryEventFollower(second)

        created = first.create_entry(
            EntrySpec(
                spiffe_id="spiffe://example.org/web",
                parent_id="spiffe://example.org/spire/agent/join_token/t",
                selectors=("unix:uid:1000",),
                owner="team-web",
            ),
            actor="unix:alice",
        )
        events = follower.poll()
        current = second.get_entries(event.entry_id for event in events)
        for event in events:
            if event.entry_id in current:
                cache[event.entry_id] = current[event.entry_id]
            else:
                cache.pop(event.entry_id, None)
        assert cache == {created.id: created}

        first.delete_entry(created.id, actor="unix:alice")
        events = follower.poll()
        assert second.get_entries(event.entry_id for event in events) == {}
        records = list(second.iter_audit())
        assert [(r.action, r.server_id) for r in records] == [
            ("entry.create", "server-1"),
            ("entry.delete", "server-1"),
        ]
    finally:
        first.close()
        second.close()
