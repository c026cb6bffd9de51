"""End to end: the handler, the official SDK over loopback to the ICE emulator, each record store.

Each test reads like a scenario: seed the emulator, invoke the handler with a sample
event, read the store.
"""
from __future__ import annotations

import json
import logging
import time
from types import SimpleNamespace

import pytest
from ice_upload_sync.errors import BadRequest, ConfigError, SyncIncomplete

from tests.conftest import ACCESS_KEY_SECRET, STS_KEY_ID, STS_SECRET, STS_TOKEN
from tests.scenario import CALLBACK_AUTH_KEY, JOB, URL_WITH_COMMA, load_event, signed_http_event


def job_ids(prefix: str, count: int):
    return [f"{prefix}{i:04d}" for i in range(count)]


# ---------------------------------------------------------------- every sample event


def test_direct_job_ids_record_each_known_job_and_report_the_unknown(seeded, fc):
    summary = fc.invoke(load_event("direct-job-ids.json"))
    assert summary["checked"] == 3 and summary["api_calls"] == 1
    assert summary["written"] == 2 and summary["failed"] == []
    assert summary["not_found"] == [JOB["unknown"]]
    succeeded, failed = fc.record(JOB["succeeded"]), fc.record(JOB["failed"])
    assert (succeeded["state"], succeeded["final"], succeeded["file_size"]) == ("succeeded", True, 64610)
    assert succeeded["completed_at"].endswith("Z") and "T" in succeeded["completed_at"]
    assert succeeded["error_code"] is None and isinstance(succeeded["user_data"], str)
    assert (failed["state"], failed["error_code"]) == ("failed", "URLInvalidError")
    assert fc.record(JOB["unknown"]) is None  # nobody tracked it: never written
    assert fc.pending() == set()


def test_every_sample_event_is_handled(seeded, fc, monkeypatch):
    monkeypatch.setenv("CALLBACK_AUTH_KEY", CALLBACK_AUTH_KEY)
    monkeypatch.setenv("CALLBACK_URL", "https://1234567890123456.cn-shanghai.fcapp.run/ice-callback")
    answers = {}
    for path in sorted((load_event.__globals__["EVENTS_DIR"]).glob("*.json")):
        event = signed_http_event() if path.name == "http-callback.json" else json.loads(path.read_text())
        answers[path.name] = fc.invoke(event)
    assert answers["http-callback.json"]["statusCode"] == 200
    records = fc.records()
    expected = {
        "http": "succeeded", "eventbridge": "failed", "mns1": "succeeded", "mns2": "processing",
        "vod": "succeeded", "upload1": "pending", "upload2": "processing", "processing": "processing",
        "pending": "pending", "succeeded": "succeeded", "failed": "failed", "by_url": "succeeded",
    }
    assert {key: records[JOB[key]]["state"] for key in expected} == expected
    assert records[JOB["upload2"]]["ice_status"] == "TRANSCODING_QUEUED"  # unknown word kept verbatim
    assert records[JOB["processing"]]["user_data"] == {"Extend": {"localId": "clip-7"}}
    assert records[JOB["by_url"]]["upload_url"] == URL_WITH_COMMA
    # exactly the non-final jobs are pending, and the sweep checks exactly those
    in_flight = {JOB[k] for k in ("mns2", "upload1", "upload2", "processing", "pending")}
    assert fc.pending() == in_flight
    sweep = fc.invoke(load_event("timer-sweep.json"))
    assert sweep["checked"] == len(in_flight) and sweep["api_calls"] == 1 and sweep["unchanged"] == len(in_flight)


def test_lookup_by_upload_url_encodes_commas_and_percent_signs(seeded, fc):
    summary = fc.invoke(load_event("direct-upload-urls.json"))
    assert summary["written"] == 1 and summary["not_found"] == []
    assert seeded.calls[-1].upload_urls == (URL_WITH_COMMA,)
    assert fc.record(JOB["by_url"])["state"] == "succeeded"


