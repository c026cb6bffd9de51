"""The OSS store through the official oss2 SDK against moto's S3 server speaking OSS's dialect.

What only it does: layout and content type, what a save costs in requests, markers repaired
without their lock, paging, the per-job lock (contention, stale takeover), error translation
and credentials. The contract every store keeps (the merge rule, markers, listing, races
between writers) is tests/integration/test_store_contract.py's.
"""
from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading
import time
from dataclasses import replace

import oss2
import pytest
from ice_upload_sync.errors import StoreError
from ice_upload_sync.ice import Credentials
from ice_upload_sync.stores import Tracking
from ice_upload_sync.stores.oss import OssStore, bound_marker

from tests.store_records import LATER, NOW, final, race, record

PLAIN = Credentials("LTAI-oss-test", "oss-secret-must-never-leak")
STS = Credentials("STS.oss-test", "sts-oss-secret-must-never-leak", "sts-oss-token-must-never-leak")


@pytest.fixture
def raw(oss_server, bucket_name):
    """The bucket as oss2 sees it, to check what the store wrote."""
    return oss2.Bucket(oss2.Auth("ak", "sk"), oss_server.endpoint, bucket_name)


def make_store(oss_server, bucket_name, prefix="ice/records", credentials=PLAIN, **options):
    return OssStore(bucket_name, prefix, oss_server.endpoint, "cn-shanghai", credentials, **options)


@pytest.fixture
def store(oss_server, bucket_name):
    return make_store(oss_server, bucket_name)


def keys(raw, prefix=""):
    return sorted(info.key for info in oss2.ObjectIteratorV2(raw, prefix=prefix))


# ---------------------------------------------------------------- layout and the merge rule


@pytest.mark.parametrize("prefix", ["", "ice/records", "a/b/c/d"])
def test_layout_keys_content_type_and_marker_body(oss_server, bucket_name, raw, prefix):
    store = make_store(oss_server, bucket_name, prefix)
    base = f"{prefix}/" if prefix else ""
    store.save(replace(record(), answer_digest="d1"))
    # the claim on the version replaced (none: no record yet) stays, for tidy to remove an hour on
    assert keys(raw) == [f"{base}jobs/job00001.json", f"{base}locks/job00001/none", f"{base}pending/job00001"]
    answer = raw.get_object(f"{base}jobs/job00001.json")
    assert answer.content_type == "application/json"
    body = answer.read()
    assert json.loads(body) == record().to_dict()
    marker = raw.get_object(f"{base}pending/job00001")
    # the marker binds the answer to the record it precedes; first_seen_at and source as metadata
    assert marker.read() == bound_marker("job00001", "d1", hashlib.md5(body).hexdigest())
    assert (marker.headers["x-oss-meta-first-seen-at"], marker.headers["x-oss-meta-source"]) == (NOW, "timer")
    assert store.tracking("job00001") == Tracking("job00001", NOW, "timer")
    store.save(final())
    assert keys(raw, f"{base}pending/") == [] and keys(raw, f"{base}jobs/") == [f"{base}jobs/job00001.json"]
    assert keys(raw, f"{base}locks/") == [f"{base}locks/job00001/{hashlib.md5(body).hexdigest()}",
                                          f"{base}locks/job00001/none"]  # only claims on replaced versions
    assert store.load("job00001").final and list(store.pending_job_ids()) == []


def test_a_marker_written_by_the_version_before_is_read_as_it_was(store, raw):
    raw.put_object("ice/records/pending/job00001", Tracking("job00001", NOW, "callback").to_json())
    assert store.tracking("job00001") == Tracking("job00001", NOW, "callback")


def test_the_same_answer_twice_writes_nothing_and_takes_no_lock(oss_server, store):
    assert store.save(record()).changed
    oss_server.reset_requests()
    result = store.save(replace(record(), updated_at=LATER, ice_request_id="r2"))
    assert not result.changed and result.record.updated_at == NOW
    assert {r.method for r in oss_server.requests} == {"GET"}


def test_a_corrupt_record_is_a_store_error_naming_the_bucket(store, raw):
    raw.put_object("ice/records/jobs/job00001.json", b"{half a rec")
    with pytest.raises(StoreError, match="corrupt") as raised:
        store.load("job00001")
    assert bucket_name_in(raised.value, raw.bucket_name)


def test_an_unchanged_save_restores_the_marker_a_lost_race_removed(store, raw):
    """OSS only: an unchanged save reads the marker as well and makes it again (a stale-lock
    takeover can lose one). The file store, whose markers are written first and durably under
    the job's lock, settles an unchanged answer from the record alone."""
    store.save(record())
    raw.delete_object("ice/records/pending/job00001")  # a non-final record without its marker
    assert not store.save(record()).changed
    assert list(store.pending_job_ids()) == ["job00001"]


# ---------------------------------------------------------------- listing


