"""Every job stands alone: whatever goes wrong with one job fails that job, never the invocation.

The use case against in-memory stand-ins whose failures are not the store errors they
promise (a bug, an SDK error nobody translated): each such failure costs exactly its job.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Set

import pytest
from ice_upload_sync import writer as writer_module
from ice_upload_sync.config import Settings
from ice_upload_sync.events import SyncRequest
from ice_upload_sync.sync import SyncService

from tests.support.fakes import MemoryStore, ScriptedIce

NOW = datetime(2026, 11, 25, 3, tzinfo=timezone.utc)
JOBS = tuple(f"job{n:05d}" for n in range(25))
BAD = "job00013"


def pending(**knobs) -> MemoryStore:
    """The memory store with every job pending, and kept pending by its saves."""
    return MemoryStore(JOBS, keeps_pending=True, **knobs)


def run(store, request: SyncRequest):
    ice = ScriptedIce(default={"Status": "UPLOADING"})  # every job, 10 per call
    service = SyncService(ice, store, Settings(), clock=lambda: NOW)
    return service.run(request, deadline=float("inf"))


def sweep(store):
    return run(store, SyncRequest(source="timer", sweep=True))


def not_recorded(summary) -> Set[str]:
    """Jobs the run reports it could not record: failed, or deferred to the next sweep (still tracked)."""
    assert summary.failed_count + summary.deferred_count == len(summary.failed) + len(summary.deferred)
    return set(summary.failed) | set(summary.deferred)


@pytest.mark.parametrize("store", [
    pending().fail("save", {BAD}, RuntimeError("bug")),
    pending().fail("save", {BAD}, OSError(28, "No space left on device")),
    pending().fail("tracking", {BAD}, KeyError("first_seen_at")),  # read while deciding expiry
    # save_many fails whole (an untranslated SDK error), save fails alone
    pending(batches_writes=True).fail("save_many", {BAD}, TypeError("the SDK cannot encode a row"))
                                .fail("save", {BAD}, ValueError("bad row")),
], ids=["bug", "raw-oserror", "tracking", "save-many"])
def test_a_store_failing_one_job_unexpectedly_fails_that_job_alone(store, caplog):
    summary = sweep(store)
    assert not_recorded(summary) == {BAD} and summary.written == len(JOBS) - 1
    assert set(store.stored) == set(JOBS) - {BAD}
    assert summary.complete and summary.cursor is None
    assert any(BAD in line for line in caplog.messages)


def test_a_normalizer_that_raises_fails_its_job_alone(monkeypatch, caplog):
    real = writer_module.normalize

    def normalize(info, **options):
        if info.job_id == BAD:
            raise OverflowError("cannot convert float infinity to integer")
        return real(info, **options)

    monkeypatch.setattr(writer_module, "normalize", normalize)
    store = pending()
    summary = sweep(store)
    assert not_recorded(summary) == {BAD} and set(store.stored) == set(JOBS) - {BAD}
    assert any(BAD in line and "normalize" in line for line in caplog.messages)


def test_a_bug_past_every_per_job_guard_fails_the_jobs_it_left_unsettled_not_the_sweep(monkeypatch):
    def save_all(self, records, now, report):
        if any(record.job_id == BAD for record in records):
            raise RuntimeError("bug")
        return real_save_all(self, records, now, report)

    real_save_all = writer_module.RecordWriter._save_all
    monkeypatch.setattr(writer_module.RecordWriter, "_save_all", save_all)
    store = pending()
    summary = run(store, SyncRequest(source="direct", job_ids=JOBS))
    batch = set(JOBS[10:20])  # the answer holding the bad job
    assert not_recorded(summary) == batch and set(store.stored) == set(JOBS) - batch