@pytest.mark.parametrize("ice", ["list", "stringified"], indirect=True)
def test_non_exists_in_either_shape_reports_untracked_and_records_tracked(ice, fc):
    ice.put_job("known001", Status="UPLOADING")
    summary = fc.invoke({"JobIds": ["known001", "nobody01", "nobody02"]})
    assert summary["not_found"] == ["nobody01", "nobody02"] and set(fc.records()) == {"known001"}
    fc.invoke({"UploadJobs": [{"JobId": "tracked1"}]})
    assert fc.record("tracked1")["state"] == "not_found"
    missing = ["https://nowhere.example/x.mp4", "https://nowhere.example/a,b.mp4"]
    assert fc.invoke({"UploadURLs": missing})["not_found"] == missing


def test_a_job_id_unfit_for_a_key_is_never_written_even_from_ice(ice, fc):
    url = "https://media.example.com/videos/odd.mp4"
    ice.put_job("../../escape", Status="Success", UploadURL=url)
    ice.put_job("fine0001", Status="Success", UploadURL=url)
    summary = fc.invoke({"UploadURLs": [url]})
    assert summary["written"] == 1 and set(fc.records()) == {"fine0001"}


def test_unknown_upload_urls_are_reported_not_written(seeded, fc):
    summary = fc.invoke({"UploadURLs": ["https://nowhere.example/x.mp4"]})
    assert summary["not_found"] == ["https://nowhere.example/x.mp4"] and fc.records() == {}


# ---------------------------------------------------------------- batching and sweeps


def test_25_job_ids_take_3_calls(ice, fc):
    ids = job_ids("batch", 25)
    for job_id in ids:
        ice.put_job(job_id, Status="UPLOADING", CreationTime="2026-11-25T00:00:00Z")
    fc.monkeypatch.setenv("MAX_TRACK_AGE_HOURS", "1000000")
    summary = fc.invoke({"JobIds": ids})
    assert summary["api_calls"] == 3 and summary["written"] == 25
    assert sorted(len(call.job_ids) for call in ice.calls) == [5, 10, 10]
    assert fc.pending() == set(ids)


def test_the_sweep_finishes_tracked_jobs_and_then_has_nothing_to_do(seeded, fc):
    fc.invoke(load_event("upload-media-by-url-response.json"))
    assert fc.pending() == {JOB["upload1"], JOB["upload2"]}
    seeded.update_job(JOB["upload1"], Status="UPLOAD_SUCCESS", CompleteTime="2026-11-25 03:00:00", FileSize="5")
    seeded.update_job(JOB["upload2"], Status="UPLOAD_FAIL", CompleteTime="2026-11-25 03:00:01",
                      ErrorCode="FileTooLarge", ErrorMessage="too large")
    summary = fc.invoke(load_event("timer-sweep.json"))
    assert summary["written"] == 2 and summary["checked"] == 2
    assert fc.record(JOB["upload1"])["state"] == "succeeded"
    assert fc.record(JOB["upload2"])["error_code"] == "FileTooLarge"
    assert fc.pending() == set()
    seeded.reset_calls()
    assert fc.invoke(load_event("timer-sweep.json"))["checked"] == 0 and seeded.calls == []


def test_a_timer_payload_checks_exactly_the_listed_jobs(seeded, fc):
    summary = fc.invoke(load_event("timer-check-jobs.json"))
    assert summary["checked"] == 2 and set(fc.records()) == {JOB["processing"], JOB["pending"]}
    assert all(r["source"] == "timer" for r in fc.records().values())


# ---------------------------------------------------------------- duplicates and stale answers


def test_the_same_callback_twice_writes_once(seeded, fc):
    event = load_event("eventbridge-callback.json")
    first, second = fc.invoke(event), fc.invoke(event)
    assert (first["written"], second["written"], second["unchanged"]) == (1, 0, 1)
    assert len(fc.records()) == 1


def test_a_stale_answer_after_a_final_one_changes_nothing(seeded, fc):
    fc.invoke({"JobIds": [JOB["succeeded"]]})
    before = fc.record(JOB["succeeded"])
    seeded.update_job(JOB["succeeded"], Status="PROCESSING")  # an out-of-date replica answers
    summary = fc.invoke({"JobIds": [JOB["succeeded"]]})
    assert summary["unchanged"] == 1 and fc.record(JOB["succeeded"]) == before
    assert fc.pending() == set()


def test_a_later_final_answer_replaces_an_earlier_final_one(seeded, fc):
    fc.invoke({"JobIds": [JOB["failed"]]})
    seeded.update_job(JOB["failed"], Status="Success", CompleteTime="2099-01-01 00:00:00", ErrorCode="")
    fc.invoke({"JobIds": [JOB["failed"]]})
    assert fc.record(JOB["failed"])["state"] == "succeeded"


