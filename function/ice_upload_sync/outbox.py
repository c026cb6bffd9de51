"""Completion events delivered from the store's outbox (CONTRACT section 9): at least once, never twice after a 2xx.

A store that writes a record into a state of ``NOTIFY_STATES`` first writes an outbox entry
for it (``notify.Owed``), in the same save, before the record: a crash between the two leaves
an entry, never a record that owes nothing. Its targets are the ``NOTIFY_URL`` endpoints and
the ``NOTIFY_EVENTBRIDGE`` bus, each settled on its own (``Owed.endpoints_done``). Then:

- the invocation that wrote it tries at once, within its own deadline (the HTTP callback's
  deadline on that path: a slow endpoint never holds ICE's answer up);
- every sweep retries what is still owed and due, final jobs included (they are no longer
  pending, so the outbox is listed on its own), with the backoff of ``notify.advance``.

A 2xx from every target (the bus: its ``PutEvents`` accepted) settles the entry (removed only
if it still holds that event, so a newer state's entry is never lost); a failure reschedules
it. The answer counts ``notified`` (targets that took the event) and ``notify_failed``
(targets not delivered to this time, or given up).
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Callable, Iterable, Optional, Protocol, Set, Tuple

from . import notify
from .config import Settings
from .errors import StoreError
from .events import Shard
from .records import JobRecord, UnencodableRecord, format_time
from .stores.base import RecordStore

logger = logging.getLogger(__name__)

MIN_TRY_S = 0.2  # less time than this left: leave the entry to the next sweep


class Counts(Protocol):
    notified: int
    notify_failed: int


class Outbox:
    """Delivers what the store owes, for one instance (stateless between invocations)."""

    def __init__(self, store: RecordStore, settings: Settings, clock: Callable[[], datetime], *,
                 bus: Optional[notify.Target] = None) -> None:
        if bool(settings.notify_eventbridge_bus) != (bus is not None):
            raise ValueError("Outbox: pass bus=EventBridgeBus(settings) exactly when NOTIFY_EVENTBRIDGE is set")
        self.store = store
        self.settings = settings
        self.clock = clock
        # Where events go: every NOTIFY_URL endpoint, and the EventBridge bus; each is settled on its own.
        self.targets: Tuple[notify.Target, ...] = (*settings.notify_endpoints, *((bus,) if bus is not None else ()))
        self.enabled = bool(self.targets)
        self.max_age = timedelta(hours=settings.max_track_age_hours)

    def deliver_now(self, records: Iterable[JobRecord], *, deadline: float, counts: Counts) -> None:
        """Try the events this invocation's writes owe (``records`` reached an announced state)."""
        if not self.enabled:
            return
        now = self.clock()
        down: Set[str] = set()
        for record in records:
            self._try(notify.Owed.for_record(record, format_time(now)), record, now, deadline, counts, down)

    def deliver_due(self, *, deadline: float, counts: Counts, shard: Optional[Shard] = None) -> None:
        """Every owed entry that is due (a sweep's last step), until ``deadline``."""
        if not self.enabled:
            return
        now = self.clock()
        down: Set[str] = set()  # endpoints that failed this invocation: the next sweep tries them again
        try:
            entries = self.store.owed()
            for entry in entries:
                if deadline - time.monotonic() < MIN_TRY_S:
                    return
                if shard is not None and entry.job_id not in shard:
                    continue
                if not entry.due(now):
                    continue
                self._settle_one(entry, now, deadline, counts, down)
        except StoreError as exc:  # the outbox stays as it is: the next sweep tries again
            logger.error("notify: cannot list the outbox: %s", exc)

    def _settle_one(self, entry: notify.Owed, now: datetime, deadline: float, counts: Counts,
                    down: Set[str]) -> None:
        try:
            record = self.store.load(entry.job_id)
        except StoreError as exc:
            logger.error("notify: cannot read the record of job %s: %s", entry.job_id, exc)
            return
        status = notify.entry_status(entry, record, now, states=self.settings.notify_states)
        if status == notify.WAIT:
            return
        if status == notify.DROP:
            self._store_call(self.store.settle, entry.job_id, entry.event_id)
            return
        if status == notify.REOWE:
            assert record is not None
            entry = notify.Owed.for_record(record, format_time(now))
            if not self._store_call(self.store.owe, entry):
                return
        assert record is not None
        self._try(entry, record, now, deadline, counts, down)

    def _try(self, entry: notify.Owed, record: JobRecord, now: datetime, deadline: float, counts: Counts,
             down: Set[str]) -> None:
        pending = entry.pending_endpoints(self.targets)
        if deadline - time.monotonic() < MIN_TRY_S or (pending and all(target.key in down for target in pending)):
            # owed in the store: a later invocation delivers it. A target that just timed out or
            # failed to connect would cost every remaining entry its timeout; it is skipped for
            # the rest of this one (``skip`` below), while the other targets still get their
            # events. (No target pending at all: ``attempt`` settles the entry.)
            counts.notify_failed += len(pending)
            return
        try:
            progress = notify.attempt(
                entry, record, region=self.settings.ice_region, endpoints=self.targets,
                secrets=self.settings.notify_secrets, deadline=deadline, now=now, max_age=self.max_age,
                timeout_s=min(notify.DEFAULT_TIMEOUT_S, max(MIN_TRY_S, deadline - time.monotonic())), skip=down)
        except UnencodableRecord as exc:  # cannot happen for a record the store accepted; never retried
            logger.error("notify: job %s: %s; its event is dropped", entry.job_id, exc)
            self._store_call(self.store.settle, entry.job_id, entry.event_id)
            return
        counts.notified += len(progress.delivered)
        counts.notify_failed += len(progress.given_up) + len(progress.failed)
        # Only a target that is down is skipped: one refusing this event (a 400, an entry the
        # bus refused) may take the next one.
        down.update(target.key for target in progress.unreachable)
        if progress.settled:
            self._store_call(self.store.settle, entry.job_id, entry.event_id)
        elif progress.entry != entry:
            self._store_call(self.store.reschedule, progress.entry)

    @staticmethod
    def _store_call(method: Callable[..., object], *args: object) -> bool:
        """An outbox write; a failure leaves the entry as it was (delivered again at worst, same id)."""
        try:
            method(*args)
            return True
        except StoreError as exc:
            logger.error("notify: outbox %s failed: %s", getattr(method, "__name__", "write"), exc)
            return False
