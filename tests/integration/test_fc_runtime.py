"""The function under FC's own conventions (tests/fc_runtime.py): every sample event, cold and warm instances.

These run the source tree with this interpreter; tests/deploy/test_artifact_runtime.py runs the
same harness on the packaged artifact with the runtime's Python.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.conftest import ACCESS_KEY_ID, ACCESS_KEY_SECRET
from tests.fc_runtime import FcInstance, answer_body
from tests.scenario import CALLBACK_AUTH_KEY, EVENTS_DIR, JOB, signed_http_event

FUNCTION = Path(__file__).resolve().parents[2] / "function"
SAMPLES = sorted(path.name for path in EVENTS_DIR.glob("*.json"))


def instance_env(ice, records: Path, **extra: str) -> dict:
    return {"ICE_ENDPOINT": ice.endpoint, "ICE_REGION": "cn-shanghai", "RECORD_STORE": f"file://{records}",
            "ALIBABA_CLOUD_ACCESS_KEY_ID": ACCESS_KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ACCESS_KEY_SECRET,
            **extra}


def source_instance(ice, records: Path, runtime: str = "python3.10", **extra: str) -> FcInstance:
    """The source tree under this interpreter (its site-packages hold the SDKs, as the runtime's do)."""
    return FcInstance(FUNCTION, python=sys.executable, isolated=False, runtime=runtime,
                      env=instance_env(ice, records, **extra))


def write_code(folder: Path, source: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.py").write_text(source)
    return folder


# ---------------------------------------------------------------- the harness keeps FC's rules


def test_the_harness_fails_an_initializer_that_returns_an_object(tmp_path):
    code = write_code(tmp_path / "code", "class App: pass\n"
                                         "def initialize(context):\n    return App()\n"
                                         "def handler(event, context):\n    return {'ok': True}\n")
    with FcInstance(code) as instance:
        answer = instance.invoke({"JobIds": "x"})
    assert answer["result"] is None and answer["error"]["errorType"] == "TypeError"
    assert "not JSON serializable" in answer["error"]["errorMessage"]
    assert answer["initializer"]["error"]["errorType"] == "TypeError"


def test_the_harness_passes_bytes_a_text_timeout_and_serializes_as_the_runtime_does(tmp_path):
    code = write_code(tmp_path / "code", (
        "import decimal, datetime\n"
        "def initialize(context):\n    return None\n"
        "def handler(event, context):\n"
        "    assert isinstance(event, bytes) and isinstance(context.function.timeout, str)\n"
        "    assert not hasattr(context, 'get_remaining_time_in_ms')\n"
        "    if event == b'set':\n        return {1, 2}\n"
        "    if event == b'text':\n        return 'as is'\n"
        "    if event == b'raise':\n        raise KeyError('boom')\n"
        "    return {'b': decimal.Decimal('1.5'), 'a': datetime.date(2026, 12, 1)}\n"))
    with FcInstance(code) as instance:
        assert json.loads(instance.invoke(b"dict")["result"]) == {"a": "2026-12-01", "b": 1.5}
        assert instance.answers[0]["result"].startswith('{\n    "a"')  # indent=4, sort_keys=True
        assert instance.invoke(b"set")["error"]["errorType"] == "TypeError"
        assert instance.invoke(b"text")["result"] == "as is"
        error = instance.invoke(b"raise")["error"]
        assert error["errorType"] == "KeyError" and error["stackTrace"]


def test_the_python312_context_has_no_credentials_and_no_service(tmp_path):
    code = write_code(tmp_path / "code", (
        "def initialize(context):\n    return None\n"
        "def handler(event, context):\n"
        "    return [hasattr(context, 'credentials'), hasattr(context, 'service'), context.function.timeout]\n"))
    with FcInstance(code, runtime="python3.12") as instance:
        assert json.loads(instance.invoke(b"{}")["result"]) == [False, False, "300"]
    with FcInstance(code, runtime="python3.10") as instance:
        assert json.loads(instance.invoke(b"{}")["result"]) == [True, True, "300"]


# ---------------------------------------------------------------- the function under the harness


@pytest.mark.parametrize("runtime", ["python3.10", "python3.12"])
def test_every_sample_event_runs_on_one_instance(seeded, tmp_path, runtime):
    with source_instance(seeded, tmp_path / "records", runtime=runtime) as instance:
        for name in SAMPLES:
            answer = instance.invoke((EVENTS_DIR / name).read_bytes(), timeout="300")
            assert answer["error"] is None, (name, answer["error"])
            assert answer["initializer"] is None or answer["initializer"] == {"result": "null"}
            body = answer_body(answer)
            if "statusCode" in body:
                assert body["statusCode"] == 200, (name, body)
    assert instance.answers[0]["initializer"] == {"result": "null"}  # initialize returned None, once
    assert all(answer["initializer"] is None for answer in instance.answers[1:])


@pytest.mark.parametrize("name", SAMPLES)
def test_each_sample_event_runs_on_a_cold_instance(seeded, tmp_path, name):
    with source_instance(seeded, tmp_path / "records") as instance:
        answer = instance.invoke((EVENTS_DIR / name).read_bytes())
    assert answer["error"] is None, answer["error"]
    assert answer["initializer"] == {"result": "null"}


def test_a_cold_signed_callback_is_tracked_without_the_ice_sdk_and_a_warm_one_is_looked_up(seeded, tmp_path):
    records = tmp_path / "records"
    with source_instance(seeded, records, CALLBACK_AUTH_KEY=CALLBACK_AUTH_KEY) as instance:
        cold = instance.invoke(signed_http_event())
        body = answer_body(cold)
        summary = json.loads(body["body"])
        assert body["statusCode"] == 200 and summary["deferred"] == [JOB["http"]] and summary["api_calls"] == 0
        assert (records / "pending" / JOB["http"]).is_file() and seeded.calls == []
        assert "alibabacloud_ice20201109" not in cold["loaded"] and "alibabacloud_tea_openapi" not in cold["loaded"]
        answer_body(instance.invoke({"JobIds": [JOB["succeeded"]]}))  # the instance looks a job up: now warm
        warm = json.loads(answer_body(instance.invoke(signed_http_event()))["body"])
        assert (warm["written"], warm["deferred"], warm["api_calls"]) == (1, [], 1)
    assert json.loads((records / "jobs" / f"{JOB['http']}.json").read_text())["state"] == "succeeded"
    assert not (records / "pending" / JOB["http"]).exists()


def test_every_log_line_is_json_with_the_request_id_even_from_worker_threads(seeded, tmp_path):
    with source_instance(seeded, tmp_path / "records") as instance:
        answer_body(instance.invoke((EVENTS_DIR / "upload-media-by-url-response.json").read_bytes(),
                                    request_id="req-upload"))
        answer_body(instance.invoke((EVENTS_DIR / "timer-sweep.json").read_bytes(), request_id="req-sweep"))
    ours = [json.loads(line) for line in instance.log.splitlines() if line.startswith("{")]
    assert ours and len(ours) == len([line for line in instance.log.splitlines() if line.strip()])
    assert all({"time", "level", "logger", "fc_request_id", "message"} <= set(line) for line in ours)
    # the unknown status word is logged while normalizing, on a writer thread
    from_workers = [line for line in ours if "TRANSCODING_QUEUED" in line["message"]]
    assert {line["fc_request_id"] for line in from_workers} == {"req-upload", "req-sweep"}
    assert all(line.get("thread", "").startswith("store") for line in from_workers), from_workers
    summaries = [line for line in ours if line["message"] == "summary"]
    assert [line["fc_request_id"] for line in summaries] == ["req-upload", "req-sweep"]
    assert summaries[0]["written"] == 2 and summaries[0]["logger"] == "ice_upload_sync"
