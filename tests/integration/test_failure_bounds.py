"""Failure is bounded, and quiet where retrying adds nothing (issue 11, item 4).

- ICE calls are retried at most ``MAX_ATTEMPTS`` times per batch, as well as never past the deadline;
- a name that does not resolve (a misspelled region) or a refused connection fails at once;
- a job that could not be written but is still tracked is deferred, not raised for: FC re-running
  the whole invocation would add nothing the next sweep does not do;
- presigned upload URLs never show their query in a log line or an error; records keep them.

Real sockets, the official SDK, the ICE emulator: the exceptions are the SDK's own.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from typing import Iterator, List

import pytest
from ice_upload_sync import ice as ice_module
from ice_upload_sync.config import Settings
from ice_upload_sync.errors import BadRequest, SyncIncomplete
from ice_upload_sync.ice import MAX_ATTEMPTS, Credentials, IceGateway

from tests.scenario import load_event

SECRET_SIGNATURE = "c2VjcmV0LXNpZ25hdHVyZQ"
SECRET_TOKEN = "CAISsts-token-of-the-uploader"
PRESIGNED = ("https://uploads.oss-cn-shanghai.aliyuncs.com/in/clip.mp4?OSSAccessKeyId=STS.NUgYrLnoC37mZZCNnAbez"
             f"&Expires=1764040000&Signature={SECRET_SIGNATURE}%3D&security-token={SECRET_TOKEN}")
PRESIGNED_SHOWN = "https://uploads.oss-cn-shanghai.aliyuncs.com/in/clip.mp4?<redacted>"
UNRESOLVABLE_HOST = "ice.cn-shanghia.invalid"  # RFC 2606: .invalid never resolves, no network needed
file_store_only = pytest.mark.parametrize("fc", ["file"], indirect=True)  # about ICE, not the store


def refused_endpoint() -> str:
    """A loopback port nothing listens on: bound, then closed."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


