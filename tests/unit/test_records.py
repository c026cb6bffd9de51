"""Normalization (contract section 4) and the merge rule, including the reference's quirks."""
import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ice_upload_sync.ice import parse_answer
from ice_upload_sync.records import (
    STATES,
    JobRecord,
    UploadInfo,
    expire_if_stale,
    information_fingerprint,
    map_status,
    merge,
    normalize,
    normalize_time,
    normalize_user_data,
)

# The example answer of the public GetUrlUploadInfos reference, verbatim (quirks included).
REFERENCE_ANSWER = json.loads(r'''{
  "RequestId": "******11-DB8D-4A9A-875B-275798******",
  "NonExists": ["['e3e71ae8e4a46e4893d8cadce50c3bd0']"],
  "URLUploadInfoList": [{
      "CreationTime": "2021-11-07T10:03:37Z", "Status": "Normal", "ErrorMessage": "Success",
      "ErrorCode": "200", "CompleteTime": "2021-11-26 21:47:37", "JobId": "3829500c0fef429fa4ec1680b122d***",
      "UserData": "{\"MessageCallback\":\"{\"CallbackURL\":\"http://example.aliyundoc.com\"}\", \"Extend\":\"{\"localId\":\"***\", \"test\":\"www\"}\"}",
      "UploadURL": "http://****.mp4", "MediaId": "5014ca70f08171ecbf940764a0fd6***", "FileSize": "64610"}]
}''')
NOW = "2026-11-25T03:00:00Z"


def record(**fields):
    base = dict(job_id="j1", state="processing", source="timer", ice_request_id="r1",
                first_seen_at=NOW, updated_at=NOW)
    base.update(fields)
    return JobRecord(**base)


def test_the_reference_example_normalizes_exactly():
    answer = parse_answer(REFERENCE_ANSWER)
    assert answer.non_exists == ("e3e71ae8e4a46e4893d8cadce50c3bd0",)
    rec = normalize(answer.infos[0], source="direct", request_id=answer.request_id, now=NOW)
    assert rec.to_dict() == {
        "schema_version": 1, "job_id": "3829500c0fef429fa4ec1680b122d***", "upload_url": "http://****.mp4",
        "media_id": "5014ca70f08171ecbf940764a0fd6***", "state": "succeeded", "ice_status": "Normal",
        "final": True, "file_size": 64610, "created_at": "2021-11-07T10:03:37Z",
        "completed_at": "2021-11-26T21:47:37Z", "error_code": None, "error_message": None,
        # badly escaped nested JSON: kept verbatim, not half-repaired
        "user_data": REFERENCE_ANSWER["URLUploadInfoList"][0]["UserData"],
        "source": "direct", "ice_request_id": "******11-DB8D-4A9A-875B-275798******",
        "first_seen_at": NOW, "updated_at": NOW,
    }


@pytest.mark.parametrize("raw, state", [
    ("SUCCESS", "succeeded"), ("UPLOAD_SUCCESS", "succeeded"), ("Normal", "succeeded"),
    ("Success", "succeeded"), ("UploadSucc", "succeeded"), ("success", "succeeded"),
    ("FAIL", "failed"), ("Failed", "failed"), ("UPLOAD_FAIL", "failed"), ("DOWNLOAD_FAIL", "failed"),
    ("TranscodeFail", "failed"), ("fail", "failed"),
    ("PENDING", "pending"), ("pending", "pending"),
    ("PROCESSING", "processing"), ("DOWNLOADING", "processing"), ("DOWNLOAD_SUCCESS", "processing"),
    ("UPLOADING", "processing"), ("Blorping", "processing"), ("", "processing"), (None, "processing"),
])
def test_status_mapping(raw, state):
    assert map_status(raw) == state


def test_unknown_status_words_are_warned_about(caplog):
    map_status("Blorping")
    assert "Blorping" in caplog.text


@pytest.mark.parametrize("raw, expected", [
    ("2021-11-07T10:03:37Z", "2021-11-07T10:03:37Z"),
    ("2021-11-26 21:47:37", "2021-11-26T21:47:37Z"),
    ("2021-11-26T21:47:37.123Z", "2021-11-26T21:47:37Z"),
    ("2021-11-27T05:47:37+08:00", "2021-11-26T21:47:37Z"),
    ("2021-11-27 05:47:37+0800", "2021-11-26T21:47:37Z"),
    ("1637963257", "2021-11-26T21:47:37Z"),
    ("1637963257000", "2021-11-26T21:47:37Z"),
    ("", None), (None, None), ("yesterday", None),
])
def test_times_become_iso_utc(raw, expected):
    assert normalize_time(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ('{"a": 1}', {"a": 1}),
    ('{"Extend": "{\\"localId\\": \\"x\\", \\"n\\": \\"[1, 2]\\"}"}', {"Extend": {"localId": "x", "n": [1, 2]}}),
    ('{"text": "{not json"}', {"text": "{not json"}),
    ('[1, "{\\"b\\": 2}"]', [1, {"b": 2}]),
    ("plain words", "plain words"),
    ("", None), ("  ", None), (None, None),
])
def test_user_data(raw, expected):
    assert normalize_user_data(raw) == expected


