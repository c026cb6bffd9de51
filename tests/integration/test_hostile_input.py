"""Hostile input through the real handler (contract section 2, issue 11 items 2 and 3).

Whatever arrives, the answer is a success, a 4xx, or a deliberate raise after the rest is
written; never an unplanned exception. On the anonymous HTTP trigger, nothing
unauthenticated gets a 5xx or an exception: garbage in the signature headers is a 401,
before any API call or write.
"""
from __future__ import annotations

import base64
import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ice_upload_sync.errors import BadRequest, ConfigError, MessagesRefused, SyncIncomplete
from ice_upload_sync.events import MAX_MESSAGE_SIZE

from tests.hostile_values import FIELD, FUZZ_EXAMPLES, HEADER_NAMES, HEADER_VALUES, HTTP, MESSAGE, nested
from tests.scenario import CALLBACK_AUTH_KEY, JOB, load_event, signed_http_event

HANDLER_FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None,
                        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                               HealthCheck.data_too_large])


@pytest.fixture
def secured(fc):
    fc.monkeypatch.setenv("CALLBACK_AUTH_KEY", CALLBACK_AUTH_KEY)
    return fc


def nothing_happened(ice, fc):
    return ice.calls == [] and fc.records() == {} and fc.pending() == set()


def invoke_raw(fc, event):
    """Bytes as FC passes them; a value ``json.dumps`` refuses (a 5,000-digit integer) as a dict."""
    try:
        raw = json.dumps(event).encode()
    except (ValueError, RecursionError):
        raw = event
    return fc.index.handler(raw, fc.context())


# ---------------------------------------------------------------- the signature headers


def with_headers(**headers):
    event = signed_http_event()
    event["headers"].update(headers)
    return event


@pytest.mark.parametrize("headers", [
    {"X-Ice-Timestamp": "\u00b2"},  # str.isdigit() accepts it, int() refuses it
    {"X-Ice-Timestamp": "9" * 400},  # OverflowError in the window arithmetic
    {"X-Ice-Timestamp": "9" * 5000},  # int() refuses more than 4,300 digits
    {"X-Ice-Signature": "\u00e9" * 32},  # hmac.compare_digest refuses non-ASCII str
    {"X-Ice-Signature": "\ud800" * 32},
    {"X-Ice-Signature": ["4621c36aceceab53b0c2e66a106c7215"]},
    {"X-Ice-Timestamp": 1764039521},
    {"X-Ice-Signature": None},
    {"X-Ice-Timestamp": {"t": "1764039521"}},
])
def test_garbage_in_the_signature_headers_is_a_401_before_any_call_or_write(seeded, secured, headers):
    answer = secured.invoke(with_headers(**headers))
    assert answer["statusCode"] == 401, answer
    assert nothing_happened(seeded, secured)


def test_signature_headers_given_twice_are_not_believed(seeded, secured):
    event = signed_http_event()
    event["headers"]["x-ice-signature"] = event["headers"]["X-Ice-Signature"]  # the same name, other case
    assert secured.invoke(event)["statusCode"] == 401
    assert nothing_happened(seeded, secured)


@pytest.mark.parametrize("replace, by", [
    ('"X-Ice-Timestamp": "', '"X-Ice-Timestamp": Infinity, "x": "'),
    ('"X-Ice-Signature": "', '"X-Ice-Signature": "0", "X-Ice-Signature": "'),
])
def test_an_http_event_that_is_not_strict_json_gets_401_not_an_exception(seeded, secured, replace, by):
    text = json.dumps(signed_http_event()).replace(replace, by)
    assert by in text
    assert secured.invoke(text.encode())["statusCode"] == 401
    assert nothing_happened(seeded, secured)


@pytest.mark.parametrize("changes", [
    {"headers": ["X-Ice-Signature"]}, {"headers": "x"}, {"requestContext": ["x"]}, {"rawPath": 7},
    {"requestContext": {"http": {"method": ["POST"]}}}, {"body": {"EventType": "UploadByURLComplete"}},
    {"isBase64Encoded": "false"},
])
def test_a_malformed_http_event_gets_401_unsigned_and_400_signed(seeded, secured, changes):
    unsigned = {**load_event("http-callback.json"), **changes}
    assert secured.invoke(unsigned)["statusCode"] == 401
    signed = {**signed_http_event(), **changes}
    assert secured.invoke(signed)["statusCode"] in (400, 401)  # 401 where the change removed the signature
    assert nothing_happened(seeded, secured)


