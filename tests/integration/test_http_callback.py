"""The HTTP callback path: authentication before anything else, and ICE's 3-second rule."""
from __future__ import annotations

import json
import time

import pytest

from tests.scenario import CALLBACK_AUTH_KEY, CALLBACK_URL, JOB, load_event, signed_http_event


@pytest.fixture
def secured(fc):
    """A warm instance (its ICE client is ready) that checks signatures."""
    fc.monkeypatch.setenv("CALLBACK_AUTH_KEY", f"old-key,{CALLBACK_AUTH_KEY}")
    return fc.warm()


def test_a_cold_instance_tracks_the_job_answers_200_and_leaves_the_lookup_to_the_sweep(seeded, fc):
    fc.monkeypatch.setenv("CALLBACK_AUTH_KEY", CALLBACK_AUTH_KEY)
    answer = fc.invoke(signed_http_event())
    assert answer["statusCode"] == 200
    summary = json.loads(answer["body"])
    assert (summary["tracked"], summary["deferred"], summary["api_calls"]) == (1, [JOB["http"]], 0)
    assert seeded.calls == [] and not fc.index._app.gateway.ready  # the SDK was not even imported
    assert fc.pending() == {JOB["http"]} and fc.record(JOB["http"]) is None
    fc.invoke(load_event("timer-sweep.json"))
    assert fc.record(JOB["http"])["state"] == "succeeded" and fc.pending() == set()
    assert fc.index._app.gateway.ready  # the sweep left the instance warm: the next callback is looked up


def test_an_idle_sweep_leaves_the_instance_ready_for_callbacks(seeded, fc):
    fc.monkeypatch.setenv("CALLBACK_AUTH_KEY", CALLBACK_AUTH_KEY)
    assert fc.invoke(load_event("timer-sweep.json"))["checked"] == 0 and seeded.calls == []
    summary = json.loads(fc.invoke(signed_http_event())["body"])
    assert (summary["written"], summary["deferred"], summary["api_calls"]) == (1, [], 1)
    assert fc.record(JOB["http"])["state"] == "succeeded"


def test_a_cold_callback_naming_only_a_url_is_looked_up_since_there_is_nothing_to_track(seeded, fc):
    fc.monkeypatch.setenv("CALLBACK_AUTH_KEY", CALLBACK_AUTH_KEY)
    url_only = {"EventType": "UploadByURLComplete", "MessageBody": {"SourceURL": seeded.job(JOB["http"])["UploadURL"],
                                                                       "Status": "Success"}}
    answer = fc.invoke(signed_http_event(body=url_only))
    summary = json.loads(answer["body"])
    assert answer["statusCode"] == 200 and summary["api_calls"] == 1 and summary["deferred"] == []


def test_a_signed_callback_is_recorded_and_answered_200(seeded, secured):
    answer = secured.invoke(signed_http_event())
    assert answer["statusCode"] == 200 and answer["headers"]["Content-Type"] == "application/json"
    summary = json.loads(answer["body"])
    assert (summary["written"], summary["tracked"], summary["api_calls"]) == (1, 1, 1)
    record = secured.record(JOB["http"])
    assert (record["state"], record["source"]) == ("succeeded", "callback")
    assert secured.pending() == set()


def test_the_callback_is_a_hint_and_ice_answer_is_recorded(seeded, secured, caplog):
    seeded.update_job(JOB["http"], Status="UPLOADING", CompleteTime="")  # the callback says Success
    caplog.set_level("INFO")
    assert secured.invoke(signed_http_event())["statusCode"] == 200
    record = secured.record(JOB["http"])
    assert (record["state"], record["ice_status"], record["final"]) == ("processing", "UPLOADING", False)
    assert "callback said 'Success'" in caplog.text
    assert secured.pending() == {JOB["http"]}


def test_the_url_is_derived_from_the_trigger_event_when_not_configured(seeded, secured):
    assert secured.invoke(signed_http_event(url=CALLBACK_URL))["statusCode"] == 200


@pytest.mark.parametrize("make_event", [
    lambda: signed_http_event(key="not-the-key"),
    lambda: signed_http_event(timestamp=int(time.time()) - 3600),  # a replay
    lambda: signed_http_event(url="https://attacker.example/ice-callback"),
    lambda: {**load_event("http-callback.json"), "headers": {"Content-Type": "application/json"}},
])
def test_unsigned_or_badly_signed_callbacks_get_401_before_any_call_or_write(seeded, secured, make_event):
    answer = secured.invoke(make_event())
    assert answer["statusCode"] == 401
    assert seeded.calls == [] and secured.records() == {} and secured.pending() == set()


