"""The moto-backed OSS endpoint, driven through the official oss2 SDK like the store drives real OSS."""
from __future__ import annotations

import uuid

import oss2
import pytest

from tests.support.oss_moto import OssMotoServer


def fresh_bucket(server: OssMotoServer, auth=None) -> oss2.Bucket:
    name = f"t-{uuid.uuid4().hex[:20]}"
    server.create_bucket(name)
    return oss2.Bucket(auth or oss2.Auth("ak", "sk"), server.endpoint, name)


@pytest.fixture
def bucket(oss_server):
    return fresh_bucket(oss_server)


def test_put_get_head_delete_keep_content_type_and_metadata(bucket):
    bucket.put_object("a/b/c.json", b'{"x": 1}', headers={"Content-Type": "application/json",
                                                         "x-oss-meta-holder": "me"})
    answer = bucket.get_object("a/b/c.json")
    assert answer.read() == b'{"x": 1}' and answer.content_type == "application/json"
    head = bucket.head_object("a/b/c.json")
    assert head.headers["x-oss-meta-holder"] == "me" and head.content_length == 8
    assert head.request_id  # oss2 reads x-oss-request-id
    bucket.delete_object("a/b/c.json")
    bucket.delete_object("a/b/c.json")  # deleting a missing object is no error, as on OSS
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.get_object("a/b/c.json")


def test_forbid_overwrite_creates_once_then_answers_409_file_already_exists(bucket):
    create_only = {"x-oss-forbid-overwrite": "true"}
    bucket.put_object("lock", b"first", headers=create_only)
    with pytest.raises(oss2.exceptions.ServerError) as raised:
        bucket.put_object("lock", b"second", headers=create_only)
    assert (raised.value.status, raised.value.code) == (409, "FileAlreadyExists")
    assert raised.value.request_id
    assert bucket.get_object("lock").read() == b"first"
    bucket.put_object("lock", b"third", headers={"x-oss-forbid-overwrite": "false"})  # an ordinary put overwrites
    assert bucket.get_object("lock").read() == b"third"


def test_listing_pages_with_continuation_tokens(bucket):
    keys = [f"p/pending/job{i:02d}" for i in range(7)] + ["p/jobs/job00.json"]
    for key in keys:
        bucket.put_object(key, b"")
    first = bucket.list_objects_v2(prefix="p/pending/", max_keys=3)
    assert first.is_truncated and first.next_continuation_token
    assert [o.key for o in first.object_list] == keys[:3] and {o.type for o in first.object_list} == {"Normal"}
    second = bucket.list_objects_v2(prefix="p/pending/", max_keys=3, continuation_token=first.next_continuation_token)
    assert [o.key for o in second.object_list] == keys[3:6]
    assert [o.key for o in oss2.ObjectIteratorV2(bucket, prefix="p/pending/", max_keys=2)] == keys[:7]
    assert [o.key for o in oss2.ObjectIterator(bucket, prefix="p/pending/", max_keys=2)] == keys[:7]


def test_batch_delete_reports_what_it_deleted(bucket):
    for key in ("k1", "k2", "k3"):
        bucket.put_object(key, b"")
    assert sorted(bucket.batch_delete_objects(["k1", "k2"]).deleted_keys) == ["k1", "k2"]
    assert [o.key for o in oss2.ObjectIteratorV2(bucket)] == ["k3"]


def test_a_missing_bucket_is_no_such_bucket(oss_server):
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        oss2.Bucket(oss2.Auth("ak", "sk"), oss_server.endpoint, "never-created-bucket").get_object("x")


def test_faults_can_be_injected_narrowly(oss_server, bucket):
    bucket.put_object("ok", b"1")
    oss_server.inject_fault(503, "ServiceUnavailable", method="GET", path_contains="/ok", count=1)
    with pytest.raises(oss2.exceptions.ServerError) as raised:
        bucket.get_object("ok")
    assert (raised.value.status, raised.value.code) == (503, "ServiceUnavailable")
    assert bucket.get_object("ok").read() == b"1"  # only once
    oss_server.inject_fault(403, "AccessDenied", method="PUT", path_contains="/denied", count=None)
    for _ in range(2):
        with pytest.raises(oss2.exceptions.AccessDenied):
            bucket.put_object("denied", b"")
    oss_server.clear_faults()
    bucket.put_object("denied", b"")


@pytest.mark.parametrize("key_id,token", [("STS.key", "sts-token"), ("plain-key", None)], ids=["sts", "plain"])
def test_requests_are_recorded_with_their_credentials(oss_server, key_id, token):
    auth = oss2.StsAuth(key_id, "secret", token) if token else oss2.Auth(key_id, "secret")
    bucket = fresh_bucket(oss_server, auth)
    bucket.put_object("x", b"1")
    seen = [r for r in oss_server.requests if r.method == "PUT" and r.path == f"/{bucket.bucket_name}/x"]
    assert [(r.access_key_id, r.security_token, r.status) for r in seen] == [(key_id, token, 200)]


# ---------------------------------------------------------------- why each conversion is there


@pytest.fixture(scope="module")
def bare_moto():
    with OssMotoServer(dialect=False) as server:
        yield server


def test_without_the_dialect_oss2_cannot_list(bare_moto):
    bucket = fresh_bucket(bare_moto)
    bucket.put_object("p/x", b"")
    with pytest.raises(oss2.exceptions.ServerError) as raised:  # the empty continuation-token
        bucket.list_objects_v2(prefix="p/")
    assert (raised.value.status, raised.value.code) == (400, "InvalidArgument")
    with pytest.raises(RuntimeError, match="could not be found"):  # S3's namespace; then the missing <Type>
        bucket.list_objects(prefix="p/")


def test_without_the_dialect_create_only_puts_overwrite_and_metadata_is_lost(bare_moto):
    bucket = fresh_bucket(bare_moto)
    bucket.put_object("k", b"first", headers={"x-oss-forbid-overwrite": "true", "x-oss-meta-holder": "me"})
    bucket.put_object("k", b"second", headers={"x-oss-forbid-overwrite": "true"})
    assert bucket.get_object("k").read() == b"second"
    head = bucket.head_object("k")
    assert "x-oss-meta-holder" not in head.headers and head.request_id == ""
    assert bucket.batch_delete_objects(["k"]).deleted_keys == []  # deleted, but oss2 cannot read the answer
