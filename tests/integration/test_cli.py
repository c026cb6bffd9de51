"""The operator's command line on every store: each command as a user types it (python -m ice_upload_sync)."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from ice_upload_sync import cli

from tests.scenario import CALLBACK_AUTH_KEY, CALLBACK_URL, EVENTS_DIR, JOB, load_event

FUNCTION = Path(__file__).resolve().parents[2] / "function"


def run(*argv: str):
    out = io.StringIO()
    code = cli.main(list(argv), out=out)
    return code, out.getvalue()


@pytest.fixture
def recorded(seeded, fc):
    """Every sample job looked up once, and a sweep's worth of pending ones."""
    fc.invoke(load_event("upload-media-by-url-response.json"))
    fc.invoke({"JobIds": [JOB["succeeded"], JOB["failed"], JOB["processing"], JOB["pending"]]})
    return fc


def test_get_prints_one_record_and_fails_for_an_unknown_job(recorded):
    code, text = run("get", JOB["succeeded"])
    assert code == 0 and "state" in text and "succeeded" in text
    assert all(len(line) <= cli.WIDTH for line in text.splitlines())
    code, text = run("get", JOB["failed"], "--json")
    assert code == 0 and json.loads(text)["error_code"] == "URLInvalidError"
    assert run("get", "no-such-job")[0] == 1


def test_list_filters_pages_and_fits_a_terminal(recorded):
    code, text = run("list", "--json")
    assert code == 0
    ids = [r["job_id"] for r in json.loads(text)["records"]]
    assert ids == sorted(ids) and len(ids) == 6
    code, text = run("list", "--state", "succeeded", "--json")
    assert [r["job_id"] for r in json.loads(text)["records"]] == [JOB["succeeded"]]
    page = json.loads(run("list", "--limit", "2", "--json")[1])
    assert len(page["records"]) == 2 and page["next_after"] == page["records"][-1]["job_id"]
    rest = json.loads(run("list", "--after", page["next_after"], "--json")[1])
    assert [r["job_id"] for r in page["records"] + rest["records"]] == ids
    assert json.loads(run("list", "--since", "2999-01-01T00:00:00Z", "--json")[1])["records"] == []
    code, text = run("list")
    assert code == 0 and "6 record(s)" in text and all(len(line) <= cli.WIDTH for line in text.splitlines())


def test_bad_usage_exits_2(recorded):
    with pytest.raises(SystemExit) as exited:
        run("list", "--state", "done")
    assert exited.value.code == 2
    with pytest.raises(SystemExit) as exited:
        run("frobnicate")
    assert exited.value.code == 2


def test_stats_counts_states_and_names_the_oldest_pending_job(recorded):
    recorded.rewrite_marker(JOB["processing"], first_seen_at="2026-01-01T00:00:00Z")
    stats = json.loads(run("stats", "--json")[1])
    assert stats["records"] == 6 and stats["by_state"]["succeeded"] == 1 and stats["by_state"]["failed"] == 1
    assert stats["pending"] == len(recorded.pending()) >= 3
    assert (stats["events_owed"], stats["oldest_owed"]) == (0, None)  # NOTIFY_URL unset: nothing is owed
    text = run("stats")[1]
    assert "backlog" in text and "events owed: 0" in text


def test_stats_shows_the_completion_events_still_owed_and_why(seeded, fc, eventbridge):
    fc.monkeypatch.setenv("NOTIFY_EVENTBRIDGE", "no-such-bus")
    fc.monkeypatch.setenv("EVENTBRIDGE_ENDPOINT", eventbridge.endpoint)
    fc.invoke({"JobIds": [JOB["succeeded"], JOB["processing"]]})
    stats = json.loads(run("stats", "--json")[1])
    assert stats["events_owed"] == 1
    oldest = stats["oldest_owed"]
    assert (oldest["job_id"], oldest["state"], oldest["tries"]) == (JOB["succeeded"], "succeeded", 1)
    assert "EventBusNotExist" in oldest["last_error"]
    text = run("stats")[1]
    assert "events owed: 1" in text and "EventBusNotExist" in text
    assert all(len(line) <= cli.WIDTH for line in text.splitlines())