class RawServer:
    """Accepts connections and either resets them at once or never answers; counts them."""

    def __init__(self, *, reset: bool) -> None:
        self.reset = reset
        self.accepted = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._held: List[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.accepted += 1
            if self.reset:
                conn.recv(64)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.close()  # linger 0: the client reads a reset
            else:
                self._held.append(conn)

    def close(self) -> None:
        self._sock.close()
        for conn in self._held:
            conn.close()


@pytest.fixture
def raw_server(request) -> Iterator[RawServer]:
    server = RawServer(reset=request.param == "reset")
    yield server
    server.close()


def gateway(endpoint: str) -> IceGateway:
    """The production gateway, backoff sleeps skipped: these tests count attempts, never time."""
    instance = IceGateway(Settings.from_env({"ICE_ENDPOINT": endpoint}), sleep=lambda seconds: None)
    instance.bind(Credentials("LTAI-test-key-id", "test-secret"))
    return instance


# ---------------------------------------------------------------- the gateway, against real sockets


def test_a_name_that_does_not_resolve_is_tried_once():
    # a slow resolver makes this slow, never wrong: the bound is generous, the assertion counts
    outcome = gateway(f"https://{UNRESOLVABLE_HOST}").query("JobIds", ("job0001",), deadline=time.monotonic() + 60)
    assert outcome.api_calls == 1 and outcome.error is not None
    assert outcome.error.code == "NameNotResolved" and not outcome.error.retryable
    assert UNRESOLVABLE_HOST in str(outcome.error) and "ICE_REGION" in str(outcome.error)


def test_a_refused_connection_is_tried_once():
    outcome = gateway(refused_endpoint()).query("JobIds", ("job0001",), deadline=time.monotonic() + 60)
    assert outcome.api_calls == 1 and outcome.error is not None
    assert outcome.error.code == "ConnectionRefused" and "refused" in str(outcome.error)


@pytest.mark.parametrize("raw_server", ["reset", "silent"], indirect=True)
def test_resets_and_timeouts_are_retried_up_to_the_bound(raw_server, monkeypatch):
    monkeypatch.setattr(ice_module, "READ_TIMEOUT_S", 0.2)  # a silent server times out quickly
    outcome = gateway(raw_server.endpoint).query("JobIds", ("job0001",), deadline=time.monotonic() + 60)
    assert outcome.api_calls == MAX_ATTEMPTS and raw_server.accepted == MAX_ATTEMPTS
    assert outcome.error is not None and outcome.error.code == "NetworkError" and outcome.error.retryable


# ---------------------------------------------------------------- the handler


@file_store_only
def test_ice_answering_500_is_retried_a_bounded_number_of_times_then_raises_for_an_untracked_job(ice, fc):
    ice.put_job("five0001", Status="Success")
    ice.server_error_next(1000, status=500)
    with pytest.raises(SyncIncomplete) as raised:
        fc.invoke({"JobIds": ["five0001"]}, fc.context(timeout=20))  # was: retried until the deadline
    assert len(ice.calls) == MAX_ATTEMPTS and raised.value.summary["api_calls"] == MAX_ATTEMPTS
    assert raised.value.summary["failed"] == ["five0001"]


@file_store_only
def test_ice_answering_500_defers_a_tracked_job_without_raising(ice, fc, caplog):
    ice.put_job("five0002", Status="UPLOADING")
    ice.server_error_next(1000, status=500)
    summary = fc.invoke({"UploadJobs": [{"JobId": "five0002"}]}, fc.context(timeout=20))
    assert len(ice.calls) == MAX_ATTEMPTS and summary["deferred"] == ["five0002"] and summary["failed"] == []
    assert fc.pending() == {"five0002"}  # the next sweep asks again
    assert any(r.levelno == logging.ERROR and "InternalError" in r.getMessage() for r in caplog.records)


@file_store_only
@pytest.mark.parametrize("endpoint, says", [
    (f"https://{UNRESOLVABLE_HOST}", "does not resolve"),
    (None, "refused the connection"),
])
def test_a_broken_endpoint_fails_in_one_attempt_not_at_the_deadline(fc, monkeypatch, endpoint, says):
    monkeypatch.setenv("ICE_ENDPOINT", endpoint or refused_endpoint())
    fc.restart()
    with pytest.raises(SyncIncomplete) as raised:
        fc.invoke({"JobIds": ["miss0001", "miss0002"]}, fc.context(timeout=60))
    assert raised.value.summary["api_calls"] == 1 and raised.value.summary["failed"] == ["miss0001", "miss0002"]


def test_a_sweep_with_a_permanently_failing_batch_defers_it_and_the_next_sweep_retries(ice, fc, monkeypatch, caplog):
    jobs = [f"perm{n:04d}" for n in range(12)]
    for job_id in jobs:
        ice.put_job(job_id, Status="UPLOADING")
    fc.invoke({"UploadJobs": [{"JobId": j} for j in jobs]})
    monkeypatch.setenv("ICE_CONCURRENCY", "1")  # batches in order: the first one meets the fault
    fc.restart()
    ice.fail_next(1, status=400, code="InvalidParameter", message="refused")  # not retryable
    summary = fc.invoke(load_event("timer-sweep.json"))  # was: SyncIncomplete, and FC re-ran it all thrice
    assert summary["deferred"] == jobs[:10] and summary["failed"] == [] and summary["unchanged"] == 2
    assert fc.pending() == set(jobs)
    assert any(r.levelno == logging.ERROR and "InvalidParameter" in r.getMessage() for r in caplog.records)
    ice.put_job(jobs[0], Status="Success", CompleteTime="2026-11-25 01:00:00")
    summary = fc.invoke(load_event("timer-sweep.json"))
    assert summary["deferred"] == [] and summary["written"] == 1 and fc.record(jobs[0])["state"] == "succeeded"


def test_a_tracked_job_whose_record_cannot_be_written_is_deferred_not_raised(ice, fc, caplog):
    for job_id in ("good0001", "stuck001"):
        ice.put_job(job_id, Status="UPLOADING")
    fc.invoke({"UploadJobs": [{"JobId": "good0001"}, {"JobId": "stuck001"}]})  # tracked and recorded
    if fc.store_kind == "file":
        (fc.view.root / "jobs" / "stuck001.json").unlink()  # a folder takes its place below
    fc.make_unwritable("stuck001")
    for job_id in ("good0001", "stuck001"):
        ice.update_job(job_id, Status="Success", CompleteTime="2026-11-25 01:00:00")
    summary = fc.invoke(load_event("timer-sweep.json"))  # was: SyncIncomplete, and FC re-ran it all thrice
    assert summary["deferred"] == ["stuck001"] and summary["failed"] == [] and summary["written"] == 1
    assert fc.record("good0001")["state"] == "succeeded" and fc.pending() == {"stuck001"}
    summary = fc.invoke({"JobIds": ["stuck001"]})  # a direct check of it: still tracked, still deferred
    assert summary["deferred"] == ["stuck001"] and summary["failed"] == []
    assert any(r.levelno == logging.ERROR and "still tracked" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- presigned URLs in logs and errors


@file_store_only
def test_logs_and_errors_never_show_a_presigned_urls_query_and_records_keep_it(ice, fc, monkeypatch, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    ice.put_job("sign0001", Status="UPLOADING", UploadURL=PRESIGNED)
    texts: List[str] = []

    # ICE answers: the record keeps the URL exactly as ICE returned it
    texts.append(json.dumps(fc.invoke({"JobIds": ["sign0001"]})))
    assert fc.record("sign0001")["upload_url"] == PRESIGNED

    # ICE refuses a lookup by URL and quotes it back; then retries on 503 are logged
    ice.fail_next(1, status=400, code="InvalidParameter", message=f"The parameter UploadURLs is invalid: {PRESIGNED}")
    with pytest.raises(SyncIncomplete) as refused:
        fc.invoke({"UploadURLs": [PRESIGNED]})
    texts.append(str(refused.value))
    assert refused.value.summary["failed"] == [PRESIGNED_SHOWN] and PRESIGNED_SHOWN in str(refused.value)
    ice.server_error_next(2)
    texts.append(json.dumps(fc.invoke({"UploadURLs": [PRESIGNED]})))

    # the SDK's own error text quotes the request it could not send, query included
    monkeypatch.setenv("ICE_ENDPOINT", refused_endpoint())
    fc.restart()
    with pytest.raises(SyncIncomplete) as unreachable:
        fc.invoke({"UploadURLs": [PRESIGNED]})
    texts.append(str(unreachable.value))

    # a URL where a job ID belongs is bad input, quoted in the error
    with pytest.raises(BadRequest) as bad:
        fc.invoke({"JobIds": [PRESIGNED]})
    texts.append(str(bad.value))
    assert "<redacted>" in str(bad.value)

    captured = capsys.readouterr()
    everything = "\n".join([caplog.text, captured.out, captured.err, *texts])
    assert "GetUrlUploadInfos" in caplog.text and "<redacted>" in caplog.text  # the failures were logged...
    for secret in (SECRET_SIGNATURE, SECRET_TOKEN, "Signature=", "security-token=", "OSSAccessKeyId="):
        assert secret not in everything  # ...never with the query