def test_errors_are_kept_only_for_failed_jobs_and_sizes_are_ints():
    failed = normalize(UploadInfo("j1", status="UPLOAD_FAIL", error_code="URLInvalidError",
                                  error_message="download failed", file_size=""),
                       source="timer", request_id="r", now=NOW)
    assert (failed.state, failed.final, failed.error_code) == ("failed", True, "URLInvalidError")
    assert failed.file_size is None
    ok = normalize(UploadInfo("j2", status="Success", error_code="Success", error_message="Success", file_size="12"),
                   source="timer", request_id="r", now=NOW)
    assert (ok.error_code, ok.error_message, ok.file_size) == (None, None, 12)
    blank = normalize(UploadInfo("j3", status="PROCESSING", media_id="", upload_url=" "),
                      source="timer", request_id="r", now=NOW)
    assert (blank.media_id, blank.upload_url, blank.final) == (None, None, False)


# ---------------------------------------------------------------- merge rule


def test_first_record_is_written_with_the_tracking_start():
    result = merge(None, record(), tracked_since="2026-11-24T00:00:00Z")
    assert result.changed and result.record.first_seen_at == "2026-11-24T00:00:00Z"


def test_a_final_record_is_never_replaced_by_a_non_final_one():
    done = record(state="succeeded", completed_at="2026-11-25T01:00:00Z")
    for state in ("pending", "processing", "not_found", "expired"):
        result = merge(done, record(state=state, updated_at="2026-11-25T04:00:00Z"))
        assert result.record is done and not result.changed


def test_between_final_records_the_later_completion_wins():
    early = record(state="failed", completed_at="2026-11-25T01:00:00Z")
    late = record(state="succeeded", completed_at="2026-11-25T02:00:00Z")
    assert merge(early, late).record.state == "succeeded"
    assert not merge(late, early).changed
    expired = record(state="expired")
    assert merge(expired, late).record.state == "succeeded"


def test_the_same_information_twice_changes_nothing():
    first = record(state="processing", ice_status="UPLOADING", user_data={"a": [1]})
    again = replace(first, updated_at="2026-11-25T05:00:00Z", ice_request_id="r2", source="callback")
    assert not merge(first, again).changed


def test_progress_replaces_progress_and_keeps_first_seen():
    first = record(state="pending", first_seen_at="2026-11-20T00:00:00Z")
    later = record(state="processing", first_seen_at=NOW)
    result = merge(first, later)
    assert result.changed and result.record.state == "processing"
    assert result.record.first_seen_at == "2026-11-20T00:00:00Z"


records_strategy = st.builds(
    record,
    state=st.sampled_from(STATES),
    completed_at=st.none() | st.sampled_from(["2026-11-25T01:00:00Z", "2026-11-25T02:00:00Z"]),
    ice_status=st.sampled_from([None, "Success", "UPLOADING"]),
)


@given(st.lists(records_strategy, min_size=1, max_size=8))
def test_once_final_a_job_stays_final_whatever_arrives_later(sequence):
    stored = None
    for fresh in sequence:
        before = stored
        stored = merge(stored, fresh).record
        if before is not None and before.final:
            assert stored.final
            assert (stored.completed_at or "") >= (before.completed_at or "") or stored is before


@given(records_strategy)
def test_merge_is_idempotent(fresh):
    once = merge(None, fresh).record
    assert not merge(once, fresh).changed


def test_expiry_counts_from_creation_else_from_tracking():
    now = datetime(2026, 11, 25, 3, tzinfo=timezone.utc)
    day = timedelta(hours=72)
    old = record(created_at="2026-11-21T00:00:00Z")
    assert expire_if_stale(old, tracked_since=None, now=now, max_age=day).state == "expired"
    young = record(created_at="2026-11-24T00:00:00Z")
    assert expire_if_stale(young, tracked_since="2026-01-01T00:00:00Z", now=now, max_age=day) is young
    unknown = record(state="not_found")
    assert expire_if_stale(unknown, tracked_since="2026-11-20T00:00:00Z", now=now, max_age=day).final
    assert expire_if_stale(unknown, tracked_since=None, now=now, max_age=day) is unknown
    done = record(state="succeeded", created_at="2020-01-01T00:00:00Z")
    assert expire_if_stale(done, tracked_since=None, now=now, max_age=day) is done


def test_the_fingerprint_follows_what_ice_said_and_ignores_our_bookkeeping():
    base = record(user_data={"b": 1, "a": [1, 2]}, file_size=10)
    fingerprint = information_fingerprint(base)
    assert information_fingerprint(replace(base, updated_at="2030-01-01T00:00:00Z", ice_request_id="r9",
                                            source="callback", first_seen_at="2020-01-01T00:00:00Z")) == fingerprint
    assert information_fingerprint(replace(base, user_data={"a": [1, 2], "b": 1})) == fingerprint  # key order
    for changed in (dict(state="succeeded"), dict(file_size=11), dict(user_data={"b": 2, "a": [1, 2]}),
                    dict(error_code="E"), dict(job_id="j2"), dict(ice_status="UPLOADING")):
        assert information_fingerprint(replace(base, **changed)) != fingerprint


@given(st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=5)), max_size=4),
       st.dictionaries(st.text(max_size=5), st.one_of(st.integers(), st.text(max_size=5)), max_size=4))
def test_equal_fingerprints_mean_the_same_information(first, second):
    one, two = record(user_data=first), record(user_data=second)
    assert (information_fingerprint(one) == information_fingerprint(two)) == one.same_information(two)
