"""`expired` is our verdict, not ICE's: a later answer from ICE replaces it (contract sections 2 and 4).

A job recorded `expired` (in flight past MAX_TRACK_AGE_HOURS, or unknown to ICE past
UNKNOWN_JOB_GRACE_MINUTES) that ICE later finishes must get its real record, whoever brings
the news (a callback, a check), whether or not it can be looked up at once. And no answer lists
a job under `deferred` unless a marker makes the next sweep look at it.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from ice_upload_sync.ice import MAX_ATTEMPTS

from tests.scenario import CALLBACK_AUTH_KEY, load_event, signed_http_event

JOB = "ee00000000000000000000000000e001"
URL = "https://media.example.com/late.mp4"
SWEEP = load_event("timer-sweep.json")


def _ice_time(delta: timedelta) -> str:
    return (datetime.now(timezone.utc) - delta).strftime("%Y-%m-%d %H:%M:%S")


def _expire(fc, ice) -> None:
    """A job four days in flight: recorded `expired`, no longer swept."""
    ice.put_job(JOB, Status="UPLOADING", CreationTime=_ice_time(timedelta(days=4)), UploadURL=URL)
    assert fc.invoke({"UploadJobs": [{"JobId": JOB, "SourceURL": URL}]})["expired"] == 1
    assert fc.record(JOB)["state"] == "expired" and fc.pending() == set()


def _finish(ice) -> None:
    ice.update_job(JOB, Status="Normal", CompleteTime=_ice_time(timedelta(minutes=1)), MediaId="m-late", FileSize="7")


def _callback(job_id: str = JOB) -> dict:
    return signed_http_event(body={"EventType": "UploadByURLComplete",
                                   "MessageBody": {"JobId": job_id, "SourceURL": URL, "Status": "Success"}})


def test_a_check_of_an_expired_job_that_ice_cannot_answer_now_reopens_it(fc, ice):
    _expire(fc, ice)
    _finish(ice)
    ice.fail_next(MAX_ATTEMPTS)  # throttled for the whole check
    answer = fc.invoke({"JobIds": [JOB]})
    assert answer["deferred"] == [JOB] and answer["failed"] == []
    assert fc.pending() == {JOB}, "deferred, but no marker: no sweep would ever look"
    fc.invoke(SWEEP)
    record = fc.record(JOB)
    assert (record["state"], record["media_id"]) == ("succeeded", "m-late") and fc.pending() == set()


def test_a_check_of_an_expired_job_answered_at_once_records_the_outcome(fc, ice):
    _expire(fc, ice)
    _finish(ice)
    answer = fc.invoke({"JobIds": [JOB]})
    assert answer["written"] == 1 and fc.record(JOB)["state"] == "succeeded" and fc.pending() == set()


def test_a_reopened_job_still_in_flight_stays_expired_and_leaves_no_marker(fc, ice):
    _expire(fc, ice)
    fc.monkeypatch.setenv("CALLBACK_AUTH_KEY", CALLBACK_AUTH_KEY)
    fc.restart()
    answer = fc.invoke(_callback())  # cold: tracked, the lookup left to the sweep
    assert json.loads(answer["body"])["deferred"] == [JOB] and fc.pending() == {JOB}
    fc.invoke(SWEEP)  # ICE still says UPLOADING: our verdict stands, and it is swept no more
    assert fc.record(JOB)["state"] == "expired" and fc.pending() == set()


def test_a_job_unknown_past_its_grace_that_ice_knows_later_gets_its_record(fc, ice):
    fc.monkeypatch.setenv("UNKNOWN_JOB_GRACE_MINUTES", "1")
    fc.restart()
    fc.invoke({"UploadJobs": [{"JobId": JOB, "SourceURL": URL}]})  # ICE: NonExists
    assert fc.record(JOB)["state"] == "not_found"
    fc.rewrite_marker(JOB, first_seen_at=(datetime.now(timezone.utc) - timedelta(minutes=5))
                      .strftime("%Y-%m-%dT%H:%M:%SZ"))
    fc.invoke(SWEEP)
    assert fc.record(JOB)["state"] == "expired" and fc.pending() == set()
    ice.put_job(JOB, Status="Normal", CreationTime=_ice_time(timedelta(minutes=3)),
                CompleteTime=_ice_time(timedelta(minutes=1)), UploadURL=URL, MediaId="m-late")
    fc.monkeypatch.setenv("CALLBACK_AUTH_KEY", CALLBACK_AUTH_KEY)
    fc.restart()
    fc.invoke(_callback())
    fc.invoke(SWEEP)
    assert fc.record(JOB)["state"] == "succeeded"


def test_a_cold_callback_for_a_job_ice_finished_is_not_promised_to_a_sweep(fc, ice):
    ice.put_job(JOB, Status="Normal", CreationTime=_ice_time(timedelta(minutes=9)),
                CompleteTime=_ice_time(timedelta(minutes=1)), UploadURL=URL, MediaId="m-done")
    fc.invoke({"UploadJobs": [{"JobId": JOB, "SourceURL": URL}]})
    assert fc.record(JOB)["state"] == "succeeded" and fc.pending() == set()
    fc.monkeypatch.setenv("CALLBACK_AUTH_KEY", CALLBACK_AUTH_KEY)
    fc.restart()
    answer = fc.invoke(_callback())  # ICE repeats its callback to a cold instance
    summary = json.loads(answer["body"])
    assert answer["statusCode"] == 200 and summary["deferred"] == [] and summary["tracked"] == 0
    assert fc.pending() == set() and fc.record(JOB)["state"] == "succeeded"