def test_pending_jobs_are_listed_page_by_page_as_they_are_consumed(oss_server, bucket_name):
    store = make_store(oss_server, bucket_name, page_size=4)
    ids = [f"job{i:05d}" for i in range(10)]
    for job_id in ids:
        store.track(Tracking(job_id, NOW, "callback"))
    store.save(final("job00003"))
    oss_server.reset_requests()
    listing = store.pending_job_ids()
    assert [next(listing) for _ in range(3)] == ids[:3]
    lists = [r for r in oss_server.requests if r.method == "GET" and "list-type=2" in r.query]
    assert len(lists) == 1  # one page so far, not the whole listing
    assert list(listing) == [j for j in ids[3:] if j != "job00003"]
    lists = [r for r in oss_server.requests if r.method == "GET" and "list-type=2" in r.query]
    assert len(lists) == 3 and all("continuation-token=" in r.query for r in lists)


def test_where_open_jobs_lie_far_apart_records_are_looked_up_a_key_at_a_time(oss_server, bucket_name, raw):
    """Vouching lists jobs/ from each open job on. Among many final records, a full page covers one
    open job, so pages of one key follow; a page of one key must not switch full pages back on
    (it says nothing of how dense open jobs are): only every SPARSE_PROBE_EVERY-th page is full again."""
    store = make_store(oss_server, bucket_name, page_size=120)
    open_ids = [f"job{n:05d}" for n in range(0, 1800, 150)]
    body = json.dumps(final().to_dict()).encode()
    for n in range(1800):
        raw.put_object(f"ice/records/jobs/job{n:05d}.json", body)
    for job_id in open_ids:
        raw.put_object(f"ice/records/pending/{job_id}", b"{}")
    assert list(store.pending_job_ids()) == open_ids
    oss_server.reset_requests()
    for job_id in open_ids:  # one writer group after another, as a sweep asks
        assert store.vouched({job_id: "d"}) == set()  # markers of the version before: none vouched for
    pages = [r.query for r in oss_server.requests if "list-type=2" in r.query and "/jobs/" not in r.path
             and "prefix=ice%2Frecords%2Fjobs" in r.query]
    assert len(pages) == len(open_ids)
    assert sum("max-keys=120" in query for query in pages) == 1, pages  # the first; then a key at a time


# ---------------------------------------------------------------- claims on a version


def claim_body(holder: str, expires_in_s: float) -> bytes:
    return json.dumps({"holder": holder, "expires_at": time.time() + expires_in_s}).encode()


def test_a_stale_claim_is_taken_over_through_the_next_link(store, raw, caplog):
    raw.put_object("ice/records/locks/job00001/none", claim_body("crashed-instance", -1))
    started = time.monotonic()
    assert store.save(final()).changed
    assert time.monotonic() - started < 1.0
    assert "stale claim" in caplog.text
    assert keys(raw, "ice/records/locks/") == ["ice/records/locks/job00001/none", "ice/records/locks/job00001/none.1"]


def test_of_two_writers_taking_over_one_stale_claim_only_one_writes_that_version(oss_server, bucket_name, raw):
    stores = [make_store(oss_server, bucket_name), make_store(oss_server, bucket_name)]
    for round_number in range(8):
        job_id = f"stale{round_number:04d}"
        stores[0].save(record(job_id))
        version = raw.head_object(f"ice/records/jobs/{job_id}.json").etag.lower()
        raw.put_object(f"ice/records/locks/{job_id}/{version}", claim_body("crashed-instance", -1))
        race(stores, [record(job_id, state="processing", ice_status="UPLOADING"), final(job_id)])
        assert stores[0].load(job_id).final and stores[0].tracking(job_id) is None
        links = keys(raw, f"ice/records/locks/{job_id}/{version}")
        assert f"ice/records/locks/{job_id}/{version}.1" in links  # taken over once, create-only


def test_a_live_claim_makes_the_writer_read_again_then_give_up(oss_server, bucket_name, raw):
    store = make_store(oss_server, bucket_name)
    raw.put_object("ice/records/locks/job00001/none", claim_body("busy-instance", 60))
    with pytest.raises(StoreError, match="kept changing under concurrent writers") as raised:
        store.save(final())
    assert bucket_name_in(raised.value, bucket_name)
    assert store.load("job00001") is None  # nothing written without the claim
    raw.delete_object("ice/records/locks/job00001/none")  # the holder let go without writing
    assert store.save(final()).changed


def test_a_claim_released_while_reading_again_is_taken(oss_server, bucket_name, raw):
    store = make_store(oss_server, bucket_name)
    raw.put_object("ice/records/locks/job00001/none", claim_body("busy-instance", 60))
    releaser = threading.Timer(0.05, raw.delete_object, args=("ice/records/locks/job00001/none",))
    releaser.start()
    try:
        assert store.save(final()).changed
    finally:
        releaser.join()


