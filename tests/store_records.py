"""What the store tests share: records of one job in flight or final at fixed times, and a race."""
from __future__ import annotations

import functools
import threading
from typing import Callable, List

from ice_upload_sync.records import JobRecord

NOW = "2026-11-25T03:00:00Z"
LATER = "2026-11-25T04:00:00Z"


def record(job_id="job00001", state="processing", **fields):
    return JobRecord(job_id=job_id, state=state, source="timer", ice_request_id="r",
                     first_seen_at=NOW, updated_at=NOW, **fields)


def final(job_id="job00001", completed_at=NOW, **fields):
    return record(job_id, "succeeded", completed_at=completed_at, media_id="m1", **fields)


def at_once(*calls: Callable[[], object], timeout_s: float = 60) -> List[object]:
    """Run ``calls`` each in its own thread, released together; their results, in order.

    Fails the test if any of them raises or has not finished within ``timeout_s``.
    """
    start = threading.Barrier(len(calls))
    results: List[object] = [None] * len(calls)
    errors: List[BaseException] = []

    def run(index: int) -> None:
        start.wait()
        try:
            results[index] = calls[index]()
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(index,), daemon=True) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout_s)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads), f"still running after {timeout_s} s"
    return results


def race(stores, records, *, vouch_first: bool = False) -> None:
    """Each store saves its record at the same moment, from its own thread; none may raise.

    ``vouch_first``: each asks ``vouched`` first (with a digest no record binds), as the sweep's
    writer does before every save, so what a store keeps from that read is raced too."""
    def save(store, rec):
        if vouch_first:
            assert store.vouched({rec.job_id: "a digest no record binds"}) == set()
        return store.save(rec)

    at_once(*(functools.partial(save, store, rec) for store, rec in zip(stores, records)))
