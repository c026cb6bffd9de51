"""Every trigger kind of contract section 2 becomes one plain request; bad input is refused."""
import base64
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ice_upload_sync.errors import BadRequest
from ice_upload_sync.events import HttpCallback, SyncRequest, parse_event, parse_http_body

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


def test_one_bad_message_in_a_batch_refuses_the_whole_batch():
    batch = json.loads(load("mns-queue-batch.json"))
    batch[1]["data"]["messageBody"] = "%%% not json %%%"
    with pytest.raises(BadRequest, match=r"event\[1\] messageBody"):
        parse_event(batch)


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


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_any_json_either_parses_or_is_refused_as_bad_request(value):
    """No JSON input crashes the parser with anything but BadRequest."""
    try:
        parsed = parse_event(json.dumps(value))
    except BadRequest:
        return
    if isinstance(parsed, HttpCallback):
        try:
            parse_http_body(parsed)
        except BadRequest:
            pass


@given(st.lists(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,63}", fullmatch=True), min_size=1, max_size=30))
def test_valid_job_ids_round_trip(job_ids):
    request = parse_event({"JobIds": job_ids})
    assert request.job_ids == tuple(dict.fromkeys(job_ids))
