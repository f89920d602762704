"""Batched reports of when workloads last received each entry's SVID.

Governance tells live identities from ghosts by delivery, not by signing (the agent signs
ahead of need), so the Workload API records every delivery here. Recording is a dictionary
update; the reporter is called once per interval with the latest time per entry. A failed
report keeps its deliveries for the next attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from warden.agent.svid import Delivery, UsageReporter

log = logging.getLogger(__name__)

DEFAULT_REPORT_INTERVAL_SECONDS = 30.0
#: Deliveries per reporter call; a larger backlog is sent over several calls.
MAX_BATCH = 1000


class UsageRecorder:
    """Collects delivery times and hands them to a `UsageReporter` in batches."""

    def __init__(
        self,
        reporter: UsageReporter | None,
        interval: float = DEFAULT_REPORT_INTERVAL_SECONDS,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._reporter = reporter
        self._interval = interval
        self._max_batch = max_batch
        self._pending: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        self._failures = 0

    def set_reporter(self, reporter: UsageReporter | None) -> None:
        """Replace the reporter, for example once the server connection is up."""
        self._reporter = reporter

    def record(self, entry_ids: Iterable[str], delivered_at: float) -> None:
        """Note that the SVIDs of `entry_ids` were delivered at `delivered_at` (Unix seconds)."""
        moment = int(delivered_at)
        for entry_id in entry_ids:
            if self._pending.get(entry_id, -1) < moment:
                self._pending[entry_id] = moment

    @property
    def pending(self) -> dict[str, int]:
        """Deliveries not yet reported, by entry id."""
        return dict(self._pending)

    async def flush(self) -> None:
        """Report everything pending; on failure keep it and re-raise."""
        if self._reporter is None or not self._pending:
            return
        batch, self._pending = self._pending, {}
        items = [Delivery(entry_id, moment) for entry_id, moment in batch.items()]
        sent = 0
        try:
            for start in range(0, len(items), self._max_batch):
                await self._reporter.report_deliveries(items[start : start + self._max_batch])
                sent = start + self._max_batch
        except BaseException:
            # Put back what was not sent, keeping the later time if a new delivery came in.
            self.record_many(items[sent:])
            raise

    def record_many(self, deliveries: Iterable[Delivery]) -> None:
        for delivery in deliveries:
            self.record((delivery.entry_id,), delivery.delivered_at)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="warden-usage-reports")

    async def stop(self) -> None:
        """Stop the loop and make one last attempt to report what is pending."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except Exception as error:
            log.warning(
                "could not report deliveries before stopping",
                extra={"error": str(error), "attempt": self._failures + 1},
            )

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
                if self._failures:
                    log.info("delivery reports resumed", extra={"attempt": self._failures + 1})
                self._failures = 0
            except Exception as error:
                self._failures += 1
                log.warning(
                    "reporting deliveries failed; will retry",
                    extra={
                        "error": str(error),
                        "attempt": self._failures,
                        "delay_seconds": self._interval,
                    },
                )
