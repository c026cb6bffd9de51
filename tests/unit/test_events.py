"""Every trigger kind of contract section 2 becomes one plain request; bad input is refused."""
import base64
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ice_upload_sync.errors import BadRequest, PayloadTooLarge
from ice_upload_sync.events import (
    MAX_DEPTH,
    MAX_MESSAGE_SIZE,
    HttpCallback,
    SyncRequest,
    is_valid_job_id,
    parse_event,
    parse_http_body,
)

from tests.hostile_values import ANY_TEXT, FUZZ, HOSTILE_EVENTS, nested, with_a_duplicate_key

EVENTS = Path(__file__).resolve().parents[2] / "events"


def load(name):
    return (EVENTS / name).read_bytes()


def test_every_sample_event_parses():
    for path in sorted(EVENTS.glob("*.json")):
        parsed = parse_event(path.read_bytes())
        assert isinstance(parsed, (SyncRequest, HttpCallback)), path.name


def test_timer_with_empty_payload_is_a_sweep():
    request = parse_event(load("timer-sweep.json"))
    assert request == SyncRequest(source="timer", sweep=True)


def test_timer_with_a_shard_sweeps_that_shard():
    request = parse_event(load("timer-sweep-shard.json"))
    assert request.sweep and request.source == "timer" and str(request.shard) == "1/2"


def test_timer_with_job_ids_checks_exactly_those():
    request = parse_event(load("timer-check-jobs.json"))
    assert request.source == "timer" and not request.sweep
    assert request.job_ids == ("9d1c2b3a4f5e6d7c8b9a0f1e2d3c4b03", "a1b2c3d4e5f60718293a4b5c6d7e8f04")


@pytest.mark.parametrize("payload", ["not json", "[1, 2]", '"text"'])
def test_timer_with_a_malformed_payload_is_refused(payload):
    with pytest.raises(BadRequest, match="timer payload"):
        parse_event({"triggerTime": "t", "triggerName": "n", "payload": payload})


def test_http_event_is_left_for_authentication_before_its_body_is_read():
    request = parse_event(load("http-callback.json"))
    assert isinstance(request, HttpCallback)
    assert request.method == "POST" and request.raw_path == "/ice-callback"
    assert request.header("X-ICE-SIGNATURE") == request.headers["x-ice-signature"]
    body = parse_http_body(request)
    assert body.source == "callback" and body.track
    assert body.job_ids == ("c0ffee00c0ffee00c0ffee00c0ffee05",)
    assert body.hints[0].status == "Success"


def test_http_body_may_be_base64():
    event = json.loads(load("http-callback.json"))
    event["body"] = base64.b64encode(event["body"].encode()).decode()
    event["isBase64Encoded"] = True
    assert parse_http_body(parse_event(event)).job_ids == ("c0ffee00c0ffee00c0ffee00c0ffee05",)


@pytest.mark.parametrize("body, b64, message", [
    ("not json", False, "not JSON"),
    ("!!!", True, "base64"),
    ("[]", False, "JSON object"),
    ('{"EventType": "UploadByURLComplete", "MessageBody": {}}', False, "no JobId"),
])
def test_bad_http_bodies_are_refused(body, b64, message):
    event = json.loads(load("http-callback.json"))
    event["body"], event["isBase64Encoded"] = body, b64
    with pytest.raises(BadRequest, match=message):
        parse_http_body(parse_event(event))


def test_eventbridge_cloud_event_carries_the_callback_in_data():
    request = parse_event(load("eventbridge-callback.json"))
    assert request.job_ids == ("7e57ab1e7e57ab1e7e57ab1e7e57ab06",) and request.track
    assert request.hints[0].status == "Fail"


def test_mns_batch_is_one_request_with_json_and_base64_bodies():
    request = parse_event(load("mns-queue-batch.json"))
    assert request.job_ids == ("0a0b0c0d0e0f10111213141516171807", "1a1b1c1d1e1f20212223242526272808")
    assert request.source == "callback" and request.track


def test_a_bad_message_in_a_batch_is_refused_alone_with_its_message_id():
    batch = json.loads(load("mns-queue-batch.json"))
    batch[1]["data"]["messageBody"] = "%%% not json %%%"
    request = parse_event(batch)
    assert request.job_ids == ("0a0b0c0d0e0f10111213141516171807",) and request.track
    [refused] = request.refused
    assert (refused.index, refused.message_id) == (1, "C6B7A8D9E0F11A1B1C1D")
    assert "event[1] messageBody" in refused.error


