"""Records for the store tests: one job in flight or final, at fixed times."""
from __future__ import annotations

from ice_upload_sync.records import JobRecord

NOW = "2026-11-25T03:00:00Z"
LATER = "2026-11-25T04:00:00Z"


def record(job_id="job00001", state="processing", **fields):
    return JobRecord(job_id=job_id, state=state, source="timer", ice_request_id="r",
                     first_seen_at=NOW, updated_at=NOW, **fields)


def final(job_id="job00001", completed_at=NOW, **fields):
    return record(job_id, "succeeded", completed_at=completed_at, media_id="m1", **fields)
