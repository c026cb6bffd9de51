"""Completion events delivered from the store's outbox (contract section 9): at least once, never twice after a 2xx.

A store that writes a record into a state of ``NOTIFY_STATES`` first writes an outbox entry
for it (``notify.Owed``), in the same save, before the record: a crash between the two leaves
an entry, never a record that owes nothing. Its targets are the ``NOTIFY_URL`` endpoints
(``webhook.Webhook``) and the ``NOTIFY_EVENTBRIDGE`` bus (``eventbridge.EventBridgeBus``), each
settled on its own (``Owed.endpoints_done``). Then:

- the invocation that wrote it tries at once, within its own deadline (the HTTP callback's
  deadline on that path: a slow endpoint never holds ICE's answer up);
- every sweep retries what is still owed and due, final jobs included (they are no longer
  pending, so the outbox is listed on its own), with the backoff of ``notify.advance``.

This module carries the retry policy out; every decision in it (whether an entry is due,
still matches its record, is worth trying now, is settled or tried again when) is
``notify``'s. An attempt (``attempt``) builds the event (``cloudevent.build_event``), sends it
to the targets still pending (``delivery.deliver``) and turns the answers into the next entry
(``notify.advance``).

Both send ``ICE_CONCURRENCY`` events at once (each to all its targets in parallel): a backlog
is bound by the targets' round trips, not by our CPU (tests/bench/bench_notify.py).

Before sending, an invocation claims the entry in the store (``RecordStore.claim``: a
compare-and-set that writes a token of its own and an expiry ``CLAIM_S`` ahead into the
entry), so two invocations at once (a sweep longer than the timer's period, a sweep and a
callback) never both send it: the one whose claim loses skips the entry, and a sweep skips an
entry claimed by someone else without reading its record. Only the holder settles or
reschedules it (both compare the claim too; rescheduling releases it). A holder that crashes
leaves its claim to expire: the next sweep after that sends the event again (the same id).
So an event goes out twice only when its holder stops between a 2xx and the settle (a
crash), or outlives its claim (an attempt is bounded well within ``CLAIM_S``).

A 2xx from every target (the bus: its ``PutEvents`` accepted) settles the entry (removed only
if it still holds that event and claim, so a newer state's entry, written by a save while the
claim was held, is never lost: it is not claimed, and the next invocation sends it); a failure
reschedules it. The answer counts ``notified`` (targets that took the event from this
invocation) and ``notify_failed`` (targets not delivered to this time, or given up); an entry
another invocation holds counts in neither.
"""
from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections import deque
from concurrent.futures import Future
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Callable, Collection, Deque, Iterable, Iterator, Optional, Protocol, Sequence, Set, Tuple

from . import notify
from .cloudevent import build_event
from .config import Settings
from .delivery import DEFAULT_TIMEOUT_S, Target, deliver
from .errors import StoreError
from .events import Shard
from .logs import ContextThreadPool
from .notify import CLAIM_S, MIN_TRY_S, Owed, Progress
from .records import JobRecord, UnencodableRecord, format_time
from .stores.base import RecordStore
from .webhook import webhooks

logger = logging.getLogger(__name__)


class Counts(Protocol):
    notified: int
    notify_failed: int


