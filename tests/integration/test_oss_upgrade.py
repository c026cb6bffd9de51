"""OSS: a bucket written by the version before is swept right and converted as it goes, and an
unchanged answer costs no request beyond the listings unless another writer's hand broke the
binding (a hand edit of the record or the marker, an older version of this code, another
instance, a restore of an older record).

The bucket is seeded exactly as the version before writes it: records as ``record_json``, markers
as ``Tracking.to_json()`` (``{job_id, first_seen_at, source}``), the sweep cursor as text, an
outbox entry as ``Owed.to_json()``, and a job's lease ``locks/<job_id>`` left by a crash.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import oss2
import pytest
from ice_upload_sync.config import Settings
from ice_upload_sync.events import SyncRequest
from ice_upload_sync.ice import Credentials
from ice_upload_sync.notify import Owed
from ice_upload_sync.records import UploadInfo, normalize, record_json
from ice_upload_sync.stores import Tracking
from ice_upload_sync.stores.oss import OssStore
from ice_upload_sync.sync import SyncService

from tests.support.fakes import ScriptedIce

PREFIX = "ice/records"
NOW = datetime(2026, 12, 4, 12, tzinfo=timezone.utc)
EARLIER = "2026-12-04T11:00:00Z"
CREATED = "2026-12-04 10:59:00"
OPEN = [f"open{n:04d}" for n in range(5)]
UPLOADING = {"Status": "UPLOADING", "CreationTime": CREATED}


@pytest.fixture
def raw(oss_server, bucket_name):
    return oss2.Bucket(oss2.Auth("ak", "sk"), oss_server.endpoint, bucket_name)


def new_store(oss_server, bucket_name) -> OssStore:
    return OssStore(bucket_name, PREFIX, oss_server.endpoint, "cn-shanghai", Credentials("ak", "sk"))


def sweep(store, ice):
    service = SyncService(ice, store, Settings(), clock=lambda: NOW)
    return service.run(SyncRequest(source="timer", sweep=True), deadline=time.monotonic() + 60)


def as_before(raw, job_id, fields, *, marker=True, record=True):
    """One job as the version before leaves it: its record as normalized from ``fields``, its marker."""
    if record:
        stored = normalize(UploadInfo.from_api({"JobId": job_id, **fields}), source="timer", request_id="r0",
                           now=EARLIER)
        raw.put_object(f"{PREFIX}/jobs/{job_id}.json", record_json(stored),
                       headers={"Content-Type": "application/json"})
    if marker:
        raw.put_object(f"{PREFIX}/pending/{job_id}", Tracking(job_id, EARLIER, "callback").to_json(),
                       headers={"Content-Type": "application/json"})


def requests_to(oss_server, bucket_name, folder):
    base = f"/{bucket_name}/{PREFIX}/{folder}/"
    return [r for r in oss_server.requests if r.path.startswith(base)]


def test_a_bucket_of_the_version_before_is_swept_right_and_converted_as_it_goes(oss_server, bucket_name, raw):
    for job_id in OPEN:
        as_before(raw, job_id, UPLOADING)
    as_before(raw, "done0001", {"Status": "UPLOADING", "CreationTime": CREATED})  # ICE has finished it since
    as_before(raw, "done0002", {"Status": "Success", "CreationTime": CREATED, "MediaId": "m2",
                                "CompleteTime": "2026-12-04 11:30:00"})  # a marker a crash left behind
    as_before(raw, "new00001", {}, record=False)  # tracked, no record yet
    raw.put_object(f"{PREFIX}/cursors/sweep", b"done0002")
    raw.put_object(f"{PREFIX}/locks/open0003", json.dumps({"holder": "crashed", "expires_at": 1.0}).encode())
    owed = Owed("done0002", "succeeded", "e" * 32, "2026-12-04T11:30:00Z")
    raw.put_object(f"{PREFIX}/outbox/done0002", owed.to_json())
    finished = {"Status": "Success", "CreationTime": CREATED, "MediaId": "m1", "CompleteTime": "2026-12-04 11:40:00"}
    ice = ScriptedIce({**{job_id: UPLOADING for job_id in OPEN + ["new00001"]}, "done0001": finished,
                       "done0002": {"Status": "Success", "CreationTime": CREATED, "MediaId": "m2",
                                    "CompleteTime": "2026-12-04 11:30:00"}})
    store = new_store(oss_server, bucket_name)

    first = sweep(store, ice)
    assert first.complete and first.checked == 8 and first.failed == [] and first.deferred == []
    assert first.written == 2  # done0001 final, new00001 recorded; the others hold ICE's answer already
    assert store.load("done0001").final and store.tracking("done0001") is None
    assert store.tracking("done0002") is None  # the leftover marker of a final job: removed
    assert store.load("new00001").first_seen_at == EARLIER  # from the marker the version before wrote
    assert sorted(store.pending_job_ids()) == sorted(OPEN + ["new00001"])
    for job_id in OPEN:  # converted: the marker binds the answer, and keeps when tracking began
        assert store.tracking(job_id).first_seen_at == EARLIER and store.load(job_id).first_seen_at == EARLIER
    assert store.owed() and next(iter(store.owed())).job_id == "done0002"  # the outbox is read as it was

    oss_server.reset_requests()
    second = sweep(store, ice)
    assert second.unchanged == 6 and second.written == 0
    # vouched from the listings: no record or marker read, nothing written
    assert {r.method for r in requests_to(oss_server, bucket_name, "jobs")} <= {"GET"}
    assert all("list-type=2" in r.query for r in requests_to(oss_server, bucket_name, "jobs"))
    assert requests_to(oss_server, bucket_name, "pending") == []


# ---------------------------------------------------------------- another hand breaks the binding


@pytest.fixture
def bound(oss_server, bucket_name, raw):
    """Five open jobs, swept twice: their markers bind ICE's answer to their records."""
    for job_id in OPEN:
        as_before(raw, job_id, UPLOADING)
    ice = ScriptedIce({job_id: UPLOADING for job_id in OPEN})
    store = new_store(oss_server, bucket_name)
    sweep(store, ice)
    assert sweep(store, ice).unchanged == len(OPEN)
    return store, ice


