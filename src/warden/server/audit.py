"""Group commit of audit records.

Signing is hot, and every SVID must land in the audit log before it is returned. Callers
await `record()`; a single writer task collects the records that arrive within a few
milliseconds (or up to a batch size) and appends them in one transaction, then releases
every waiting caller. A failed append fails every caller of that batch, so no credential
leaves the server unaudited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from warden.store.models import AuditEvent

log = logging.getLogger(__name__)


class AuditWriter:
    def __init__(
        self,
        append: Callable[[Sequence[AuditEvent]], Any],
        *,
        server_id: str,
        batch_size: int = 500,
        flush_interval: float = 0.005,
    ) -> None:
        self._append = append
        self._server_id = server_id
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        # Each item is one caller's records and the future that caller awaits.
        self._queue: asyncio.Queue[tuple[list[AuditEvent], asyncio.Future[None]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.records = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def flush(self) -> None:
        """Return once every record queued so far is written (or has failed)."""
        await self._queue.join()

    async def record(self, event: AuditEvent) -> None:
        """Append `event`; return once it is committed (raise if the append failed)."""
        await self.record_many([event])

    async def record_many(self, events: Sequence[AuditEvent]) -> None:
        """Append `events`; return once all are committed (raise if the append failed)."""
        if not events:
            return
        stamped = [
            event
            if event.server_id
            else AuditEvent(
                action=event.action,
                actor=event.actor,
                subject=event.subject,
                details=event.details,
                time=event.time,
                server_id=self._server_id,
            )
            for event in events
        ]
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put((stamped, future))
        await future

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            if self._flush_interval > 0:
                await asyncio.sleep(self._flush_interval)
            count = len(first[0])
            while count < self._batch_size and not self._queue.empty():
                item = self._queue.get_nowait()
                batch.append(item)
                count += len(item[0])
            events = [event for item_events, _ in batch for event in item_events]
            try:
                await asyncio.to_thread(self._append, events)
            except Exception as error:
                log.error("audit append failed", extra={"count": len(events), "error": str(error)})
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
            else:
                self.batches += 1
                self.records += len(events)
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)
            finally:
                for _ in batch:
                    self._queue.task_done()
