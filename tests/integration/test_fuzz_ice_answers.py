"""Fuzzing ICE's answers: hostile field values served by the emulator, through the SDK and the real handler.

Each example puts a few healthy jobs and a few hostile ones (every field drawn from wrong
types, control characters, lone surrogates, huge numbers, odd times, deep nesting) in the
emulator, asks the handler about all of them, and checks the invariants of CONTRACT
sections 2, 4 and 6:

- the handler returns a summary or raises ``SyncIncomplete`` (after writing the rest), never
  another exception;
- no healthy job goes unrecorded because of an odd neighbour;
- every record the store holds is strict JSON (no NaN / Infinity) in valid UTF-8, with the
  schema's types.

The example budget is modest in CI (``FUZZ_EXAMPLES``, default 15 per store); set it higher
to search longer: ``FUZZ_EXAMPLES=500 .venv/bin/python -m pytest tests/integration/test_fuzz_ice_answers.py``.
"""
from __future__ import annotations

import json
import os
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ice_upload_sync.errors import SyncIncomplete
from ice_upload_sync.records import STATES
from ice_upload_sync.stores import Tracking

from tests.scenario import load_event
from tests.support.ice import ICE_FIELDS

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
SWEEP = load_event("timer-sweep.json")

# Text with every code point, lone surrogates and control characters included.
any_text = st.text(alphabet=st.characters(blacklist_categories=()), max_size=40)
odd_strings = st.sampled_from([
    "", " ", "inf", "-inf", "NaN", "1e999", "-1", "1.5", "0x10", "1_000", "\u0661\u0662", "9" * 400,
    "123", "[]", "{}", "null", "true", '"\\ud83d"', "\ud83d", "clip \ud83d", "\x00\x01\x1f", "\u2028",
    "2026-01-01T00:00:00+24:00", "2026-13-45 25:61:61", "0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00",
    "99999999999999", "1764039521000", "Success", "UPLOAD_FAIL", "Normal", "\u0130NVALID",
    '{"a": NaN}', '{"a": 1e999}', "[" * 200 + "]" * 200, '{"x": "' + "y" * 2000 + '"}',
])
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2 ** 80), max_value=2 ** 80),
                         st.floats(allow_nan=True, allow_infinity=True))
hostile_value = st.one_of(
    odd_strings, any_text, json_scalars,
    st.lists(st.one_of(any_text, json_scalars), max_size=3),
    st.dictionaries(st.sampled_from(["a", "JobId", "Status"]), st.one_of(any_text, json_scalars), max_size=3),
)
hostile_job = st.fixed_dictionaries({}, optional={name: hostile_value for name in ICE_FIELDS})


def strict_json(raw: bytes) -> object:
    def refuse(constant: str) -> object:
        raise ValueError(f"non-strict JSON constant {constant}")

    return json.loads(raw.decode("utf-8"), parse_constant=refuse)


def check_record(record: dict) -> None:
    assert record["state"] in STATES
    assert isinstance(record["final"], bool)
    assert record["file_size"] is None or (isinstance(record["file_size"], int) and record["file_size"] >= 0)
    assert record["user_data"] is None or isinstance(record["user_data"], (dict, list, str))
    for name in ("created_at", "completed_at"):
        value = record[name]
        assert value is None or (isinstance(value, str) and len(value) == 20 and value.endswith("Z")), value
    for value in record.values():
        if isinstance(value, str):
            value.encode("utf-8")  # no lone surrogate survived


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
@given(hostile=st.lists(hostile_job, min_size=1, max_size=4), healthy=st.integers(min_value=1, max_value=3),
       sweep=st.booleans())
def test_hostile_ice_answers_never_cost_a_healthy_job_its_record(ice, fc, hostile, healthy, sweep):
    """A direct check of the jobs, or a sweep of them (tracked first): the same invariants."""
    tag = uuid.uuid4().hex[:8]
    healthy_ids = [f"good-{tag}-{n}" for n in range(healthy)]
    hostile_ids = [f"odd-{tag}-{n}" for n in range(len(hostile))]
    for job_id in healthy_ids:
        ice.put_job(job_id, Status="Success", CreationTime="2026-11-25T02:00:00Z",
                    CompleteTime="2026-11-25 02:10:00", FileSize="2048", MediaId=f"m-{job_id}",
                    UploadURL=f"https://media.example.com/{job_id}.mp4", UserData='{"clip": "ok"}')
    for job_id, fields in zip(hostile_ids, hostile):
        ice.put_job(job_id, raw=True, **fields)
    ids = healthy_ids + hostile_ids
    order = sorted(ids, key=lambda job_id: hash((tag, job_id)))  # neighbours in any order
    if sweep:
        for job_id in order:
            fc.store.track(Tracking(job_id, "2026-11-25T02:00:00Z", "direct"))
    try:
        summary = fc.invoke(SWEEP if sweep else {"JobIds": order})
    except SyncIncomplete as exc:  # allowed only after the rest was written
        summary = exc.summary
    failed = set(summary["failed"])
    assert not failed & set(healthy_ids), summary
    for job_id in healthy_ids:
        record = fc.record(job_id)
        assert record is not None and record["state"] == "succeeded", (job_id, record)
    for job_id in ids:
        record = fc.record(job_id)
        if record is None:
            assert job_id in failed or job_id in summary["not_found"], (job_id, summary)
        else:
            check_record(record)
    if fc.store_kind == "file":
        for path in (fc.view.root / "jobs").glob("*.json"):
            strict_json(path.read_bytes())