class Outbox:
    """Delivers what the store owes, for one instance (stateless between invocations)."""

    def __init__(self, store: RecordStore, settings: Settings, clock: Callable[[], datetime], *,
                 bus: Optional[Target] = None) -> None:
        if bool(settings.notify_eventbridge_bus) != (bus is not None):
            raise ValueError("Outbox: pass bus=EventBridgeBus(settings) exactly when NOTIFY_EVENTBRIDGE is set")
        self.store = store
        self.settings = settings
        self.clock = clock
        # Where events go: every NOTIFY_URL endpoint, and the EventBridge bus; each is settled on its own.
        self.targets: Tuple[Target, ...] = (*webhooks(settings), *((bus,) if bus is not None else ()))
        self.enabled = bool(self.targets)
        # Events in flight at once, each to all its targets: ICE_CONCURRENCY, the function's
        # measure of how many outbound calls an instance keeps open.
        self.concurrency = max(1, settings.ice_concurrency)
        self.max_age = timedelta(hours=settings.max_track_age_hours)
        self.claim_for = timedelta(seconds=CLAIM_S)

    def deliver_now(self, records: Iterable[JobRecord], *, deadline: float, counts: Counts) -> None:
        """Try the events this invocation's writes owe (``records`` reached an announced state)."""
        if not self.enabled:
            return
        now = self.clock()
        down: Set[str] = set()
        tally = _Tally(counts)
        # each one is the entry its save just wrote (RecordStore: ``Owed.for_record(record, record.updated_at)``),
        # claimed like any other: a sweep may have found it first
        self._in_parallel((functools.partial(self._try, Owed.for_record(record, record.updated_at), record,
                                             now, deadline, tally, down) for record in records), deadline)

    def deliver_due(self, *, deadline: float, counts: Counts, shard: Optional[Shard] = None) -> None:
        """Every owed entry that is due (a sweep's last step), until ``deadline``."""
        if not self.enabled:
            return
        now = self.clock()
        down: Set[str] = set()  # targets down this invocation: the next sweep tries them again
        tally = _Tally(counts)

        def due() -> Iterator[Callable[[], None]]:
            for entry in self.store.owed():
                if shard is not None and entry.job_id not in shard:
                    continue
                if entry.due(now):
                    yield functools.partial(self._settle_one, entry, now, deadline, tally, down)

        try:
            self._in_parallel(due(), deadline)
        except StoreError as exc:  # the outbox stays as it is: the next sweep tries again
            logger.error("notify: cannot list the outbox: %s", exc)

    def _in_parallel(self, tasks: Iterable[Callable[[], None]], deadline: float) -> None:
        """Run ``tasks`` (one event each), ``concurrency`` at once, taking no new one past ``deadline``.

        Delivering is waiting on the targets' round trips: a backlog sent one event at a time
        takes its size times the slowest round trip. Tasks are taken from the iterator as
        workers free up (a window of twice the workers), so a long outbox is never held whole.
        """
        if self.concurrency == 1:
            for task in tasks:
                if deadline - time.monotonic() < MIN_TRY_S:
                    return
                task()
            return
        with ContextThreadPool(max_workers=self.concurrency, thread_name_prefix="notify") as pool:
            window: Deque[Future] = deque()
            for task in tasks:
                if deadline - time.monotonic() < MIN_TRY_S:
                    break
                window.append(pool.submit(task))
                if len(window) >= 2 * self.concurrency:
                    window.popleft().result()
            for future in window:
                future.result()

    def _settle_one(self, entry: Owed, now: datetime, deadline: float, counts: _Tally,
                    down: Set[str]) -> None:
        if not entry.claimable(self.clock()):  # another invocation is sending it: not ours to count
            logger.debug("notify: job %s (event %s) is claimed until %s by another invocation", entry.job_id,
                         entry.event_id, entry.claimed_until)
            return
        try:
            record = self.store.load(entry.job_id)
        except StoreError as exc:
            logger.error("notify: cannot read the record of job %s: %s", entry.job_id, exc)
            return
        status = notify.entry_status(entry, record, now, states=self.settings.notify_states)
        if status == notify.WAIT:
            return
        if status == notify.DROP:
            self._store_call(self.store.settle, entry)
            return
        assert record is not None
        replacement = Owed.for_record(record, format_time(now)) if status == notify.REOWE else None
        self._try(entry, record, now, deadline, counts, down, replacement=replacement)

    def _try(self, entry: Owed, record: JobRecord, now: datetime, deadline: float, counts: _Tally,
             down: Set[str], *, replacement: Optional[Owed] = None) -> None:
        """Claim ``entry``, send it, settle or reschedule it. With ``replacement`` (the record reached
        another announced state), the claimed ``entry`` is replaced by it, still claimed, and that is sent."""
        pending = (replacement or entry).pending_endpoints(self.targets)
        if not notify.try_now(pending, down, deadline - time.monotonic()):  # owed: a later invocation sends it
            counts.add(failed=len(pending))
            return
        claiming_at = self.clock()
        try:
            claimed = self.store.claim(entry, uuid.uuid4().hex[:16], claiming_at, claiming_at + self.claim_for)
        except StoreError as exc:  # still owed, not sent this time
            logger.error("notify: cannot claim the outbox entry of job %s: %s", entry.job_id, exc)
            counts.add(failed=len(pending))
            return
        if claimed is None:  # another invocation has it, or changed it since it was read: theirs to send and count
            logger.debug("notify: job %s (event %s) was claimed, replaced or settled by another invocation",
                         entry.job_id, entry.event_id)
            return
        if replacement is not None:  # ours now, so no other invocation re-owes or sends it meanwhile
            claimed = replace(replacement, claimed_by=claimed.claimed_by, claimed_until=claimed.claimed_until)
            if not self._store_call(self.store.owe, claimed):  # the stale entry's claim expires; retried then
                counts.add(failed=len(pending))
                return
        try:
            progress = attempt(claimed, record, region=self.settings.ice_region, targets=self.targets,
                               deadline=deadline, now=now, max_age=self.max_age,
                               timeout_s=min(DEFAULT_TIMEOUT_S, max(MIN_TRY_S, deadline - time.monotonic())),
                               skip=down)
        except UnencodableRecord as exc:  # cannot happen for a record the store accepted; never retried
            logger.error("notify: job %s: %s; its event is dropped", entry.job_id, exc)
            self._store_call(self.store.settle, claimed)
            return
        counts.add(notified=len(progress.delivered), failed=len(progress.given_up) + len(progress.failed))
        # Only a target that is down is skipped (notify.try_now): one refusing this event (a 400,
        # an entry the bus refused) may take the next one.
        down.update(target.key for target in progress.unreachable)
        if progress.entry is None:
            self._store_call(self.store.settle, claimed)
        else:  # the next attempt, or the entry as it was when nothing was sent; either way the claim is released
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


def attempt(entry: Owed, record: JobRecord, *, region: str, targets: Sequence[Target], deadline: float,
            now: datetime, max_age: timedelta, timeout_s: float = DEFAULT_TIMEOUT_S,
            skip: Collection[str] = ()) -> Progress:
    """One try of an entry that ``notify.entry_status`` said to deliver: build, send, ``notify.advance``.

    Sends only to the targets not yet done. With none left (NOTIFY_URL or NOTIFY_EVENTBRIDGE
    changed since the entry was owed), the entry is settled. Raises ``UnencodableRecord`` for a
    record whose event cannot be built.
    """
    pending = entry.pending_endpoints(targets)
    if not pending:
        return Progress(None)
    result = deliver(build_event(record, region), pending, deadline=deadline, timeout_s=timeout_s, skip=skip)
    return notify.advance(entry, result, now=now, max_age=max_age)


class _Tally:
    """The answer's ``notified`` / ``notify_failed``, added to from several delivery threads."""

    def __init__(self, counts: Counts) -> None:
        self.counts = counts
        self._lock = threading.Lock()

    def add(self, *, notified: int = 0, failed: int = 0) -> None:
        with self._lock:
            self.counts.notified += notified
            self.counts.notify_failed += failed