@pytest.mark.parametrize("fc", ["file"], indirect=True)
@HANDLER_FUZZ
@given(headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=5), event=HTTP)
def test_any_http_event_from_a_stranger_gets_401_or_405_and_nothing_else(ice, fc, headers, event):
    """With callbacks checked, no content of an unsigned HTTP event gets past 401 (405: not POST)."""
    fc.monkeypatch.setenv("CALLBACK_AUTH_KEY", CALLBACK_AUTH_KEY)
    if isinstance(event["headers"], dict):  # else keep the hostile non-object
        event = {**event, "headers": headers}
    answer = invoke_raw(fc, event)
    assert answer["statusCode"] in (401, 405), answer
    assert nothing_happened(ice, fc)


# ---------------------------------------------------------------- bodies


def test_a_signed_body_nested_too_deep_or_too_large_is_a_4xx_and_writes_nothing(seeded, secured):
    deep = signed_http_event()
    deep["body"] = json.dumps({"EventType": "UploadByURLComplete", "MessageBody": nested(50)})
    answer = secured.invoke(deep)
    assert answer["statusCode"] == 400 and "nested deeper" in json.loads(answer["body"])["error"]
    deeper = signed_http_event()
    deeper["body"] = "[" * 100_000 + "]" * 100_000  # json.loads alone would raise RecursionError
    assert secured.invoke(deeper)["statusCode"] == 400
    large = signed_http_event(body={"EventType": "UploadByURLComplete",
                                    "MessageBody": {"JobId": JOB["http"], "Padding": "x" * MAX_MESSAGE_SIZE}})
    assert secured.invoke(large)["statusCode"] == 413
    encoded = signed_http_event()
    encoded["body"], encoded["isBase64Encoded"] = base64.b64encode(large["body"].encode()).decode(), True
    assert secured.invoke(encoded)["statusCode"] == 413
    assert nothing_happened(seeded, secured)


@pytest.mark.parametrize("fields", [
    {"Status": 5}, {"Status": ["Success"]}, {"JobId": 7}, {"JobId": JOB["http"] + "\n"}, {"MediaId": 1},
])
def test_a_signed_callback_with_a_value_of_the_wrong_kind_is_a_400_and_tracks_nothing(seeded, secured, fields):
    body = {"EventType": "UploadByURLComplete", "MessageBody": {"JobId": JOB["http"], "Status": "Success", **fields}}
    answer = secured.invoke(signed_http_event(body=body))
    assert answer["statusCode"] == 400, answer
    assert nothing_happened(seeded, secured)


@pytest.mark.parametrize("fc", ["file"], indirect=True)
@HANDLER_FUZZ
@given(body=st.one_of(MESSAGE.map(json.dumps), FIELD.map(lambda value: value if isinstance(value, str) else
                                                        json.dumps(value))),
       is_base64=st.booleans())
def test_any_body_on_an_unchecked_trigger_gets_an_answer_never_an_exception(ice, fc, body, is_base64):
    """Without CALLBACK_AUTH_KEY the body is a stranger's too: 200 or a 4xx, whatever it holds."""
    event = load_event("http-callback.json")
    event["body"] = base64.b64encode(body.encode("utf-8", "surrogatepass")).decode() if is_base64 else body
    event["isBase64Encoded"] = is_base64
    answer = fc.invoke(event)
    assert answer["statusCode"] in (200, 400, 413), answer


def test_a_deeply_nested_event_is_refused_before_any_call_or_write(ice, fc):
    for event in (b"[" * 100_000 + b"]" * 100_000, {"JobIds": "a1", "Extra": nested(100_000)}):
        with pytest.raises(BadRequest, match="nested deeper"):
            fc.index.handler(event, fc.context())
    assert nothing_happened(ice, fc)


@pytest.mark.parametrize("fields", [{"Status": 5}, {"Status": ["Fail"]}, {"JobId": 7}, {"JobId": "a1\n"}])
def test_an_eventbridge_callback_with_a_value_of_the_wrong_kind_is_refused_and_tracks_nothing(seeded, fc, fields):
    message = {"EventType": "UploadByURLComplete", "MessageBody": {"JobId": JOB["eventbridge"], **fields}}
    event = load_event("eventbridge-callback.json")
    event["data"]["messageBody"] = json.dumps(message)
    with pytest.raises(BadRequest):
        fc.invoke(event)
    assert nothing_happened(seeded, fc)


