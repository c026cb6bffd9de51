"""A dead integration never looks healthy (contract section 6): ICE refusing us for a reason that will not
pass by itself makes the invocation fail, after everything else is recorded, with an error that
names what to fix; trouble that passes by itself (throttling, 5xx) is still deferred quietly.

Driven through the handler against the ICE emulator, which checks signatures as the gateway does.
The store does not matter here, so these run on the file store only.
"""
from __future__ import annotations

import json
import logging
import socket

import pytest
from ice_upload_sync.errors import IceRefused, SyncIncomplete

from tests.scenario import CALLBACK_AUTH_KEY, JOB, load_event, signed_http_event

SWEEP = load_event("timer-sweep.json")
FILE_ONLY = pytest.mark.parametrize("fc", ["file"], indirect=True)
MANY = [f"{index:032x}" for index in range(1, 61)]  # 6 batches


def _track(fc, job_ids):
    fc.invoke({"UploadJobs": [{"JobId": job_id} for job_id in job_ids]})
    assert fc.pending() >= set(job_ids)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@FILE_ONLY
@pytest.mark.parametrize("variable, value, code, fix", [
    ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "not-the-secret", "SignatureDoesNotMatch", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
    ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI-nobody-knows", "InvalidAccessKeyId.NotFound", "ALIBABA_CLOUD_ACCESS_KEY_ID"),
    ("ALIBABA_CLOUD_SECURITY_TOKEN", "a-token-this-key-has-not", "InvalidSecurityToken",
     "ALIBABA_CLOUD_SECURITY_TOKEN"),
    ("ICE_ENDPOINT", "https://ice.cn-shanghia.invalid", "does not resolve", "ICE_REGION / ICE_ENDPOINT"),
    ("ICE_ENDPOINT", "refused", "refused the connection", "check ICE_ENDPOINT"),
])
def test_a_sweep_ice_refuses_for_good_fails_loudly_and_keeps_every_job_tracked(fc, ice, variable, value, code, fix):
    _track(fc, MANY)
    fc.monkeypatch.setenv("ICE_CONCURRENCY", "1")
    fc.monkeypatch.setenv(variable, f"http://127.0.0.1:{_free_port()}" if value == "refused" else value)
    fc.restart()
    with pytest.raises(IceRefused) as raised:
        fc.invoke(SWEEP)
    message = str(raised.value)
    assert code in message and fix in message, message
    summary = raised.value.summary
    # the first refusal stops the sweep (the window of 2 x ICE_CONCURRENCY batches already asked
    # for still finishes), not one refusal per batch of the backlog; nothing is lost
    assert summary["api_calls"] == 2 and summary["complete"] is False
    assert summary["unreached_count"] == 20 and summary["written"] == 0
    assert fc.pending() >= set(MANY)


@FILE_ONLY
def test_a_permission_refused_names_the_permission_to_grant(fc, ice):
    _track(fc, [JOB["succeeded"]])
    ice.fail_next(1, status=403, code="Forbidden.RAM",
                  message="User not authorized to operate on the specified resource.")
    with pytest.raises(IceRefused) as raised:
        fc.invoke(SWEEP)
    assert "ice:GetUrlUploadInfos" in str(raised.value) and fc.pending() == {JOB["succeeded"]}


@FILE_ONLY
def test_a_refusal_is_raised_after_the_rest_is_recorded(fc, seeded, ice):
    fc.monkeypatch.setenv("ICE_CONCURRENCY", "1")
    fc.restart()
    ice.fail_next(1, status=403, code="Forbidden.RAM", message="not authorized")  # the first batch only
    job_ids = [JOB["succeeded"]] + MANY[:9] + [JOB["failed"]]  # two batches: the second is answered
    with pytest.raises(IceRefused) as raised:
        fc.invoke({"UploadJobs": [{"JobId": job_id} for job_id in job_ids]})
    assert raised.value.summary["unreached_count"] == 10
    assert fc.record(JOB["failed"])["state"] == "failed"  # recorded before the raise
    assert JOB["succeeded"] in fc.pending()  # refused, still tracked for the next sweep


@FILE_ONLY
def test_throttling_and_server_errors_still_defer_quietly(fc, ice, seeded):
    _track(fc, [JOB["processing"]])
    ice.fail_next(4)  # Throttling.User for every attempt
    answer = fc.invoke(SWEEP)
    assert answer["deferred"] == [JOB["processing"]] and answer["unreached_count"] == 1
    assert "Throttling.User" in answer["ice_error"]
    ice.server_error_next(4)
    answer = fc.invoke(SWEEP)
    assert answer["deferred"] == [JOB["processing"]] and "ServiceUnavailable" in answer["ice_error"]
    answer = fc.invoke(SWEEP)  # ICE is back
    assert answer["unreached_count"] == 0 and answer["ice_error"] is None and answer["unchanged"] == 1


@FILE_ONLY
def test_an_mns_batch_ice_refuses_fails_so_the_failure_destination_sees_it(fc, ice, seeded):
    fc.monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "not-the-secret")
    fc.restart()
    with pytest.raises(IceRefused, match="ALIBABA_CLOUD_ACCESS_KEY_SECRET"):
        fc.invoke(load_event("mns-queue-batch.json"))
    assert fc.pending() == {JOB["mns1"], JOB["mns2"]}


@FILE_ONLY
def test_an_http_callback_ice_refuses_is_answered_200_and_the_refusal_logged(fc, ice, caplog):
    fc.monkeypatch.setenv("CALLBACK_AUTH_KEY", CALLBACK_AUTH_KEY)
    fc.monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "not-the-secret")
    fc.restart()
    fc.warm()
    with caplog.at_level(logging.ERROR):
        answer = fc.invoke(signed_http_event())
    summary = json.loads(answer["body"])
    assert answer["statusCode"] == 200 and summary["deferred"] == [JOB["http"]] and fc.pending() == {JOB["http"]}
    assert any("ICE refused the lookup for good" in r.getMessage() and "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
               in r.getMessage() for r in caplog.records)


@FILE_ONLY
def test_a_job_that_cannot_be_tracked_still_fails_the_invocation(fc, ice):
    """IceRefused is a SyncIncomplete: callers that catch the latter see the former."""
    assert issubclass(IceRefused, SyncIncomplete)