@pytest.mark.parametrize("bad_body", [
    '{"EventType": ["UploadByURLComplete"], "MessageBody": {"JobId": "a1"}}',
    '{"EventType": "UploadByURLComplete", "MessageBody": {"JobId": 7}}',
    '{"EventType": "UploadByURLComplete", "MessageBody": {"JobId": "a1", "Status": 5}}',
    '{"EventType": "UploadByURLComplete", "MessageBody": {"JobId": "a1\\n"}}',
    '{"EventType": "UploadByURLComplete", "MessageBody": ' + "[" * 50 + "]" * 50 + "}",
])
def test_each_malformed_message_of_a_batch_is_refused_alone(bad_body):
    batch = json.loads(load("mns-queue-batch.json"))
    batch[0]["data"]["messageBody"] = bad_body
    request = parse_event(batch)
    assert request.job_ids == ("1a1b1c1d1e1f20212223242526272808",)
    assert [(r.index, r.message_id) for r in request.refused] == [(0, "C6B7A8D9E0F10A0B0C0D")]


def test_a_batch_without_a_valid_message_is_refused_whole_naming_each_message():
    batch = json.loads(load("mns-queue-batch.json"))
    batch[0]["data"]["messageBody"] = "%%% not json %%%"
    batch[1]["data"] = {"messageId": "M-2", "messageBody": '{"JobId": 7}'}
    batch.append(42)
    with pytest.raises(BadRequest, match=r"every message of the batch was refused \(3\)") as raised:
        parse_event(batch)
    assert "C6B7A8D9E0F10A0B0C0D" in str(raised.value) and "#1 (M-2)" in str(raised.value)
    assert "#2 (no messageId)" in str(raised.value)


def test_a_cloud_event_without_an_mns_message_id_is_named_by_its_id():
    good = json.loads(load("eventbridge-callback.json"))
    bad = {"specversion": "1.0", "id": "ev-7", "type": "ice:Callback",
           "data": {"EventType": "UploadByURLComplete", "MessageBody": {"JobId": ["not", "a", "string"]}}}
    request = parse_event([good, bad])
    assert request.refused[0].message_id == "ev-7" and request.job_ids == ("7e57ab1e7e57ab1e7e57ab1e7e57ab06",)


def test_vod_flat_callback_with_trailing_space_keys():
    request = parse_event(load("callback-vod-flat.json"))
    assert request.job_ids == ("4c815bd0e3f74c2ab3b1e2f3a4b5c609",)
    assert request.hints[0].media_id == "43a9fd0e3f5c4b2a8d7e6f5a4b3c2d1e"
    assert request.hints[0].status == "success"


def test_callbacks_about_other_events_are_acknowledged_and_ignored():
    request = parse_event({"EventType": "ProduceMediaComplete", "MessageBody": {"JobId": "x1"}})
    assert request.empty and request.ignored == ("ProduceMediaComplete",)


def test_a_callback_with_only_a_source_url_is_looked_up_by_url():
    request = parse_event({"EventType": "UploadByURLComplete",
                           "MessageBody": {"SourceURL": "https://a.example/v.mp4", "Status": "Success"}})
    assert request.upload_urls == ("https://a.example/v.mp4",) and not request.job_ids


def test_direct_job_ids_as_string_or_list_are_deduplicated_in_order():
    assert parse_event({"JobIds": "b1, a1,b1"}).job_ids == ("b1", "a1")
    assert parse_event({"JobIds": ["b1", "a1", "b1"]}).job_ids == ("b1", "a1")
    assert not parse_event({"JobIds": "a1"}).track  # plain IDs are not tracked until ICE knows them


def test_forwarded_upload_media_by_url_response_is_tracked():
    request = parse_event(load("upload-media-by-url-response.json"))
    assert request.track and request.source == "direct"
    assert request.job_ids == ("b0a1c2d3e4f5a6b7c8d9e0f1a2b3c410", "b0a1c2d3e4f5a6b7c8d9e0f1a2b3c411")
    wrapped = {"headers": {}, "statusCode": 200, "body": json.loads(load("upload-media-by-url-response.json"))}
    assert parse_event(wrapped).job_ids == request.job_ids


