"""Every job stands alone: whatever ICE sends about one job, every job of the sweep is recorded.

Each store (file, OSS, Tablestore) must hold strict JSON in valid UTF-8 for every record:
no bare ``NaN``, no lone surrogate, no exception out of a writer thread, and the sweep's
cursor and summary stay sane. The odd values are the ones seen in the wild or in ICE's
reference: JavaScript's ``JSON.stringify`` of a string cut inside an emoji, ``FileSize``
"inf", an offset of +24:00, UserData that Python's parser takes but strict readers do not.
"""
from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Dict

import pytest

from tests.scenario import load_event

CUT_EMOJI = "clip \ud83d"  # a Python string holding half of a UTF-16 pair
HALF = "\ufffd"  # what a lone surrogate is recorded as

# job -> (ICE fields for the sweep, what the record must say)
HOSTILE: Dict[str, Any] = {
    "odd-stringified-surrogate": ({"UserData": '"\\ud83d"'}, {"user_data": '"\\ud83d"'}),
    "odd-nested-surrogate": ({"UserData": '{"title": "cut \\ud83d", "n": "{\\"t\\": \\"\\\\ud83d\\"}"}'},
                             {"user_data": {"title": "cut " + HALF, "n": {"t": HALF}}}),
    "odd-raw-surrogate": ({"UserData": CUT_EMOJI, "MediaId": "m\ud83d"},
                          {"user_data": "clip " + HALF, "media_id": "m" + HALF}),
    "odd-error-surrogate": ({"Status": "UPLOAD_FAIL", "ErrorCode": "E\udc00", "ErrorMessage": "no " + CUT_EMOJI,
                             "CompleteTime": "2026-01-01 00:00:00"},
                            {"state": "failed", "error_code": "E" + HALF, "error_message": "no clip " + HALF}),
    "odd-size-inf": ({"FileSize": "inf"}, {"file_size": None}),
    "odd-size-nan": ({"FileSize": "nan", "Status": "Success", "CompleteTime": "2026-01-01 00:00:00"},
                     {"file_size": None, "state": "succeeded"}),
    "odd-size-huge": ({"FileSize": "1e999"}, {"file_size": None}),
    "odd-size-negative": ({"FileSize": "-5"}, {"file_size": None}),
    "odd-offset": ({"CreationTime": "2026-01-01T00:00:00+24:00"}, {"created_at": None}),
    "odd-year-one": ({"Status": "Success", "CompleteTime": "0001-01-01T00:00:00+01:00"},
                     {"state": "succeeded", "completed_at": None}),
    "odd-nan": ({"UserData": "NaN"}, {"user_data": "NaN"}),
    "odd-infinity": ({"UserData": "1e999"}, {"user_data": "1e999"}),
    "odd-number": ({"UserData": "123"}, {"user_data": "123"}),
    "odd-nested-nan": ({"UserData": '{"a": NaN, "b": -Infinity}'}, {"user_data": '{"a": NaN, "b": -Infinity}'}),
    "odd-nested-overflow": ({"UserData": '[1e999]'}, {"user_data": '[1e999]'}),
    "odd-deep": ({"UserData": "[" * 200 + "]" * 200}, {"user_data": "[" * 200 + "]" * 200}),
}
PLAIN = [f"plain-{i:02d}" for i in range(14)]


@pytest.fixture
def escaping_ice(ice):
    """ICE answering with every non-ASCII character escaped (``\\ud83d`` for half a pair), as a
    Java or JavaScript service may: the emulators encode every answer that way
    (``tests/support/openapi.py``, ``json.dumps`` with ``ensure_ascii``), which is what lets
    a lone surrogate reach the SDK at all."""
    return ice


def strict_loads(data: bytes) -> Any:
    """What a strict reader does: UTF-8 or nothing, and no NaN / Infinity."""
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(data.decode("utf-8"), parse_constant=refuse)


