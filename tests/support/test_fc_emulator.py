"""The local FC front end (tests/support/fc.py), on a tiny fake function, then on the real one.

The fake function (written into tmp_path) notes every initializer and handler call in a file and
does what the request tells it: echo its event, raise, sleep, exit, wait for a second request,
answer binary or plain text. Nothing here asserts a tight time: waits poll with generous timeouts.
"""
from __future__ import annotations

import http.client
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

import pytest
from ice_upload_sync.callback_auth import callback_urls, sign
from ice_upload_sync.cli import unwrap_failed_event
from ice_upload_sync.events import HttpCallback, parse_event

from tests.conftest import ACCESS_KEY_ID, ACCESS_KEY_SECRET
from tests.scenario import CALLBACK_AUTH_KEY, JOB, load_event
from tests.support.fc import FUNCTION_DIR, FcFrontEnd

REPO = Path(__file__).resolve().parents[2]

FAKE_INDEX = r'''
import base64, json, os, time

INITIALIZED = []


def _note(entry):
    with open(os.environ["FAKE_CALLS"], "a") as out:
        out.write(json.dumps(entry) + "\n")


def initialize(context):
    INITIALIZED.append(context.request_id)
    _note({"what": "initialize", "pid": os.getpid(), "request_id": context.request_id})


def _command(event):
    if "requestContext" not in event:  # timer or direct: the event is the command
        return event
    raw = base64.b64decode(event["body"]) if event["isBase64Encoded"] else event["body"].encode()
    try:
        command = json.loads(raw)
    except ValueError:
        return {}
    return command if isinstance(command, dict) else {}


def handler(event, context):
    data = json.loads(event)
    command = _command(data)
    _note({"what": "handler", "pid": os.getpid(), "request_id": context.request_id,
           "retry_count": context.retry_count, "event": data})
    do = command.get("do", "echo")
    if do == "sleep":
        time.sleep(command["s"])
    if do == "barrier":  # wait until n requests are inside handlers at once
        open(os.path.join(command["dir"], str(os.getpid())), "w").close()
        deadline = time.time() + 60
        while len(os.listdir(command["dir"])) < command["n"]:
            if time.time() > deadline:
                raise RuntimeError("the barrier timed out: requests were not run at the same time")
            time.sleep(0.02)
    if do == "raise" or (do == "raise_until" and context.retry_count < command["n"]):
        raise RuntimeError("told to raise")
    if do == "exit" and context.retry_count < command.get("n", 1):
        os._exit(3)
    if do == "binary":
        return {"statusCode": 201, "headers": {"Content-Type": "application/octet-stream", "X-Fake": "yes"},
                "isBase64Encoded": True, "body": base64.b64encode(b"\x00\xffbinary").decode()}
    if do == "status":
        return {"statusCode": command["code"], "headers": {"Content-Type": "text/plain"}, "body": "as told"}
    if do == "plain":
        return "just text"
    answer = {"pid": os.getpid(), "inits": len(INITIALIZED), "retry_count": context.retry_count,
              "greeting": os.environ.get("GREETING"), "event": data}
    if "requestContext" in data:
        return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(answer)}
    return answer
'''

Answer = Tuple[int, Dict[str, str], bytes]


@pytest.fixture
def fake(tmp_path) -> Path:
    code = tmp_path / "code"
    code.mkdir()
    (code / "index.py").write_text(FAKE_INDEX)
    return code


def front_end(code: Path, **options) -> FcFrontEnd:
    """The fake function behind the front end: stdlib only, so its instances run isolated."""
    env = {"FAKE_CALLS": str(code.parent / "calls.jsonl"), **options.pop("env", {})}
    return FcFrontEnd(code, isolated=True, env=env, **options)


def calls(code: Path, what: str = "handler") -> List[dict]:
    path = code.parent / "calls.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [entry for entry in map(json.loads, lines) if entry["what"] == what]


def send(url: str, body: bytes = b"", *, method: str = "POST", headers: Optional[Dict[str, str]] = None,
         timeout_s: float = 90) -> Answer:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout_s)
    try:
        connection.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=body,
                           headers=headers or {})
        response = connection.getresponse()
        return response.status, {name.lower(): value for name, value in response.getheaders()}, response.read()
    finally:
        connection.close()


