"""A short-lived cache of attested nodes for per-call agent authentication.

Every agent call checks that its node is still attested, not banned, and presents a current
SVID serial. Reading the datastore on each call would put a query on the signing path, so
nodes are cached for `ttl` seconds; this server's own evictions and bans drop the cached node
at once, and another server's are seen within `ttl`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from warden.store.models import AttestedNode

log = logging.getLogger(__name__)


class NodeCache:
    def __init__(
        self,
        datastore: Any,
        now: Callable[[], datetime],
        ttl: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._datastore = datastore
        self._now = now
        self._ttl = ttl
        self._clock = clock
        self._nodes: dict[str, tuple[float, AttestedNode | None]] = {}
        self._seen: dict[str, datetime] = {}

    async def get(self, spiffe_id: str) -> AttestedNode | None:
        cached = self._nodes.get(spiffe_id)
        if cached is not None and self._clock() - cached[0] < self._ttl:
            return cached[1]
        node = await asyncio.to_thread(self._datastore.find_attested_node, spiffe_id)
        if len(self._nodes) > 200_000:
            self._nodes.clear()
        self._nodes[spiffe_id] = (self._clock(), node)
        return node

    def put(self, node: AttestedNode) -> None:
        self._nodes[node.spiffe_id] = (self._clock(), node)

    def invalidate(self, spiffe_id: str) -> None:
        self._nodes.pop(spiffe_id, None)

    async def activate_new_serial(self, node: AttestedNode) -> None:
        """The agent used its renewed SVID: make that serial the current one."""
        updated = await asyncio.to_thread(
            self._datastore.update_node_svid,
            node.spiffe_id,
            serial_number=node.new_serial_number,
            expires_at=node.new_expires_at,
            new_serial_number="",
            new_expires_at=None,
        )
        self.put(updated)
        log.info(
            "agent SVID renewal activated",
            extra={"agent_id": node.spiffe_id, "serial": node.new_serial_number},
        )

    def seen(self, spiffe_id: str) -> None:
        self._seen[spiffe_id] = self._now()

    async def flush_seen(self) -> None:
        """Write the batched last-seen times of agents."""
        if not self._seen:
            return
        sightings, self._seen = list(self._seen.items()), {}
        await asyncio.to_thread(self._datastore.record_agents_seen, sightings)