# ---------------------------------------------------------------- tracking, not found, expiry


def test_a_tracked_job_unknown_to_ice_is_not_found_then_appears(ice, fc):
    fc.invoke({"UploadJobs": [{"JobId": "late0001", "SourceURL": "https://a.example/late.mp4"}]})
    assert fc.record("late0001")["state"] == "not_found" and fc.record("late0001")["final"] is False
    assert fc.pending() == {"late0001"}
    ice.put_job("late0001", Status="Success", CompleteTime="2026-11-25 03:00:00")
    fc.invoke(load_event("timer-sweep.json"))
    assert fc.record("late0001")["state"] == "succeeded" and fc.pending() == set()


def test_jobs_still_in_flight_after_max_age_expire_and_leave_the_sweep(ice, fc):
    ice.put_job("old00001", Status="UPLOADING", CreationTime="2026-01-01T00:00:00Z")
    ice.put_job("new00001", Status="UPLOADING", CreationTime=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    summary = fc.invoke({"UploadJobs": [{"JobId": "old00001"}, {"JobId": "new00001"}]})
    assert summary["expired"] == 1
    old = fc.record("old00001")
    assert (old["state"], old["final"], old["ice_status"]) == ("expired", True, "UPLOADING")
    assert fc.pending() == {"new00001"}


def test_a_never_found_job_expires_from_when_tracking_began(ice, fc):
    fc.invoke({"UploadJobs": [{"JobId": "ghost001"}]})
    assert fc.record("ghost001")["state"] == "not_found"
    tracked = fc.marker("ghost001")
    assert tracked["first_seen_at"] == fc.record("ghost001")["first_seen_at"]
    fc.rewrite_marker("ghost001", first_seen_at="2026-01-01T00:00:00Z")  # tracked long ago
    summary = fc.invoke(load_event("timer-sweep.json"))
    assert summary["expired"] == 1
    assert fc.record("ghost001")["state"] == "expired" and fc.pending() == set()


# ---------------------------------------------------------------- failures: throttling, 5xx, store


def test_throttling_is_retried_and_nothing_is_lost(ice, fc):
    ids = job_ids("thr", 25)
    for job_id in ids:
        ice.put_job(job_id, Status="Success", CompleteTime="2026-11-25 01:00:00")
    ice.throttle_next(4)
    summary = fc.invoke({"JobIds": ids})
    assert summary["written"] == 25 and summary["failed"] == []
    assert summary["api_calls"] == 3 + 4
    assert sum(1 for call in ice.calls if call.error_code == "Throttling.User") == 4


def test_5xx_answers_are_retried(ice, fc):
    ice.put_job("five0001", Status="Success")
    ice.server_error_next(2)
    summary = fc.invoke({"JobIds": ["five0001"]})
    assert summary["written"] == 1 and summary["api_calls"] == 3


def test_a_client_error_is_not_retried_and_the_invocation_raises(ice, fc):
    ice.put_job("deny0001", Status="Success")
    ice.fail_next(1, status=403, code="Forbidden.RAM", message="not authorized")
    with pytest.raises(SyncIncomplete) as raised:
        fc.invoke({"JobIds": ["deny0001"]})
    assert raised.value.summary["failed"] == ["deny0001"] and len(ice.calls) == 1
    assert fc.records() == {}


def test_a_record_that_cannot_be_written_raises_after_the_others_are_written(ice, fc):
    for job_id in ("okay0001", "okay0002", "stuck001"):
        ice.put_job(job_id, Status="Success", CompleteTime="2026-11-25 01:00:00")
    fc.make_unwritable("stuck001")  # every write of its record fails
    with pytest.raises(SyncIncomplete) as raised:
        fc.invoke({"JobIds": ["okay0001", "stuck001", "okay0002"]})
    assert raised.value.summary["failed"] == ["stuck001"] and raised.value.summary["written"] == 2
    assert all(fc.record(j)["state"] == "succeeded" for j in ("okay0001", "okay0002"))
    assert fc.temp_files() == []  # no half-written temp files left


def test_a_sweep_that_runs_out_of_time_defers_and_does_not_fail(ice, fc):
    fc.invoke({"UploadJobs": [{"JobId": "slow0001"}]})
    ice.latency_s = 1.0
    summary = fc.invoke(load_event("timer-sweep.json"), fc.context(timeout=1.5))
    assert summary["deferred"] == ["slow0001"] and summary["failed"] == []
    assert fc.pending() == {"slow0001"}


# ---------------------------------------------------------------- bad input writes nothing


@pytest.mark.parametrize("event", [
    b"not json", b"", {"JobIds": "bad id!"}, {"Hello": 1}, {"UploadURLs": ["javascript:alert(1)"]},
    {"triggerTime": "t", "triggerName": "n", "payload": "{broken"},
])
def test_bad_input_raises_before_any_call_or_write(ice, fc, event):
    with pytest.raises(BadRequest):
        fc.invoke(event)
    assert ice.calls == [] and fc.records() == {} and fc.pending() == set()


def test_bad_http_bodies_get_400_and_write_nothing(ice, fc):
    event = load_event("http-callback.json")
    event["body"] = "{not json"
    answer = fc.invoke(event)
    assert answer["statusCode"] == 400 and "not JSON" in json.loads(answer["body"])["error"]
    assert ice.calls == [] and fc.records() == {} and fc.pending() == set()
    event["requestContext"]["http"]["method"] = "GET"
    assert fc.invoke(event)["statusCode"] == 405


def test_a_bad_record_store_setting_is_a_clear_error(ice, fc):
    fc.monkeypatch.setenv("RECORD_STORE", "s3://bucket")
    with pytest.raises(ConfigError, match="RECORD_STORE"):
        fc.invoke({"JobIds": "a1"})


# ---------------------------------------------------------------- credentials and secrets


def test_sts_credentials_from_the_fc_context_are_used(seeded, fc):
    sts = SimpleNamespace(access_key_id=STS_KEY_ID, access_key_secret=STS_SECRET, security_token=STS_TOKEN)
    fc.invoke({"JobIds": [JOB["succeeded"]]}, fc.context(credentials=sts))
    call = seeded.calls[-1]
    assert (call.access_key_id, call.security_token, call.status) == (STS_KEY_ID, STS_TOKEN, 200)


def test_rotated_sts_credentials_rebuild_the_client(seeded, fc):
    old = SimpleNamespace(access_key_id=STS_KEY_ID, access_key_secret=STS_SECRET, security_token=STS_TOKEN)
    fc.invoke({"JobIds": [JOB["succeeded"]]}, fc.context(credentials=old))
    seeded.add_access_key("STS.rotated", "rotated-secret", security_token="rotated-token")
    fc.add_access_key("STS.rotated", "rotated-secret", "rotated-token")
    new = SimpleNamespace(access_key_id="STS.rotated", access_key_secret="rotated-secret",
                          security_token="rotated-token")
    fc.invoke({"JobIds": [JOB["failed"]]}, fc.context(credentials=new))
    assert seeded.calls[-1].access_key_id == "STS.rotated" and seeded.calls[-1].status == 200
    if fc.store_kind == "tablestore":  # the store's client was rebuilt too (moto checks no signature)
        assert fc.view.server.calls[-1].access_key_id == "STS.rotated"


def test_secrets_never_reach_logs_records_or_errors(seeded, fc, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    sts = SimpleNamespace(access_key_id=STS_KEY_ID, access_key_secret=STS_SECRET, security_token=STS_TOKEN)
    fc.invoke(load_event("direct-job-ids.json"), fc.context(credentials=sts))
    seeded.throttle_next(2)
    fc.invoke({"JobIds": [JOB["processing"]]}, fc.context(credentials=sts))
    wrong = SimpleNamespace(access_key_id=STS_KEY_ID, access_key_secret="wrong-secret-xyz", security_token=STS_TOKEN)
    with pytest.raises(SyncIncomplete) as raised:
        fc.invoke({"JobIds": [JOB["pending"]]}, fc.context(credentials=wrong))
    assert "SignatureDoesNotMatch" in caplog.text  # the failure itself is logged...
    captured = capsys.readouterr()
    text = caplog.text + captured.out + captured.err + str(raised.value) + json.dumps(fc.records())
    for secret in (ACCESS_KEY_SECRET, STS_SECRET, STS_TOKEN, "wrong-secret-xyz"):
        assert secret not in text  # ...but never a secret