def command(url: str, headers: Optional[Dict[str, str]] = None, **fields) -> Answer:
    return send(url, json.dumps(fields).encode(), headers={"Content-Type": "application/json", **(headers or {})})


ASYNC = {"X-Fc-Invocation-Type": "Async"}


def eventually(predicate: Callable[[], bool], what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not after {timeout_s} s: {what}")
        time.sleep(0.05)


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# ---------------------------------------------------------------- the HTTP trigger


def test_a_request_becomes_fc3s_http_event_which_the_function_reads_as_fcs(fake):
    with front_end(fake) as fc:
        status, headers, body = send(f"{fc.url}/ice/call%20back?a=1&a=2&b=",
                                     b'{"EventType": "UploadByURLComplete"}',
                                     headers={"Content-Type": "application/json", "x-ice-signature": "abc",
                                              "X-ICE-TIMESTAMP": "1764039521"})
    assert status == 200 and headers["content-type"] == "application/json"
    event = json.loads(body)["event"]
    assert set(event) == set(load_event("http-callback.json")) | {"queryParameters"}
    assert event["version"] == "v1" and event["rawPath"] == "/ice/call%20back"
    assert event["queryParameters"] == {"a": "1,2", "b": ""}
    assert event["headers"]["X-Ice-Signature"] == "abc" and event["headers"]["X-Ice-Timestamp"] == "1764039521"
    assert event["headers"]["Content-Type"] == "application/json"
    assert (event["body"], event["isBase64Encoded"]) == ('{"EventType": "UploadByURLComplete"}', False)
    context = event["requestContext"]
    assert context["domainName"] == f"127.0.0.1:{fc.port}"  # the Host the client used
    assert context["requestId"] == headers["x-fc-request-id"]
    assert context["http"] == {"method": "POST", "path": "/ice/call back", "protocol": "HTTP/1.1",
                               "sourceIp": "127.0.0.1", "userAgent": ""}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", context["time"]) and context["timeEpoch"].isdigit()
    parsed = parse_event(json.dumps(event).encode())  # the function's own reading of FC's event
    assert isinstance(parsed, HttpCallback) and not parsed.problems and parsed.method == "POST"
    # the URL a signature covers, derived from the event, is the URL the client posted to
    assert f"{fc.url}/ice/call%20back" in callback_urls(parsed, None)


@pytest.mark.parametrize("content_type, body, encoded", [
    ("application/octet-stream", b"\x00\xff\x10binary", True),
    ("image/png", b"\x89PNG\r\n", True),
    ("text/plain; charset=utf-8", "h\u00e9llo".encode(), False),
    ("application/json", b'{"a": 1}', False),
    ("application/cloudevents+json", b'{"specversion": "1.0"}', False),
    ("text/plain", b"\xff\xfe not utf-8", True),  # text that does not decode travels as base64
])
def test_a_binary_body_is_base64_and_a_text_body_is_not(fake, content_type, body, encoded):
    with front_end(fake) as fc:
        status, _, answer = send(f"{fc.url}/upload", body, headers={"Content-Type": content_type})
    event = json.loads(answer)["event"]
    assert status == 200 and event["isBase64Encoded"] is encoded
    parsed = parse_event(json.dumps(event).encode())
    assert isinstance(parsed, HttpCallback) and parsed.body_bytes() == body


def test_the_handlers_answer_becomes_the_http_answer(fake):
    with front_end(fake) as fc:
        binary = command(f"{fc.url}/b", do="binary")
        plain = command(f"{fc.url}/p", do="plain")
        told = command(f"{fc.url}/s", do="status", code=500)
        get = send(f"{fc.url}/g", method="GET")
    assert (binary[0], binary[1]["x-fake"], binary[1]["content-type"], binary[2]) == (
        201, "yes", "application/octet-stream", b"\x00\xffbinary")
    assert (plain[0], plain[2]) == (200, b"just text")
    assert (told[0], told[2]) == (500, b"as told")  # the function's own 500 is an answer, not an error
    assert get[0] == 200 and json.loads(get[2])["event"]["requestContext"]["http"]["method"] == "GET"
    assert all(answer[1]["x-fc-request-id"] for answer in (binary, plain, told, get))


def test_a_function_error_is_fcs_502_and_a_dead_instance_is_replaced(fake):
    with front_end(fake) as fc:
        raised = command(f"{fc.url}/r", do="raise")
        warm = command(f"{fc.url}/echo")
        exited = command(f"{fc.url}/x", do="exit")
        fresh = command(f"{fc.url}/echo")
        figures = fc.instances
        log = fc.invocations
    assert raised[0] == 502 and raised[1]["x-fc-error-type"] == "UnhandledInvocationError"
    error = json.loads(raised[2])
    assert (error["errorType"], error["errorMessage"]) == ("RuntimeError", "told to raise") and error["stackTrace"]
    assert warm[0] == 200 and log[1].cold is False  # an exception leaves the instance warm
    assert exited[0] == 502 and exited[1]["x-fc-error-type"] == "UnhandledInvocationError"
    assert "Process exited unexpectedly" in json.loads(exited[2])["errorMessage"]
    assert fresh[0] == 200 and log[3].cold is True and log[3].instance_id == 2
    assert [instance.state for instance in figures] == ["died", "idle"] and process_gone(figures[0].pid)
    assert [(record.status, record.error is None) for record in log] == [
        (None, False), (200, True), (None, False), (200, True)]


def test_a_sync_request_is_refused_with_429_when_every_instance_is_busy_and_an_async_one_waits(fake):
    with front_end(fake, max_instances=1) as fc:
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(command, f"{fc.url}/slow", do="sleep", s=3)
            eventually(lambda: [i.state for i in fc.instances] == ["busy"], "the only instance is busy")
            refused = command(f"{fc.url}/now")
            queued = command(f"{fc.url}/later", ASYNC)
            assert slow.result()[0] == 200
        later = fc.wait_for(queued[1]["x-fc-request-id"])
        assert fc.throttled == 1
    assert refused[0] == 429 and refused[1]["x-fc-error-type"] == "FcCommonError"
    assert queued[0] == 202 and later.status == 200 and later.instance_id == 1 and not later.cold


# ---------------------------------------------------------------- asynchronous invocations


def test_an_async_request_is_answered_202_at_once_and_run_later(fake):
    with front_end(fake) as fc:
        status, headers, body = command(f"{fc.url}/jobs", ASYNC, do="sleep", s=1)
        assert (status, body) == (202, b"") and fc.invocations == []  # answered before it ran
        done = fc.wait_for(headers["x-fc-request-id"])
    assert (done.kind, done.path, done.status, done.attempt, done.cold) == ("http-async", "/jobs", 200, 1, True)
    [run] = calls(fake)
    assert run["request_id"] == headers["x-fc-request-id"] == run["event"]["requestContext"]["requestId"]
    assert run["event"]["headers"]["X-Fc-Invocation-Type"] == "Async" and run["retry_count"] == 0


def test_a_failing_async_request_is_retried_then_written_to_the_failure_destination(fake, tmp_path):
    failed = tmp_path / "failed"
    with front_end(fake, max_async_retry_attempts=2, async_retry_backoff_s=0.05, failure_dir=failed) as fc:
        _, headers, _ = command(f"{fc.url}/jobs", ASYNC, do="raise")
        request_id = headers["x-fc-request-id"]
        last = fc.wait_for(request_id)
        attempts = [record for record in fc.invocations if record.request_id == request_id]
        destination = fc.failures
    assert [(record.attempt, record.error["errorType"]) for record in attempts] == [
        (1, "RuntimeError"), (2, "RuntimeError"), (3, "RuntimeError")]
    assert last == attempts[-1] and [run["retry_count"] for run in calls(fake)] == [0, 1, 2]
    [path] = failed.glob("*.json")
    message = json.loads(path.read_text())
    assert destination == [message]
    assert set(message) == {"timestamp", "requestContext", "requestPayload", "responseContext", "responsePayload"}
    assert message["requestContext"] == {
        "requestId": request_id, "functionArn": "acs:fc:cn-shanghai:1234567890123456:functions/ice-upload-sync",
        "condition": "UnhandledInvocationError", "approximateInvokeCount": 3}
    assert message["responseContext"] == {"statusCode": 200, "functionError": "UnhandledInvocationError"}
    assert json.loads(message["responsePayload"])["errorMessage"] == "told to raise"
    # what `ice-upload-sync replay FILE` runs: the very event the function was given
    event = unwrap_failed_event(path.read_bytes())
    assert event == calls(fake)[0]["event"] and event["rawPath"] == "/jobs"


@pytest.mark.parametrize("trouble", ["raise_until", "exit"])
def test_an_async_request_that_raises_or_loses_its_instance_is_run_again(fake, tmp_path, trouble):
    with front_end(fake, async_retry_backoff_s=0.05, failure_dir=tmp_path / "failed") as fc:
        request_id = fc.invoke_async({"do": trouble, "n": 1})
        last = fc.wait_for(request_id)
        attempts = [record for record in fc.invocations if record.request_id == request_id]
        states = [instance.state for instance in fc.instances]
    assert [record.error is None for record in attempts] == [False, True]
    assert (last.kind, last.attempt, last.status) == ("direct-async", 2, 200)
    assert fc.failures == [] and not (tmp_path / "failed").exists()
    assert states == (["idle"] if trouble == "raise_until" else ["died", "idle"])


def test_an_async_answer_with_status_500_is_a_success_and_not_retried(fake):
    with front_end(fake, async_retry_backoff_s=0.05) as fc:
        _, headers, _ = command(f"{fc.url}/jobs", ASYNC, do="status", code=500)
        done = fc.wait_for(headers["x-fc-request-id"])
        fc.wait_idle()
        assert (done.status, done.error, done.attempt) == (500, None, 1)
        assert len(fc.invocations) == 1 and fc.failures == []


def test_an_async_body_over_128_kb_is_refused(fake):
    with front_end(fake) as fc:
        status, headers, body = send(f"{fc.url}/big", b"x" * (128 * 1024 + 1),
                                     headers={**ASYNC, "Content-Type": "text/plain"})
        assert status == 400 and json.loads(body)["errorCode"] == "EntityTooLarge"
        assert fc.pending_async == 0 and fc.instances == []



def test_refused_async_requests_are_answered_503_and_never_run(fake):
    with front_end(fake) as fc:
        fc.refuse_async_next(1)
        status, _headers, body = command(f"{fc.url}/jobs", ASYNC, do="ok")
        assert status == 503 and json.loads(body)["errorCode"] == "ServiceUnavailable"
        assert fc.pending_async == 0 and fc.instances == []
        status, headers, _body = command(f"{fc.url}/jobs", ASYNC, do="ok")  # the next one is taken again
        assert status == 202 and fc.wait_for(headers["x-fc-request-id"]).status == 200

# ---------------------------------------------------------------- the instance pool


def test_the_initializer_runs_once_per_instance_and_warm_requests_reuse_it(fake):
    with front_end(fake) as fc:
        answers = [json.loads(command(f"{fc.url}/echo")[2]) for _ in range(3)]
        log = fc.invocations
        [instance] = fc.instances
    assert len({answer["pid"] for answer in answers}) == 1 and [answer["inits"] for answer in answers] == [1, 1, 1]
    assert len(calls(fake, "initialize")) == 1
    assert [record.cold for record in log] == [True, False, False]
    assert instance.requests == 3 and instance.cpu_s > 0 and all(record.wall_s > 0 for record in log)
    assert log[0].instance_cpu_s >= log[0].cpu_s  # the process's CPU includes the interpreter's start


def test_concurrent_requests_get_an_instance_each_with_the_same_environment(fake, tmp_path):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    with front_end(fake, env={"GREETING": "hello"}) as fc:
        fc.update_env(GREETING="hi")  # allowed until an instance starts
        with ThreadPoolExecutor(2) as pool:  # each waits inside the handler until both are: two instances
            answers = list(pool.map(lambda _: command(f"{fc.url}/b", do="barrier", dir=str(barrier), n=2), [1, 2]))
        again = json.loads(command(f"{fc.url}/echo")[2])
        with pytest.raises(RuntimeError):
            fc.update_env(GREETING="too late")
        figures = fc.instances
        log = fc.invocations
    assert [status for status, _, _ in answers] == [200, 200]
    pids = {json.loads(body)["pid"] for _, _, body in answers}
    assert len(pids) == 2 and {json.loads(body)["greeting"] for _, _, body in answers} == {"hi"}
    assert again["pid"] in pids and again["greeting"] == "hi"  # a third request reuses a warm one
    assert len(figures) == 2 and [record.cold for record in log] == [True, True, False]
    assert len(calls(fake, "initialize")) == 2


def test_an_idle_instance_is_reclaimed_and_the_next_request_is_cold(fake):
    with front_end(fake, idle_s=1) as fc:
        first = json.loads(command(f"{fc.url}/echo")[2])
        eventually(lambda: fc.instances[0].state == "reclaimed", "the idle instance is reclaimed")
        reclaimed = fc.instances[0]
        second = json.loads(command(f"{fc.url}/echo")[2])
        log = fc.invocations
    assert reclaimed.pid == first["pid"] and process_gone(first["pid"])
    assert reclaimed.ended_at - (log[0].started_at + log[0].wall_s) >= 0.9  # kept for idle_s at least
    assert second["pid"] != first["pid"] and second["inits"] == 1 and len(calls(fake, "initialize")) == 2
    assert [record.cold for record in log] == [True, True] and [r.instance_id for r in log] == [1, 2]


def test_stop_ends_busy_instances_and_every_thread(fake):
    fc = front_end(fake).start()
    fc.invoke_async({"do": "sleep", "s": 120})
    eventually(lambda: bool(calls(fake)), "the handler is running")
    pid = fc.instances[0].pid
    began = time.monotonic()
    fc.stop()
    assert time.monotonic() - began < 60  # it did not wait for the handler's 120 s
    assert process_gone(pid) and [instance.state for instance in fc.instances] == ["stopped"]
    assert not [thread.name for thread in threading.enumerate() if thread.name.startswith("fc-")]


# ---------------------------------------------------------------- timers and direct invocations


def test_a_timer_fires_now_or_on_a_schedule(fake):
    with front_end(fake) as fc:
        fired = fc.wait_for(fc.fire_timer("sweep"))
        schedule = fc.start_timer("check", every_s=0.2, payload='{"JobIds": ["a"]}')
        eventually(lambda: len(schedule.request_ids) >= 2, "the schedule fired twice")
        schedule.stop()
        fc.wait_idle()
        scheduled = [record for record in fc.invocations if record.request_id in schedule.request_ids]
    event = fired.value()["event"]
    assert fired.kind == "timer" and fired.status == 200 and set(event) == set(load_event("timer-sweep.json"))
    assert (event["triggerName"], event["payload"]) == ("sweep", "")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", event["triggerTime"])
    assert len(scheduled) == len(schedule.request_ids) >= 2
    assert {record.value()["event"]["triggerName"] for record in scheduled} == {"check"}
    assert {record.value()["event"]["payload"] for record in scheduled} == {'{"JobIds": ["a"]}'}


def test_a_direct_invocation_runs_any_event_synchronously(fake):
    with front_end(fake) as fc:
        done = fc.invoke({"JobIds": ["a", "b"]})
        failed = fc.invoke(b'{"do": "raise"}')
    assert (done.kind, done.status, done.value()["event"]) == ("direct", 200, {"JobIds": ["a", "b"]})
    assert failed.status is None and failed.error["errorType"] == "RuntimeError" and failed.result is None


INVOKE_PATH = "/2023-03-30/functions/ice-upload-sync/invocations"


def test_invoke_function_over_http_runs_the_body_as_a_direct_event(fake):
    with front_end(fake) as fc:
        done = send(f"{fc.url}{INVOKE_PATH}", b'{"JobIds": ["a"]}')
        failed = send(f"{fc.url}{INVOKE_PATH}", b'{"do": "raise"}')
        queued = send(f"{fc.url}{INVOKE_PATH}", b'{"do": "echo"}', headers=ASYNC)
        later = fc.wait_for(queued[1]["x-fc-request-id"])
        other = send(f"{fc.url}/2023-03-30/functions/another/invocations", b"{}")
        trigger = send(f"{fc.url}{INVOKE_PATH}", method="GET")  # only POST is InvokeFunction
        log = fc.invocations
    assert done[0] == 200 and "x-fc-error-type" not in done[1]
    assert json.loads(done[2])["event"] == {"JobIds": ["a"]}  # the body as it is: no HTTP-trigger event
    assert failed[0] == 200 and failed[1]["x-fc-error-type"] == "UnhandledInvocationError"
    assert json.loads(failed[2])["errorMessage"] == "told to raise"
    assert (queued[0], queued[2]) == (202, b"") and later.kind == "direct-async" and later.value()["event"] == {
        "do": "echo"}
    assert other[0] == 404 and json.loads(other[2])["errorCode"] == "FunctionNotFound"
    assert trigger[0] == 200 and json.loads(trigger[2])["event"]["rawPath"] == INVOKE_PATH
    assert [record.kind for record in log if record.kind != "direct-async"] == ["direct", "direct", "http"]


def test_fc_invoke_sends_an_event_file_as_s_invoke_does_and_exits_1_on_a_function_error(fake, tmp_path):
    script = str(REPO / "tests" / "support" / "fc_invoke.py")  # by its path, from another folder

    def invoke(url: str, event: dict) -> subprocess.CompletedProcess:
        event_file = tmp_path / "event.json"
        event_file.write_text(json.dumps(event))
        return subprocess.run([sys.executable, script, "--url", url, "--event-file", str(event_file)],
                              cwd=str(tmp_path), capture_output=True, text=True, timeout=120)

    with front_end(fake) as fc:
        done = invoke(fc.url, {"UploadJobs": [{"JobId": "j1"}]})
        failed = invoke(fc.url, {"do": "raise"})
        [first, second] = fc.invocations
    assert done.returncode == 0, done.stderr
    status_line, _, result = done.stdout.partition("\n")
    assert "HTTP 200" in status_line and json.loads(result)["event"] == {"UploadJobs": [{"JobId": "j1"}]}
    assert failed.returncode == 1 and "UnhandledInvocationError" in failed.stdout and "told to raise" in failed.stdout
    assert (first.kind, second.kind) == ("direct", "direct")


# ---------------------------------------------------------------- by hand


def test_main_serves_the_function_until_interrupted(fake):
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.fc", "--port", "0", "--code", str(fake), "--isolated",
         "--env", f"FAKE_CALLS={fake.parent / 'calls.jsonl'}", "--env", "GREETING={url}/hello"],
        cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "no banner within 60 s"
        banner = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", banner).group(0)
        status, _, body = command(f"{url}/echo")
        assert status == 200 and json.loads(body)["greeting"] == f"{url}/hello"
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert re.search(r"http\s+/echo\s+200\s+cold instance 1 attempt 1", output), output


