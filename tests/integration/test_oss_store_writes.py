"""What a change costs the OSS store in requests, and that the cheaper path keeps the write order."""
from __future__ import annotations

from dataclasses import replace

import oss2
import pytest
from ice_upload_sync.ice import Credentials
from ice_upload_sync.stores import Tracking
from ice_upload_sync.stores.oss import OssStore

from tests.store_records import LATER, final, record

PREFIX = "ice/records"


@pytest.fixture
def store(oss_server, bucket_name):
    return OssStore(bucket_name, PREFIX, oss_server.endpoint, "cn-shanghai", Credentials("LTAI-oss", "oss-secret"))


def requests_made(oss_server, bucket_name):
    base = f"/{bucket_name}/{PREFIX}/"
    return [(r.method, r.path[len(base):].split("/")[0]) for r in oss_server.requests if r.path.startswith(base)]


def test_a_change_to_an_existing_record_costs_four_requests_and_reads_no_marker(oss_server, bucket_name, store):
    store.save(record())
    oss_server.reset_requests()
    assert store.save(final()).changed  # completed: the record, then the marker goes
    assert requests_made(oss_server, bucket_name) == [
        ("GET", "jobs"), ("PUT", "locks"), ("PUT", "jobs"), ("DELETE", "pending")]
    assert list(store.pending_job_ids()) == [] and store.load("job00001").final
    store.save(record("job00002"))
    oss_server.reset_requests()
    assert store.save(record("job00002", ice_status="UPLOADING", file_size=9)).changed  # still open: marker first
    assert requests_made(oss_server, bucket_name) == [
        ("GET", "jobs"), ("PUT", "locks"), ("PUT", "pending"), ("PUT", "jobs")]


def test_a_first_record_still_takes_its_first_seen_at_from_the_marker(oss_server, bucket_name, store):
    assert store.track(Tracking("job00001", "2026-11-20T00:00:00Z", "callback"))
    oss_server.reset_requests()
    assert store.save(record()).changed
    assert ("GET", "pending") in requests_made(oss_server, bucket_name)
    assert store.load("job00001").first_seen_at == "2026-11-20T00:00:00Z"


def test_an_open_record_changed_keeps_its_marker_and_an_unchanged_one_still_settles_markers(
        oss_server, bucket_name, store):
    raw = oss2.Bucket(oss2.Auth("ak", "sk"), oss_server.endpoint, bucket_name)
    store.save(record())
    raw.delete_object(f"{PREFIX}/pending/job00001")  # what a lost race can leave: open, unmarked
    assert store.save(record(ice_status="UPLOADING")).changed  # a change restores it (marker first)
    assert list(store.pending_job_ids()) == ["job00001"]
    raw.delete_object(f"{PREFIX}/pending/job00001")
    # and so does no change, once the marker's absence is not hidden by a listing a moment ago
    later = OssStore(bucket_name, PREFIX, oss_server.endpoint, "cn-shanghai", Credentials("LTAI-oss", "oss-secret"))
    assert not later.save(replace(record(ice_status="UPLOADING"), updated_at=LATER)).changed
    assert list(store.pending_job_ids()) == ["job00001"]
