"""The sweep's fast paths answer exactly what the slow paths they short-cut answer.

Each fast path is held against the implementation it replaced (kept here, or still in
``records`` as the fallback), on what ICE usually sends and on whatever hypothesis makes.
"""
from __future__ import annotations

import json
from dataclasses import asdict, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, Optional

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from ice_upload_sync import records
from ice_upload_sync.config import Settings
from ice_upload_sync.errors import StoreError
from ice_upload_sync.events import CallbackHint, SyncRequest
from ice_upload_sync.ice import parse_answer, parse_sdk_answer
from ice_upload_sync.records import (
    JobRecord,
    UploadInfo,
    answer_digest,
    normalize,
    normalize_time,
    normalize_user_data,
    parse_time,
)
from ice_upload_sync.sync import SyncService

from tests.hostile_values import ANY_TEXT, ODD_TEXT
from tests.support.fakes import MemoryStore, ScriptedIce

SURROGATES = st.sampled_from(["\ud83d", "\ude00", "\udc00", "\ud800"])
HOSTILE_TEXT = st.text(st.one_of(st.characters(), SURROGATES, st.sampled_from(list('{}[]":,\\NaInfy1e9+-.'))),
                       max_size=30) | ANY_TEXT | ODD_TEXT

# ---------------------------------------------------------------- the implementations replaced


def old_normalize_time(raw: Optional[str]) -> Optional[str]:
    text = (raw or "").strip()
    if not text:
        return None
    try:
        return records._parse_ice_time(text)
    except (ValueError, OverflowError, OSError):
        return None


def old_parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def old_normalize_user_data(raw: Optional[str]) -> Any:
    if raw is None or not raw.strip():
        return None
    if raw.lstrip()[:1] not in ("{", "["):
        return records.normalize_text(raw)
    try:
        return records._parse_nested(records._STRICT_JSON.decode(raw), records._Odd(), 1)
    except (ValueError, RecursionError):
        return records.normalize_text(raw)


def old_information(record: JobRecord) -> tuple:
    return (record.job_id, record.state, record.upload_url, record.media_id, record.ice_status,
            record.file_size, record.created_at, record.completed_at, record.error_code,
            record.error_message, json.dumps(record.user_data, sort_keys=True))


# ---------------------------------------------------------------- times

DIGITS = st.text(alphabet="0123456789", min_size=1, max_size=5)
SHAPED_TIME = st.builds(
    lambda y, mo, d, sep, h, mi, s, tail: f"{y}-{mo}-{d}{sep}{h}:{mi}:{s}{tail}",
    st.sampled_from(["2026", "0001", "0000", "0999", "9999", "1970", "26", "20261"]) | DIGITS,
    st.sampled_from(["01", "02", "12", "13", "00", "1"]) | DIGITS,
    st.sampled_from(["01", "28", "29", "30", "31", "32", "00", "7"]) | DIGITS,
    st.sampled_from(["T", " ", "t", "  ", "_"]),
    st.sampled_from(["00", "23", "24", "9"]) | DIGITS,
    st.sampled_from(["00", "59", "60"]) | DIGITS,
    st.sampled_from(["00", "59", "60", "61"]) | DIGITS,
    st.sampled_from(["", "Z", "z", "ZZ", ".5Z", "+08:00", "-0130", " ", "\n", "Zx"]),
)


@settings(max_examples=1000)
@given(SHAPED_TIME | HOSTILE_TEXT | st.text(alphabet="0123456789-:TZ .+", max_size=25))
@example("2024-02-29T10:00:00Z")
@example("2023-02-29 10:00:00")
@example("２０２６-01-01T00:00:00Z")  # full-width digits: not ASCII, not ours to read fast
@example("2026-01-01T00:00:00Z\n")
def test_normalize_time_reads_ice_times_exactly_as_strptime_did(raw):
    assert normalize_time(raw) == old_normalize_time(raw)


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)), st.sampled_from(["T", " "]),
       st.sampled_from(["Z", ""]))
def test_every_moment_ice_can_send_is_read_the_fast_way(moment, separator, zone):
    text = f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}{separator}{moment:%H:%M:%S}{zone}"
    assert records._utc_time_as_ice_sends_it(text) == old_normalize_time(text) is not None


@settings(max_examples=800)
@given(SHAPED_TIME | st.text(max_size=25))
def test_parse_time_reads_what_it_reads_as_strptime_did(text):
    try:
        expected: Any = old_parse_time(text)
    except ValueError:
        expected = ValueError
    try:
        got: Any = parse_time(text)
    except ValueError:
        got = ValueError
    assert got == expected or not text


# ---------------------------------------------------------------- user data

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) \
    | HOSTILE_TEXT | st.sampled_from(["{", "[1]", ' {"a": 1}', '{"x": "\\ud83d"}', "\ud83d", "café", "\\"])
JSON_VALUES = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(HOSTILE_TEXT | st.sampled_from(["a", "b", "é"]), inner, max_size=4),
                           max_leaves=30)
