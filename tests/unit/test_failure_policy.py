"""When the handler raises (contract section 6): only for jobs nothing would ever retry.

A job that should have been written and was not is ``deferred`` (logged as an error, no raise)
when its pending marker exists, because the next sweep tries it again and a raise only makes FC
re-run the whole invocation; it is ``failed`` (and the handler raises after writing the rest)
when it is not tracked, or when the store cannot tell.
"""
from __future__ import annotations

import logging
import time
from typing import List, Sequence

import index
import pytest
from ice_upload_sync.config import Settings
from ice_upload_sync.errors import SyncIncomplete
from ice_upload_sync.events import SyncRequest
from ice_upload_sync.sync import LIST_CAP, Summary, SyncService

from tests.support.fakes import MemoryStore, ScriptedIce, ice_error

CREATED = "2026-11-25T02:00:00Z"
SWEEP = SyncRequest(source="timer", sweep=True)
PRESIGNED = ("https://bucket.oss-cn-shanghai.aliyuncs.com/in/a.mp4"
             "?OSSAccessKeyId=STS.key&Expires=1764040000&Signature=c2VjcmV0LXNpZw%3D%3D&security-token=tok-abc")


def ids(count: int, prefix: str = "job") -> List[str]:
    return [f"{prefix}{n:05d}" for n in range(count)]


def ice(refuse: Sequence[str] = ()) -> ScriptedIce:
    """Answers every job as uploading, except the keys in ``refuse``: their batch gets a 400."""
    uploading = {"Status": "UPLOADING", "CreationTime": CREATED}
    return ScriptedIce(default=uploading, failing=dict.fromkeys(refuse, ice_error("InvalidParameter")))


def new_store(pending: Sequence[str] = ()) -> MemoryStore:
    """The memory store, whose saves leave every marker in place (a job recorded expired stays pending too)."""
    return MemoryStore(pending, keeps_pending=True)


def handle(store: MemoryStore, gateway: ScriptedIce, request: SyncRequest) -> dict:
    """The handler's own raise decision (``index._run``) over the use case."""
    settings = Settings()
    app = index.App(settings, gateway, store, SyncService(gateway, store, settings))  # type: ignore[arg-type]
    return index._run(app, request, None, time.monotonic() + 60, time.monotonic())


# ---------------------------------------------------------------- tracked: deferred, no raise


def test_a_sweep_with_a_permanently_failing_batch_defers_it_and_does_not_raise(caplog):
    store = new_store(ids(25))
    summary = handle(store, ice(refuse=["job00012"]), SWEEP)
    assert summary["deferred"] == ids(25)[10:20] and summary["failed"] == [] and summary["failed_count"] == 0
    assert summary["written"] == 15 and set(store.pending_job_ids()) == set(ids(25))
    assert any(r.levelno == logging.ERROR and "InvalidParameter" in r.getMessage() for r in caplog.records)


def test_a_sweep_whose_write_fails_for_a_tracked_job_defers_it_and_does_not_raise(caplog):
    store = new_store(ids(12))
    store.unwritable = {"job00003"}
    summary = handle(store, ice(), SWEEP)
    assert summary["deferred"] == ["job00003"] and summary["failed"] == [] and summary["written"] == 11
    assert "job00003" in store.markers  # the next sweep tries again
    assert any(r.levelno == logging.ERROR and "still tracked" in r.getMessage() for r in caplog.records)


def test_a_direct_check_of_a_job_tracked_earlier_defers_a_failed_lookup():
    store = new_store(["old00001"])  # tracked by an earlier invocation
    summary = handle(store, ice(refuse=["old00001"]), SyncRequest(source="direct", job_ids=("old00001",)))
    assert summary["deferred"] == ["old00001"] and summary["failed_count"] == 0


def test_jobs_tracked_by_the_request_itself_are_deferred_whatever_ice_answered():
    store = new_store()
    request = SyncRequest(source="direct", job_ids=("new00001", "new00002"), track=True)
    summary = handle(store, ice(refuse=["new00001"]), request)
    assert summary["deferred"] == ["new00001", "new00002"] and summary["tracked"] == 2
    assert set(store.markers) == {"new00001", "new00002"}


def test_every_failure_is_counted_and_deferred_past_the_listed_hundred():
    store = new_store(ids(150))
    store.unwritable = set(ids(150))
    summary = handle(store, ice(), SWEEP)
    assert summary["deferred_count"] == 150 and len(summary["deferred"]) == LIST_CAP
    assert summary["failed_count"] == 0 and summary["failed"] == []


# ---------------------------------------------------------------- untracked: failed, raise


def test_an_upload_url_lookup_that_fails_raises_it_has_no_marker_to_retry_from():
    with pytest.raises(SyncIncomplete) as raised:
        handle(new_store(), ice(refuse=[PRESIGNED]), SyncRequest(source="direct", upload_urls=(PRESIGNED,)))
    shown = "https://bucket.oss-cn-shanghai.aliyuncs.com/in/a.mp4?<redacted>"
    assert raised.value.summary["failed"] == [shown] and raised.value.summary["deferred"] == []
    assert "Signature" not in str(raised.value) and shown in str(raised.value)


def test_a_job_that_cannot_be_tracked_raises():
    store = new_store()
    store.fail("track", {"new00002"})
    request = SyncRequest(source="direct", job_ids=("new00001", "new00002"), track=True)
    with pytest.raises(SyncIncomplete) as raised:
        handle(store, ice(), request)
    assert raised.value.summary["failed"] == ["new00002"] and raised.value.summary["written"] == 1


def test_a_write_that_fails_for_an_untracked_job_raises():
    store = new_store()
    store.unwritable = {"once0001"}
    with pytest.raises(SyncIncomplete) as raised:
        handle(store, ice(), SyncRequest(source="direct", job_ids=("once0001", "once0002")))
    # the record would have been non-final, so the save made no marker either
    assert raised.value.summary["failed"] == ["once0001"] and raised.value.summary["written"] == 1


def test_a_store_that_cannot_say_whether_a_job_is_tracked_keeps_it_failed():
    store = new_store(ids(3))
    store.unwritable = {"job00001"}
    store.fail("tracking", {"job00001"})
    with pytest.raises(SyncIncomplete) as raised:
        handle(store, ice(), SWEEP)
    assert raised.value.summary["failed"] == ["job00001"] and raised.value.summary["deferred"] == []


def test_a_run_out_of_time_confirms_nothing_and_raises():
    store = new_store(ids(3))
    store.unwritable = {"job00001"}
    service = SyncService(ice(), store, Settings())
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
