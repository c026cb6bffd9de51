"""Every job stands alone: whatever goes wrong with one job fails that job, never the invocation.

The use case against in-memory stand-ins whose failures are not the store errors they
promise (a bug, an SDK error nobody translated): each such failure costs exactly its job.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterator, List, Optional, Sequence, Set, Union

import pytest
from ice_upload_sync import sync as sync_module
from ice_upload_sync.config import Settings
from ice_upload_sync.errors import StoreError
from ice_upload_sync.events import SyncRequest
from ice_upload_sync.ice import BatchOutcome, IceAnswer
from ice_upload_sync.records import JobRecord, MergeResult, UploadInfo
from ice_upload_sync.stores import Tracked, Tracking
from ice_upload_sync.sync import SyncService

from tests.unit import memory_store

NOW = datetime(2026, 11, 25, 3, tzinfo=timezone.utc)
JOBS = tuple(f"job{n:05d}" for n in range(25))
BAD = "job00013"


class Gateway:
    """ICE answering every job as uploading, 10 per call."""

    def lookup(self, job_ids, upload_urls, *, deadline, retry=True) -> Iterator[BatchOutcome]:
        for start in range(0, len(job_ids), 10):
            batch = tuple(job_ids[start:start + 10])
            infos = tuple(UploadInfo(j, status="UPLOADING") for j in batch)
            yield BatchOutcome("JobIds", batch, IceAnswer(f"req-{start}", infos, ()), None, 1)


class MemoryStore(memory_store.MemoryStore):
    """Records in a dict, every job pending; ``broken`` jobs make the named method raise ``error``."""

    def __init__(self, broken: Set[str] = frozenset(), method: str = "save", error: Exception = RuntimeError("bug")):
        super().__init__(JOBS)
        self.broken, self.method, self.error = broken, method, error

    def _check(self, method: str, job_id: str) -> None:
        if method == self.method and job_id in self.broken:
            raise self.error

    def tracking(self, job_id: str) -> Optional[Tracking]:
        self._check("tracking", job_id)
        return Tracking(job_id, "2026-11-25T02:00:00Z", "timer")

    def track(self, tracking: Tracking) -> Tracked:
        return Tracked.ALREADY

    def save(self, fresh: JobRecord) -> MergeResult:
        self._check("save", fresh.job_id)
        return super().save(fresh)

    def _saved(self, fresh: JobRecord, result: MergeResult) -> None:
        pass  # every job stays pending


class BatchingStore(MemoryStore):
    """A store with ``save_many`` that a bad record breaks as a whole (an untranslated SDK error)."""

    def save_many(self, records: Sequence[JobRecord]) -> List[Union[MergeResult, StoreError]]:
        if any(record.job_id in self.broken for record in records):
            raise TypeError("the SDK cannot encode a row")
        return [self.save(record) for record in records]


def run(store, request: SyncRequest):
    service = SyncService(Gateway(), store, Settings(), clock=lambda: NOW)
    return service.run(request, deadline=float("inf"))


def sweep(store):
    return run(store, SyncRequest(source="timer", sweep=True))


def not_recorded(summary) -> Set[str]:
    """Jobs the run reports it could not record: failed, or deferred to the next sweep (still tracked)."""
    assert summary.failed_count + summary.deferred_count == len(summary.failed) + len(summary.deferred)
    return set(summary.failed) | set(summary.deferred)


@pytest.mark.parametrize("store", [
    MemoryStore({BAD}, "save"),
    MemoryStore({BAD}, "save", OSError(28, "No space left on device")),
    MemoryStore({BAD}, "tracking", KeyError("first_seen_at")),  # read while deciding expiry
    BatchingStore({BAD}, "save", ValueError("bad row")),  # save_many fails whole, save fails alone
], ids=["bug", "raw-oserror", "tracking", "save-many"])
def test_a_store_failing_one_job_unexpectedly_fails_that_job_alone(store, caplog):
    summary = sweep(store)
    assert not_recorded(summary) == {BAD} and summary.written == len(JOBS) - 1
    assert set(store.records) == set(JOBS) - {BAD}
    assert summary.complete and summary.cursor is None
    assert any(BAD in line for line in caplog.messages)


def test_a_normalizer_that_raises_fails_its_job_alone(monkeypatch, caplog):
    real = sync_module.normalize

    def normalize(info, **options):
        if info.job_id == BAD:
            raise OverflowError("cannot convert float infinity to integer")
        return real(info, **options)

    monkeypatch.setattr(sync_module, "normalize", normalize)
    store = MemoryStore()
    summary = sweep(store)
    assert not_recorded(summary) == {BAD} and set(store.records) == set(JOBS) - {BAD}
    assert any(BAD in line and "normalize" in line for line in caplog.messages)


def test_a_bug_past_every_per_job_guard_fails_the_jobs_it_left_unsettled_not_the_sweep(monkeypatch):
    def save_all(self, records, now, report):
        if any(record.job_id == BAD for record in records):
            raise RuntimeError("bug")
        return real_save_all(self, records, now, report)

    real_save_all = SyncService._save_all
    monkeypatch.setattr(SyncService, "_save_all", save_all)
    store = MemoryStore()
    summary = run(store, SyncRequest(source="direct", job_ids=JOBS))
    batch = set(JOBS[10:20])  # the answer holding the bad job
    assert not_recorded(summary) == batch and set(store.records) == set(JOBS) - batch