NESTED = JSON_VALUES.map(json.dumps) | JSON_VALUES.map(lambda v: json.dumps(v, ensure_ascii=False))


@settings(max_examples=1000)
@given(st.one_of(
    JSON_VALUES.map(lambda value: json.dumps(value)),
    JSON_VALUES.map(lambda value: json.dumps(value, ensure_ascii=False, indent=1)),
    st.dictionaries(st.sampled_from(["a", "Extend", "MessageCallback"]), NESTED, max_size=3).map(json.dumps),
    st.integers(min_value=25, max_value=40).map(lambda depth: "[" * depth + "1" + "]" * depth),
    st.integers(min_value=25, max_value=40).map(lambda depth: '{"a":' * depth + "1" + "}" * depth),
    st.text(alphabet='{}[]":, a1\\u', max_size=30),
))
@example('{"MessageCallback":"{"CallbackURL":"http://example.aliyundoc.com"}", "Extend":"{"localId":"***"}"}')
@example('{"a": " [1, 2]"}')
@example('{"a": "x", "b": {"c": [1, 2.5, null, true]}}')
def test_user_data_is_parsed_exactly_as_before(raw):
    assert normalize_user_data(raw) == old_normalize_user_data(raw)
    assert json.dumps(normalize_user_data(raw)) == json.dumps(old_normalize_user_data(raw))


# ---------------------------------------------------------------- records


RECORD_VALUES = st.none() | st.booleans() | st.integers(-2, 2) | st.sampled_from([0.0, -0.0, 1.0, 1.5]) \
    | st.sampled_from(["", "a", "1"])
USER_DATA = st.recursive(RECORD_VALUES, lambda inner: st.lists(inner, max_size=3)
                         | st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=3), max_leaves=8)


@settings(max_examples=800)
@given(USER_DATA, USER_DATA, st.sampled_from([None, 1, 2]), st.sampled_from([None, 1, 2]))
def test_same_information_answers_as_the_json_comparison_did(first, second, size_one, size_two):
    one = JobRecord("j1", "processing", "timer", "r1", "t", "t", user_data=first, file_size=size_one)
    two = JobRecord("j1", "processing", "direct", "r2", "u", "u", user_data=second, file_size=size_two)
    assert one.same_information(two) == (old_information(one) == old_information(two))


@given(USER_DATA)
def test_to_dict_is_what_asdict_gave_without_copying(user_data):
    rec = JobRecord("j1", "succeeded", "timer", "r1", "t", "t", user_data=user_data, answer_digest="d")
    old = asdict(rec)
    old.pop("answer_digest")
    assert rec.to_dict() == {**old, "final": True}
    assert list(rec.to_dict()) == ["schema_version", "job_id", "upload_url", "media_id", "state", "ice_status",
                                   "final", "file_size", "created_at", "completed_at", "error_code",
                                   "error_message", "user_data", "source", "ice_request_id", "first_seen_at",
                                   "updated_at"]
    assert JobRecord.from_dict({**rec.to_dict(), "answer_digest": "forged"}).answer_digest is None


# ---------------------------------------------------------------- the answer digest

FIELD = st.none() | st.sampled_from(["", "\x00", "\x01", "None", "null", "a\x00b", "\ud83d", "é"]) | HOSTILE_TEXT
INFOS = st.builds(UploadInfo, st.sampled_from(["j1", "j2", "a\x00b"]), *([FIELD] * 9))


@settings(max_examples=1000)
@given(INFOS, INFOS)
def test_equal_digests_mean_equal_answers(first, second):
    assert (answer_digest(first) == answer_digest(second)) == (first == second)


def test_the_digest_tells_apart_what_a_separator_could_confuse():
    fields = [UploadInfo("j1", "a\x00b", "c"), UploadInfo("j1", "a", "b\x00c"), UploadInfo("j1", None, "x"),
              UploadInfo("j1", "\x01", "x"), UploadInfo("j1", "None", "x"), UploadInfo("j1", "", "x")]
    assert len({answer_digest(info) for info in fields}) == len(fields)


@given(INFOS)
def test_equal_digests_mean_equal_information(info):
    again = normalize(UploadInfo(*info), source="direct", request_id="other", now="2026-01-01T00:00:00Z")
    first = normalize(info, source="timer", request_id="r", now="2026-11-25T03:00:00Z")
    assert first.same_information(again)


# ---------------------------------------------------------------- the SDK's model, read in place


@settings(max_examples=500)
@given(st.lists(st.dictionaries(st.sampled_from(["JobId", "Status", "UserData", "FileSize", "CreationTime",
                                                 "UploadURL", "MediaId", "ErrorCode", "ErrorMessage",
                                                 "CompleteTime", "Other"]),
                                st.none() | HOSTILE_TEXT | st.integers() | st.lists(st.integers(), max_size=2)
                                | st.floats(allow_nan=False)), max_size=4),
       st.none() | st.lists(HOSTILE_TEXT, max_size=2) | st.just("['a', 'b']"), st.none() | HOSTILE_TEXT)
