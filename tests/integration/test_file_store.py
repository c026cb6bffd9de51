"""The file store on a real temp dir: atomic writes, the pending index, races between writers."""
from __future__ import annotations

import json
import threading
from dataclasses import replace

import pytest
from ice_upload_sync.errors import StoreError
from ice_upload_sync.records import JobRecord
from ice_upload_sync.stores import Tracking
from ice_upload_sync.stores.file import FileStore

NOW = "2026-11-25T03:00:00Z"


def record(job_id="job00001", state="processing", **fields):
    return JobRecord(job_id=job_id, state=state, source="timer", ice_request_id="r",
                     first_seen_at=NOW, updated_at=NOW, **fields)


@pytest.fixture
def store(tmp_path):
    return FileStore(str(tmp_path / "records"))


def test_a_non_final_record_is_pending_and_a_final_one_is_not(store):
    store.save(record(state="processing"))
    assert list(store.pending_job_ids()) == ["job00001"]
    store.save(record(state="succeeded", completed_at=NOW))
    assert list(store.pending_job_ids()) == [] and store.load("job00001").final


def test_tracking_keeps_the_first_time_and_never_resurrects_a_final_job(store):
    assert store.track(Tracking("job00001", "2026-11-20T00:00:00Z", "callback"))
    assert not store.track(Tracking("job00001", NOW, "callback"))
    assert store.tracking("job00001").first_seen_at == "2026-11-20T00:00:00Z"
    store.save(record())
    assert store.load("job00001").first_seen_at == "2026-11-20T00:00:00Z"
    store.save(record(state="failed", completed_at=NOW))
    assert not store.track(Tracking("job00001", NOW, "callback"))
    assert store.tracking("job00001") is None


def test_writes_leave_no_temporary_files(store, tmp_path):
    for index in range(20):
        store.save(record(job_id=f"job{index:05d}"))
    leftovers = [p for p in (tmp_path / "records").rglob("*.tmp")]
    assert leftovers == []


def test_a_corrupt_record_is_a_store_error(store, tmp_path):
    (tmp_path / "records" / "jobs" / "job00001.json").write_text("{half a rec")
    with pytest.raises(StoreError, match="corrupt"):
        store.load("job00001")


def test_racing_final_and_stale_writers_never_end_non_final(store):
    final = record(state="succeeded", completed_at=NOW, media_id="m1")
    stale = record(state="processing")
    def write(start, rec):
        start.wait()
        store.save(rec)

    for round_number in range(100):
        job_id = f"race{round_number:04d}"
        start = threading.Barrier(2)
        threads = [threading.Thread(target=write, args=(start, replace(r, job_id=job_id))) for r in (stale, final)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.load(job_id).state == "succeeded"
        assert store.tracking(job_id) is None


def test_a_lock_file_that_cannot_be_opened_is_a_store_error(store, tmp_path):
    locks = tmp_path / "records" / ".locks"
    locks.rmdir()
    locks.write_text("a file where the lock folder was")  # every lock file open now fails
    with pytest.raises(StoreError, match="job00001"):
        store.save(record())
    with pytest.raises(StoreError, match="job00001"):
        store.track(Tracking("job00001", NOW, "callback"))


def test_a_record_that_is_not_strict_json_is_a_store_error_and_leaves_no_marker(store, tmp_path):
    for odd in (record(user_data={"a": float("nan")}), record(error_message="cut \ud83d")):
        with pytest.raises(StoreError, match="job00001.*not strict JSON"):
            store.save(odd)
    assert store.load("job00001") is None and list(store.pending_job_ids()) == []
    written = [p.name for p in (tmp_path / "records").rglob("*") if p.is_file() and p.suffix != ".lock"]
    assert written == []  # nothing, not even a temporary file


def test_records_are_strict_json_in_utf8(store, tmp_path):
    store.save(record(user_data={"title": "clip \u2713 \U0001f600"}, error_message="\u00e9"))
    data = (tmp_path / "records" / "jobs" / "job00001.json").read_bytes()
    assert json.loads(data.decode("utf-8"))["user_data"] == {"title": "clip \u2713 \U0001f600"}
    assert "\u2713".encode() in data  # UTF-8 as it is, not \\u escapes
