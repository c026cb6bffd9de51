"""The packaged function under FC's runtime conventions: the zip extracted read-only, the runtime's Python.

tests/fc_runtime.py runs each instance as FC would: ``index`` imported from the extracted
package, the initializer and then the handler, every answer through the runtime's
``json.dumps`` rule. The artifact's native modules are built for CPython 3.10, so these
tests need one (PATH or pyenv); tests/integration/test_fc_runtime.py runs the same harness
on the source tree everywhere.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ACCESS_KEY_ID, ACCESS_KEY_SECRET
from tests.deploy import artifact
from tests.deploy import package as pkg
from tests.fc_runtime import FcInstance, answer_body
from tests.scenario import CALLBACK_AUTH_KEY, EVENTS_DIR, JOB, signed_http_event

RUNTIME_PYTHON = pkg.find_cpython(pkg.PYTHON_VERSION)
pytestmark = pytest.mark.skipif(RUNTIME_PYTHON is None, reason=f"no CPython {pkg.PYTHON_VERSION} to run the artifact")
SAMPLES = sorted(path.name for path in EVENTS_DIR.glob("*.json"))


@pytest.fixture(scope="module")
def code(tmp_path_factory) -> Path:
    """/code: the zip ``make package`` writes, extracted read-only."""
    work = tmp_path_factory.mktemp("artifact")
    extracted = artifact.extract(artifact.build_zip(work), work / "code")
    yield extracted
    artifact.make_writable(extracted)


def instance(code: Path, ice, records: Path, **env: str) -> FcInstance:
    assert RUNTIME_PYTHON is not None
    return FcInstance(code, python=RUNTIME_PYTHON, vendor=code / pkg.VENDOR_DIR, env={
        "ICE_ENDPOINT": ice.endpoint, "ICE_REGION": "cn-shanghai", "RECORD_STORE": f"file://{records}",
        "ALIBABA_CLOUD_ACCESS_KEY_ID": ACCESS_KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ACCESS_KEY_SECRET, **env})


def files_under(root: Path) -> set:
    return {path for path in root.rglob("*")}


def test_every_sample_event_runs_on_the_packaged_function(code, seeded, tmp_path):
    before = files_under(code)
    with instance(code, seeded, tmp_path / "records") as fc:
        for name in SAMPLES:
            answer = fc.invoke((EVENTS_DIR / name).read_bytes())
            assert answer["error"] is None, (name, answer["error"])
            body = answer_body(answer)
            if "statusCode" in body:
                assert body["statusCode"] == 200, (name, body)
    assert fc.answers[0]["initializer"] == {"result": "null"}
    assert files_under(code) == before  # nothing written into /code
    assert "Traceback" not in fc.log


@pytest.mark.parametrize("name", SAMPLES)
def test_each_sample_event_starts_a_cold_packaged_instance(code, seeded, tmp_path, name):
    with instance(code, seeded, tmp_path / "records") as fc:
        answer = fc.invoke((EVENTS_DIR / name).read_bytes())
    assert answer["initializer"] == {"result": "null"} and answer["error"] is None, answer["error"]


def test_a_cold_signed_callback_answers_200_tracks_the_job_and_never_imports_the_ice_sdk(code, seeded, tmp_path):
    records = tmp_path / "records"
    with instance(code, seeded, records, CALLBACK_AUTH_KEY=CALLBACK_AUTH_KEY) as fc:
        cold = fc.invoke(signed_http_event())
        body = answer_body(cold)
        assert body["statusCode"] == 200 and json.loads(body["body"])["deferred"] == [JOB["http"]]
        assert (records / "pending" / JOB["http"]).is_file() and seeded.calls == []
        # what a cold callback pays for: the interpreter, our package, the store's client, one write
        sdk = {"alibabacloud_ice20201109", "alibabacloud_tea_openapi", "darabonba", "aiohttp", "Tea"}
        assert sdk.isdisjoint(cold["loaded"]), sdk.intersection(cold["loaded"])
        # a warm instance looks callbacks up at once
        answer_body(fc.invoke({"JobIds": [JOB["succeeded"]]}))
        warm = json.loads(answer_body(fc.invoke(signed_http_event()))["body"])
        assert (warm["written"], warm["deferred"]) == (1, [])
    assert json.loads((records / "jobs" / f"{JOB['http']}.json").read_text())["state"] == "succeeded"


def test_the_packaged_function_puts_events_on_an_eventbridge_bus_and_imports_its_sdk_only_then(
        code, seeded, tmp_path):
    """The vendored EventBridge SDK works from the read-only package: a cold callback loads none of
    it; a direct call's event is put on the bus, signed as the service checks."""
    from tests.support.eventbridge import EventBridgeEmulator

    with EventBridgeEmulator() as eventbridge:
        eventbridge.add_access_key(ACCESS_KEY_ID, ACCESS_KEY_SECRET)
        eventbridge.create_bus("media-events")
        env = {"CALLBACK_AUTH_KEY": CALLBACK_AUTH_KEY, "NOTIFY_EVENTBRIDGE": "media-events",
               "EVENTBRIDGE_ENDPOINT": eventbridge.endpoint}
        with instance(code, seeded, tmp_path / "records", **env) as fc:
            cold = fc.invoke(signed_http_event())
            assert answer_body(cold)["statusCode"] == 200
            assert not any(name.startswith("alibabacloud_eventbridge") for name in cold["loaded"])
            summary = answer_body(fc.invoke({"JobIds": [JOB["succeeded"]]}))
        assert (summary["notified"], summary["notify_failed"]) == (1, 0)
        (event,) = eventbridge.events("media-events")
        assert event["Subject"] == JOB["succeeded"] and event["Type"] == "ice.upload.succeeded"
        vendored = code / pkg.VENDOR_DIR / "alibabacloud_eventbridge20200401"
        assert vendored.is_dir() and any(vendored.rglob("*.cpython-310.pyc"))
