"""The file store on a real temp dir: what only it does (its temporary files, its lock files, its JSON layout).

The contract every store keeps (the merge rule, markers, listing, races between writers) is
tests/integration/test_store_contract.py's; the durable writes are test_file_store_durability.py's.
"""
from __future__ import annotations

import json

import pytest
from ice_upload_sync.errors import StoreError
from ice_upload_sync.stores import Tracking
from ice_upload_sync.stores.file import FileStore

from tests.store_records import NOW, record


@pytest.fixture
def store(tmp_path):
    return FileStore(str(tmp_path / "records"))


def test_writes_leave_no_temporary_files(store, tmp_path):
    for index in range(20):
        store.save(record(job_id=f"job{index:05d}"))
    leftovers = [p for p in (tmp_path / "records").rglob("*.tmp")]
    assert leftovers == []


def test_a_lock_file_that_cannot_be_opened_is_a_store_error(store, tmp_path):
    locks = tmp_path / "records" / ".locks"
    locks.rmdir()
    locks.write_text("a file where the lock folder was")  # every lock file open now fails
    with pytest.raises(StoreError, match="job00001"):
        store.save(record())
    with pytest.raises(StoreError, match="job00001"):
        store.track(Tracking("job00001", NOW, "callback"))


def test_records_are_strict_json_in_utf8(store, tmp_path):
    store.save(record(user_data={"title": "clip \u2713 \U0001f600"}, error_message="\u00e9"))
    data = (tmp_path / "records" / "jobs" / "job00001.json").read_bytes()
    assert json.loads(data.decode("utf-8"))["user_data"] == {"title": "clip \u2713 \U0001f600"}
    assert "\u2713".encode() in data  # UTF-8 as it is, not \\u escapes
