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
    normalize_size,
    normalize_text,
    normalize_time,
    normalize_user_data,
    record_json,
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


# ---------------------------------------------------------------- odd values: null or escaped, never a raise

HALF = "\ufffd"  # what half of a UTF-16 pair is recorded as


def strict_loads(data: bytes):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(data.decode("utf-8"), parse_constant=refuse)


@pytest.mark.parametrize("raw, expected", [
    ("64610", 64610), (" 12 ", 12), ("0", 0), ("6.461e4", 64610), ("12.0", 12), ("9223372036854775807", 2 ** 63 - 1),
    ("inf", None), ("-inf", None), ("Infinity", None), ("nan", None), ("1e999", None), ("-5", None), ("12.5", None),
    ("9223372036854775808", None), ("1e30", None), ("9" * 5000, None), ("abc", None), ("1_000", None),
    ("\u0663", None), ("12\ud83d", None), ("", None), (None, None),
])
def test_file_sizes_are_ints_or_null(raw, expected):
    assert normalize_size(raw) == expected


@pytest.mark.parametrize("raw", [
    "2026-01-01T00:00:00+24:00", "2026-01-01T00:00:00-24:00", "2026-01-01T00:00:00+05:99",
    "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-02-30T00:00:00Z", "2026-01-01T00:00:00\ud83d",
    "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660",
])
def test_times_that_cannot_be_told_in_utc_are_null(raw):
    assert normalize_time(raw) is None


def test_times_keep_four_digit_years():
    assert normalize_time("0999-01-01T00:00:00Z") == "0999-01-01T00:00:00Z"


@pytest.mark.parametrize("raw, expected", [
    # only objects and arrays are parsed: every other JSON value stays the raw string
    ("123", "123"), ("NaN", "NaN"), ("1e999", "1e999"), ("true", "true"), ("null", "null"), ('"x"', '"x"'),
    ('"\\ud83d"', '"\\ud83d"'),
    # strict JSON only: NaN, Infinity and numbers no double holds keep the whole value a string
    ('{"a": NaN}', '{"a": NaN}'), ('[1, -Infinity]', '[1, -Infinity]'), ('{"a": 1e999}', '{"a": 1e999}'),
    ('{"a": 1.5e3, "b": 10}', {"a": 1500.0, "b": 10}),
    # a nested string that is not strict JSON stays a string inside the parsed value
    ('{"a": "[NaN]"}', {"a": "[NaN]"}),
    # lone surrogates, escaped in the JSON or in nested JSON, or raw: U+FFFD
    ('{"t": "cut \\ud83d"}', {"t": "cut " + HALF}), ('{"\\udc00": 1}', {HALF: 1}),
    ('{"n": "{\\"t\\": \\"\\\\ud83d\\"}"}', {"n": {"t": HALF}}), ("cut \ud83d", "cut " + HALF),
    ('{"t": "\\ud83d\\ude00"}', {"t": "\U0001f600"}),  # a whole pair is one character
    ("{\"t\": \"\ud83d\"", "{\"t\": \"" + HALF + "\""),  # not JSON, kept raw, escaped all the same
    # too deep to be useful: the raw string
    ("[" * 40 + "]" * 40, "[" * 40 + "]" * 40), ("[" * 100000, "[" * 100000),
])
def test_user_data_odd_values(raw, expected):
    assert normalize_user_data(raw) == expected


def test_text_fields_escape_lone_surrogates_and_keep_the_rest():
    assert normalize_text("caf\u00e9 \U0001f600") == "caf\u00e9 \U0001f600"
    assert normalize_text("a\ud83d\ude00b") == "a\U0001f600b"  # a pair split in two code points is joined
    assert normalize_text("\ud83db\udc00") == HALF + "b" + HALF
    assert normalize_text("  ") is None and normalize_text(None) is None


def test_a_hostile_answer_is_recorded_with_warnings_naming_the_job_and_the_field(caplog):
    info = UploadInfo("j-odd", upload_url="https://x/\ud83d.mp4", media_id="m", status="UPLOAD_FAIL",
                      creation_time="2026-01-01T00:00:00+24:00", complete_time="2026-11-25 01:00:00",
                      error_code="E\udc00", error_message="cut \ud83d", user_data='{"a": NaN}', file_size="inf")
    rec = normalize(info, source="timer", request_id="r\ud83d", now=NOW)
    assert (rec.state, rec.file_size, rec.created_at, rec.completed_at) == ("failed", None, None,
                                                                            "2026-11-25T01:00:00Z")
    assert (rec.upload_url, rec.error_code, rec.error_message) == ("https://x/" + HALF + ".mp4", "E" + HALF,
                                                                   "cut " + HALF)
    assert rec.user_data == '{"a": NaN}' and rec.ice_request_id == "r" + HALF
    assert strict_loads(record_json(rec))["user_data"] == '{"a": NaN}'
    for field in ("FileSize", "created_at", "upload_url", "error_code", "error_message", "user_data"):
        assert any("j-odd" in line and field in line for line in caplog.messages), field


def test_record_json_refuses_what_normalization_never_makes():
    for odd in (record(user_data={"a": float("nan")}), record(error_message="\ud83d")):
        with pytest.raises(ValueError, match="j1"):
            record_json(odd)