def test_upload_urls_keep_commas_and_spaces_inside_a_list():
    request = parse_event(load("direct-upload-urls.json"))
    assert request.upload_urls == ("https://media.example.com/videos/a,b%20c%C3%A9.mp4",)


@pytest.mark.parametrize("event, message", [
    ({"JobIds": "a" * 65}, "malformed job ID"),
    ({"JobIds": "good,bad id"}, "malformed job ID"),
    ({"JobIds": ["ok", 3]}, "list of strings"),
    ({"JobIds": ""}, "names no job"),
    ({"UploadURLs": ["ftp://x.example/a.mp4"]}, "http"),
    ({"UploadURLs": ["https://x.example/" + "a" * 2100]}, "longer than"),
    ({"UploadURLs": ["https://x.example/a\nb.mp4"]}, "control"),
    ({"UploadJobs": [{"SourceURL": "https://x.example/a.mp4"}]}, "no JobId"),
    ({"UploadJobs": [{"JobId": "a1"}], "JobIds": "b1"}, "not both"),
    ({"Hello": "world"}, "unrecognized event"),
    ({"JobIds": ",".join(f"j{i}" for i in range(10_001))}, "too many"),
])
def test_bad_direct_requests_are_refused_with_a_clear_message(event, message):
    with pytest.raises(BadRequest, match=message):
        parse_event(event)


@pytest.mark.parametrize("raw", [b"", b"   ", b"\xff\xfe", b"{not json", b"42", "null"])
def test_undecodable_events_are_refused(raw):
    with pytest.raises(BadRequest):
        parse_event(raw)


def test_bytes_str_and_dict_events_are_equivalent():
    raw = load("direct-job-ids.json")
    assert parse_event(raw) == parse_event(raw.decode()) == parse_event(json.loads(raw))


# ---------------------------------------------------------------- hostile input (contract section 2)

CALLBACK = {"EventType": "UploadByURLComplete", "MessageBody": {"JobId": "a1", "Status": "Success"}}


def callback(**fields):
    return {"EventType": "UploadByURLComplete", "MessageBody": {"JobId": "a1", "Status": "Success", **fields}}


@pytest.mark.parametrize("event, message", [
    ({"EventType": ["UploadByURLComplete"], "MessageBody": {"JobId": "a1"}}, "EventType must be a string"),
    ({"EventType": 7, "JobId": "a1"}, "EventType must be a string"),
    ({"EventType": "Upload\nByURLComplete", "JobId": "a1"}, "not an event name"),
    (callback(Status=5), "Status must be a string, not a number"),
    (callback(Status=["Success"]), "Status must be a string, not an array"),
    (callback(Status={"s": 1}), "Status must be a string, not an object"),
    (callback(JobId=7), "JobId must be a string, not a number"),
    (callback(JobId=True), "JobId must be a string, not true or false"),
    (callback(JobId="a1\n"), "malformed job ID"),
    (callback(JobId="a1 "), "malformed job ID"),
    (callback(JobId="\u00b2"), "malformed job ID"),
    (callback(JobId=None, SourceURL=5), "SourceURL must be a string"),
    (callback(JobId=None, SourceURL="http://[::1/a.mp4"), "does not parse"),
    (callback(JobId=None, SourceURL="https://a.example/\ud800.mp4"), "lone surrogate"),
    (callback(MediaId=12), "MediaId must be a string"),
    ({"EventType": "UploadByURLComplete", "MessageBody": {"JobId": "a1", "JobId ": "b1"}}, "twice"),
    ({"JobIds": ["a1\n"]}, "malformed job ID"),
    ({"JobIds": "a1\n"}, "malformed job ID"),
    ({"JobIds": [" a1"]}, "malformed job ID"),
    ({"UploadJobs": [{"JobId": 7}]}, r"UploadJobs\[0\].JobId must be a string"),
    ({"UploadJobs": [{"JobId": "a1\n"}]}, "malformed job ID"),
    ({"UploadURLs": [" https://a.example/a.mp4"]}, "whitespace"),
    ({"Shard": 10 ** 5000}, "got a number"),
    ({"JobIds": "a1", "Deep": nested(MAX_DEPTH)}, "nested deeper than"),
    (nested(100_000), "nested deeper than"),
])
def test_bad_values_are_refused_never_coerced(event, message):
    with pytest.raises(BadRequest, match=message):
        parse_event(event)


