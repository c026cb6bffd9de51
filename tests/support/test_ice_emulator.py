"""The ICE emulator, driven by the unmodified official SDK (alibabacloud_ice20201109 6.20.2, tea-openapi 0.4.6).

What the SDK raises (found by driving it against the emulator; source: tea_openapi client.do_request):

* An HTTP 4xx answer raises ``alibabacloud_tea_openapi.exceptions.ClientException``; a 5xx answer raises
  ``alibabacloud_tea_openapi.exceptions.ServerException``. Both derive from ``AlibabaCloudException`` ->
  ``darabonba.exceptions.ResponseException`` -> ``DaraException`` -> ``Tea.exceptions.TeaException``.
  A 4xx/5xx that carries an ``x-acs-retry-after`` header raises ``ThrottlingException`` (same base) instead;
  ICE's ``Throttling.User`` is an ordinary 400 ``ClientException``.
  Attributes: ``code`` (the service's Code, e.g. "Throttling.User"), ``status_code`` (int HTTP status),
  ``request_id`` (str), ``data`` (the parsed error body dict plus an injected ``"statusCode"`` key),
  ``message`` (formatted "code: <status>, <Message> request id: <id>"), ``statusCode`` (camelCase copy).
* The SDK catches every exception inside its retry loop and, once retries are exhausted (by default there
  are none: ``Config.retry_options`` is None), raises ``darabonba.exceptions.UnretryableException(context)``,
  whose constructor *re-raises the inner exception when it is a ResponseException*. So HTTP errors arrive
  as ClientException/ServerException themselves, never wrapped.
* Transport failures (connection refused, read timeout, proxy errors) are NOT unwrapped: they arrive as
  ``darabonba.exceptions.UnretryableException`` (a ``Tea.exceptions.UnretryableException``, not a
  ResponseException) with ``inner_exception`` = ``darabonba.exceptions.RetryError`` (``.message`` holds the
  requests/urllib3 text); ``code`` is None.

Quirks: the SDK sends through ``HTTP_PROXY``/``http_proxy`` from the environment even for 127.0.0.1, and
neither ``Config(no_proxy=...)`` nor ``NO_PROXY`` bypasses it, so these tests unset the proxy variables.
Sessions (connection pools) are cached process-wide per host:port, which is why ``stop()`` closes
keep-alive connections. The UploadMediaByURL method is spelled ``upload_media_by_url`` /
``upload_media_by_urlwith_options``.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import quote, urlencode

import pytest
from alibabacloud_ice20201109 import models as ice_models
from alibabacloud_ice20201109.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException
from alibabacloud_tea_openapi.utils import Utils
from alibabacloud_tea_openapi.utils_models import Config
from darabonba.exceptions import UnretryableException
from ice_upload_sync import callback_auth, events
from ice_upload_sync.errors import Unauthorized

from tests.scenario import JOB, seed_jobs
from tests.support.ice import (
    ICE_CALLBACK_TIMINGS,
    ApiCall,
    CallbackSetting,
    CallbackTimings,
    IceEmulator,
    build,
    ice_signature,
)
from tests.support.loopback import KeepAliveHandler, LoopbackServer, TrackingHTTPServer

ROOT = Path(__file__).resolve().parents[2]
AK, SECRET = "LTAI-emulator-test", "emulator-secret-never-shown"
STS_AK, STS_SECRET, STS_TOKEN = "STS.emulator-test", "sts-secret-never-shown", "sts-token-value"
ALL_FIELDS = {
    "UploadURL": "https://media.example.com/videos/done.mp4", "Status": "Normal",
    "MediaId": "5014ca70f08171ecbf940764a0fd6001", "CreationTime": "2026-11-25T02:00:00Z",
    "CompleteTime": "2026-11-25 02:05:00", "ErrorCode": "200", "ErrorMessage": "Success",
    "UserData": '{"MessageCallback":{"CallbackURL":"http://example.aliyundoc.com"}}', "FileSize": "64610",
}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def make_emulator(**kwargs) -> IceEmulator:
    emulator = IceEmulator(**kwargs)
    emulator.add_access_key(AK, SECRET)
    emulator.add_access_key(STS_AK, STS_SECRET, security_token=STS_TOKEN)
    return emulator


@pytest.fixture
def ice():
    with make_emulator() as emulator:
        yield emulator


def client_for(ice: IceEmulator, ak: str = AK, secret: str = SECRET, token: Optional[str] = None) -> Client:
    return Client(Config(access_key_id=ak, access_key_secret=secret, security_token=token,
                         endpoint=f"127.0.0.1:{ice.port}", protocol="http", region_id="cn-shanghai",
                         connect_timeout=1000, read_timeout=3000))


def infos(client: Client, job_ids: Optional[str] = None, upload_urls: Optional[str] = None):
    request = ice_models.GetUrlUploadInfosRequest(job_ids=job_ids, upload_urls=upload_urls)
    return client.get_url_upload_infos(request).body


def raw_call(ice: IceEmulator, query: Dict[str, str], *, secret: str = SECRET, ak: str = AK,
             headers: Optional[Dict[str, str]] = None, body: bytes = b"",
             tamper=None) -> Tuple[int, dict, Dict[str, str]]:
    """A request signed like the SDK signs it (Utils.get_authorization), sent with http.client."""
    request = SimpleNamespace(method="POST", pathname="/", query=dict(query), headers={
        "host": f"127.0.0.1:{ice.port}", "x-acs-version": "2020-11-09", "x-acs-action": "GetUrlUploadInfos",
        "x-acs-date": Utils.get_timestamp(), "x-acs-signature-nonce": Utils.get_nonce(),
        "accept": "application/json", "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
        **(headers or {})})
    request.headers["Authorization"] = Utils.get_authorization(
        request, "ACS3-HMAC-SHA256", request.headers["x-acs-content-sha256"], ak, secret)
    return send(ice, request, body, tamper)


def send(ice: IceEmulator, request, body: bytes = b"", tamper=None) -> Tuple[int, dict, Dict[str, str]]:
    url = "/?" + urlencode(request.query) if request.query else "/"
    headers = dict(request.headers)
    if tamper:
        url, headers = tamper(url, headers)
    connection = http.client.HTTPConnection("127.0.0.1", ice.port, timeout=3)
    try:
        connection.request("POST", url, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read()), {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


# ---------------------------------------------------------------- GetUrlUploadInfos answers


def test_seeded_jobs_are_answered_with_all_fields_in_request_order(ice):
    ice.put_job("job-a", **ALL_FIELDS)
    ice.put_job("job-b", Status="PENDING")
    body = infos(client_for(ice), job_ids=" job-b , job-a,,")
    assert [info.to_map() for info in body.urlupload_info_list] == [
        {"JobId": "job-b", "Status": "PENDING"}, {"JobId": "job-a", **ALL_FIELDS}]
    assert body.non_exists == [] and len(body.request_id) == 36
    assert ice.calls[-1].job_ids == ("job-b", "job-a")


def test_put_replaces_update_merges_and_job_is_a_copy(ice):
    ice.put_job("j", Status="UPLOADING", MediaId="m1")
    ice.update_job("j", Status="Success", FileSize="5")
    assert ice.job("j") == {"Status": "Success", "MediaId": "m1", "FileSize": "5"}
    ice.put_job("j", Status="PENDING")
    copy = ice.job("j")
    copy["Status"] = "changed"
    assert ice.job("j") == {"Status": "PENDING"}
    with pytest.raises(KeyError):
        ice.update_job("nope", Status="x")
    with pytest.raises(ValueError):
        ice.put_job("j", Bogus="x")


def test_unknown_ids_are_listed_in_non_exists(ice):
    ice.put_job("known", Status="Success")
    body = infos(client_for(ice), job_ids="ghost1,known,ghost2")
    assert body.non_exists == ["ghost1", "ghost2"]
    assert [info.job_id for info in body.urlupload_info_list] == ["known"]


def test_non_exists_in_the_reference_examples_stringified_style():
    with make_emulator(nonexists_style="stringified") as ice:
        ice.put_job("known", Status="Success")
        body = infos(client_for(ice), job_ids="ghost1,known,ghost2")
        assert body.non_exists == ["['ghost1', 'ghost2']"]
        assert infos(client_for(ice), job_ids="known").non_exists == []


def test_job_ids_take_precedence_over_upload_urls(ice):
    ice.put_job("by-id", Status="Success", UploadURL="https://x.example/a.mp4")
    ice.put_job("by-url", Status="Success", UploadURL="https://x.example/b.mp4")
    body = infos(client_for(ice), job_ids="by-id", upload_urls=quote("https://x.example/b.mp4", safe=""))
    assert [info.job_id for info in body.urlupload_info_list] == ["by-id"] and body.non_exists == []
    assert ice.calls[-1].upload_urls == ("https://x.example/b.mp4",)  # recorded as sent, yet ignored


def test_urls_with_commas_spaces_unicode_and_percent_encoded_by_the_caller_match(ice):
    odd = "https://media.example.com/videos/a,b c é 100%.mp4?x=1&y=2"
    pre_encoded = "https://media.example.com/videos/a,b%20c%C3%A9.mp4"
    ice.put_job("odd-1", Status="Success", UploadURL=odd)
    ice.put_job("enc-1", Status="UPLOADING", UploadURL=pre_encoded)
    ice.put_job("odd-2", Status="PENDING", UploadURL=odd)  # the same URL uploaded twice
    missing = "https://media.example.com/ghost, one.mp4"
    sent = ",".join(quote(url, safe="") for url in (odd, pre_encoded, missing))
    body = infos(client_for(ice), upload_urls=sent)
    assert [info.job_id for info in body.urlupload_info_list] == ["odd-1", "odd-2", "enc-1"]
    assert body.urlupload_info_list[0].upload_url == odd
    assert body.non_exists == [missing]
    assert ice.calls[-1].upload_urls == (odd, pre_encoded, missing) and ice.calls[-1].job_ids == ()


def test_more_than_ten_ids_or_none_at_all_are_refused(ice):
    client = client_for(ice)
    assert infos(client, job_ids=",".join(f"j{i}" for i in range(10))).non_exists  # ten is fine
    with pytest.raises(ClientException) as raised:
        infos(client, job_ids=",".join(f"j{i}" for i in range(11)))
    assert (raised.value.code, raised.value.status_code) == ("InvalidParameter", 400)
    with pytest.raises(ClientException) as raised:
        infos(client, upload_urls=",".join(f"https%3A%2F%2Fx%2F{i}" for i in range(11)))
    assert raised.value.code == "InvalidParameter"
    with pytest.raises(ClientException) as raised:
        infos(client, job_ids=" , ")
    assert (raised.value.code, raised.value.status_code) == ("MissingParameter", 400)
    assert "JobIds or UploadURLs" in raised.value.message


# ---------------------------------------------------------------- authentication


def test_a_wrong_secret_is_signature_does_not_match_and_the_secret_is_never_echoed(ice):
    with pytest.raises(ClientException) as raised:
        infos(client_for(ice, secret="wrong-secret"), job_ids="a")
    error = raised.value
    assert (error.code, error.status_code) == ("SignatureDoesNotMatch", 400)
    assert "ACS3-HMAC-SHA256" in error.message  # the server's string to sign, like the real service
    assert "wrong-secret" not in str(error.data) and SECRET not in str(error.data)
    assert ice.calls[-1] == ApiCall("GetUrlUploadInfos", AK, None, ("a",), (), 400, "SignatureDoesNotMatch",
                                    error.request_id)


def test_an_unknown_access_key_is_not_found(ice):
    with pytest.raises(ClientException) as raised:
        infos(client_for(ice, ak="LTAI-nobody"), job_ids="a")
    assert (raised.value.code, raised.value.status_code) == ("InvalidAccessKeyId.NotFound", 404)


def test_sts_keys_need_their_own_security_token(ice):
    ice.put_job("a", Status="Success")
    with pytest.raises(ClientException) as raised:
        infos(client_for(ice, STS_AK, STS_SECRET), job_ids="a")
    assert (raised.value.code, raised.value.status_code) == ("MissingSecurityToken", 400)
    with pytest.raises(ClientException) as raised:
        infos(client_for(ice, STS_AK, STS_SECRET, token="stolen-token"), job_ids="a")
    assert raised.value.code == "InvalidSecurityToken.Mismatch"
    assert infos(client_for(ice, STS_AK, STS_SECRET, token=STS_TOKEN), job_ids="a").urlupload_info_list[0].job_id == "a"
    last = ice.calls[-1]
    assert (last.access_key_id, last.security_token, last.status, last.error_code) == (STS_AK, STS_TOKEN, 200, None)


def test_a_replayed_nonce_is_refused(ice):
    ice.put_job("a", Status="Success")
    request = SimpleNamespace(method="POST", pathname="/", query={"JobIds": "a"}, headers={
        "host": f"127.0.0.1:{ice.port}", "x-acs-version": "2020-11-09", "x-acs-action": "GetUrlUploadInfos",
        "x-acs-date": Utils.get_timestamp(), "x-acs-signature-nonce": Utils.get_nonce(),
        "x-acs-content-sha256": hashlib.sha256(b"").hexdigest()})
    request.headers["Authorization"] = Utils.get_authorization(
        request, "ACS3-HMAC-SHA256", request.headers["x-acs-content-sha256"], AK, SECRET)
    status, body, headers = send(ice, request)
    assert status == 200 and headers["x-acs-request-id"] == body["RequestId"]
    status, body, headers = send(ice, request)
    assert (status, body["Code"]) == (400, "SignatureNonceUsed") and headers["x-acs-request-id"] == body["RequestId"]
    assert set(body) == {"RequestId", "HostId", "Code", "Message", "Recommend"}


def test_raw_signed_requests_with_awkward_values_verify(ice):
    ice.put_job("a", Status="Success", UploadURL="https://x/ä ö,+%~*'.mp4")
    status, body, _ = raw_call(ice, {"UploadURLs": quote("https://x/ä ö,+%~*'.mp4", safe=""), "Extra": "",
                                     "Weird": "a b+c/d~e*f'g%h"})
    assert status == 200, body
    assert [info["JobId"] for info in body["URLUploadInfoList"]] == ["a"]


@pytest.mark.parametrize("case, code", [
    ("tampered-query", "SignatureDoesNotMatch"),
    ("old-date", "InvalidTimeStamp.Expired"),
    ("bad-date", "InvalidTimeStamp.Format"),
    ("no-authorization", "IncompleteSignature"),
    ("malformed-authorization", "IncompleteSignature"),
    ("body-mismatch", "IncompleteSignature"),
    ("unsigned-acs-header", "IncompleteSignature"),
    ("accesskey-header-mismatch", "InvalidSecurityToken.MismatchWithAccessKey"),
])
def test_tampered_requests_are_refused(ice, case, code):
    def tamper(url, headers):
        if case == "tampered-query":
            url = url.replace("JobIds=a", "JobIds=b")
        elif case == "old-date":
            headers["x-acs-date"] = "2020-01-01T00:00:00Z"
        elif case == "bad-date":
            headers["x-acs-date"] = "yesterday"
        elif case == "no-authorization":
            del headers["Authorization"]
        elif case == "malformed-authorization":
            headers["Authorization"] = f"ACS3-HMAC-SHA256 Credential={AK}"
        elif case == "body-mismatch":
            headers["x-acs-content-sha256"] = hashlib.sha256(b"x").hexdigest()
        elif case == "unsigned-acs-header":
            headers["x-acs-extra"] = "1"
        elif case == "accesskey-header-mismatch":
            headers["x-acs-accesskey-id"] = "someone-else"
        return url, headers

    if case in ("old-date", "bad-date"):  # re-sign so only the timestamp check can fail
        status, body, _ = raw_call(ice, {"JobIds": "a"}, headers={"x-acs-date": "2020-01-01T00:00:00Z"
                                                                  if case == "old-date" else "yesterday"})
    else:
        status, body, _ = raw_call(ice, {"JobIds": "a"}, tamper=tamper)
    assert (status, body["Code"]) == (400, code), body


def test_unknown_actions_and_versions_are_refused(ice):
    status, body, _ = raw_call(ice, {"JobIds": "a"}, headers={"x-acs-action": "DeleteEverything"})
    assert (status, body["Code"]) == (404, "InvalidAction.NotFound")
    status, body, _ = raw_call(ice, {"JobIds": "a"}, headers={"x-acs-version": "2017-03-21"})
    assert (status, body["Code"]) == (400, "InvalidVersion")


# ---------------------------------------------------------------- faults, latency, records


def test_throttling_surfaces_as_a_client_exception_then_the_next_call_succeeds(ice):
    ice.put_job("a", Status="Success")
    client = client_for(ice)
    ice.throttle_next(1)
    with pytest.raises(ClientException) as raised:
        infos(client, job_ids="a")
    error = raised.value
    assert (error.code, error.status_code) == ("Throttling.User", 400)
    assert error.data["Code"] == "Throttling.User" and error.request_id == error.data["RequestId"]
    assert "Request was denied due to user flow control." in error.message
    assert infos(client, job_ids="a").urlupload_info_list[0].job_id == "a"
    assert [(c.status, c.error_code) for c in ice.calls] == [(400, "Throttling.User"), (200, None)]


def test_server_errors_surface_as_server_exceptions_in_queue_order(ice):
    client = client_for(ice)
    ice.server_error_next(1)
    ice.server_error_next(1, status=500)
    ice.fail_next(1, status=403, code="Forbidden.RAM", message="not authorized")
    with pytest.raises(ServerException) as raised:
        infos(client, job_ids="a")
    assert (raised.value.code, raised.value.status_code) == ("ServiceUnavailable", 503)
    with pytest.raises(ServerException) as raised:
        infos(client, job_ids="a")
    assert (raised.value.code, raised.value.status_code) == ("InternalError", 500)
    with pytest.raises(ClientException) as raised:
        infos(client, job_ids="a")
    assert (raised.value.code, raised.value.status_code) == ("Forbidden.RAM", 403)
    assert infos(client, job_ids="a").non_exists == ["a"]


def test_a_fault_does_not_fire_for_a_request_that_fails_authentication(ice):
    ice.throttle_next(1)
    with pytest.raises(ClientException) as raised:
        infos(client_for(ice, secret="wrong"), job_ids="a")
    assert raised.value.code == "SignatureDoesNotMatch"
    with pytest.raises(ClientException) as raised:
        infos(client_for(ice), job_ids="a")
    assert raised.value.code == "Throttling.User"


def test_latency_delays_every_answer(ice):
    client = client_for(ice)
    infos(client, job_ids="warm-up")
    ice.latency_s = 0.25
    started = time.monotonic()
    infos(client, job_ids="a")
    ice.throttle_next(1)
    with pytest.raises(ClientException):
        infos(client, job_ids="a")
    assert time.monotonic() - started >= 0.5


def test_concurrent_calls_are_all_recorded(ice):
    client = client_for(ice)
    ice.latency_s = 0.5  # serial would take 4 s; the margin keeps a loaded 2-core machine green
    threads = [threading.Thread(target=infos, args=(client,), kwargs={"job_ids": f"j{i}"}) for i in range(8)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert time.monotonic() - started < 2.0  # answered in parallel
    assert sorted(call.job_ids[0] for call in ice.calls) == [f"j{i}" for i in range(8)]
    ice.reset_calls()
    assert ice.calls == []


def test_a_stopped_emulator_is_a_transport_error(ice):
    client = client_for(ice)
    infos(client, job_ids="a")  # leaves a pooled keep-alive connection behind
    ice.stop()
    ice.stop()  # idempotent
    with pytest.raises(UnretryableException) as raised:
        infos(client, job_ids="a")
    assert not isinstance(raised.value, ClientException) and type(raised.value.inner_exception).__name__ == "RetryError"


# ---------------------------------------------------------------- UploadMediaByURL and the command line


def test_upload_media_by_url_creates_jobs_that_get_url_upload_infos_answers(ice):
    client = client_for(ice)
    urls = ["https://media.example.com/new one.mp4", "https://media.example.com/a,b.mp4"]
    request = ice_models.UploadMediaByURLRequest(upload_urls=",".join(quote(u, safe="") for u in urls),
                                                 user_data='{"Extend":{"localId":"7"}}')
    jobs = client.upload_media_by_url(request).body.upload_jobs
    assert [job.source_url for job in jobs] == urls
    assert all(len(job.job_id) == 32 and len(job.media_id) == 32 for job in jobs)
    body = infos(client, job_ids=",".join(job.job_id for job in jobs))
    first = body.urlupload_info_list[0]
    assert (first.status, first.upload_url, first.media_id, first.user_data) == (
        "PENDING", urls[0], jobs[0].media_id, '{"Extend":{"localId":"7"}}')
    assert time.strptime(first.creation_time, "%Y-%m-%dT%H:%M:%SZ")
    by_url = infos(client, upload_urls=quote(urls[1], safe=""))
    assert [info.job_id for info in by_url.urlupload_info_list] == [jobs[1].job_id]


def test_the_command_line_seeds_jobs_and_keys(tmp_path):
    seed = tmp_path / "jobs.json"
    seed.write_text(json.dumps([{"JobId": "seeded-1", "Status": "Success", "FileSize": 12}]))
    emulator = build(["--port", "0", "--seed", str(seed), "--latency-ms", "5",
                      "--access-key-id", "cli-ak", "--access-key-secret", "cli-secret"])
    with emulator:
        assert emulator.latency_s == 0.005 and emulator.job("seeded-1") == {"Status": "Success", "FileSize": "12"}
        body = infos(client_for(emulator, "cli-ak", "cli-secret"), job_ids="seeded-1")
        assert body.urlupload_info_list[0].file_size == "12"


# ---------------------------------------------------------------- callbacks: ICE calling us


CALLBACK_KEY = "Emulator2026Key"  # what ICE accepts as an AuthKey: letters and digits, at most 32
FAST = CallbackTimings(window_s=0.5, retry_interval_s=0.25)  # ICE's rule, shrunk; the count stays 3
SLOW_MARGIN_S = 1.5  # a busy 2-core machine: intervals are checked loosely, counts and order exactly


@dataclass(frozen=True)
class Received:
    path: str
    headers: Dict[str, str]  # as sent (names in the sender's case)
    body: bytes
    at: float  # time.time() when the request arrived


class CallbackReceiver(LoopbackServer):
    """The user's side of ICE's HTTP callback, scripted: answer ``i`` is ``answers[i]`` as
    (status, delay_s), the last one repeating. Keeps every request it received."""

    thread_name = "callback-receiver"
    poll_interval_s = 0.01

    def __init__(self, *answers: Tuple[int, float]) -> None:
        super().__init__()
        self.answers = answers or ((200, 0.0),)
        self.received: List[Received] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def _make_server(self) -> TrackingHTTPServer:
        self._stopping.clear()
        server = TrackingHTTPServer((self.host, self._port), _ReceiverHandler)
        server.receiver = self  # type: ignore[attr-defined]
        return server

    def _stopping_server(self, server: Any) -> None:
        self._stopping.set()

    def _stopped_server(self, server: Any) -> None:
        server.close_connections()

    @property
    def url(self) -> str:
        return f"{self.endpoint}/ice-callback"

    def receive(self, path: str, headers: Dict[str, str], body: bytes) -> int:
        with self._lock:
            self.received.append(Received(path, headers, body, time.time()))
            status, delay = self.answers[min(len(self.received), len(self.answers)) - 1]
        if delay:
            self._stopping.wait(delay)
        return status


class _ReceiverHandler(KeepAliveHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status = self.server.receiver.receive(self.path, dict(self.headers), body)  # type: ignore[attr-defined]
        try:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
        except OSError:  # ICE gave up waiting
            self.close_connection = True


def fc_http_event(received: Received, receiver: CallbackReceiver) -> dict:
    """The FC3 HTTP-trigger event the function would get for this request (contract section 2)."""
    return {"version": "v1", "rawPath": received.path, "headers": received.headers, "queryParameters": {},
            "body": received.body.decode("utf-8"), "isBase64Encoded": False,
            "requestContext": {"domainName": f"127.0.0.1:{receiver.port}",
                               "http": {"method": "POST", "path": received.path}}}


@pytest.fixture
def receiver(request):
    """A receiver answering 200 at once; parametrize indirectly with a list of (status, delay_s)."""
    with CallbackReceiver(*getattr(request, "param", ())) as server:
        yield server


def callback_emulator(receiver: CallbackReceiver, timings: CallbackTimings = FAST, **kwargs) -> IceEmulator:
    emulator = make_emulator(callback_url=receiver.url, callback_auth_key=CALLBACK_KEY, callback_timings=timings,
                             **kwargs)
    emulator.put_job("job-1", Status="UPLOADING", UploadURL="https://media.example.com/videos/launch.mp4",
                     CreationTime="2026-11-25T02:00:00Z", MediaId="f1e2d3c4b5a6978867564534231201a5")
    return emulator


def gaps(attempts: Sequence[Any]) -> List[float]:
    """Seconds from the end of each attempt to the start of the next (ICE's interval)."""
    return [later.sent_at - (earlier.sent_at + earlier.duration_s) for earlier, later in zip(attempts, attempts[1:])]


def test_the_signature_is_ices_md5_with_the_contracts_worked_example():
    # contract section 7: the documentation's own example hash is wrong; this one is right
    assert ice_signature("https://www.example.com/your/callback", "1519375990", "Test123") == \
        "c587b80d2d0ede300e8967937da7219b"
    assert ice_signature("u", "1", "k") == hashlib.md5(b"u|1|k").hexdigest()


def test_ices_timings_are_the_defaults_and_the_setting_is_kept_in_one_place():
    emulator = IceEmulator()
    assert emulator.callback_timings == ICE_CALLBACK_TIMINGS == CallbackTimings(3.0, 1.0, 3)
    assert emulator.callback_setting is None
    emulator.set_callback("https://example.com/cb", "Key1")
    assert emulator.callback_setting == CallbackSetting("https://example.com/cb", "Key1", ("UploadByURLComplete",))
    emulator.set_callback("http://127.0.0.1:1/other")  # replaces it, as ICE's one setting per region
    assert emulator.callback_setting == CallbackSetting("http://127.0.0.1:1/other", None)
    emulator.set_callback(None)
    assert emulator.callback_setting is None
    for bad in ("ftp://example.com/cb", "not a url", "https:///no-host"):
        with pytest.raises(ValueError):
            emulator.set_callback(bad)
    with pytest.raises(ValueError):
        CallbackTimings(window_s=0)
    with pytest.raises(ValueError):
        IceEmulator(callback_auth_key="orphan")


def test_a_finished_job_is_delivered_once_signed_so_the_functions_own_verifier_accepts_it(receiver):
    with callback_emulator(receiver) as ice:
        started = time.monotonic()
        ice.finish_job("job-1", file_size=64610)
        assert time.monotonic() - started < 0.5  # the caller does not wait for the delivery
        delivery = ice.wait_for_callback("job-1")

        job = ice.job("job-1")
        assert (job["Status"], job["FileSize"], job["ErrorCode"], job["ErrorMessage"]) == (
            "Normal", "64610", "200", "Success")
        assert time.strptime(job["CompleteTime"], "%Y-%m-%d %H:%M:%S")  # ICE's plain UTC format
        answer = infos(client_for(ice), job_ids="job-1").urlupload_info_list[0]
        assert (answer.status, answer.complete_time) == ("Normal", job["CompleteTime"])

    assert delivery.outcome == "delivered" and len(receiver.received) == 1
    [attempt] = delivery.attempts
    assert (attempt.job_id, attempt.attempt, attempt.status, attempt.error, attempt.delivered) == (
        "job-1", 1, 200, None, True)
    assert attempt.sent_at <= attempt.answered_at and ice.callback_attempts == [attempt]

    received = receiver.received[0]
    assert received.path == "/ice-callback" and received.body == delivery.body
    headers = {name.lower(): value for name, value in received.headers.items()}
    assert headers["content-type"] == "application/json"
    assert headers["x-ice-timestamp"] == attempt.timestamp
    assert abs(int(attempt.timestamp) - time.time()) < 60
    # computed independently of both the emulator and the function
    assert headers["x-ice-signature"] == hashlib.md5(
        f"{receiver.url}|{attempt.timestamp}|{CALLBACK_KEY}".encode()).hexdigest()

    message = json.loads(received.body)
    assert message == {
        "EventType": "UploadByURLComplete", "UserId": 1234567890123456, "EventTime": message["EventTime"],
        "MessageBody": {"Status": "Success", "SourceURL": "https://media.example.com/videos/launch.mp4",
                        "MediaId": "f1e2d3c4b5a6978867564534231201a5", "JobId": "job-1"}}
    assert time.strptime(message["EventTime"], "%Y-%m-%dT%H:%M:%SZ")

    # what the deployed function does with it: authenticate (configured URL, then the derived one), parse
    request = events.parse_event(json.dumps(fc_http_event(received, receiver)).encode())
    for configured_url in (receiver.url, None):
        callback_auth.verify(request, keys=[CALLBACK_KEY], configured_url=configured_url, now=time.time(),
                             max_skew_s=300)
    with pytest.raises(Unauthorized):
        callback_auth.verify(request, keys=["SomeOtherKey"], configured_url=receiver.url, now=time.time(),
                             max_skew_s=300)
    parsed = events.parse_http_body(request)
    assert parsed.job_ids == ("job-1",) and parsed.hints[0].status == "Success"
    assert parsed.hints[0].media_id == "f1e2d3c4b5a6978867564534231201a5"


def test_a_failed_job_is_called_back_with_fail_and_its_error(receiver):
    with callback_emulator(receiver) as ice:
        ice.put_job("job-2", Status="DOWNLOADING", UploadURL="https://media.example.com/videos/missing.mp4",
                    UserData='{"Extend":{"localId":"7"}}')
        ice.finish_job("job-2", "UPLOAD_FAIL", error_message="download video failed by the url, please check it")
        delivery = ice.wait_for_callback("job-2")
        answer = infos(client_for(ice), job_ids="job-2").urlupload_info_list[0]
    assert (answer.status, answer.error_code, answer.error_message) == (
        "UPLOAD_FAIL", "URLInvalidError", "download video failed by the url, please check it")
    assert delivery.outcome == "delivered"
    assert delivery.message["MessageBody"] == {
        "Status": "Fail", "SourceURL": "https://media.example.com/videos/missing.mp4", "JobId": "job-2",
        "ErrorCode": "URLInvalidError", "ErrorMessage": "download video failed by the url, please check it",
        "UserData": '{"Extend":{"localId":"7"}}'}


def test_a_receiver_answering_500_gets_three_attempts_a_second_apart_then_the_callback_is_dropped():
    with CallbackReceiver((500, 0.0)) as receiver, callback_emulator(receiver, ICE_CALLBACK_TIMINGS) as ice:
        ice.finish_job("job-1")
        delivery = ice.wait_for_callback("job-1", timeout_s=10)
    assert delivery.outcome == "dropped" and len(receiver.received) == 3
    assert [(a.attempt, a.status, a.error) for a in delivery.attempts] == [
        (1, 500, "HTTP 500"), (2, 500, "HTTP 500"), (3, 500, "HTTP 500")]
    assert ice.callback_attempts == list(delivery.attempts)
    assert all(0.9 <= gap <= 1.0 + SLOW_MARGIN_S for gap in gaps(delivery.attempts)), gaps(delivery.attempts)
    assert len({r.body for r in receiver.received}) == 1  # the same message each time


@pytest.mark.parametrize("status", [204, 302, 404, 503])
def test_any_answer_but_200_is_retried(status):
    with CallbackReceiver((status, 0.0)) as receiver, callback_emulator(receiver) as ice:
        ice.finish_job("job-1")
        delivery = ice.wait_for_callback("job-1")
    assert delivery.outcome == "dropped"
    assert [(a.attempt, a.status) for a in delivery.attempts] == [(1, status), (2, status), (3, status)]


def test_a_receiver_slower_than_the_window_is_retried_then_dropped():
    with CallbackReceiver((200, 2.0)) as receiver, callback_emulator(receiver) as ice:
        ice.finish_job("job-1")
        delivery = ice.wait_for_callback("job-1")
    assert delivery.outcome == "dropped" and len(receiver.received) == 3
    assert [(a.attempt, a.status, a.answered_at, a.error) for a in delivery.attempts] == [
        (n, None, None, "no answer within 0.5 s") for n in (1, 2, 3)]
    assert all(FAST.window_s - 0.05 <= a.duration_s <= FAST.window_s + SLOW_MARGIN_S for a in delivery.attempts)
    assert all(0.2 <= gap <= FAST.retry_interval_s + SLOW_MARGIN_S for gap in gaps(delivery.attempts))
    # ICE's view of the whole delivery: about window + interval per retry
    first, last = delivery.attempts[0], delivery.attempts[-1]
    assert last.sent_at - first.sent_at >= 2 * (FAST.window_s + FAST.retry_interval_s) - 0.1


def test_a_200_on_the_second_attempt_stops_the_retries():
    with CallbackReceiver((500, 0.0), (200, 0.0)) as receiver, callback_emulator(receiver) as ice:
        ice.finish_job("job-1")
        delivery = ice.wait_for_callback("job-1")
        time.sleep(FAST.retry_interval_s * 2)  # time enough for a third attempt, were one coming
        assert ice.callback_attempts == list(delivery.attempts)
    assert delivery.outcome == "delivered" and len(receiver.received) == 2
    assert [(a.attempt, a.status, a.delivered) for a in delivery.attempts] == [(1, 500, False), (2, 200, True)]


def test_a_200_slower_than_the_window_does_not_count():
    with CallbackReceiver((200, 0.8), (200, 0.0)) as receiver, callback_emulator(receiver) as ice:
        ice.finish_job("job-1")
        delivery = ice.wait_for_callback("job-1")
    assert [(a.attempt, a.delivered) for a in delivery.attempts] == [(1, False), (2, True)]
    assert len(receiver.received) == 2  # the first was received (and answered late): ICE sends it again


def test_a_refused_connection_is_retried_and_dropped():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with make_emulator(callback_url=f"http://127.0.0.1:{port}/ice-callback", callback_auth_key=CALLBACK_KEY,
                       callback_timings=FAST) as ice:
        ice.put_job("job-1", Status="UPLOADING")
        ice.finish_job("job-1")
        delivery = ice.wait_for_callback("job-1")
    assert delivery.outcome == "dropped"
    assert [(a.attempt, a.status, a.answered_at) for a in delivery.attempts] == [(1, None, None), (2, None, None),
                                                                                  (3, None, None)]
    assert all(a.error.startswith("ConnectionRefusedError") for a in delivery.attempts)
    assert all(0.2 <= gap <= FAST.retry_interval_s + SLOW_MARGIN_S for gap in gaps(delivery.attempts))


def test_scheduled_finishes_are_delivered_after_their_delays_in_order(receiver):
    with callback_emulator(receiver) as ice:
        ice.put_job("job-2", Status="PENDING", UploadURL="https://media.example.com/videos/b.mp4")
        scheduled_at = time.time()
        ice.finish_job_in("job-2", 0.6, "UPLOAD_FAIL")
        ice.finish_job_in("job-1", 0.3)
        assert ice.callback_deliveries == [] and ice.job("job-1")["Status"] == "UPLOADING"
        everything = ice.wait_for_callbacks(timeout_s=10)
        second = ice.wait_for_callback("job-2")
        first = ice.wait_for_callback("job-1")
    assert everything == [first, second]
    assert (first.outcome, second.outcome) == ("delivered", "delivered")
    assert [r.body for r in receiver.received] == [first.body, second.body]  # job-1 was due first
    assert first.attempts[0].sent_at - scheduled_at >= 0.3 - 0.02
    assert second.attempts[0].sent_at - scheduled_at >= 0.6 - 0.02
    assert second.attempts[0].sent_at - scheduled_at <= 0.6 + SLOW_MARGIN_S
    assert (first.message["MessageBody"]["Status"], second.message["MessageBody"]["Status"]) == ("Success", "Fail")
    assert ice.job("job-2")["Status"] == "UPLOAD_FAIL"


def test_without_a_subscribed_setting_a_finish_only_updates_the_job(receiver):
    with make_emulator(callback_timings=FAST) as ice:
        ice.put_job("job-1", Status="UPLOADING")
        ice.finish_job("job-1")
        assert ice.job("job-1")["Status"] == "Normal" and ice.callback_deliveries == []
        with pytest.raises(LookupError):
            ice.wait_for_callback("job-1", timeout_s=0.1)
        ice.set_callback(receiver.url, CALLBACK_KEY, event_types=["ProduceMediaComplete"])
        ice.finish_job("job-1")
        assert ice.callback_deliveries == []
        with pytest.raises(KeyError):
            ice.finish_job("ghost")
        with pytest.raises(KeyError):
            ice.finish_job_in("ghost", 0.1)
    assert receiver.received == []


def test_with_the_auth_switch_off_callbacks_carry_no_signature(receiver):
    with make_emulator(callback_url=receiver.url, callback_timings=FAST) as ice:
        ice.put_job("job-1", Status="UPLOADING")
        ice.finish_job("job-1")
        delivery = ice.wait_for_callback("job-1")
        ice.reset_callbacks()
        assert ice.callback_deliveries == [] and ice.callback_attempts == []
        ice.finish_job("job-1")
        assert ice.wait_for_callback("job-1").delivery_id == delivery.delivery_id + 1  # ids are never reused
    assert delivery.outcome == "delivered" and delivery.attempts[0].timestamp is None
    assert not {name.lower() for name in receiver.received[0].headers} & {"x-ice-timestamp", "x-ice-signature"}


def test_stop_drops_the_schedule_and_ends_pending_deliveries_at_once():
    slow = CallbackTimings(window_s=5.0, retry_interval_s=5.0)
    with CallbackReceiver((200, 5.0)) as receiver, callback_emulator(receiver, slow) as ice:
        ice.put_job("job-2", Status="PENDING")
        ice.finish_job("job-1")  # its first attempt hangs on the slow receiver
        ice.finish_job_in("job-2", 5.0)
        deadline = time.monotonic() + 5
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        ice.stop()
        assert time.monotonic() - started < 2.0  # the in-flight attempt was cut off, not waited for
        [delivery] = ice.callback_deliveries
        assert delivery.outcome == "stopped" and len(delivery.attempts) == 1
        with pytest.raises(LookupError):
            ice.wait_for_callback("job-2", timeout_s=0.1)
        assert ice.job("job-2")["Status"] == "PENDING"
        with pytest.raises(RuntimeError):
            ice.finish_job_in("job-2", 0.1)
        ice.start()  # a restarted emulator calls back again
        receiver.answers = ((200, 0.0),)
        ice.finish_job_in("job-2", 0.0)
        assert ice.wait_for_callback("job-2").outcome == "delivered"
    assert len(receiver.received) == 2


def test_the_command_line_sets_callbacks_and_uploads_finish_by_themselves(receiver):
    emulator = build(["--port", "0", "--access-key-id", "cli-ak", "--access-key-secret", "cli-secret",
                      "--callback-url", receiver.url, "--callback-key", CALLBACK_KEY, "--finish-after", "0.2",
                      "--callback-window", "0.5", "--callback-retry-interval", "0.25"])
    assert emulator.callback_setting == CallbackSetting(receiver.url, CALLBACK_KEY)
    assert emulator.callback_timings == FAST and emulator.auto_finish_s == 0.2
    with emulator:
        request = ice_models.UploadMediaByURLRequest(upload_urls=quote("https://media.example.com/new.mp4", safe=""))
        [job] = client_for(emulator, "cli-ak", "cli-secret").upload_media_by_url(request).body.upload_jobs
        assert emulator.job(job.job_id)["Status"] == "PENDING"
        delivery = emulator.wait_for_callback(job.job_id)
        assert emulator.job(job.job_id)["Status"] == "Normal"
    assert delivery.outcome == "delivered"
    assert delivery.message["MessageBody"] == {"Status": "Success", "SourceURL": "https://media.example.com/new.mp4",
                                               "MediaId": job.media_id, "JobId": job.job_id}
    with pytest.raises(SystemExit):
        build(["--callback-key", "no-url"])


# ---------------------------------------------------------------- GetEventCallback / SetEventCallback


def get_callback(client: Client):
    return client.get_event_callback().body


def set_callback(client: Client, **fields: str):
    return client.set_event_callback(ice_models.SetEventCallbackRequest(**fields)).body


def test_set_event_callback_replaces_the_one_setting_that_get_reads_and_deliveries_use(ice, receiver):
    client = client_for(ice)
    assert get_callback(client).callback_type is None  # nothing set: ICE answers its RequestId alone
    answer = set_callback(client, callback_type="HTTP", callback_url=receiver.url,
                          event_type_list="ProduceMediaComplete,UploadByURLComplete", auth_switch="on",
                          auth_key=CALLBACK_KEY)
    assert answer.success is True and answer.request_id
    body = get_callback(client)
    assert (body.callback_type, body.callback_url, body.event_type_list, body.auth_switch, body.auth_key) == (
        "HTTP", receiver.url, "ProduceMediaComplete,UploadByURLComplete", "on", CALLBACK_KEY)
    assert ice.callback_setting == CallbackSetting(receiver.url, CALLBACK_KEY,
                                                   ("ProduceMediaComplete", "UploadByURLComplete"))
    assert CALLBACK_KEY not in repr(ice.callback_setting)
    ice.callback_timings = FAST
    ice.put_job("job-1", Status="UPLOADING")
    ice.finish_job("job-1")
    delivery = ice.wait_for_callback("job-1")
    assert delivery.outcome == "delivered" and delivery.attempts[0].timestamp is not None  # signed
    # a second SetEventCallback replaces the whole setting: the key it does not send is gone
    set_callback(client, callback_type="HTTP", callback_url=receiver.url, event_type_list="ProduceMediaComplete",
                 auth_switch="off")
    body = get_callback(client)
    assert (body.event_type_list, body.auth_switch, body.auth_key) == ("ProduceMediaComplete", "off", None)
    ice.finish_job("job-1")
    assert len(ice.callback_deliveries) == 1  # UploadByURLComplete is no longer subscribed
    assert [call.action for call in ice.calls] == ["GetEventCallback", "SetEventCallback", "GetEventCallback",
                                                   "SetEventCallback", "GetEventCallback"]


def test_an_mns_setting_is_read_back_without_auth_fields_and_delivers_nothing(ice):
    client = client_for(ice)
    set_callback(client, callback_type="MNS", callback_queue_name="ice-callback-uploads",
                 event_type_list="UploadByURLComplete")
    body = get_callback(client)
    assert (body.callback_type, body.callback_queue_name, body.callback_url, body.auth_switch) == (
        "MNS", "ice-callback-uploads", None, None)
    ice.put_job("job-1", Status="UPLOADING")
    ice.finish_job("job-1")
    assert ice.callback_deliveries == []
    ice.set_callback(None, queue_name="ice-callback-other", event_types=["ProduceMediaComplete"])
    assert get_callback(client).callback_queue_name == "ice-callback-other"


@pytest.mark.parametrize("fields, code, parameter", [
    ({"callback_type": "HTTP", "callback_url": "https://example.com/cb", "event_type_list": "UploadByURLComplete",
      "auth_switch": "on", "auth_key": "a" * 10 + "B" * 10 + "1" * 13}, "InvalidParameter", "AuthKey"),  # 33
    ({"callback_type": "HTTP", "callback_url": "https://example.com/cb", "event_type_list": "UploadByURLComplete",
      "auth_switch": "on", "auth_key": "alllowercase123"}, "InvalidParameter", "AuthKey"),
    ({"callback_type": "HTTP", "callback_url": "https://example.com/cb", "event_type_list": "UploadByURLComplete",
      "auth_switch": "on", "auth_key": "NoDigitsHere"}, "InvalidParameter", "AuthKey"),
    ({"callback_type": "HTTP", "callback_url": "https://example.com/cb", "event_type_list": "UploadByURLComplete",
      "auth_switch": "on", "auth_key": "Has-Hyphen-1"}, "InvalidParameter", "AuthKey"),
    ({"callback_type": "HTTP", "callback_url": "https://example.com/cb", "event_type_list": "UploadByURLComplete",
      "auth_switch": "on"}, "MissingParameter", "AuthKey"),
    ({"callback_type": "HTTP", "callback_url": "https://example.com/cb", "event_type_list": "UploadByURLComplete",
      "auth_switch": "maybe"}, "InvalidParameter", "AuthSwitch"),
    ({"callback_type": "HTTP", "event_type_list": "UploadByURLComplete"}, "MissingParameter", "CallbackURL"),
    ({"callback_type": "HTTP", "callback_url": "ftp://example.com/cb", "event_type_list": "UploadByURLComplete"},
     "InvalidParameter", "CallbackURL"),
    ({"callback_type": "HTTP", "callback_url": "https://example.com/" + "x" * 240,
      "event_type_list": "UploadByURLComplete"}, "InvalidParameter", "CallbackURL"),  # 260 bytes
    ({"callback_type": "HTTP", "callback_url": "https://example.com/cb", "event_type_list": "UploadComplete"},
     "InvalidParameter", "EventTypeList"),
    ({"callback_type": "HTTP", "callback_url": "https://example.com/cb"}, "MissingParameter", "EventTypeList"),
    ({"callback_type": "MNS", "callback_queue_name": "uploads", "event_type_list": "UploadByURLComplete"},
     "InvalidParameter", "CallbackQueueName"),
    ({"callback_type": "MNS", "callback_queue_name": "ice-callback-", "event_type_list": "UploadByURLComplete"},
     "InvalidParameter", "CallbackQueueName"),
    ({"callback_type": "MNS", "event_type_list": "UploadByURLComplete"}, "MissingParameter", "CallbackQueueName"),
    ({"callback_type": "SMS", "callback_url": "https://example.com/cb", "event_type_list": "UploadByURLComplete"},
     "InvalidParameter", "CallbackType"),
    ({"event_type_list": "UploadByURLComplete"}, "MissingParameter", "CallbackType"),
])
def test_set_event_callback_refuses_what_ice_refuses_and_keeps_the_setting(ice, fields, code, parameter):
    ice.set_callback("https://example.com/kept", CALLBACK_KEY, event_types=["ProduceMediaComplete"])
    before = ice.callback_setting
    with pytest.raises(ClientException) as refused:
        set_callback(client_for(ice), **fields)
    assert (refused.value.status_code, refused.value.code) == (400, code)
    assert parameter in refused.value.data["Message"]
    if fields.get("auth_key"):
        assert fields["auth_key"] not in json.dumps(refused.value.data)  # the key is never echoed
    assert ice.callback_setting == before


def test_keys_ice_accepts_and_the_defaults_chosen_where_ice_does_not_say(ice):
    client = client_for(ice)
    for key in ("TestKey001", "Ab1", "A" * 30 + "b1"):  # the reference's example key; the shortest; 32
        set_callback(client, callback_type="HTTP", callback_url="https://example.com/cb",
                     event_type_list="UploadByURLComplete", auth_switch="on", auth_key=key)
        assert get_callback(client).auth_key == key
    # no CallbackType: it follows from the URL; no AuthSwitch: on with a key
    set_callback(client, callback_url="https://example.com/cb", event_type_list="UploadByURLComplete",
                 auth_key="TestKey001")
    body = get_callback(client)
    assert (body.callback_type, body.auth_switch) == ("HTTP", "on") and ice.callback_setting.signed
    # the switch off keeps the key it was sent, unused
    set_callback(client, callback_type="HTTP", callback_url="https://example.com/cb",
                 event_type_list="UploadByURLComplete", auth_switch="off", auth_key="TestKey001")
    assert get_callback(client).auth_key == "TestKey001" and not ice.callback_setting.signed


# ---------------------------------------------------------------- the command line: make emulator


def start_emulator(*argv: str) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if "proxy" not in key.lower()}
    return subprocess.Popen([sys.executable, "-m", "tests.support.ice", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_make_emulator_starts_with_the_sample_jobs_and_prints_the_environment_to_use():
    process = start_emulator("--sample-jobs", "--port", "0")
    try:
        lines = []
        while not lines or lines[-1] != "Ctrl-C stops it.":
            line = process.stdout.readline()
            assert line, f"the emulator ended early: {process.stderr.read()}"
            lines.append(line.rstrip("\n"))
        assert f"{len(seed_jobs())} jobs" in lines[0] and "access keys: local-ak" in lines[0]
        exported = dict(line.strip()[len("export "):].split("=", 1) for line in lines
                        if line.strip().startswith("export "))
        assert set(exported) == {"ICE_ENDPOINT", "ICE_REGION", "ALIBABA_CLOUD_ACCESS_KEY_ID",
                                 "ALIBABA_CLOUD_ACCESS_KEY_SECRET"}
        assert exported["ICE_ENDPOINT"] in lines[0]  # the first line names the endpoint (scripts read it)
        # those variables reach it through the SDK, and it answers the jobs make local seeds
        port = int(exported["ICE_ENDPOINT"].rsplit(":", 1)[1])
        client = Client(Config(access_key_id=exported["ALIBABA_CLOUD_ACCESS_KEY_ID"],
                               access_key_secret=exported["ALIBABA_CLOUD_ACCESS_KEY_SECRET"],
                               endpoint=f"127.0.0.1:{port}", protocol="http", region_id=exported["ICE_REGION"]))
        body = infos(client, job_ids=JOB["succeeded"])
        assert body.urlupload_info_list[0].media_id == "5014ca70f08171ecbf940764a0fd6001"
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_a_port_in_use_is_one_clear_line_and_exit_code_1():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start_emulator("--sample-jobs", "--port", str(port))
        out, err = process.communicate(timeout=30)
    assert process.returncode == 1 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"127.0.0.1:{port}" in err and "already in use" in err and "PORT=" in err


def test_make_emulator_passes_port_and_args():
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # --no-print-directory: under `make test` this make is nested and would add "Leaving directory"
    result = subprocess.run(["make", "--no-print-directory", "-n", "emulator", "PORT=9000", "ARGS=--latency-ms 5",
                             f"STAMP={__file__}"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].endswith("-m tests.support.ice --sample-jobs --port 9000 --latency-ms 5")
