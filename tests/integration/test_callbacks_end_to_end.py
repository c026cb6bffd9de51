"""ICE's callbacks, end to end, as a deployment meets them (issue 19, contract section 2).

The ICE emulator finishes an upload and calls back like ICE (a 200 within 3 s, else two retries
1 s apart); the local FC front end (tests/support/fc.py) serves the HTTP trigger with a pool of
instances, each a fresh interpreter running the function as FC's runtime does, and takes the
hand-back's asynchronous invocation. No timer runs unless a test fires one: the record must
follow the callback by itself, cold or warm.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator, Optional

import pytest

from tests.conftest import ACCESS_KEY_ID, ACCESS_KEY_SECRET
from tests.scenario import CALLBACK_AUTH_KEY
from tests.support.fc import FcFrontEnd

JOB = "ca11bac0000000000000000000000001"
OTHER = "ca11bac0000000000000000000000002"
RECORD_WITHIN_S = 5.0  # from ICE's first attempt to the record (the bound)


def _created() -> str:
    return (datetime.now(timezone.utc) - timedelta(minutes=3)).strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture
def deployment(ice, tmp_path) -> Iterator[FcFrontEnd]:
    """The function behind the local FC front end, ICE's callback setting pointing at its trigger."""
    records = tmp_path / "records"
    env = {"ICE_ENDPOINT": ice.endpoint, "ICE_REGION": "cn-shanghai", "ALIBABA_CLOUD_ACCESS_KEY_ID": ACCESS_KEY_ID,
           "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ACCESS_KEY_SECRET, "RECORD_STORE": f"file://{records}",
           "CALLBACK_AUTH_KEY": CALLBACK_AUTH_KEY, "CALLBACK_HANDBACK": "on"}
    with FcFrontEnd(env=env, failure_dir=tmp_path / "failed", idle_s=60) as fc:
        trigger = f"{fc.url}/ice-callback"
        fc.update_env(CALLBACK_URL=trigger)
        ice.set_callback(trigger, CALLBACK_AUTH_KEY)
        fc.records = records  # type: ignore[attr-defined]
        for job_id in (JOB, OTHER):
            ice.put_job(job_id, Status="UPLOADING", CreationTime=_created(),
                        UploadURL=f"https://media.example.com/{job_id}.mp4")
        yield fc
        ice.stop()


def _record(fc: FcFrontEnd, job_id: str) -> Optional[dict]:
    path = Path(fc.records) / "jobs" / f"{job_id}.json"  # type: ignore[attr-defined]
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _recorded_final(fc: FcFrontEnd, job_id: str, timeout_s: float) -> Optional[float]:
    """When (time.time()) the job's record was first seen final, polling up to ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = _record(fc, job_id)
        if record is not None and record["final"]:
            return time.time()
        time.sleep(0.02)
    return None


def _first_attempt(ice, job_id: str):
    attempts = [attempt for attempt in ice.callback_attempts if attempt.job_id == job_id]
    assert attempts, "ICE never called back"
    return attempts


def test_a_cold_callback_is_answered_at_once_and_recorded_within_seconds_by_its_hand_back(deployment, ice):
    ice.finish_job(JOB, media_id="m-cold", file_size="2048")
    ice.wait_for_callback(JOB, timeout_s=20)
    attempts = _first_attempt(ice, JOB)
    assert [a.status for a in attempts] == [200], "ICE had to retry: the cold instance missed its window"
    recorded_at = _recorded_final(deployment, JOB, timeout_s=30)
    assert recorded_at is not None, "the record never followed the callback"
    took = recorded_at - attempts[0].sent_at
    record = _record(deployment, JOB)
    assert (record["state"], record["media_id"], record["file_size"]) == ("succeeded", "m-cold", 2048)
    assert took < RECORD_WITHIN_S, f"{took:.2f} s from ICE's first attempt to the record"
    deployment.wait_idle()  # the record is written before its run is logged as done
    kinds = [(i.kind, i.cold) for i in deployment.invocations]
    assert kinds[0] == ("http", True) and [k for k, _ in kinds].count("http-async") == 1, kinds
    assert "timer" not in [k for k, _ in kinds]
    run = next(i for i in deployment.invocations if i.kind == "http-async")
    body = json.loads(run.value()["body"])
    assert body["written"] == 1 and "handed_back" not in body, "the asynchronous run handed back again"


def test_a_warm_instance_looks_the_callback_up_in_place(deployment, ice):
    warmed = deployment.invoke({"JobIds": [OTHER]})  # a direct invocation builds the ICE client
    assert warmed.status == 200
    ice.finish_job(JOB)
    ice.wait_for_callback(JOB, timeout_s=20)
    callback = next(i for i in deployment.invocations if i.kind == "http")
    body = json.loads(callback.value()["body"])
    assert not callback.cold and body["written"] == 1 and "handed_back" not in body
    assert _record(deployment, JOB)["state"] == "succeeded"
    assert "http-async" not in [i.kind for i in deployment.invocations]


def test_every_callback_is_handed_back_at_most_once(deployment, ice):
    for job_id in (JOB, OTHER):
        ice.finish_job(job_id)
    for job_id in (JOB, OTHER):
        ice.wait_for_callback(job_id, timeout_s=20)
        assert _recorded_final(deployment, job_id, timeout_s=30) is not None
    deployment.wait_idle()  # a record is written before its run is logged as done
    callbacks = [i for i in deployment.invocations if i.kind == "http"]
    handed = [i for i in deployment.invocations if i.kind == "http-async"]
    handed_back = sum(json.loads(i.value()["body"]).get("handed_back") is True for i in callbacks)
    assert len(handed) == handed_back <= len(callbacks) == 2
    assert all("handed_back" not in json.loads(i.value()["body"]) for i in handed)


def test_a_hand_back_fc_refuses_ends_in_the_record_after_the_next_sweep(deployment, ice):
    deployment.refuse_async_next(1)  # FC does not take the hand-back (its queue full, unavailable)
    ice.finish_job(JOB)
    ice.wait_for_callback(JOB, timeout_s=20)
    callback = next(i for i in deployment.invocations if i.kind == "http")
    body = json.loads(callback.value()["body"])
    assert [a.status for a in _first_attempt(ice, JOB)] == [200]  # ICE got its answer all the same
    assert body["handed_back"] is False and body["deferred"] == [JOB] and _record(deployment, JOB) is None
    sweep = deployment.wait_for(deployment.fire_timer("sweep"), timeout_s=60)
    assert sweep.status == 200 and _record(deployment, JOB)["state"] == "succeeded"
    deployment.wait_idle()
    assert "http-async" not in [i.kind for i in deployment.invocations]