def test_the_sdk_model_read_in_place_gives_what_its_map_gives(items, non_exists, request_id):
    models = pytest.importorskip("alibabacloud_ice20201109.models")
    body = models.GetUrlUploadInfosResponseBody().from_map(
        {"URLUploadInfoList": items, "NonExists": non_exists, "RequestId": request_id})
    assert parse_sdk_answer(body) == parse_answer(body.to_map())


def test_no_body_is_an_empty_answer():
    assert parse_sdk_answer(None) == parse_answer({})


# ---------------------------------------------------------------- the sweep's use of digests

NOW = datetime(2026, 11, 25, 3, tzinfo=timezone.utc)
CREATED = "2026-11-25T02:00:00Z"


def sweep(store: MemoryStore, ice: ScriptedIce, *, now: datetime = NOW, request: SyncRequest = None):
    service = SyncService(ice, store, Settings(), clock=lambda: now)
    store.saved.clear()
    return service.run(request or SyncRequest(source="timer", sweep=True), deadline=float("inf"))


def jobs(count: int, **fields: str) -> Dict[str, dict]:
    return {f"job{n:04d}": {"Status": "UPLOADING", "CreationTime": CREATED, **fields} for n in range(count)}


def test_answers_the_store_vouches_for_are_settled_without_saving():
    ice = ScriptedIce(jobs(25))
    store = MemoryStore(list(ice.jobs), vouches=True)
    assert sweep(store, ice).written == 25 and len(store.bound) == 25
    summary = sweep(store, ice)
    assert summary.unchanged == 25 and summary.written == 0 and store.saved == []


def test_only_the_answers_that_changed_are_saved():
    ice = ScriptedIce(jobs(25))
    store = MemoryStore(list(ice.jobs), vouches=True)
    sweep(store, ice)
    ice.jobs["job0003"] = {**ice.jobs["job0003"], "Status": "PROCESSING"}
    ice.jobs["job0017"] = {**ice.jobs["job0017"], "UserData": '{"a": 1}'}
    summary = sweep(store, ice)
    assert sorted(store.saved) == ["job0003", "job0017"] and summary.written == 2 and summary.unchanged == 23


def test_a_vouched_job_past_its_age_is_expired_all_the_same():
    ice = ScriptedIce(jobs(3))
    store = MemoryStore(list(ice.jobs), vouches=True)
    sweep(store, ice)
    summary = sweep(store, ice, now=NOW + timedelta(hours=71))
    assert summary.expired == 3 and {r.state for r in store.stored.values()} == {"expired"}


def test_a_job_without_a_creation_time_takes_the_ordinary_way_which_counts_from_tracking():
    ice = ScriptedIce({"job0001": {"Status": "UPLOADING"}})
    store = MemoryStore(["job0001"], vouches=True)
    sweep(store, ice)
    assert sweep(store, ice).unchanged == 1 and store.saved == ["job0001"]  # unchanged, but looked at in full


def test_when_the_digests_cannot_be_read_every_job_is_checked_the_ordinary_way(caplog):
    ice = ScriptedIce(jobs(5))
    store = MemoryStore(list(ice.jobs), vouches=True)
    sweep(store, ice)
    store.fail("answer_digests", error=StoreError("disk on fire"))
    summary = sweep(store, ice)
    assert summary.unchanged == 5 and summary.failed == [] and len(store.saved) == 5
    assert "cannot read the answer digests of 5 job(s)" in caplog.text


def test_a_callback_hint_that_disagrees_is_still_logged(caplog):
    ice = ScriptedIce(jobs(1))
    store = MemoryStore(list(ice.jobs), vouches=True)
    sweep(store, ice)
    hint = CallbackHint("UploadByURLComplete", "job0000", None, "Success")
    request = SyncRequest(source="callback", job_ids=("job0000",), hints=(hint,))
    with caplog.at_level("INFO"):
        sweep(store, ice, request=request)
    assert "callback said 'Success' for job job0000" in caplog.text


def test_records_keep_the_digest_of_their_answer_but_never_show_it():
    info = UploadInfo.from_api({"JobId": "j1", "Status": "UPLOADING"})
    rec = normalize(info, source="timer", request_id="r", now=CREATED, digest=answer_digest(info))
    assert rec.answer_digest == answer_digest(info) and "answer_digest" not in rec.to_dict()
    assert rec == replace(rec, answer_digest=None)  # bookkeeping of the store's, not information


def test_an_unknown_status_word_is_warned_about_at_every_look(caplog):
    ice = ScriptedIce(jobs(2, Status="TRANSCODING_QUEUED"))
    store = MemoryStore(list(ice.jobs), vouches=True)
    sweep(store, ice)
    caplog.clear()
    summary = sweep(store, ice)
    assert summary.unchanged == 2 and len(store.saved) == 2  # the ordinary way, so the warning is logged
    assert caplog.text.count("unknown ICE upload status 'TRANSCODING_QUEUED'") == 2