def edited(raw, job_id, **fields):
    key = f"{PREFIX}/jobs/{job_id}.json"
    data = json.loads(raw.get_object(key).read())
    raw.put_object(key, json.dumps({**data, **fields}).encode())


def test_a_record_edited_by_hand_is_checked_and_repaired(oss_server, bucket_name, raw, bound):
    store, ice = bound
    edited(raw, "open0002", media_id="m-wrong", state="pending")
    answer = sweep(store, ice)
    assert answer.written == 1 and answer.unchanged == 4
    assert store.load("open0002").media_id is None and store.load("open0002").state == "processing"


def test_a_marker_edited_by_hand_is_not_vouched_for(oss_server, bucket_name, raw, bound):
    store, ice = bound
    raw.put_object(f"{PREFIX}/pending/open0001", Tracking("open0001", EARLIER, "callback").to_json())
    oss_server.reset_requests()
    answer = sweep(store, ice)
    assert answer.unchanged == 5 and answer.written == 0
    reads = [r.path for r in requests_to(oss_server, bucket_name, "jobs") if "list-type=2" not in r.query]
    assert reads == [f"/{bucket_name}/{PREFIX}/jobs/open0001.json"]  # that one read the ordinary way, rebound
    oss_server.reset_requests()
    sweep(store, ice)
    assert [r for r in requests_to(oss_server, bucket_name, "jobs") if "list-type=2" not in r.query] == []


def test_an_older_version_of_this_code_rewriting_the_record_breaks_the_binding(oss_server, bucket_name, raw, bound):
    store, ice = bound
    # the version before writes the record and leaves an existing marker as it is
    older = normalize(UploadInfo.from_api({"JobId": "open0003", "Status": "UPLOADING", "CreationTime": CREATED,
                                           "FileSize": "77"}), source="timer", request_id="r9", now=EARLIER)
    raw.put_object(f"{PREFIX}/jobs/open0003.json", record_json(older))
    answer = sweep(store, ice)
    assert answer.written == 1 and store.load("open0003").file_size is None  # ICE's answer written back


def test_another_instance_writing_rebinds_and_this_one_follows(oss_server, bucket_name, raw, bound):
    store, ice = bound
    other = new_store(oss_server, bucket_name)
    ice.jobs["open0004"] = {**UPLOADING, "FileSize": "123"}
    assert sweep(other, ice).written == 1  # another instance records the news, and binds it
    oss_server.reset_requests()
    answer = sweep(store, ice)
    assert answer.unchanged == 5 and answer.written == 0
    assert [r for r in requests_to(oss_server, bucket_name, "jobs") if "list-type=2" not in r.query] == []


def test_a_restore_of_an_older_record_breaks_the_binding(oss_server, bucket_name, raw, bound):
    store, ice = bound
    backup = raw.get_object(f"{PREFIX}/jobs/open0000.json").read()
    ice.jobs["open0000"] = {**UPLOADING, "FileSize": "5"}
    assert sweep(store, ice).written == 1
    raw.put_object(f"{PREFIX}/jobs/open0000.json", backup)  # restored from last night's copy
    # the claim on that version, left by the write that replaced it, holds writers off for its
    # LOCK_TTL_S (30 s); then it is taken over. As if that time had passed:
    for info in oss2.ObjectIteratorV2(raw, prefix=f"{PREFIX}/locks/open0000/"):
        raw.put_object(info.key, json.dumps({"holder": "earlier", "expires_at": 1.0}).encode())
    answer = sweep(store, ice)
    assert answer.written == 1 and store.load("open0000").file_size == 5
