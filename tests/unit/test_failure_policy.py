"""When the handler raises (contract section 6): only for jobs nothing would ever retry.

A job that should have been written and was not is ``deferred`` (logged as an error, no raise)
when its pending marker exists, because the next sweep tries it again and a raise only makes FC
re-run the whole invocation; it is ``failed`` (and the handler raises after writing the rest)
when it is not tracked, or when the store cannot tell.
"""
from __future__ import annotations

import logging
import time
from typing import Iterator, List, Optional, Sequence, Set

import index
import pytest
from ice_upload_sync.config import Settings
from ice_upload_sync.errors import StoreError, SyncIncomplete, UpstreamError
from ice_upload_sync.events import SyncRequest
from ice_upload_sync.ice import BatchOutcome, IceAnswer
from ice_upload_sync.records import JobRecord, MergeResult, UploadInfo
from ice_upload_sync.stores import Tracked, Tracking
from ice_upload_sync.sync import LIST_CAP, Summary, SyncService

from tests.unit.memory_store import MemoryStore

CREATED = "2026-11-25T02:00:00Z"
SWEEP = SyncRequest(source="timer", sweep=True)
PRESIGNED = ("https://bucket.oss-cn-shanghai.aliyuncs.com/in/a.mp4"
             "?OSSAccessKeyId=STS.key&Expires=1764040000&Signature=c2VjcmV0LXNpZw%3D%3D&security-token=tok-abc")


def ids(count: int, prefix: str = "job") -> List[str]:
    return [f"{prefix}{n:05d}" for n in range(count)]


class Ice:
    """Answers every job as uploading, except the keys in ``refuse``: their batch gets a 400."""

    def __init__(self, refuse: Sequence[str] = ()) -> None:
        self.refuse = set(refuse)

    def lookup(self, job_ids, upload_urls, *, deadline, retry=True) -> Iterator[BatchOutcome]:
        for kind, keys in (("JobIds", tuple(job_ids)), ("UploadURLs", tuple(upload_urls))):
            for start in range(0, len(keys), 10):
                batch = keys[start:start + 10]
                if self.refuse & set(batch):
                    error = UpstreamError("ICE answered HTTP 400 InvalidParameter", code="InvalidParameter")
                    yield BatchOutcome(kind, batch, None, error, 1)
                elif kind == "JobIds":
                    infos = tuple(UploadInfo(j, status="UPLOADING", creation_time=CREATED) for j in batch)
                    yield BatchOutcome(kind, batch, IceAnswer("req", infos, ()), None, 1)
                else:
                    yield BatchOutcome(kind, batch, IceAnswer("req", (), batch), None, 1)


class Store(MemoryStore):
    """Records and markers in dicts; ``unwritable`` jobs fail to save, ``unreadable`` markers fail to read.

    No cursors; a job whose record is not final is left pending by its save.
    """

    load_cursor = None  # type: ignore[assignment]
    save_cursor = None  # type: ignore[assignment]

    def __init__(self, pending: Sequence[str] = ()) -> None:
        super().__init__(pending)
        self.untrackable: Set[str] = set()
        self.unreadable: Set[str] = set()

    def tracking(self, job_id: str) -> Optional[Tracking]:
        if job_id in self.unreadable:
            raise StoreError(f"memory store: cannot read the marker of {job_id}")
        return super().tracking(job_id)

    def track(self, tracking: Tracking) -> Tracked:
        if tracking.job_id in self.untrackable:
            raise StoreError(f"memory store: cannot track {tracking.job_id}")
        return super().track(tracking)

    def _saved(self, fresh: JobRecord, result: MergeResult) -> None:
        if not result.record.final:
            self.markers.setdefault(fresh.job_id, Tracking(fresh.job_id, CREATED, fresh.source))


def handle(store: Store, ice: Ice, request: SyncRequest) -> dict:
    """The handler's own raise decision (``index._run``) over the use case."""
    settings = Settings()
    app = index.App(settings, ice, store, SyncService(ice, store, settings))  # type: ignore[arg-type]
    return index._run(app, request, None, time.monotonic() + 60, time.monotonic())


# ---------------------------------------------------------------- tracked: deferred, no raise


def test_a_sweep_with_a_permanently_failing_batch_defers_it_and_does_not_raise(caplog):
    store = Store(ids(25))
    summary = handle(store, Ice(refuse=["job00012"]), SWEEP)
    assert summary["deferred"] == ids(25)[10:20] and summary["failed"] == [] and summary["failed_count"] == 0
    assert summary["written"] == 15 and set(store.pending_job_ids()) == set(ids(25))
    assert any(r.levelno == logging.ERROR and "InvalidParameter" in r.getMessage() for r in caplog.records)


