"""The use case against in-memory stand-ins: here there is no wire, only the store interface."""
from __future__ import annotations

from datetime import datetime, timezone

from ice_upload_sync.config import Settings
from ice_upload_sync.events import SyncRequest
from ice_upload_sync.sync import SyncService

from tests.support.fakes import MemoryStore, ScriptedIce

NOW = datetime(2026, 11, 25, 3, tzinfo=timezone.utc)


def flaky(broken: str) -> MemoryStore:
    """The memory store, failing to read one job's record or marker."""
    store = MemoryStore().fail("tracking", {broken})
    store.corrupt.add(broken)
    return store


def run(store, gateway, request):
    service = SyncService(gateway, store, Settings(), clock=lambda: NOW)
    return service.run(request, deadline=float("inf"))


def test_a_store_read_failure_fails_that_job_only():
    """Regression: reading the marker or record before a save escaped the run as an exception."""
    store = flaky(broken="bad00001")
    gateway = ScriptedIce({"good0001": {"Status": "UPLOADING"}, "bad00001": {"Status": "UPLOADING"}})
    summary = run(store, gateway, SyncRequest(source="direct", job_ids=("good0001", "bad00001")))
    assert summary.failed == ["bad00001"] and summary.written == 1 and "good0001" in store.stored


def test_a_store_read_failure_while_deciding_not_found_fails_that_job_only():
    store = flaky(broken="gone0001")
    summary = run(store, ScriptedIce(), SyncRequest(source="direct", job_ids=("gone0001", "gone0002")))
    assert summary.failed == ["gone0001"] and summary.not_found == ["gone0002"]
