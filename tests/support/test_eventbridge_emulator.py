"""The EventBridge emulator, driven by the unmodified official SDK (alibabacloud_eventbridge20200401 8.7.0,
tea-openapi 0.4.6).

What the SDK does with each kind of answer (found by driving it against the emulator; source:
tea_openapi ``Client.do_request``; ``RuntimeOptions(autoretry=False)`` and no ``retry_options``, so one try):

* HTTP 4xx -> raises ``alibabacloud_tea_openapi.exceptions.ClientException``; HTTP 5xx -> ``ServerException``;
  either with an ``x-acs-retry-after`` header -> ``ThrottlingException`` (not a ClientException; its
  ``retry_after`` is the header's milliseconds). All derive from ``AlibabaCloudException`` and carry
  ``status_code``, ``code``, ``request_id`` and ``data`` (the error body plus ``"statusCode"``).
* HTTP 200 is returned as a ``PutEventsResponse`` whatever its body says: a ``"Success": false`` body
  (``reject_next``, an unknown bus, a refused event list) and failed entries (``fail_entries_next``) are
  only visible in ``response.body``.

The SDK sends through ``HTTP_PROXY`` even for 127.0.0.1, so these tests unset the proxy variables.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import threading
import time
from types import SimpleNamespace
from typing import Dict, List, Optional, Tuple

import pytest
from alibabacloud_eventbridge20200401 import models as eb_models
from alibabacloud_eventbridge20200401.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException, ThrottlingException
from alibabacloud_tea_openapi.utils import Utils
from alibabacloud_tea_openapi.utils_models import Config
from darabonba.runtime import RuntimeOptions

from tests.conftest import (
    ACCESS_KEY_ID,
    ACCESS_KEY_SECRET,
    EVENTBRIDGE_BUS,
    STS_KEY_ID,
    STS_SECRET,
    STS_TOKEN,
)
from tests.support import acs3, ice
from tests.support.eventbridge import EventBridgeCall, EventBridgeEmulator, build

AK, SECRET = ACCESS_KEY_ID, ACCESS_KEY_SECRET
STS_AK = STS_KEY_ID
BUS = EVENTBRIDGE_BUS


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def eb(eventbridge):
    return eventbridge


def client_for(eb: EventBridgeEmulator, ak: str = AK, secret: str = SECRET, token: Optional[str] = None) -> Client:
    return Client(Config(access_key_id=ak, access_key_secret=secret, security_token=token,
                         endpoint=f"127.0.0.1:{eb.port}", protocol="http", region_id="cn-shanghai",
                         connect_timeout=1000, read_timeout=3000))


def event(event_id: str = "5a2c8f4e-0001", **fields) -> eb_models.PutEventsRequestEventList:
    values = dict(source="ice-upload-sync/cn-shanghai", type="ice.upload.Success", subject="jobs/j-1",
                  time="2026-08-04T10:00:00Z", data_content_type="application/json", spec_version="1.0",
                  data={"a": "é", "emoji": "\U0001f3ac"})
    values.update(fields)
    return eb_models.PutEventsRequestEventList(id=event_id, **values)


def put(client: Client, *events: eb_models.PutEventsRequestEventList, bus: Optional[str] = BUS):
    request = eb_models.PutEventsRequest(event_bus_name=bus, event_list=list(events or [event()]))
    return client.put_events_with_options(request, RuntimeOptions(autoretry=False))


def signed_request(eb: EventBridgeEmulator, body: bytes, **headers: str) -> SimpleNamespace:
    """A PutEvents request signed the way the SDK signs it (``Utils.get_authorization``)."""
    request = SimpleNamespace(method="POST", pathname="/", query={}, headers={
        "host": f"127.0.0.1:{eb.port}", "x-acs-version": "2020-04-01", "x-acs-action": "PutEvents",
        "x-acs-date": Utils.get_timestamp(), "x-acs-signature-nonce": Utils.get_nonce(),
        "accept": "application/json", "content-type": "application/x-www-form-urlencoded",
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(), **headers})
    request.headers["Authorization"] = Utils.get_authorization(
        request, "ACS3-HMAC-SHA256", request.headers["x-acs-content-sha256"], AK, SECRET)
    return request


def form_body(events: List[dict], bus: str = BUS) -> bytes:
    """The form body the SDK sends (its EventList is compact JSON, non-ASCII kept)."""
    event_list = json.dumps(events, ensure_ascii=False, separators=(",", ":"))
    return Utils.to_form({"EventBusName": bus, "EventList": event_list}).encode("utf-8")


def send(eb: EventBridgeEmulator, headers: Dict[str, str], body: bytes) -> Tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", eb.port, timeout=3)
    try:
        connection.request("POST", "/", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


RAW_EVENT = {"Id": "raw-1", "Source": "s", "Type": "t", "Data": {"n": 1}}


# ---------------------------------------------------------------- accepted events


def test_an_accepted_event_is_answered_and_recorded_exactly_as_sent(eb):
    response = put(client_for(eb), event("e-1"), event("e-2", subject=None, data="plain text"))
    body = response.body
    assert response.status_code == 200
    assert (body.code, body.success, body.message, body.data.failed_entry_count) == ("200", True, "success", 0)
    assert [entry.event_id for entry in body.data.entry_list] == ["e-1", "e-2"]
    assert all(len(entry.trace_id) == 32 and entry.error_code is None for entry in body.data.entry_list)
    assert body.data.entry_list[0].trace_id != body.data.entry_list[1].trace_id
    assert eb.events(BUS) == eb.events() == [
        {"Id": "e-1", "Source": "ice-upload-sync/cn-shanghai", "Type": "ice.upload.Success", "Subject": "jobs/j-1",
         "Time": "2026-08-04T10:00:00Z", "DataContentType": "application/json", "SpecVersion": "1.0",
         "Data": {"a": "é", "emoji": "\U0001f3ac"}},
        {"Id": "e-2", "Source": "ice-upload-sync/cn-shanghai", "Type": "ice.upload.Success",
         "Time": "2026-08-04T10:00:00Z", "DataContentType": "application/json", "SpecVersion": "1.0",
         "Data": "plain text"}]
    assert eb.calls() == [EventBridgeCall("PutEvents", AK, None, BUS, ("e-1", "e-2"), 200, None, body.request_id)]


def test_events_are_kept_per_bus_and_are_copies(eb):
    eb.create_bus("other")
    client = client_for(eb)
    put(client, event("on-bus"))
    put(client, event("on-other"), bus="other")
    assert [e["Id"] for e in eb.events(BUS)] == ["on-bus"]
    assert [e["Id"] for e in eb.events("other")] == ["on-other"]
    assert [e["Id"] for e in eb.events()] == ["on-bus", "on-other"]
    eb.events()[0]["Data"]["a"] = "changed"
    assert eb.events(BUS)[0]["Data"]["a"] == "é"
    assert eb.buses() == [BUS, "other"]


def test_reset_forgets_events_and_calls_but_not_buses_or_keys(eb):
    client = client_for(eb)
    put(client)
    eb.reset()
    assert eb.events() == [] and eb.calls() == []
    assert put(client).body.success is True and len(eb.events()) == 1


# ---------------------------------------------------------------- authentication


def test_a_wrong_secret_is_signature_does_not_match_and_nothing_is_stored(eb):
    with pytest.raises(ClientException) as raised:
        put(client_for(eb, secret="wrong-secret"), event("e-1"))
    error = raised.value
    assert (error.code, error.status_code) == ("SignatureDoesNotMatch", 403)
    assert "ACS3-HMAC-SHA256" in error.message  # the server's string to sign, for debugging
    assert "wrong-secret" not in str(error.data) and SECRET not in str(error.data)
    assert error.data["Success"] is False and error.request_id == error.data["RequestId"]
    assert eb.events() == []
    assert eb.calls() == [EventBridgeCall("PutEvents", AK, None, BUS, ("e-1",), 403, "SignatureDoesNotMatch",
                                          error.request_id)]


def test_an_unknown_access_key_is_refused(eb):
    with pytest.raises(ClientException) as raised:
        put(client_for(eb, ak="LTAI-nobody"))
    assert (raised.value.code, raised.value.status_code) == ("InvalidAccessKeyId", 403)


def test_sts_keys_need_their_own_security_token(eb):
    with pytest.raises(ClientException) as raised:
        put(client_for(eb, STS_AK, STS_SECRET))
    assert (raised.value.code, raised.value.status_code) == ("MissingSecurityToken", 400)
    with pytest.raises(ClientException) as raised:
        put(client_for(eb, STS_AK, STS_SECRET, token="stolen-token"))
    assert (raised.value.code, raised.value.status_code) == ("SecurityTokenInvalid", 403)
    with pytest.raises(ClientException) as raised:
        put(client_for(eb, AK, SECRET, token=STS_TOKEN))  # a token on a long-term key
    assert raised.value.code == "InvalidSecurityToken.MismatchWithAccessKey"
    assert eb.events() == []
    assert put(client_for(eb, STS_AK, STS_SECRET, token=STS_TOKEN)).body.success is True
    last = eb.calls()[-1]
    assert (last.access_key_id, last.security_token, last.status, last.error_code) == (STS_AK, STS_TOKEN, 200, None)
    assert len(eb.events()) == 1


def test_a_body_changed_after_signing_is_refused(eb):
    genuine = form_body([dict(RAW_EVENT, Data={"amount": 1})])
    forged = form_body([dict(RAW_EVENT, Data={"amount": 9})])
    request = signed_request(eb, genuine)
    assert len(forged) == len(genuine) and forged != genuine

    status, answer = send(eb, request.headers, forged)  # the signed hash no longer matches the body
    assert (status, answer["Code"]) == (400, "IncompleteSignature"), answer
    rehashed = dict(request.headers, **{"x-acs-content-sha256": hashlib.sha256(forged).hexdigest()})
    status, answer = send(eb, rehashed, forged)  # the hash matches, the signature over it does not
    assert (status, answer["Code"]) == (403, "SignatureDoesNotMatch"), answer
    assert eb.events() == []

    status, answer = send(eb, request.headers, genuine)  # the request as signed is fine
    assert (status, answer["Success"]) == (200, True), answer
    assert eb.events() == [dict(RAW_EVENT, Data={"amount": 1})]
    status, answer = send(eb, request.headers, genuine)  # but only once
    assert (status, answer["Code"]) == (400, "SignatureNonceUsed")
    assert [(call.status, call.error_code) for call in eb.calls()] == [
        (400, "IncompleteSignature"), (403, "SignatureDoesNotMatch"), (200, None), (400, "SignatureNonceUsed")]


def test_other_actions_and_versions_are_refused(eb):
    body = form_body([RAW_EVENT])
    status, answer = send(eb, signed_request(eb, body, **{"x-acs-action": "DeleteEventBus"}).headers, body)
    assert (status, answer["Code"]) == (404, "InvalidAction.NotFound")
    status, answer = send(eb, signed_request(eb, body, **{"x-acs-version": "2019-01-01"}).headers, body)
    assert (status, answer["Code"]) == (400, "InvalidVersion")
    assert set(answer) == {"RequestId", "HostId", "Code", "Message", "Recommend", "Success"}


def test_the_verifier_is_shared_with_the_ice_emulator():
    assert isinstance(ice.IceEmulator().auth, acs3.Acs3Verifier)
    verifier = acs3.Acs3Verifier()
    verifier.add_access_key("b", "x")
    verifier.add_access_key("a", "y", "token")
    assert verifier.access_key_ids() == ["a", "b"] and verifier.keys["a"] == ("y", "token")


# ---------------------------------------------------------------- parameters and limits


def test_an_unknown_bus_is_event_bus_not_exist_in_a_successful_answer(eb):
    response = put(client_for(eb), bus="no-such-bus")
    body = response.body
    assert response.status_code == 200
    assert (body.success, body.code, body.data) == (False, "EventBusNotExist", None)
    assert body.message == "The event bus [no-such-bus] not existed!"
    assert eb.events() == [] and eb.calls()[-1].error_code == "EventBusNotExist"


def test_a_missing_bus_name_is_a_client_error(eb):
    with pytest.raises(ClientException) as raised:
        put(client_for(eb), bus=None)
    assert (raised.value.code, raised.value.status_code) == ("MissingEventBusName", 400)
    body = Utils.to_form({"EventBusName": BUS}).encode()
    status, answer = send(eb, signed_request(eb, body).headers, body)
    assert (status, answer["Code"]) == (400, "MissingEventList")


@pytest.mark.parametrize("events, code", [
    ([], "EventInvalid"),
    ([event(source=None)], "EventSourceInvalid"),
    ([event(type=None)], "EventTypeInvalid"),
    ([event(type="t" * 65)], "EventTypeInvalid"),
    ([event(subject="s" * 513)], "EventSubjectInvalid"),
    ([event(source="s" * 129)], "EventSourceInvalid"),
    ([event("")], "EventIdEmpty"),
    ([event("job:1")], "EventIdInvalid"),
    ([event("-leading-hyphen")], "EventIdInvalid"),
    ([event("i" * 129)], "EventIdInvalid"),
    ([event(f"e{i}") for i in range(17)], "EventCountExceedLimit"),
    ([event(data="x" * (256 * 1024))], "EventSizeExceed"),
    ([event(f"e{i}", data="x" * (70 * 1024)) for i in range(16)], "EventBatchSizeExceed"),
])
def test_event_lists_the_service_would_refuse(eb, events, code):
    body = put(client_for(eb), *events).body if events else put_empty(client_for(eb)).body
    assert (body.success, body.code) == (False, code), body.message
    assert eb.events() == []


def put_empty(client: Client):
    request = eb_models.PutEventsRequest(event_bus_name=BUS, event_list=[])
    return client.put_events_with_options(request, RuntimeOptions(autoretry=False))


def test_event_lists_at_the_limits_are_accepted(eb):
    client = client_for(eb)
    longest = event("i" * 128, source="s" * 128, type="t" * 64, subject="s" * 512)
    assert put(client, longest).body.success is True
    assert put(client, *[event(f"e{i}", data="x" * (60 * 1024)) for i in range(16)]).body.success is True
    assert put(client, event("big", data="x" * (250 * 1024))).body.success is True
    assert len(eb.events()) == 18


def test_lower_limits_can_be_set(eb):
    eb.max_events_per_request = 2
    eb.max_event_bytes = 100
    client = client_for(eb)
    assert put(client, event("a"), event("b"), event("c")).body.code == "EventCountExceedLimit"
    assert put(client, event("a", data="x" * 100)).body.code == "EventSizeExceed"


def test_an_event_list_that_is_not_a_list_of_objects_is_event_invalid(eb):
    for event_list in ("not json", '{"Id": "a"}', '["a"]'):
        body = Utils.to_form({"EventBusName": BUS, "EventList": event_list}).encode()
        status, answer = send(eb, signed_request(eb, body).headers, body)
        assert (status, answer["Success"], answer["Code"]) == (200, False, "EventInvalid"), answer
    assert [call.event_ids for call in eb.calls()] == [(), (), ()]


# ---------------------------------------------------------------- faults


def test_fail_next_is_a_server_exception_then_the_next_call_goes_through(eb):
    client = client_for(eb)
    eb.fail_next(1)
    with pytest.raises(ServerException) as raised:
        put(client, event("e-1"))
    error = raised.value
    assert (error.code, error.status_code) == ("InternalError", 503)
    assert set(error.data) == {"RequestId", "HostId", "Code", "Message", "Recommend", "Success", "statusCode"}
    assert error.data["Success"] is False and error.request_id == error.data["RequestId"]
    assert eb.events() == []
    assert put(client, event("e-1")).body.success is True
    assert [e["Id"] for e in eb.events()] == ["e-1"]
    assert [(c.status, c.error_code) for c in eb.calls()] == [(503, "InternalError"), (200, None)]


def test_a_4xx_fail_next_is_a_client_exception(eb):
    eb.fail_next(1, status=403, code="AccessDenied", message="not for you")
    with pytest.raises(ClientException) as raised:
        put(client_for(eb))
    assert (raised.value.code, raised.value.status_code, raised.value.data["Message"]) == (
        "AccessDenied", 403, "not for you")


def test_throttling_is_http_429_too_many_requests(eb):
    client = client_for(eb)
    eb.throttle_next(1)
    with pytest.raises(ClientException) as raised:
        put(client)
    assert (raised.value.code, raised.value.status_code) == ("TooManyRequests", 429)
    assert "flow limiter" in raised.value.message
    eb.throttle_next(1, retry_after_ms=1500)
    with pytest.raises(ThrottlingException) as raised:
        put(client)
    assert not isinstance(raised.value, ClientException)
    assert (raised.value.code, raised.value.status_code, raised.value.retry_after) == ("TooManyRequests", 429, 1500)
    assert put(client).body.success is True


def test_reject_next_is_a_successful_answer_saying_success_false(eb):
    eb.reject_next(2, "EventBusNotReady", "try later")
    client = client_for(eb)
    for _ in range(2):
        response = put(client, event("e-1"))
        assert response.status_code == 200
        assert (response.body.success, response.body.code, response.body.message) == (
            False, "EventBusNotReady", "try later")
    assert eb.events() == []
    assert put(client, event("e-1")).body.success is True
    assert [c.error_code for c in eb.calls()] == ["EventBusNotReady", "EventBusNotReady", None]


def test_fail_entries_next_fails_every_entry_of_the_request(eb):
    eb.fail_entries_next(1, "InternalError", "entry not stored")
    client = client_for(eb)
    body = put(client, event("e-1"), event("e-2")).body
    assert (body.success, body.code, body.data.failed_entry_count) == (True, "200", 2)
    assert [(entry.event_id, entry.error_code, entry.error_message) for entry in body.data.entry_list] == [
        ("e-1", "InternalError", "entry not stored"), ("e-2", "InternalError", "entry not stored")]
    assert eb.events() == []
    assert put(client, event("e-1")).body.data.failed_entry_count == 0
    assert [(c.status, c.error_code) for c in eb.calls()] == [(200, "InternalError"), (200, None)]


def test_faults_fire_in_order_and_only_for_requests_that_would_succeed(eb):
    client = client_for(eb)
    eb.throttle_next(1)
    eb.reject_next(1, "Busy", "busy")
    eb.fail_entries_next(1, "Failed", "failed")
    with pytest.raises(ClientException):
        put(client_for(eb, secret="wrong"))  # refused before any fault is looked at
    assert put(client, bus="no-such-bus").body.code == "EventBusNotExist"
    with pytest.raises(ClientException) as raised:
        put(client)
    assert raised.value.code == "TooManyRequests"
    assert put(client).body.code == "Busy"
    assert put(client).body.data.entry_list[0].error_code == "Failed"
    assert put(client).body.data.failed_entry_count == 0
    assert len(eb.events()) == 1


def test_latency_delays_answers_and_stop_wakes_a_sleeping_request(eb):
    client = client_for(eb)
    put(client)  # warm-up
    eb.latency_s = 0.3
    started = time.monotonic()
    put(client)
    assert time.monotonic() - started >= 0.3
    eb.latency_s = 30
    outcome: List[str] = []
    caller = threading.Thread(target=lambda: outcome.append(put_or_error(client)))
    caller.start()
    time.sleep(0.2)
    stopped = time.monotonic()
    eb.stop()
    caller.join(timeout=5)
    assert not caller.is_alive() and time.monotonic() - stopped < 5
    assert outcome


def put_or_error(client: Client) -> str:
    try:
        return str(put(client).body.success)
    except Exception as error:  # a reset connection is fine here: only the wake-up is tested
        return type(error).__name__


def test_the_command_line_creates_buses_and_keys():
    emulator = build(["--port", "0", "--bus", "a", "--bus", "b", "--latency-ms", "5",
                      "--access-key-id", "cli-ak", "--access-key-secret", "cli-secret"])
    with emulator:
        assert emulator.buses() == ["a", "b"] and emulator.latency_s == 0.005
        assert put(client_for(emulator, "cli-ak", "cli-secret"), bus="b").body.success is True
        assert [e["Id"] for e in emulator.events("b")] == ["5a2c8f4e-0001"]
    assert build(["--port", "0"]).buses() == ["default"]