# ---------------------------------------------------------------- batches


def test_a_bad_message_is_refused_alone_and_the_invocation_raises_after_the_rest_is_recorded(seeded, fc, caplog):
    caplog.set_level(logging.INFO)
    batch = load_event("mns-queue-batch.json")
    bad_id = batch[1]["data"]["messageId"]
    batch[1]["data"]["messageBody"] = json.dumps({"EventType": "UploadByURLComplete",
                                                  "MessageBody": {"JobId": JOB["mns2"], "Status": 5}})
    with pytest.raises(MessagesRefused) as raised:
        fc.invoke(batch)
    assert isinstance(raised.value, SyncIncomplete)  # what FC retries and routes to the failure destination
    summary = raised.value.summary
    assert summary["written"] == 1 and summary["failed"] == [] and summary["refused_count"] == 1
    [refused] = summary["refused"]
    assert (refused["index"], refused["message_id"]) == (1, bad_id) and "Status" in refused["error"]
    assert bad_id in str(raised.value)
    assert fc.record(JOB["mns1"])["state"] == "succeeded"  # the valid message was checked and recorded
    assert fc.record(JOB["mns2"]) is None and JOB["mns2"] not in fc.pending()  # the bad one tracked nothing
    logged = [json.loads(r.getMessage()) for r in caplog.records if '"message_refused"' in r.getMessage()]
    assert [(line["index"], line["message_id"]) for line in logged] == [(1, bad_id)]


def test_the_valid_messages_of_a_batch_are_checked_together(seeded, fc):
    batch = load_event("mns-queue-batch.json")
    batch.insert(1, {"specversion": "1.0", "id": "ev-broken", "type": "mns:Queue:SendMessage",
                     "data": {"messageId": "M-broken", "messageBody": "[" * 5000 + "]" * 5000}})
    with pytest.raises(MessagesRefused) as raised:
        fc.invoke(batch)
    assert raised.value.summary["api_calls"] == 1 and raised.value.summary["written"] == 2
    assert [r["message_id"] for r in raised.value.summary["refused"]] == ["M-broken"]


def test_a_batch_of_only_malformed_messages_is_refused_whole_and_writes_nothing(seeded, fc):
    batch = load_event("mns-queue-batch.json")
    for item in batch:
        item["data"]["messageBody"] = '{"EventType": "UploadByURLComplete", "MessageBody": {"JobId": 7}}'
    with pytest.raises(BadRequest, match="every message of the batch was refused") as raised:
        fc.invoke(batch)
    assert not isinstance(raised.value, SyncIncomplete)
    assert all(item["data"]["messageId"] in str(raised.value) for item in batch)
    assert nothing_happened(seeded, fc)


# ---------------------------------------------------------------- CALLBACK_AUTH_KEY


@pytest.mark.parametrize("value", ["", " ", ",", "local callback key", "key\x07"])
def test_a_callback_key_set_but_unusable_stops_the_function_at_initialize(seeded, fc, value):
    fc.monkeypatch.setenv("CALLBACK_AUTH_KEY", value)
    event = load_event("http-callback.json")
    del event["headers"]["X-Ice-Signature"]
    with pytest.raises(ConfigError, match="CALLBACK_AUTH_KEY"):
        fc.invoke(event)  # never accepted unsigned
    with pytest.raises(ConfigError, match="CALLBACK_AUTH_KEY"):
        fc.index.initialize(fc.context())
    assert nothing_happened(seeded, fc)


def test_an_unset_callback_key_is_a_warning_once_per_instance(seeded, fc, caplog):
    caplog.set_level(logging.WARNING)
    event = load_event("http-callback.json")
    assert fc.invoke(event)["statusCode"] == 200 and fc.invoke(event)["statusCode"] == 200
    warnings = [r for r in caplog.records if "CALLBACK_AUTH_KEY is not set" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    fc.restart()
    fc.invoke(load_event("timer-sweep.json"))
    assert sum("CALLBACK_AUTH_KEY is not set" in r.getMessage() for r in caplog.records) == 2


def test_a_configured_key_logs_no_warning(seeded, secured, caplog):
    caplog.set_level(logging.WARNING)
    assert secured.invoke(signed_http_event())["statusCode"] == 200
    assert "CALLBACK_AUTH_KEY is not set" not in caplog.text