@pytest.mark.parametrize("text, message", [
    ("[" * 100_000 + "]" * 100_000, "nested deeper than"),
    ('{"JobIds": ' + "[" * 20 + '"a1"' + "]" * 20 + "}", "nested deeper than"),
    ('{"JobIds": "a1", "JobIds": "b1"}', "appears twice"),
    ('{"JobIds": "a1", "X": NaN}', "NaN is not JSON"),
    ('{"JobIds": "a1", "X": -Infinity}', "Infinity is not JSON"),
    ('{"JobIds": "a1", "X": ' + "9" * 5000 + "}", "not JSON"),
    ('{"EventType": "UploadByURLComplete", "MessageBody": {"JobId": "a1\\n"}}', "malformed job ID"),
])
def test_hostile_json_text_is_refused(text, message):
    for raw in (text, text.encode()):
        with pytest.raises(BadRequest, match=message):
            parse_event(raw)


def test_a_job_id_with_a_trailing_newline_is_not_a_job_id():
    assert is_valid_job_id("a1") and not is_valid_job_id("a1\n") and not is_valid_job_id(7)


def test_nesting_up_to_the_limit_is_read():
    request = parse_event({"JobIds": "a1", "Extra": nested(MAX_DEPTH - 1)})  # the event's object is level 1
    assert request.job_ids == ("a1",)


def test_callbacks_about_other_events_are_ignored_whatever_their_body():
    request = parse_event({"EventType": "ProduceMediaComplete", "MessageBody": {"JobId": 7, "Status": []}})
    assert request.ignored == ("ProduceMediaComplete",)


def test_nested_and_oversize_message_texts_are_refused():
    deep = json.dumps({"EventType": "UploadByURLComplete", "MessageBody": "[" * 10_000 + "]" * 10_000})
    with pytest.raises(BadRequest, match="MessageBody is nested deeper than"):
        parse_event(deep)
    padding = "x" * MAX_MESSAGE_SIZE
    for message in ({**CALLBACK, "Padding": padding}, ):
        mns = {"specversion": "1.0", "type": "mns:Queue:SendMessage",
               "data": {"messageId": "M1", "messageBody": json.dumps(message)}}
        with pytest.raises(PayloadTooLarge):
            parse_event(mns)
        mns["data"]["messageBody"] = base64.b64encode(json.dumps(message).encode()).decode()
        with pytest.raises(PayloadTooLarge):
            parse_event(mns)


def http_event(**changes):
    event = json.loads(load("http-callback.json"))
    event.update(changes)
    return event


@pytest.mark.parametrize("body, b64", [
    (json.dumps({**CALLBACK, "Padding": "x" * MAX_MESSAGE_SIZE}), False),
    (base64.b64encode(json.dumps({**CALLBACK, "Padding": "x" * MAX_MESSAGE_SIZE}).encode()).decode(), True),
])
def test_an_oversize_http_body_is_refused_before_it_is_parsed(body, b64):
    with pytest.raises(PayloadTooLarge):
        parse_http_body(parse_event(http_event(body=body, isBase64Encoded=b64)))


@pytest.mark.parametrize("changes, problem", [
    ({"headers": ["X-Ice-Signature", "0" * 32]}, "headers must be an object"),
    ({"headers": None}, None),
    ({"body": {"EventType": "UploadByURLComplete"}}, "body must be a string"),
    ({"isBase64Encoded": "false"}, "isBase64Encoded must be true or false"),
    ({"rawPath": 7}, "rawPath must be a string"),
    ({"requestContext": ["x"]}, "requestContext must be an object"),
    ({"requestContext": {"http": "POST", "domainName": 5}}, "requestContext.http must be an object"),
    ({"requestContext": {"http": {"method": ["POST"]}}}, "requestContext.http.method must be a string"),
])
def test_a_malformed_http_event_is_kept_for_authentication_and_refused_after_it(changes, problem):
    request = parse_event(http_event(**changes))  # never raises: the caller must get an answer
    assert isinstance(request, HttpCallback)
    if problem is None:
        assert request.problems == ()
        return
    assert any(problem in text for text in request.problems), request.problems
    with pytest.raises(BadRequest, match="malformed HTTP event"):
        parse_http_body(request)