def test_tidy_deletes_only_claims_on_replaced_versions_older_than_an_hour(oss_server, bucket_name, raw, monkeypatch):
    store = make_store(oss_server, bucket_name)
    store.save(record())
    store.save(final())
    raw.put_object("ice/records/locks/job00009", claim_body("outbox-lease", 60))  # a job's lease: never tidied
    assert store.tidy() == 0  # young claims stay: a writer may still hold the version they name
    monkeypatch.setattr("ice_upload_sync.stores.oss.CLAIMS_KEPT_S", -60.0)
    assert store.tidy() == 2
    assert keys(raw, "ice/records/locks/") == ["ice/records/locks/job00009"]


# ---------------------------------------------------------------- errors


def test_a_missing_bucket_is_a_store_error_naming_bucket_and_prefix(oss_server):
    store = OssStore("no-such-bucket-here", "ice/records", oss_server.endpoint, "cn-shanghai", STS)
    for action in (lambda: store.load("job00001"), lambda: store.save(final()),
                   lambda: list(store.pending_job_ids()), lambda: store.track(Tracking("job00001", NOW, "timer"))):
        with pytest.raises(StoreError) as raised:
            action()
        message = str(raised.value)
        assert "oss://no-such-bucket-here/ice/records" in message and "does not exist" in message
        assert_no_secret(message)
        assert "jobs/" not in message and "pending/" not in message  # never the keys


def test_an_unreachable_endpoint_fails_fast_with_a_store_error(bucket_name):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = OssStore(bucket_name, "ice/records", f"http://127.0.0.1:{port}", "cn-shanghai", STS)
    started = time.monotonic()
    with pytest.raises(StoreError, match="unreachable") as raised:
        store.save(final())
    assert time.monotonic() - started < 3
    assert f"oss://{bucket_name}/ice/records" in str(raised.value)
    assert_no_secret(str(raised.value))


def test_access_denied_names_the_permissions_needed(oss_server, store):
    oss_server.inject_fault(403, "AccessDenied", "You have no right to access this object.", method="PUT",
                            count=None)
    with pytest.raises(StoreError, match="access denied") as raised:
        store.save(final())
    message = str(raised.value)
    assert "oss:PutObject" in message and "ice/records" in message and "request" in message
    assert_no_secret(message)


def test_one_5xx_is_retried_and_a_persistent_one_is_a_store_error(oss_server, store):
    oss_server.inject_fault(503, "ServiceUnavailable", method="PUT", path_contains="/jobs/", count=1)
    assert store.save(final()).changed
    oss_server.inject_fault(500, "InternalError", method="GET", count=None)
    with pytest.raises(StoreError, match="500 InternalError") as raised:
        store.load("job00001")
    assert "request " in str(raised.value)


def test_a_failed_write_leaves_no_lock_behind(oss_server, store, raw):
    oss_server.inject_fault(503, "ServiceUnavailable", method="PUT", path_contains="/jobs/", count=2)
    with pytest.raises(StoreError):
        store.save(final())
    assert keys(raw, "ice/records/locks/") == [] and store.load("job00001") is None


def test_records_are_strict_json_in_utf8(store, raw):
    store.save(record(user_data={"title": "clip \u2713"}))
    data = raw.get_object("ice/records/jobs/job00001.json").read()
    assert json.loads(data.decode("utf-8"))["user_data"] == {"title": "clip \u2713"}


# ---------------------------------------------------------------- credentials


def test_sts_credentials_are_sent_with_their_token_and_rebound_only_when_they_change(oss_server, bucket_name):
    store = make_store(oss_server, bucket_name, credentials=STS)
    oss_server.reset_requests()
    store.save(record())
    sent = {(r.access_key_id, r.security_token) for r in oss_server.requests}
    assert sent == {(STS.access_key_id, STS.security_token)}
    sdk_bucket = store._current_bucket()
    store.bind(Credentials(STS.access_key_id, STS.access_key_secret, STS.security_token))
    assert store._current_bucket() is sdk_bucket  # same credentials: nothing rebuilt
    rotated = Credentials("STS.rotated", "rotated-secret", "rotated-token")
    store.bind(rotated)
    oss_server.reset_requests()
    store.load("job00001")
    assert {(r.access_key_id, r.security_token) for r in oss_server.requests} == {("STS.rotated", "rotated-token")}
    store.bind(PLAIN)
    oss_server.reset_requests()
    store.load("job00001")
    assert {(r.access_key_id, r.security_token) for r in oss_server.requests} == {(PLAIN.access_key_id, None)}


def test_the_sdk_never_logs_the_token(oss_server, bucket_name, caplog):
    caplog.set_level(logging.DEBUG)
    store = make_store(oss_server, bucket_name, credentials=STS)
    store.save(record())
    oss_server.inject_fault(403, "SignatureDoesNotMatch", f"string to sign contains {STS.security_token}",
                            count=1)
    with pytest.raises(StoreError) as raised:
        store.load("job00001")
    assert_no_secret(caplog.text + str(raised.value))


def assert_no_secret(text: str) -> None:
    for secret in (PLAIN.access_key_secret, STS.access_key_secret, STS.security_token):
        assert secret not in text


def bucket_name_in(error: Exception, bucket_name: str) -> bool:
    return f"oss://{bucket_name}/" in str(error)