def stored_record(fc, job_id: str) -> dict:
    """The record as the store holds it, read the strict way (Tablestore: its columns, and the
    ``user_data`` column, each strict JSON in UTF-8)."""
    view = fc.view
    if view.kind == "file":
        return strict_loads((view.root / "jobs" / f"{job_id}.json").read_bytes())
    if view.kind == "oss":
        return strict_loads(view.bucket.get_object(f"{view.prefix}/jobs/{job_id}.json").read())
    columns = view.server.row(view.table, [("job_id", job_id)])
    assert columns is not None, job_id
    record = strict_loads(json.dumps(columns, ensure_ascii=False, allow_nan=False).encode("utf-8"))
    if "user_data" in record:
        record["user_data"] = strict_loads(record["user_data"].encode("utf-8"))
    return {"user_data": None, "file_size": None, "created_at": None, "completed_at": None, **record}


def test_a_sweep_records_every_job_whatever_ice_says_about_some(escaping_ice, fc, caplog):
    ice = escaping_ice
    created = (datetime.now(timezone.utc) - timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    job_ids = sorted([*HOSTILE, *PLAIN])
    for job_id in job_ids:
        ice.put_job(job_id, Status="PENDING", CreationTime=created)
    tracked = fc.invoke({"UploadJobs": [{"JobId": job_id} for job_id in job_ids]})
    assert tracked["written"] == len(job_ids) and fc.pending() == set(job_ids)

    for number, job_id in enumerate(PLAIN):
        ice.update_job(job_id, Status="UPLOADING", FileSize=str(1000 + number), UserData='{"clip": "ok \u2713"}')
    for job_id, (fields, _expected) in HOSTILE.items():
        ice.update_job(job_id, **{"Status": "UPLOADING", **fields})
    caplog.set_level(logging.WARNING, logger="ice_upload_sync")
    summary = fc.invoke(load_event("timer-sweep.json"))

    assert summary["failed"] == [] and summary["deferred"] == []
    assert summary["checked"] == len(job_ids) and summary["written"] == len(job_ids)
    assert summary["complete"] is True and summary["cursor"] is None
    records = {job_id: stored_record(fc, job_id) for job_id in job_ids}
    for job_id, (_fields, expected) in HOSTILE.items():
        assert {name: records[job_id][name] for name in expected} == expected, job_id
    assert all(records[job_id]["user_data"] == {"clip": "ok \u2713"} for job_id in PLAIN)
    assert records["odd-offset"]["state"] == "processing"  # a null time costs nothing else
    # each odd field is named in a warning together with its job
    for job_id, field in (("odd-size-inf", "FileSize"), ("odd-offset", "created_at"),
                          ("odd-raw-surrogate", "user_data"), ("odd-error-surrogate", "error_message"),
                          ("odd-nested-nan", "user_data")):
        assert any(job_id in line and field in line for line in caplog.messages), (job_id, field)

    # the same odd answers again change nothing: normalization is stable, nothing is rewritten
    still_open = {job_id for job_id, record in records.items() if not record["final"]}
    assert fc.pending() == still_open
    again = fc.invoke(load_event("timer-sweep.json"))
    assert (again["checked"], again["written"], again["unchanged"]) == (len(still_open), 0, len(still_open))
    assert again["failed"] == [] and again["deferred"] == [] and again["cursor"] is None


def test_odd_jobs_looked_up_directly_are_recorded_too(escaping_ice, fc):
    """The callback / direct path: the same odd answers, asked for by job ID, never fail a job."""
    for job_id, (fields, _expected) in HOSTILE.items():
        escaping_ice.put_job(job_id, **{"Status": "UPLOADING", **fields})
    summary = fc.invoke({"JobIds": sorted(HOSTILE)})
    assert summary["failed"] == [] and summary["deferred"] == [] and summary["written"] == len(HOSTILE)
    for job_id, (_fields, expected) in HOSTILE.items():
        record = stored_record(fc, job_id)
        assert {name: record[name] for name in expected} == expected, job_id