def test_check_and_sweep_run_the_handler_and_fail_with_it(recorded, seeded):
    code, text = run("check", JOB["vod"], "--json")
    assert code == 0 and json.loads(text)["written"] == 1
    seeded.update_job(JOB["pending"], Status="Success", CompleteTime="2026-11-25 03:00:00")
    code, text = run("sweep")
    assert code == 0 and "written: 1" in text and recorded.record(JOB["pending"])["state"] == "succeeded"
    assert run("check", "bad id!")[0] == 1  # refused by the handler: a failure, not a crash


def test_replay_takes_an_event_or_a_failure_destination_message(recorded, tmp_path):
    event = tmp_path / "event.json"
    event.write_text((EVENTS_DIR / "callback-vod-flat.json").read_text())
    assert run("replay", str(event))[0] == 0 and recorded.record(JOB["vod"]) is not None
    failed = {"timestamp": 1764039521000, "requestContext": {"requestId": "r", "functionArn": "acs:fc:::f",
              "condition": "UnhandledInvocationError", "approximateInvokeCount": 4},
              "requestPayload": json.dumps({"JobIds": [JOB["eventbridge"]]}),
              "responseContext": {"statusCode": 200, "functionError": "UnhandledInvocationError"},
              "responsePayload": ""}
    import base64
    wrapped = tmp_path / "mns-message.json"  # as read from the MNS queue: the body base64-encoded
    wrapped.write_text(json.dumps({"MessageId": "m1", "MessageBody": base64.b64encode(
        json.dumps(failed).encode()).decode()}))
    assert run("replay", str(wrapped))[0] == 0 and recorded.record(JOB["eventbridge"])["state"] == "failed"
    garbage = tmp_path / "garbage"
    garbage.write_text("%%%")
    assert run("replay", str(garbage))[0] == 1


def test_sign_callback_prints_an_event_the_handler_accepts(recorded, tmp_path):
    recorded.monkeypatch.setenv("CALLBACK_AUTH_KEY", CALLBACK_AUTH_KEY)
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"EventType": "UploadByURLComplete", "MessageBody": {"JobId": JOB["http"]}}))
    code, text = run("sign-callback", "--url", CALLBACK_URL, "--key", CALLBACK_AUTH_KEY, str(body))
    assert code == 0
    event = tmp_path / "signed.json"
    event.write_text(text)
    code, text = run("replay", str(event), "--json")
    assert code == 0 and json.loads(text)["statusCode"] == 200
    code, _ = run("sign-callback", "--url", CALLBACK_URL, "--key", "wrong-key", str(body))
    event.write_text(_)
    assert run("replay", str(event))[0] == 1  # 401


def test_create_tables_is_for_tablestore_only(recorded):
    code = None
    if recorded.store_kind == "tablestore":
        code, text = run("create-tables")
        assert code == 0 and "exists" in text
    else:
        with pytest.raises(SystemExit) as exited:
            run("create-tables")
        assert exited.value.code == 2


def test_python_dash_m_runs_it(tmp_path):
    # a folder needs no credentials: none are set
    env = {"PATH": "/usr/bin:/bin", "RECORD_STORE": f"file://{tmp_path}", "PYTHONPATH": str(FUNCTION)}
    result = subprocess.run([sys.executable, "-m", "ice_upload_sync", "stats", "--json"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["records"] == 0
    result = subprocess.run([sys.executable, "-m", "ice_upload_sync", "get"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2


def test_the_console_script_is_installed_by_make(tmp_path):
    script = Path(sys.executable).parent / "ice-upload-sync"
    if not script.exists():
        pytest.skip("not installed here: make installs it into .venv (pip install -e .)")
    env = {"PATH": "/usr/bin:/bin", "RECORD_STORE": f"file://{tmp_path}", "ALIBABA_CLOUD_ACCESS_KEY_ID": "a",
           "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "b"}
    result = subprocess.run([str(script), "list", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"records": [], "next_after": None}
