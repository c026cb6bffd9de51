"""Hostile values for property tests of what arrives from outside (contract section 2).

Every field drawn from wrong types, control characters, lone surrogates, huge numbers, deep
nesting, and strings that look like numbers, URLs, JSON or job IDs with a trailing newline;
assembled into every event shape the handler recognizes. Shared by the parser's unit tests
and the handler's integration tests.

``FUZZ`` keeps the example budget modest (``FUZZ_EXAMPLES``, default 150); raise it to
search longer: ``FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/unit/test_events.py``.
"""
from __future__ import annotations

import base64
import json
import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from ice_upload_sync.events import MAX_DEPTH

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def nested(depth, leaf=None):
    """``depth`` levels of arrays, built without recursion."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=()), max_size=24)
ODD_TEXT = st.sampled_from([
    "", " ", "a1\n", "a1 ", " a1", "\u00b2", "\u0661\u0662", "a1\x00", "\ud800", "a\udfffb", "J" * 65, "a,b",
    "../../x", "9" * 400, "NaN", "[]", "{}", '{"JobId": "a1"}', "[" * 300 + "]" * 300, "\u2028",
    "https://a.example/v.mp4?Signature=s3cr3t", "http://[::1/v.mp4", "ftp://a.example/v.mp4",
    "UploadByURLComplete", "FileUploadComplete", "ProduceMediaComplete", "Success", "mns:Queue:SendMessage",
])
VALID_TEXT = st.sampled_from(["a1", "c0ffee00c0ffee00c0ffee00c0ffee05", "job-2_b", "https://a.example/v.mp4"])
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=10 ** 300, max_value=10 ** 400),
                    st.floats(allow_nan=True, allow_infinity=True), ANY_TEXT, ODD_TEXT, VALID_TEXT)
# json.dumps (and hypothesis's reports) recurse: deeper nesting has examples in tests/unit/test_events.py
DEEP = st.integers(min_value=MAX_DEPTH - 2, max_value=400).map(nested)
HOSTILE = st.recursive(
    SCALARS | DEEP,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT | ODD_TEXT, inner, max_size=3),
    max_leaves=8,
)
FIELD = st.one_of(VALID_TEXT, HOSTILE)

MESSAGE_BODY = st.fixed_dictionaries({}, optional={
    name: FIELD for name in ("JobId", "MediaId", "VideoId", "Status", "SourceURL", "SourceURL ", "UploadURL")})
MESSAGE = st.one_of(
    st.fixed_dictionaries({"MessageBody": st.one_of(MESSAGE_BODY, MESSAGE_BODY.map(json.dumps), FIELD)},
                          optional={"EventType": st.one_of(st.sampled_from(["UploadByURLComplete",
                                                                            "FileUploadComplete"]), FIELD)}),
    MESSAGE_BODY.flatmap(lambda body: st.fixed_dictionaries({"EventType": FIELD}).map(lambda t: {**t, **body})),
)


def encoded(message):
    text = json.dumps(message)
    return st.sampled_from([text, base64.b64encode(text.encode()).decode()])


CLOUD_EVENT = st.one_of(
    MESSAGE.map(lambda m: {"specversion": "1.0", "id": "ev-1", "type": "ice:Callback", "data": m}),
    MESSAGE.flatmap(encoded).flatmap(lambda body: st.fixed_dictionaries({
        "specversion": st.just("1.0"), "type": st.just("mns:Queue:SendMessage"),
        "data": st.fixed_dictionaries({"messageBody": st.one_of(st.just(body), FIELD)},
                                      optional={"messageId": FIELD})})),
)
DIRECT = st.one_of(
    st.fixed_dictionaries({"JobIds": st.one_of(FIELD, st.lists(FIELD, max_size=4))}),
    st.fixed_dictionaries({"UploadURLs": st.one_of(FIELD, st.lists(FIELD, max_size=4))}),
    st.fixed_dictionaries({"UploadJobs": st.one_of(FIELD, st.lists(st.fixed_dictionaries(
        {}, optional={"JobId": FIELD, "SourceURL": FIELD, "MediaId": FIELD}), max_size=3))}),
    st.fixed_dictionaries({"Shard": FIELD}),
)
TIMER = st.fixed_dictionaries({"triggerTime": FIELD, "triggerName": FIELD,
                               "payload": st.one_of(FIELD, DIRECT.map(json.dumps))})
HTTP = st.fixed_dictionaries({
    "version": FIELD, "rawPath": FIELD, "isBase64Encoded": st.one_of(st.booleans(), FIELD),
    "body": st.one_of(MESSAGE.map(json.dumps), FIELD),
    "headers": st.one_of(st.dictionaries(ANY_TEXT | ODD_TEXT | st.sampled_from(["X-Ice-Signature",
                                                                               "X-Ice-Timestamp"]), FIELD), FIELD),
    "requestContext": st.one_of(FIELD, st.fixed_dictionaries({}, optional={
        "domainName": FIELD, "http": st.one_of(FIELD, st.fixed_dictionaries({}, optional={"method": FIELD}))})),
})
HOSTILE_EVENTS = st.one_of(MESSAGE, CLOUD_EVENT, st.lists(st.one_of(CLOUD_EVENT, MESSAGE, FIELD), max_size=4),
                           DIRECT, TIMER, HTTP, HOSTILE)


def with_a_duplicate_key(value):
    """The JSON text of ``value`` with its first key given twice (``json.dumps`` cannot write that)."""
    text = json.dumps(value)
    if not isinstance(value, dict) or not value:
        return text
    key, first = next(iter(value.items()))
    return "{" + json.dumps(key) + ": " + json.dumps(first) + ", " + text[1:]


# What a stranger may put in the HTTP trigger's headers.
HEADER_VALUES = st.one_of(
    ANY_TEXT, st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.lists(ANY_TEXT, max_size=2), st.dictionaries(ANY_TEXT, ANY_TEXT, max_size=2),
    st.integers(min_value=0, max_value=6000).map(lambda n: "9" * n),
    st.sampled_from(["c587b80d2d0ede300e8967937da7219b", "C587B80D2D0EDE300E8967937DA7219B", "1519375990",
                     " 1519375990 ", "\u00b2", "1519375990\n", "0x5a8f1c36", "1.519375990e9", "\ud800" * 32]),
)
HEADER_NAMES = st.sampled_from(["X-Ice-Signature", "x-ice-signature", "X-ICE-SIGNATURE", "X-Ice-Timestamp",
                                "x-ice-timestamp", "X-ICE-TIMESTAMP", "Content-Type"]) | ANY_TEXT