@pytest.mark.parametrize("replace, by", [
    ('"X-Ice-Timestamp": "1764039521"', '"X-Ice-Timestamp": Infinity'),
    ('"X-Ice-Timestamp": "1764039521"', '"X-Ice-Timestamp": "1764039521", "X-Ice-Timestamp": "1"'),
    ('"version": "v1"', '"version": "v1", "version": NaN'),
])
def test_an_http_event_that_is_not_strict_json_is_still_answered_not_raised(replace, by):
    text = json.dumps(json.loads(load("http-callback.json"))).replace(replace, by)
    assert by in text
    request = parse_event(text)
    assert isinstance(request, HttpCallback) and request.problems
    with pytest.raises(BadRequest, match="malformed HTTP event"):
        parse_http_body(request)
    with pytest.raises(BadRequest):  # any other event is refused as it is
        parse_event(text.replace('"requestContext"', '"context"'))


def test_http_headers_that_are_not_one_string_are_marked_malformed():
    headers = {"X-Ice-Signature": ["0" * 32], "X-Ice-Timestamp": 1764039521, "Content-Type": None,
               "X-Custom": "a", "x-custom": "b", "User-Agent": "ICE-Callback"}
    request = parse_event(http_event(headers=headers))
    assert request.malformed_headers == {"x-ice-signature", "x-ice-timestamp", "content-type", "x-custom"}
    assert request.headers == {"user-agent": "ICE-Callback"} and request.header("X-Ice-Signature") is None


def check_parsed(parsed):
    """What got through is exactly what the contract allows: no coerced value, no odd job ID."""
    if isinstance(parsed, HttpCallback):
        try:
            parsed = parse_http_body(parsed)
        except BadRequest:
            return
    assert isinstance(parsed, SyncRequest)
    assert all(is_valid_job_id(job_id) for job_id in parsed.job_ids)
    assert all(isinstance(url, str) and url.encode() for url in parsed.upload_urls)
    for hint in parsed.hints:
        for value in (hint.event_type, hint.job_id, hint.media_id, hint.status):
            assert value is None or isinstance(value, str)
    assert all(isinstance(event_type, str) for event_type in parsed.ignored)
    for refused in parsed.refused:
        assert isinstance(refused.error, str) and (refused.message_id is None or refused.message_id.isprintable())
    json.dumps([r.to_dict() for r in parsed.refused])


@FUZZ
@given(HOSTILE_EVENTS, st.sampled_from(["object", "bytes", "text with a duplicate key"]))
def test_any_event_either_parses_to_valid_values_or_is_refused_as_bad_request(event, form):
    """Whatever arrives, parse_event returns a request of valid values or raises BadRequest."""
    try:
        raw = {"object": lambda: event, "bytes": lambda: json.dumps(event).encode(),
               "text with a duplicate key": lambda: with_a_duplicate_key(event)}[form]()
    except ValueError:  # an integer json.dumps refuses to write: only a local run passes it
        raw = event
    try:
        parsed = parse_event(raw)
    except BadRequest:
        return
    check_parsed(parsed)


@FUZZ
@given(st.binary(max_size=200) | ANY_TEXT.map(lambda text: text.encode("utf-8", "surrogatepass")))
def test_any_bytes_either_parse_or_are_refused_as_bad_request(raw):
    try:
        parsed = parse_event(raw)
    except BadRequest:
        return
    check_parsed(parsed)


@given(st.lists(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,63}", fullmatch=True), min_size=1, max_size=30))
def test_valid_job_ids_round_trip(job_ids):
    request = parse_event({"JobIds": job_ids})
    assert request.job_ids == tuple(dict.fromkeys(job_ids))


def test_each_kind_of_bad_request_carries_its_http_status():
    from ice_upload_sync.errors import BadRequest, MethodNotAllowed, PayloadTooLarge

    assert (BadRequest.http_status, MethodNotAllowed.http_status, PayloadTooLarge.http_status) == (400, 405, 413)
