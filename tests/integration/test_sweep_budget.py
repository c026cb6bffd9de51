"""Backlogs larger than one invocation, end to end with each store: budget, cursor, wraparound, shards.

No test here waits on a wall-clock budget (a busy machine would blow it: one OSS listing can
take longer than the budget). The sweep's clock is the test's: it stands still until the
sweep has listed the jobs the test allows, then jumps past any budget.
"""
from __future__ import annotations

import math
import time
import zlib
from typing import Iterator

import pytest
from ice_upload_sync import sweep as sweep_module
from ice_upload_sync import sync

from tests.scenario import load_event

JOBS = [f"sweep{n:04d}" for n in range(30)]


def shard_event(shard: str) -> dict:
    return {"triggerTime": "2026-11-25T03:00:00Z", "triggerName": "sweep-shard", "payload": f'{{"Shard": "{shard}"}}'}


class ListingClock:
    """``time`` as ``sync.py`` and ``sweep.py`` see it: still while the sweep has listed fewer than ``budget_jobs``
    pending jobs (counted as the store hands them over), an hour later from then on.

    So a sweep with a budget "runs out of time" exactly when it has taken that many jobs,
    whatever the machine's load; with ``budget_jobs`` infinite it never does.
    """

    def __init__(self) -> None:
        self.budget_jobs = math.inf
        self.listed = 0
        self._start = time.monotonic()

    def monotonic(self) -> float:
        return self._start + (3600.0 if self.listed >= self.budget_jobs else 0.0)

    def counted(self, job_ids: Iterator[str]) -> Iterator[str]:
        for job_id in job_ids:
            self.listed += 1
            yield job_id


@pytest.fixture
def clock(fc, monkeypatch) -> ListingClock:
    clock = ListingClock()
    store_class = type(fc.store)  # the class of the store the handler opens, whichever it is
    listing = store_class.pending_job_ids

    def pending_job_ids(store, *args, **kwargs):
        return clock.counted(listing(store, *args, **kwargs))

    monkeypatch.setattr(store_class, "pending_job_ids", pending_job_ids)
    monkeypatch.setattr(sync, "time", clock)
    monkeypatch.setattr(sweep_module, "time", clock)
    return clock


@pytest.fixture
def backlog(ice, fc, monkeypatch, clock):
    """30 tracked jobs in flight; ICE answers one call at a time, and a sweep may take 20 jobs.

    So each sweep starts exactly its first window of two batches (20 jobs) and stops.
    """
    for job_id in JOBS:
        ice.put_job(job_id, Status="UPLOADING")
    fc.invoke({"UploadJobs": [{"JobId": j} for j in JOBS]})
    monkeypatch.setenv("ICE_CONCURRENCY", "1")
    monkeypatch.setenv("SWEEP_BUDGET_S", "1")
    fc.restart()
    ice.reset_calls()
    return fc


def sweep(fc, clock: ListingClock, event: dict, *, budget_jobs: float = math.inf) -> dict:
    clock.listed, clock.budget_jobs = 0, budget_jobs
    return fc.invoke(event)


def checked(ice) -> list:
    return [j for call in ice.calls for j in call.job_ids]


def test_a_backlog_is_worked_through_over_several_sweeps_and_wraps_around(ice, backlog, clock):
    seen = []
    for _ in range(2):
        ice.reset_calls()
        summary = sweep(backlog, clock, load_event("timer-sweep.json"), budget_jobs=20)
        assert summary["checked"] == 20 and summary["api_calls"] == 2 and not summary["complete"]
        assert summary["cursor"] == checked(ice)[-1] and summary["failed"] == []
        seen += checked(ice)
    assert seen == JOBS + JOBS[:10]  # in order, and the second sweep went round to the start
    assert backlog.pending() == set(JOBS)  # nothing was lost on the way


def test_a_sweep_with_time_for_everything_finishes_and_forgets_its_cursor(ice, backlog, clock, monkeypatch):
    sweep(backlog, clock, load_event("timer-sweep.json"), budget_jobs=20)  # stops after 20 jobs
    monkeypatch.delenv("SWEEP_BUDGET_S")
    backlog.restart()
    ice.reset_calls()
    summary = sweep(backlog, clock, load_event("timer-sweep.json"))
    assert summary["complete"] and summary["cursor"] is None and summary["checked"] == 30
    assert checked(ice) == JOBS[20:] + JOBS[:20]  # from after the cursor, round to it


def test_each_shard_sweeps_its_own_jobs_and_the_shards_cover_all(ice, backlog, clock):
    seen = []
    for index in range(2):
        ice.reset_calls()
        summary = sweep(backlog, clock, shard_event(f"{index}/2"))
        mine = [j for j in JOBS if zlib.crc32(j.encode()) % 2 == index]  # 14 and 16 jobs: two batches each
        assert summary["shard"] == f"{index}/2" and checked(ice) == mine
        assert summary["complete"] and summary["api_calls"] == 2
        seen += checked(ice)
    assert sorted(seen) == JOBS


def test_a_sweep_with_a_failed_batch_records_the_others_and_defers_it(ice, fc, monkeypatch):
    for job_id in JOBS[:12]:
        ice.put_job(job_id, Status="UPLOADING")
    fc.invoke({"UploadJobs": [{"JobId": j} for j in JOBS[:12]]})
    ice.fail_next(1, status=400, code="InvalidParameter", message="refused")  # not retryable
    summary = fc.invoke(load_event("timer-sweep.json"))  # contract section 6: tracked, so no raise
    assert summary["deferred_count"] in (2, 10) and len(summary["deferred"]) == summary["deferred_count"]
    assert summary["unchanged"] == 12 - summary["deferred_count"] and summary["failed"] == []
    assert fc.pending() == set(JOBS[:12])  # still tracked: the next sweep tries again


def test_every_store_lists_pending_jobs_in_order_after_a_key_and_keeps_cursors(ice, fc):
    jobs = ["b0000001", "a0000001", "c0000001", "a0000002"]
    for job_id in jobs:
        ice.put_job(job_id, Status="UPLOADING")
    fc.invoke({"UploadJobs": [{"JobId": j} for j in jobs]})
    store = fc.store
    assert list(store.pending_job_ids()) == sorted(jobs)
    assert list(store.pending_job_ids(after="a0000002")) == ["b0000001", "c0000001"]
    assert store.load_cursor("sweep-0-of-2") is None
    store.save_cursor("sweep-0-of-2", "b0000001")
    assert store.load_cursor("sweep-0-of-2") == "b0000001" and store.load_cursor("sweep") is None
    store.save_cursor("sweep-0-of-2", None)
    assert store.load_cursor("sweep-0-of-2") is None
    store.save_cursor("sweep-0-of-2", None)  # forgetting twice is fine


def test_a_sweep_retries_throttled_calls_under_the_same_rate_limit(ice, fc, monkeypatch):
    for job_id in JOBS[:25]:
        ice.put_job(job_id, Status="UPLOADING")
    fc.invoke({"UploadJobs": [{"JobId": j} for j in JOBS[:25]]})
    monkeypatch.setenv("ICE_MAX_QPS", "5")  # 5 calls in any second
    fc.restart()
    ice.reset_calls()
    ice.throttle_next(3)
    started = time.monotonic()
    summary = fc.invoke(load_event("timer-sweep.json"))
    assert summary["unchanged"] == 25 and summary["complete"] and summary["api_calls"] == 3 + 3
    assert len(ice.calls) == 6 and time.monotonic() - started >= 1.0  # every attempt took a slot: the 6th waited
