"""JSON from outside is measured before it is parsed: ``json`` never recurses near the limit.

The defect this guards against: an MNS message of 5,000 nested brackets drove ``json``'s C
parser to the interpreter's recursion limit. Its ``RecursionError`` was caught, but whatever
else ran on that stack meanwhile (a finalizer the garbage collector called) failed too, as
an "unraisable" exception: the suite saw it as an intermittent failure, and on FC it is noise
in the log at best. ``test_..._runs_nothing_at_the_recursion_limit`` makes it deterministic.
"""
from __future__ import annotations

import gc
import json
import sys
from typing import Any, Callable, List

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ice_upload_sync import events, jsontext
from ice_upload_sync.errors import BadRequest, StoreError
from ice_upload_sync.records import normalize_user_data
from ice_upload_sync.stores.base import Tracking
from ice_upload_sync.stores.file import FileStore

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(st.sampled_from(list('ab[]{}"\\, :\n\u00e9'))),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=40,
)


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


@given(JSON_VALUES, st.integers(min_value=0, max_value=8), st.booleans())
def test_the_measure_is_exact_for_json(value, limit, ascii_only):
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert jsontext.nested_deeper_than(text, limit) is (depth(value) > limit)
    assert jsontext.nested_deeper_than(text.encode("utf-8"), limit) is (depth(value) > limit)


@pytest.mark.parametrize(("text", "deepest"), [
    ('"[[[[[["', 0),  # brackets in a string are text
    ('["\\"[[[[", [[1]]]', 3),  # an escaped quote does not end the string
    ('[[["abc', 3),  # a string left open hides the rest, as it does from json
    ('[[["abc]]]]]]]]', 3),
    ("[" * 5000, 5000),
    ("[[]]]][[[", 2),  # json stops at the stray bracket
])
def test_the_measure_of_text_that_is_not_all_json(text, deepest):
    assert not jsontext.nested_deeper_than(text, deepest)
    assert deepest == 0 or jsontext.nested_deeper_than(text, deepest - 1)


def test_loads_refuses_deep_text_as_a_value_error_before_json_sees_it(monkeypatch):
    def parse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("json was handed the text")

    monkeypatch.setattr(json, "loads", parse)
    with pytest.raises(ValueError, match="nested deeper than 100 levels"):
        jsontext.loads("[" * 101 + "]" * 101)
    with pytest.raises(jsontext.TooDeep):
        jsontext.loads(b'{"a": ' * 101 + b"1" + b"}" * 101)


DEEP = "[" * 5000 + "]" * 5000
READERS: List[Callable[[], Any]] = [
    lambda: events.parse_event([{"specversion": "1.0", "id": "e1", "type": "mns:Queue:SendMessage",
                                 "data": {"messageId": "M1", "messageBody": DEEP}}]),  # a queue message's body
    lambda: events.parse_event(json.dumps({"triggerTime": "t", "triggerName": "n", "payload": DEEP})),
    lambda: events.parse_event(DEEP.encode()),  # a direct invocation's event
    lambda: normalize_user_data('{"a": "' + DEEP.replace('"', '\\"') + '"}'),  # JSON inside UserData's JSON
    lambda: normalize_user_data(DEEP),  # ICE's UserData
    lambda: Tracking.from_json("a1", DEEP.encode(), "2026-01-01T00:00:00.000Z"),  # a marker edited by hand
]


@pytest.mark.parametrize("read", READERS)
def test_reading_deep_text_runs_nothing_at_the_recursion_limit(read):
    """A collection runs on nearly every allocation, and its callback needs 30 frames: at the
    recursion limit, that callback fails, unraisably. Measured first, the text never gets there."""
    unraisable: List[Any] = []

    def needs_frames(phase: str, info: Any, frames: int = 30) -> None:
        if frames:
            needs_frames(phase, info, frames - 1)

    hook, threshold = sys.unraisablehook, gc.get_threshold()
    sys.unraisablehook, gc.callbacks[:0] = unraisable.append, [needs_frames]
    gc.set_threshold(1)
    try:
        try:
            read()
        except (BadRequest, ValueError):
            pass
    finally:
        gc.set_threshold(*threshold)
        gc.callbacks.remove(needs_frames)
        sys.unraisablehook = hook
    assert not unraisable, [str(u.exc_value) for u in unraisable][:3]


def test_an_event_nested_deeper_than_allowed_is_still_refused_by_name():
    with pytest.raises(BadRequest, match="callback body is nested deeper than 10 levels"):
        events._load_json("[" * 11 + "]" * 11, "callback body", max_depth=10)
    assert events._load_json("[" * 10 + "]" * 10, "callback body", max_depth=10) is not None
    with pytest.raises(BadRequest, match="event is nested deeper than 500 levels"):
        events.parse_event("[" * 501 + "]" * 501)


def test_a_record_file_edited_into_deep_nesting_is_corrupt_not_a_crash(tmp_path):
    store = FileStore(str(tmp_path))
    (tmp_path / "jobs").mkdir(parents=True, exist_ok=True)
    (tmp_path / "jobs" / "a1.json").write_text('{"job_id": "a1", "user_data": ' + DEEP + "}")
    with pytest.raises(StoreError, match="record a1 is corrupt: nested deeper than 100 levels"):
        store.load("a1")