SURROGATES = st.sampled_from(["\ud83d", "\ude00", "\udc00", "\ud800"])
HOSTILE_TEXT = st.text(st.one_of(st.characters(), SURROGATES, st.sampled_from(list('{}[]":,\\NaInfy1e9+-.'))),
                       max_size=30)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | HOSTILE_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(HOSTILE_TEXT, inner, max_size=4),
    max_leaves=12)


@given(st.builds(UploadInfo, job_id=st.just("j-any"), upload_url=st.none() | HOSTILE_TEXT,
                 media_id=st.none() | HOSTILE_TEXT, status=st.none() | HOSTILE_TEXT,
                 creation_time=st.none() | HOSTILE_TEXT, complete_time=st.none() | HOSTILE_TEXT,
                 error_code=st.none() | HOSTILE_TEXT, error_message=st.none() | HOSTILE_TEXT,
                 user_data=st.none() | HOSTILE_TEXT | JSON_VALUES.map(json.dumps)
                 | JSON_VALUES.map(lambda value: json.dumps(json.dumps(value))),
                 file_size=st.none() | HOSTILE_TEXT | st.floats().map(str) | st.integers().map(str)))
def test_normalize_is_total_and_every_record_is_strict_json_in_utf8(info):
    rec = normalize(info, source="timer", request_id="r", now=NOW)
    data = record_json(rec)
    assert strict_loads(data)["job_id"] == "j-any"
    assert rec.file_size is None or 0 <= rec.file_size < 2 ** 63
    assert normalize(info, source="timer", request_id="r", now=NOW).same_information(rec)  # stable


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


@pytest.mark.parametrize("edit, names", [
    ({"state": ["succeeded"]}, "state"), ({"state": "done"}, "state"), ({"state": None}, "state"),
    ({"job_id": 7}, "job_id"), ({"updated_at": None}, "updated_at"), ({"media_id": {"a": 1}}, "media_id"),
    ({"file_size": "12"}, "file_size"), ({"file_size": True}, "file_size"), ({"file_size": 1.5}, "file_size"),
])
def test_a_stored_record_edited_into_another_shape_is_refused_naming_the_field(edit, names):
    """A hand edit must fail where the record is read (a store calls it corrupt), not later, somewhere else."""
    stored = {**JobRecord(job_id="j1", state="processing", source="timer", ice_request_id="r",
                          first_seen_at="2026-11-25T03:00:00Z", updated_at="2026-11-25T03:00:00Z").to_dict(), **edit}
    with pytest.raises(ValueError, match=names):
        JobRecord.from_dict(stored)


def test_a_stored_record_of_every_state_reads_back():
    for state in ("pending", "processing", "succeeded", "failed", "not_found", "expired"):
        record = JobRecord(job_id="j1", state=state, source="timer", ice_request_id="r", first_seen_at="t",
                           updated_at="t", file_size=0)
        assert JobRecord.from_dict(record.to_dict()) == record


# What NORMALIZATION_VERSION makes of a fixed set of answers: the status words ICE and VOD use (and
# one nobody does), and the seeded sample jobs with the reference's quirks. A change of the mapping
# or of the normalizers changes the fingerprint: bump NORMALIZATION_VERSION (so stored digests stop
# vouching for records the old rules made) and add the new version's fingerprint here.
NORMALIZED_BY_VERSION = {1: "f4ec25c5db9b9d85128dd4a920e592bb2a224dd2da03fc8f0d4dc82ce9654807"}
PROBE_STATUSES = ("Normal", "SUCCESS", "Success", "UPLOAD_SUCCESS", "UploadSucc", "FAIL", "Failed", "UPLOAD_FAIL",
                  "DOWNLOAD_FAIL", "PENDING", "PROCESSING", "DOWNLOADING", "DOWNLOAD_SUCCESS", "UPLOADING",
                  "TRANSCODING", "transcoding_queued", "", None)


def _normalization_fingerprint() -> str:
    import hashlib

    from tests.scenario import seed_jobs

    fixed = datetime(2026, 11, 25, 3, 0, 0, tzinfo=timezone.utc)
    states = [map_status(status) for status in PROBE_STATUSES]
    records = [normalize(UploadInfo.from_api(job), source="timer", request_id="r", now="2026-11-25T03:00:00Z").to_dict()
               for job in seed_jobs(now=fixed)]
    return hashlib.sha256(json.dumps([states, records], sort_keys=True).encode()).hexdigest()


def test_a_change_of_what_normalization_makes_comes_with_a_new_normalization_version():
    from ice_upload_sync.records import NORMALIZATION_VERSION

    fingerprint = _normalization_fingerprint()
    assert NORMALIZED_BY_VERSION.get(NORMALIZATION_VERSION) == fingerprint, (
        f"normalize now makes something else of the same answers: bump NORMALIZATION_VERSION in records.py "
        f"and pin {NORMALIZATION_VERSION + 1}: {fingerprint!r} here (or, if it is version "
        f"{NORMALIZATION_VERSION} being written for the first time, pin {NORMALIZATION_VERSION}: {fingerprint!r})")
