"""A job recorded `expired` (ICE still in flight after MAX_TRACK_AGE_HOURS, or NonExists past
UNKNOWN_JOB_GRACE_MINUTES) later completes in ICE. Its completion callback reaches a cold
instance: the answer is 200 with the job listed under `deferred` ("the next sweep records it"),
but track() refused to create a marker (the record is final), so no sweep ever looks at it:
the record stays `expired` although ICE says `Normal` (succeeded). README: "a real outcome
replaces expired".
"""
import json
from datetime import datetime, timedelta, timezone

from ice_upload_sync.ice import MAX_ATTEMPTS

from tests.scenario import CALLBACK_AUTH_KEY, load_event, signed_http_event

JOB = "bb00000000000000000000000000b001"
URL = "https://media.example.com/slow.mp4"


def _t(delta):
    return (datetime.now(timezone.utc) - delta).strftime("%Y-%m-%d %H:%M:%S")


def test_completion_callback_of_an_expired_job_is_deferred_to_a_sweep_that_never_sees_it(fc, ice):
    fc.monkeypatch.setenv("CALLBACK_AUTH_KEY", CALLBACK_AUTH_KEY)
    # an upload that has been running for 4 days (> MAX_TRACK_AGE_HOURS=72)
    ice.put_job(JOB, Status="UPLOADING", CreationTime=_t(timedelta(days=4)), UploadURL=URL)
    first = fc.invoke({"UploadJobs": [{"JobId": JOB, "SourceURL": URL}]})
    assert first["expired"] == 1 and fc.record(JOB)["state"] == "expired" and fc.pending() == set()
    # ICE finishes it; its callback arrives at a fresh (cold) instance
    ice.update_job(JOB, Status="Normal", CompleteTime=_t(timedelta(minutes=1)), MediaId="m-done", FileSize="42")
    fc.restart()
    body = {"EventType": "UploadByURLComplete", "MessageBody": {"JobId": JOB, "SourceURL": URL, "Status": "Success"}}
    answer = fc.invoke(signed_http_event(body=body))
    summary = json.loads(answer["body"])
    print("callback answer:", answer["statusCode"], summary["deferred"], "tracked:", summary["tracked"])
    assert answer["statusCode"] == 200 and summary["deferred"] == [JOB]  # promised to the next sweep
    sweep = fc.invoke(load_event("timer-sweep.json"))
    print("sweep:", sweep["checked"], "pending:", fc.pending(), "record:", fc.record(JOB)["state"])
    # expected: the next sweep records ICE's outcome; actual: nothing ever looks at it again
    assert fc.record(JOB)["state"] == "succeeded", "completion of an expired job lost"


def test_warm_instance_ice_throttled_same_loss(fc, ice):
    ice.put_job(JOB, Status="UPLOADING", CreationTime=_t(timedelta(days=4)), UploadURL=URL)
    fc.invoke({"UploadJobs": [{"JobId": JOB, "SourceURL": URL}]})
    assert fc.record(JOB)["state"] == "expired"
    ice.update_job(JOB, Status="Normal", CompleteTime=_t(timedelta(minutes=1)), MediaId="m-done", FileSize="42")
    fc.warm()
    ice.fail_next(MAX_ATTEMPTS)  # Throttling.User on every retry of this callback's lookup (and no more)
    body = {"EventType": "UploadByURLComplete", "MessageBody": {"JobId": JOB, "SourceURL": URL, "Status": "Success"}}
    summary = json.loads(fc.invoke(signed_http_event(body=body))["body"])
    assert summary["deferred"] == [JOB] and summary["failed"] == []
    fc.invoke(load_event("timer-sweep.json"))
    assert fc.record(JOB)["state"] == "succeeded", "completion of an expired job lost"