def test_a_sweep_whose_write_fails_for_a_tracked_job_defers_it_and_does_not_raise(caplog):
    store = Store(ids(12))
    store.unwritable = {"job00003"}
    summary = handle(store, Ice(), SWEEP)
    assert summary["deferred"] == ["job00003"] and summary["failed"] == [] and summary["written"] == 11
    assert "job00003" in store.markers  # the next sweep tries again
    assert any(r.levelno == logging.ERROR and "still tracked" in r.getMessage() for r in caplog.records)


def test_a_direct_check_of_a_job_tracked_earlier_defers_a_failed_lookup():
    store = Store(["old00001"])  # tracked by an earlier invocation
    summary = handle(store, Ice(refuse=["old00001"]), SyncRequest(source="direct", job_ids=("old00001",)))
    assert summary["deferred"] == ["old00001"] and summary["failed_count"] == 0


def test_jobs_tracked_by_the_request_itself_are_deferred_whatever_ice_answered():
    store = Store()
    request = SyncRequest(source="direct", job_ids=("new00001", "new00002"), track=True)
    summary = handle(store, Ice(refuse=["new00001"]), request)
    assert summary["deferred"] == ["new00001", "new00002"] and summary["tracked"] == 2
    assert set(store.markers) == {"new00001", "new00002"}


def test_every_failure_is_counted_and_deferred_past_the_listed_hundred():
    store = Store(ids(150))
    store.unwritable = set(ids(150))
    summary = handle(store, Ice(), SWEEP)
    assert summary["deferred_count"] == 150 and len(summary["deferred"]) == LIST_CAP
    assert summary["failed_count"] == 0 and summary["failed"] == []


# ---------------------------------------------------------------- untracked: failed, raise


def test_an_upload_url_lookup_that_fails_raises_it_has_no_marker_to_retry_from():
    with pytest.raises(SyncIncomplete) as raised:
        handle(Store(), Ice(refuse=[PRESIGNED]), SyncRequest(source="direct", upload_urls=(PRESIGNED,)))
    shown = "https://bucket.oss-cn-shanghai.aliyuncs.com/in/a.mp4?<redacted>"
    assert raised.value.summary["failed"] == [shown] and raised.value.summary["deferred"] == []
    assert "Signature" not in str(raised.value) and shown in str(raised.value)


def test_a_job_that_cannot_be_tracked_raises():
    store = Store()
    store.untrackable = {"new00002"}
    request = SyncRequest(source="direct", job_ids=("new00001", "new00002"), track=True)
    with pytest.raises(SyncIncomplete) as raised:
        handle(store, Ice(), request)
    assert raised.value.summary["failed"] == ["new00002"] and raised.value.summary["written"] == 1


def test_a_write_that_fails_for_an_untracked_job_raises():
    store = Store()
    store.unwritable = {"once0001"}
    with pytest.raises(SyncIncomplete) as raised:
        handle(store, Ice(), SyncRequest(source="direct", job_ids=("once0001", "once0002")))
    # the record would have been non-final, so the save made no marker either
    assert raised.value.summary["failed"] == ["once0001"] and raised.value.summary["written"] == 1


def test_a_store_that_cannot_say_whether_a_job_is_tracked_keeps_it_failed():
    store = Store(ids(3))
    store.unwritable = {"job00001"}
    store.unreadable = {"job00001"}
    with pytest.raises(SyncIncomplete) as raised:
        handle(store, Ice(), SWEEP)
    assert raised.value.summary["failed"] == ["job00001"] and raised.value.summary["deferred"] == []


def test_a_run_out_of_time_confirms_nothing_and_raises():
    store = Store(ids(3))
    store.unwritable = {"job00001"}
    service = SyncService(Ice(), store, Settings())  # type: ignore[arg-type]
    summary = service.run(SyncRequest(source="direct", job_ids=("job00001",)), deadline=time.monotonic() - 1)
    assert summary.failed == ["job00001"] and summary.deferred == []


# ---------------------------------------------------------------- the summary's bookkeeping


def test_deferring_failed_jobs_moves_them_with_their_counts():
    summary = Summary()
    for job_id in ids(120):
        summary.add_failed(job_id)
    summary.defer_failed(ids(120)[5:115])
    assert summary.failed_count == 10 and summary.failed == ids(5) + ids(120)[115:]
    assert summary.deferred_count == 110 and summary.deferred == ids(120)[5:105]
    assert "failed_ids" not in summary.to_dict()  # the answer keeps the keys of section 6
