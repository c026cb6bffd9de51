"""The outbox claims each event before sending it (contract section 9), seen through the in-memory store.

The stores' own claims (the compare-and-set on the file store, OSS and Tablestore) are tested
against their servers in tests/integration/test_store_outbox.py; here, what the outbox does
around them: who sends, what is counted, and what is read.
"""
from __future__ import annotations

import functools
import threading
import time
from datetime import timedelta
from types import SimpleNamespace
from typing import List

from ice_upload_sync.cloudevent import CloudEvent
from ice_upload_sync.config import Settings
from ice_upload_sync.delivery import DELIVERED, SendResult
from ice_upload_sync.errors import StoreError
from ice_upload_sync.notify import Owed
from ice_upload_sync.outbox import CLAIM_S, Outbox
from ice_upload_sync.records import parse_time

from tests.store_records import NOW, at_once, final, record
from tests.support.fakes import MemoryStore

ANNOUNCED = ("succeeded", "failed", "expired")


class SlowBus:
    """A target that takes ``latency_s`` to accept each event, and keeps what it accepted."""

    key = "slow-bus"
    host = "EventBridge bus slow"

    def __init__(self, latency_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self.events: List[CloudEvent] = []
        self._lock = threading.Lock()

    def send(self, event, timeout_s):
        time.sleep(self.latency_s)
        with self._lock:
            self.events.append(event)
        return SendResult(DELIVERED, 200)


def outbox_over(store: MemoryStore, bus: SlowBus, minutes_after_now: float) -> Outbox:
    settings = Settings(record_store="file://unused", notify_eventbridge_bus="slow", ice_concurrency=2)
    return Outbox(store, settings, lambda: parse_time(NOW) + timedelta(minutes=minutes_after_now), bus=bus)


def counts() -> SimpleNamespace:
    return SimpleNamespace(notified=0, notify_failed=0)


def test_an_entry_left_behind_by_a_racing_writer_is_re_owed_and_sent_by_one_invocation():
    store = MemoryStore()
    store.notify_states = ANNOUNCED
    store.save(record("job00001", "failed", completed_at=NOW, error_code="X"))  # the winner's record, and its entry...
    store.owe(Owed.for_record(final(), NOW))  # ...replaced by the loser's, written last
    bus = SlowBus(latency_s=0.3)
    sweeps = [outbox_over(store, bus, minutes_after_now=20) for _ in range(2)]  # past the grace of a stale entry
    answers = [counts() for _ in sweeps]
    at_once(*(functools.partial(outbox.deliver_due, deadline=time.monotonic() + 10, counts=answer)
              for outbox, answer in zip(sweeps, answers)), timeout_s=10)
    assert [event.type for event in bus.events] == ["ice.upload.failed"]
    assert sorted((answer.notified, answer.notify_failed) for answer in answers) == [(0, 0), (1, 0)]
    assert store.outbox == {}


def test_an_entry_claimed_by_another_invocation_is_skipped_without_reading_its_record():
    class CountingStore(MemoryStore):
        loads = 0

        def load(self, job_id):
            CountingStore.loads += 1
            return super().load(job_id)

    store = CountingStore()
    store.notify_states = ANNOUNCED
    store.save(final())
    now = parse_time(NOW) + timedelta(minutes=1)
    assert store.claim(next(store.owed()), "elsewhere", now, now + timedelta(seconds=CLAIM_S))
    bus, answer = SlowBus(), counts()
    outbox_over(store, bus, minutes_after_now=1).deliver_due(deadline=time.monotonic() + 10, counts=answer)
    assert bus.events == [] and CountingStore.loads == 0 and (answer.notified, answer.notify_failed) == (0, 0)


def test_a_claim_the_store_cannot_write_sends_nothing_and_counts_the_event_not_delivered():
    class FailingClaims(MemoryStore):
        def claim(self, entry, holder, now, until):
            raise StoreError("memory store: cannot claim: injected")

    store = FailingClaims()
    store.notify_states = ANNOUNCED
    written = store.save(final())
    bus, answer = SlowBus(), counts()
    outbox_over(store, bus, minutes_after_now=1).deliver_now([written.record], deadline=time.monotonic() + 10,
                                                             counts=answer)
    assert bus.events == [] and (answer.notified, answer.notify_failed) == (0, 1)
    assert store.outbox["job00001"].claimable(parse_time(NOW))  # still owed, as it was
