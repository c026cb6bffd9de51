"""The outbox delivers several events at once (ICE_CONCURRENCY of them), and counts them right.

A backlog sent one event at a time takes its size times the slowest round trip; here a
target lets a put through only when ``IN_FLIGHT`` puts are waiting together (a barrier), so
the events are delivered only if they really are in flight at the same time. The store is
the real file store; the target stands in for the bus (its wire is tested in
tests/integration/test_eventbridge_delivery.py).
"""
from __future__ import annotations

import threading
import time
from datetime import timedelta
from types import SimpleNamespace

from ice_upload_sync.config import Settings
from ice_upload_sync.delivery import DELIVERED, RETRY, SendResult
from ice_upload_sync.ice import Credentials
from ice_upload_sync.outbox import Outbox
from ice_upload_sync.records import parse_time
from ice_upload_sync.stores import open_store

from tests.store_records import NOW, final

IN_FLIGHT = 3


class GatedBus:
    key = "gated-bus"
    host = "EventBridge bus gated"

    def __init__(self, parties: int, wait_s: float = 5.0) -> None:
        self.barrier = threading.Barrier(parties, timeout=wait_s)
        self.events = []
        self._lock = threading.Lock()

    def send(self, event, timeout_s):
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError:
            return SendResult(RETRY, None, "not in flight together")
        with self._lock:
            self.events.append(event.id)
        return SendResult(DELIVERED, 200)


def outbox_with(tmp_path, concurrency: int, bus):
    settings = Settings(record_store=f"file://{tmp_path}", notify_eventbridge_bus="gated",
                        ice_concurrency=concurrency)
    store = open_store(settings, Credentials("ak", "sk"))
    for number in range(2 * IN_FLIGHT):
        store.save(final(f"job{number:05d}"))
    return store, Outbox(store, settings, lambda: parse_time(NOW) + timedelta(minutes=1), bus=bus)


def test_a_sweep_delivers_the_backlog_several_events_at_a_time(tmp_path):
    bus = GatedBus(IN_FLIGHT)
    store, outbox = outbox_with(tmp_path, IN_FLIGHT, bus)
    counts = SimpleNamespace(notified=0, notify_failed=0)
    outbox.deliver_due(deadline=time.monotonic() + 30, counts=counts)
    assert (counts.notified, counts.notify_failed) == (2 * IN_FLIGHT, 0)
    assert len(set(bus.events)) == 2 * IN_FLIGHT and list(store.owed()) == []


def test_one_at_a_time_when_concurrency_is_one(tmp_path):
    """The same gate with ICE_CONCURRENCY=1: no two puts ever wait together."""
    bus = GatedBus(2, wait_s=0.2)
    store, outbox = outbox_with(tmp_path, 1, bus)
    counts = SimpleNamespace(notified=0, notify_failed=0)
    outbox.deliver_due(deadline=time.monotonic() + 30, counts=counts)
    assert counts.notified == 0 and bus.events == [] and len(list(store.owed())) == 2 * IN_FLIGHT