# ---------------------------------------------------------------- the real function


@pytest.mark.parametrize("callback_url", ["configured", "derived"])
def test_the_real_function_answers_a_signed_cold_callback_200_and_its_handback_records_the_job(
        seeded, tmp_path, callback_url):
    """ICE's callback on a cold instance: 200 at once, the job handed back to the trigger asynchronously,
    the record written by that run; no timer. With CALLBACK_URL set, or derived from the event."""
    records = tmp_path / "records"
    env = {"ICE_ENDPOINT": seeded.endpoint, "ICE_REGION": "cn-shanghai", "RECORD_STORE": f"file://{records}",
           "ALIBABA_CLOUD_ACCESS_KEY_ID": ACCESS_KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ACCESS_KEY_SECRET,
           "CALLBACK_AUTH_KEY": CALLBACK_AUTH_KEY, "CALLBACK_HANDBACK": "on",
           # ICE's 3 s are the benchmark's business: here a busy machine must not make the 202 late
           "CALLBACK_DEADLINE_S": "5"}
    with FcFrontEnd(FUNCTION_DIR, env=env, failure_dir=tmp_path / "failed") as fc:
        url = f"{fc.url}/ice-callback"
        if callback_url == "configured":
            fc.update_env(CALLBACK_URL=url)
        stamp = str(int(time.time()))
        status, headers, body = send(url, load_event("http-callback.json")["body"].encode(), headers={
            "Content-Type": "application/json", "X-ICE-TIMESTAMP": stamp,
            "X-ICE-SIGNATURE": sign(url, stamp, CALLBACK_AUTH_KEY)})
        assert status == 200, body
        eventually(lambda: (records / "jobs" / f"{JOB['http']}.json").is_file(), "the job is recorded", 120)
        fc.wait_idle(timeout_s=120)
        log = fc.invocations
    record = json.loads((records / "jobs" / f"{JOB['http']}.json").read_text())
    assert record["state"] == "succeeded" and record["job_id"] == JOB["http"]
    # the asynchronous run meets a new instance, or the first one if it is idle again by then
    assert [(entry.kind, entry.status) for entry in log] == [("http", 200), ("http-async", 200)], log
    assert log[0].cold and log[1].path == "/ice-callback"
    assert log[1].request_id != headers["x-fc-request-id"] and fc.failures == []
    assert not (records / "pending" / JOB["http"]).exists() and len(seeded.calls) == 1
