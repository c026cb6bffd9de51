"""What the store tests share: records of one job in flight or final at fixed times, and a race."""
from __future__ import annotations

import threading

from ice_upload_sync.records import JobRecord

NOW = "2026-11-25T03:00:00Z"
LATER = "2026-11-25T04:00:00Z"


def record(job_id="job00001", state="processing", **fields):
    return JobRecord(job_id=job_id, state=state, source="timer", ice_request_id="r",
                     first_seen_at=NOW, updated_at=NOW, **fields)


def final(job_id="job00001", completed_at=NOW, **fields):
    return record(job_id, "succeeded", completed_at=completed_at, media_id="m1", **fields)


def race(stores, records) -> None:
    """Each store saves its record at the same moment, from its own thread; none may raise."""
    start = threading.Barrier(len(stores))
    errors = []

    def write(store, rec):
        start.wait()
        try:
            store.save(rec)
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=write, args=pair) for pair in zip(stores, records)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