def test_a_callback_with_an_unparseable_body_is_authenticated_first(seeded, secured):
    event = signed_http_event()
    event["body"] = "garbage"
    assert secured.invoke(event)["statusCode"] == 400
    event["headers"]["X-Ice-Signature"] = "0" * 32
    assert secured.invoke(event)["statusCode"] == 401


def test_a_slow_api_still_gets_its_answer_in_time_and_the_sweep_finishes_the_job(seeded, secured):
    seeded.latency_s = 5.0
    started = time.monotonic()
    answer = secured.invoke(signed_http_event())
    elapsed = time.monotonic() - started
    assert answer["statusCode"] == 200 and elapsed < 2.5
    summary = json.loads(answer["body"])
    assert summary["deferred"] == [JOB["http"]] and summary["failed"] == []
    assert secured.pending() == {JOB["http"]}  # tracked first: nothing is lost
    seeded.latency_s = 0.0
    secured.invoke(load_event("timer-sweep.json"))
    assert secured.record(JOB["http"])["state"] == "succeeded" and secured.pending() == set()


def test_an_ice_outage_still_answers_200_and_leaves_the_job_tracked(seeded, secured):
    seeded.server_error_next(100)
    answer = secured.invoke(signed_http_event())
    assert answer["statusCode"] == 200 and json.loads(answer["body"])["deferred"] == [JOB["http"]]
    assert secured.pending() == {JOB["http"]}


def test_callbacks_about_other_events_are_acknowledged_without_a_call(seeded, secured):
    event = signed_http_event()
    event["body"] = json.dumps({"EventType": "MediaConvertComplete", "MessageBody": {"JobId": "x"}})
    answer = secured.invoke(event)
    assert answer["statusCode"] == 200 and json.loads(answer["body"])["ignored"] == ["MediaConvertComplete"]
    assert seeded.calls == []


def test_without_an_auth_key_callbacks_are_accepted_unsigned(seeded, fc):
    event = load_event("http-callback.json")
    del event["headers"]["X-Ice-Signature"]
    assert fc.invoke(event)["statusCode"] == 200


def test_a_replayed_signature_with_forged_bodies_cannot_fill_the_sweep_for_days(seeded, secured):
    """ICE signs the URL and the time, not the body: one captured header pair passes with any body for
    CALLBACK_MAX_SKEW_S. The forged jobs are tracked (nothing is lost if they were real), then expire
    after UNKNOWN_JOB_GRACE_MINUTES once ICE has never known them, not after MAX_TRACK_AGE_HOURS."""
    stamp = int(time.time())
    forged = [f"f0f0f0f0f0f0f0f0f0f0f0f0f0f0{n:04d}" for n in range(5)]
    for job_id in forged:
        body = {"EventType": "UploadByURLComplete", "MessageBody": {"JobId": job_id, "Status": "Success"}}
        assert secured.invoke(signed_http_event(body=body, timestamp=stamp))["statusCode"] == 200
    assert set(forged) <= secured.pending()
    secured.invoke(load_event("timer-sweep.json"))  # within the grace: tracked, not_found, still swept
    assert set(forged) <= secured.pending() and secured.record(forged[0])["state"] == "not_found"
    half_an_hour_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 31 * 60))
    for job_id in forged:
        secured.rewrite_marker(job_id, first_seen_at=half_an_hour_ago)
    summary = secured.invoke(load_event("timer-sweep.json"))
    assert summary["expired"] >= len(forged)
    assert not set(forged) & secured.pending()
    assert all(secured.record(job_id)["state"] == "expired" for job_id in forged)


def test_a_job_ice_described_once_and_then_lost_keeps_the_full_tracking_age(seeded, secured):
    seeded.update_job(JOB["http"], Status="UPLOADING", CompleteTime="")
    assert secured.invoke(signed_http_event())["statusCode"] == 200
    assert secured.record(JOB["http"])["state"] == "processing"
    two_hours_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 7200))
    secured.rewrite_marker(JOB["http"], first_seen_at=two_hours_ago)  # past the grace, well within 72 h
    seeded.put_job("someone-else", Status="PENDING")  # ICE forgets our job: NonExists from now on
    with seeded._lock:
        del seeded._jobs[JOB["http"]]
    secured.invoke(load_event("timer-sweep.json"))
    assert JOB["http"] in secured.pending() and secured.record(JOB["http"])["state"] == "not_found"
