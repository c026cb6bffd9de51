"""The operator's command line on every store: each command as a user types it (python -m ice_upload_sync)."""
from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from ice_upload_sync import cli
from ice_upload_sync.stores import Tracking
from ice_upload_sync.stores.file import FileStore

from tests.conftest import ACCESS_KEY_ID
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


def test_stats_counts_states_and_names_the_oldest_job_of_the_backlog(recorded):
    recorded.rewrite_marker(JOB["processing"], first_seen_at="2026-01-01T00:00:00Z")
    stats = json.loads(run("stats", "--json")[1])
    assert stats["records"] == 6 and stats["by_state"]["succeeded"] == 1 and stats["by_state"]["failed"] == 1
    # "pending" is a state (by_state); the jobs still tracked are the backlog
    assert "pending" not in stats and stats["backlog"] == len(recorded.pending()) >= 3
    assert stats["oldest_in_backlog"]["job_id"] in recorded.pending()
    assert (stats["events_owed"], stats["oldest_owed"]) == (0, None)  # NOTIFY_URL unset: nothing is owed
    text = run("stats")[1]
    assert "backlog: " in text and "events owed: 0" in text
    pending_state = stats["by_state"]["pending"]
    assert [line for line in text.splitlines() if "pending" in line] == [f"  pending     {pending_state:>8}"]


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
    assert run("check", "bad id!")[0] == 2  # refused by the handler (BadRequest): bad usage, not a crash


def test_replay_takes_an_event_or_a_failure_destination_message(recorded, tmp_path):
    event = tmp_path / "event.json"
    event.write_text((EVENTS_DIR / "callback-vod-flat.json").read_text())
    assert run("replay", str(event))[0] == 0 and recorded.record(JOB["vod"]) is not None
    failed = {"timestamp": 1764039521000, "requestContext": {"requestId": "r", "functionArn": "acs:fc:::f",
              "condition": "UnhandledInvocationError", "approximateInvokeCount": 4},
              "requestPayload": json.dumps({"JobIds": [JOB["eventbridge"]]}),
              "responseContext": {"statusCode": 200, "functionError": "UnhandledInvocationError"},
              "responsePayload": ""}
    wrapped = tmp_path / "mns-message.json"  # as read from the MNS queue: the body base64-encoded
    wrapped.write_text(json.dumps({"MessageId": "m1", "MessageBody": base64.b64encode(
        json.dumps(failed).encode()).decode()}))
    assert run("replay", str(wrapped))[0] == 0 and recorded.record(JOB["eventbridge"])["state"] == "failed"
    garbage = tmp_path / "garbage"
    garbage.write_text("%%%")
    assert run("replay", str(garbage))[0] == 2  # no event in it: bad usage, like an event the handler refuses


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
    FileStore(str(tmp_path))  # an empty store
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
    FileStore(str(tmp_path))  # an empty store
    env = {"PATH": "/usr/bin:/bin", "RECORD_STORE": f"file://{tmp_path}", "ALIBABA_CLOUD_ACCESS_KEY_ID": "a",
           "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "b"}
    result = subprocess.run([str(script), "list", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"records": [], "next_after": None, "unreadable": [], "unreadable_count": 0}


# ---------------------------------------------------------------- the command line tells the truth (issue 18)


STRAY = "0000-stray"  # sorts before every sample job


def add_unreadable_record(fc, job_id: str = STRAY) -> None:
    """A record that does not parse, as an editor's empty save or a copy gone wrong leaves it."""
    if fc.store_kind == "file":
        (fc.view.root / "jobs" / f"{job_id}.json").write_text("")
    elif fc.store_kind == "oss":
        fc.view.bucket.put_object(f"{fc.view.prefix}/jobs/{job_id}.json", b"")
    else:
        import tablestore as ots

        fc.store.client.put_row(fc.view.table, ots.Row([("job_id", job_id)], [("user_data", "{not json")]),
                                ots.Condition(ots.RowExistenceExpectation.IGNORE))


def edit_record(fc, job_id: str, **fields) -> None:
    """Change fields of a stored record by hand (what an operator's edit or an older version leaves)."""
    if fc.store_kind == "file":
        path = fc.view.root / "jobs" / f"{job_id}.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))
    elif fc.store_kind == "oss":
        key = f"{fc.view.prefix}/jobs/{job_id}.json"
        fc.view.bucket.put_object(key, json.dumps({**fc.view.record(job_id), **fields}).encode())
    else:
        fc.view.server.set_columns(fc.view.table, [("job_id", job_id)], **fields)


def test_one_unreadable_record_is_named_and_skipped_on_every_store(recorded, capsys):
    add_unreadable_record(recorded)
    code, text = run("list")
    err = capsys.readouterr().err
    assert code == 1, "the exit code says a record was skipped"
    assert "6 record(s)" in text and all(job_id in text for job_id in (JOB["succeeded"], JOB["failed"]))
    assert STRAY not in text and "1 unreadable record(s) skipped" in err and STRAY in err
    code, text = run("list", "--json")
    listing = json.loads(text)
    assert code == 1 and len(listing["records"]) == 6 and listing["unreadable_count"] == 1
    assert listing["unreadable"][0]["job_id"] == STRAY and "corrupt" in listing["unreadable"][0]["error"]
    code, text = run("stats", "--json")
    stats = json.loads(text)
    assert code == 1 and stats["records"] == 6 and stats["unreadable_count"] == 1
    code, text = run("stats")
    assert code == 1 and "6 record(s)" in text and "1 unreadable" in text and STRAY in capsys.readouterr().err
    assert run("get", STRAY)[0] == 1 and STRAY in capsys.readouterr().err
    assert run("get", JOB["succeeded"])[0] == 0


def test_a_record_edited_into_an_unknown_state_is_named_and_skipped(recorded, capsys):
    edit_record(recorded, JOB["processing"], state="done")  # no such state: a hand edit
    code, text = run("list", "--json")
    listing = json.loads(text)
    assert code == 1 and listing["unreadable_count"] == 1 and listing["unreadable"][0]["job_id"] == JOB["processing"]
    assert JOB["succeeded"] in {record["job_id"] for record in listing["records"]}
    code, text = run("stats", "--json")
    assert code == 1 and json.loads(text)["unreadable_count"] == 1


def test_stats_reads_times_in_other_formats(recorded):
    edit_record(recorded, JOB["processing"], first_seen_at="2026-01-01 08:00:00")  # as ICE writes its times
    edit_record(recorded, JOB["pending"], first_seen_at="not a time")  # the marker's time is used instead
    code, text = run("stats", "--json")
    stats = json.loads(text)
    assert code == 0, text
    assert stats["oldest_in_backlog"]["job_id"] == JOB["processing"]
    assert stats["oldest_in_backlog"]["since"] == "2026-01-01T08:00:00Z"
    code, text = run("stats")
    assert code == 0 and f"oldest in the backlog: {JOB['processing']} since 2026-01-01T08:00:00Z" in text


def test_read_commands_never_create_a_store_and_name_one_that_does_not_exist(recorded, tmp_path, capsys):
    if recorded.store_kind == "file":
        missing = tmp_path / "typo" / "records"
        recorded.monkeypatch.setenv("RECORD_STORE", f"file://{missing}")
        named = str(missing)
    elif recorded.store_kind == "oss":
        recorded.monkeypatch.setenv("RECORD_STORE", f"oss://{recorded.view.bucket_name}/typo")
        named = f"oss://{recorded.view.bucket_name}/typo"
    else:
        recorded.monkeypatch.setenv("RECORD_STORE", f"tablestore://{recorded.view.server.instance}/typo")
        named = "typo"
    for argv in (["get", JOB["succeeded"]], ["list"], ["stats"], ["stats", "--json"]):
        code, text = run(*argv)
        err = capsys.readouterr().err
        assert (code, text) == (1, ""), argv
        assert named in err and "does not exist" in err, err
    if recorded.store_kind == "file":
        assert not (tmp_path / "typo").exists()
    elif recorded.store_kind == "oss":
        import oss2

        assert list(oss2.ObjectIteratorV2(recorded.view.bucket, prefix="typo/")) == []
        recorded.monkeypatch.setenv("RECORD_STORE", "oss://no-such-bucket-here/records")
        assert run("stats")[0] == 1 and "no-such-bucket-here" in capsys.readouterr().err


def test_read_commands_need_no_ice_credentials(recorded, capsys):
    for name in ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"):
        recorded.monkeypatch.delenv(name)
    recorded.monkeypatch.setenv("ICE_ENDPOINT", "http://127.0.0.1:1")  # nothing there: ICE is never asked
    if recorded.store_kind == "file":
        for argv in (["get", JOB["succeeded"]], ["list"], ["stats"]):
            assert run(*argv)[0] == 0, argv
        return
    code, _ = run("stats")  # a cloud store needs its own credentials, and says so
    err = capsys.readouterr().err
    assert code == 1 and "ALIBABA_CLOUD_ACCESS_KEY_ID" in err and "FC context" not in err


@pytest.mark.parametrize("argv", [["get", JOB["succeeded"]], ["list"], ["stats"], ["check", JOB["succeeded"]],
                                  ["sweep"]])
def test_a_malformed_record_store_is_named_without_credentials(argv, monkeypatch, capsys):
    for name in ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RECORD_STORE", "oss://Bad_Bucket/records")
    assert run(*argv)[0] == 1
    err = capsys.readouterr().err
    assert "bucket name 'Bad_Bucket'" in err and "credentials" not in err


def test_check_prints_the_state_it_recorded_for_each_job(seeded, fc):
    asked = [JOB["succeeded"], JOB["failed"], JOB["processing"], JOB["unknown"]]
    code, text = run("check", *asked)
    assert code == 0
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line[:32] in asked}
    assert rows[JOB["succeeded"]][:2] == ["succeeded", "Normal"]
    assert rows[JOB["failed"]][:2] == ["failed", "UPLOAD_FAIL"]
    assert rows[JOB["processing"]][:2] == ["processing", "UPLOADING"]
    assert rows[JOB["unknown"]][0] == "-" and "unknown to ICE" in " ".join(rows[JOB["unknown"]])
    jobs = json.loads(run("check", *asked, "--json")[1])["jobs"]
    assert [(job["job_id"], job["state"]) for job in jobs] == [
        (JOB["succeeded"], "succeeded"), (JOB["failed"], "failed"), (JOB["processing"], "processing"),
        (JOB["unknown"], None)]


def test_replay_of_a_signed_callback_looks_the_job_up_at_once(seeded, fc, tmp_path):
    """The README's `sign-callback ... && replay` recipe: a command line is not a cold instance."""
    fc.monkeypatch.setenv("CALLBACK_AUTH_KEY", CALLBACK_AUTH_KEY)
    body = tmp_path / "body.json"
    body.write_text(json.dumps({"EventType": "UploadByURLComplete", "MessageBody": {"JobId": JOB["http"]}}))
    signed = tmp_path / "signed.json"
    signed.write_text(run("sign-callback", "--url", CALLBACK_URL, "--key", CALLBACK_AUTH_KEY, str(body))[1])
    code, text = run("replay", str(signed))
    assert code == 0 and "HTTP 200" in text
    assert fc.record(JOB["http"])["state"] == "succeeded" and fc.pending() == set()


def test_the_handlers_errors_are_printed_once_and_bad_input_exits_2(seeded, fc, capsys, caplog, tmp_path):
    caplog.set_level(logging.INFO)
    assert run("check", "bad id!")[0] == 2
    err = capsys.readouterr().err
    assert err.count("malformed job ID") == 1 and "malformed job ID" not in caplog.text
    bad = tmp_path / "bad-event.json"
    bad.write_text(json.dumps({"JobIds": ["bad id!"]}))
    assert run("replay", str(bad))[0] == 2
    assert capsys.readouterr().err.count("malformed job ID") == 1 and "malformed job ID" not in caplog.text


def test_check_sweep_and_replay_say_nothing_of_callback_auth_key(seeded, fc, capsys, caplog, tmp_path):
    """That warning is for an FC instance serving ICE's callbacks, not for an operator's shell."""
    caplog.set_level(logging.INFO)
    event = tmp_path / "event.json"
    event.write_text((EVENTS_DIR / "callback-vod-flat.json").read_text())
    for argv in (["check", JOB["succeeded"]], ["sweep"], ["replay", str(event)]):
        assert run(*argv)[0] == 0, argv
    assert "CALLBACK_AUTH_KEY" not in caplog.text + capsys.readouterr().err
    assert run("check", JOB["succeeded"], "--verbose")[0] == 0
    assert "CALLBACK_AUTH_KEY" in caplog.text  # there with --verbose: the function's own lines


def test_list_since_takes_a_date_and_refuses_nonsense_quietly(recorded, caplog):
    caplog.set_level(logging.INFO)
    today = recorded.record(JOB["succeeded"])["updated_at"][:10]
    assert len(json.loads(run("list", "--since", today, "--json")[1])["records"]) == 6
    assert json.loads(run("list", "--since", "2999-01-01", "--json")[1])["records"] == []
    assert len(json.loads(run("list", "--since", f"{today}T00:00:00+08:00", "--json")[1])["records"]) == 6
    with pytest.raises(SystemExit) as exited:
        run("list", "--since", "yesterday")
    assert exited.value.code == 2 and caplog.records == []  # a usage error, no warning before it


def test_json_and_verbose_go_before_or_after_the_command(recorded):
    assert json.loads(run("--json", "stats")[1])["records"] == 6
    assert json.loads(run("stats", "--json")[1])["records"] == 6
    assert json.loads(run("--json", "get", JOB["succeeded"])[1])["state"] == "succeeded"
    assert json.loads(run("--json", "check", JOB["succeeded"])[1])["checked"] == 1
    assert json.loads(run("--verbose", "--json", "list", "--limit", "1")[1])["next_after"] is not None


def test_job_ids_and_urls_are_never_cut():
    long_ids = [f"{index:02d}" + "j" * 62 for index in range(5)]  # the longest job IDs there are
    out = io.StringIO()
    cli._show_answer({"checked": 5, "written": 0, "deferred": long_ids, "deferred_count": 5},
                     argparse.Namespace(json=False), out,
                     [{"job_id": job_id, "state": None, "note": "left to the sweep"} for job_id in long_ids])
    text = out.getvalue()
    assert "~" not in text
    words = text.replace(",", " ").split()
    assert all(words.count(job_id) == 2 for job_id in long_ids)  # whole, in the answer and in the table
    answer = text[:text.index("job_id ")]  # the table's rows are as long as their IDs need
    assert all(len(line) <= cli.WIDTH for line in answer.splitlines())


def test_check_sweep_and_replay_exit_1_when_ice_refuses_our_credentials(seeded, fc, capsys, tmp_path):
    seeded.add_access_key(ACCESS_KEY_ID, "another-secret")  # ICE now refuses our secret; the store takes it
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"JobIds": [JOB["succeeded"]]}))
    for argv in (["check", JOB["succeeded"]], ["sweep"], ["replay", str(event)]):
        if argv == ["sweep"]:
            fc.store.track(Tracking(JOB["pending"], "2026-12-01T00:00:00Z", "direct"))  # something to sweep
        code, text = run(*argv)
        err = capsys.readouterr().err
        assert code == 1, (argv, text, err)
        assert "SignatureDoesNotMatch" in err and "ALIBABA_CLOUD_ACCESS_KEY_SECRET" in err, err


def test_check_and_sweep_exit_1_when_the_region_is_misspelled(seeded, fc, capsys):
    fc.store.track(Tracking(JOB["pending"], "2026-12-01T00:00:00Z", "direct"))
    fc.monkeypatch.setenv("ICE_ENDPOINT", "https://ice.cn-shanghia.invalid")  # RFC 2606: never resolves
    for argv in (["check", JOB["succeeded"]], ["sweep"]):
        code, text = run(*argv)
        err = capsys.readouterr().err
        assert code == 1, (argv, text, err)
        assert "does not resolve" in err and "ICE_REGION" in err, err


def test_check_exits_1_when_ice_throttles_past_the_deadline_or_is_not_there(seeded, fc, capsys):
    seeded.throttle_next(100)
    code, text = run("check", JOB["succeeded"])
    err = capsys.readouterr().err
    assert code == 1 and JOB["succeeded"] in err and "Throttling" in err, err
    fc.monkeypatch.setenv("ICE_ENDPOINT", "http://127.0.0.1:1")  # nothing listens there
    code, text = run("check", JOB["failed"])
    err = capsys.readouterr().err
    assert code == 1 and "ICE_ENDPOINT" in err and "ICE not reached" in text
    assert "complete" not in text, "a reassuring 'complete: True' beside a job ICE never answered"


def test_only_a_sweep_that_stopped_early_says_complete(seeded, fc, monkeypatch):
    import index

    answer = {"checked": 10, "written": 0, "complete": True, "cursor": None}
    monkeypatch.setattr(index, "handler", lambda event, context: answer)
    assert "complete" not in run("sweep")[1]
    stopped = {**answer, "complete": False, "cursor": JOB["pending"]}
    monkeypatch.setattr(index, "handler", lambda event, context: stopped)
    code, text = run("sweep")
    assert code == 0 and "complete: False" in text and f"cursor: {JOB['pending']}" in text


def test_the_command_line_reads_the_handlers_unreached_keys(seeded, fc, capsys, monkeypatch):
    """What the handler's summary says about ICE decides the exit code, whatever ICE did."""
    import index

    answer = {"checked": 1, "written": 0, "deferred": [JOB["pending"]], "deferred_count": 1,
              "unreached": [JOB["pending"]], "unreached_count": 1, "ice_error": "ICE answered HTTP 503 Unavailable"}
    monkeypatch.setattr(index, "handler", lambda event, context: answer)
    code, text = run("sweep")
    err = capsys.readouterr().err
    assert code == 1 and JOB["pending"] in err and "HTTP 503 Unavailable" in err
    monkeypatch.setattr(index, "handler", lambda event, context: {**answer, "unreached": [], "unreached_count": 0,
                                                                  "ice_error": None})
    assert run("sweep")[0] == 0


def test_replay_peels_mns_and_fc_wrappers_but_never_an_ice_callback():
    event = {"JobIds": [JOB["succeeded"]]}
    failed = {"timestamp": 1764039521000, "requestContext": {"requestId": "r"}, "requestPayload": json.dumps(event)}
    body = base64.b64encode(json.dumps(failed).encode()).decode()
    received = {"MessageId": "m1", "ReceiptHandle": "h", "MessageBodyMD5": "x", "MessageBody": body,
                "EnqueueTime": "1", "NextVisibleTime": "1", "FirstDequeueTime": "1", "DequeueCount": "1",
                "Priority": "8"}  # all nine fields of MNS ReceiveMessage
    assert cli.unwrap_failed_event(json.dumps(received).encode()) == event
    trigger_data = {"requestId": "r", "messageId": "m2", "messageBody": json.dumps(event)}  # an MNS trigger's data
    assert cli.unwrap_failed_event(json.dumps(trigger_data).encode()) == event
    for callback in ({"EventType": "ProduceMediaComplete", "UserId": 1, "MessageBody": {"JobId": JOB["unknown"]}},
                     {"EventType": "UploadByURLComplete", "MessageId": "m3",
                      "MessageBody": json.dumps({"JobId": JOB["vod"]})}):
        assert cli.unwrap_failed_event(json.dumps(callback).encode()) == callback  # the event itself


@pytest.mark.parametrize("encode", [bytes, base64.b64encode])
def test_replay_of_a_file_nested_too_deep_says_so(encode):
    with pytest.raises(cli.BadRequest, match="nested deeper than 500 levels: no event is"):
        cli.unwrap_failed_event(encode(b"[" * 5000 + b"]" * 5000))
    assert cli.unwrap_failed_event(encode(b"[" * 500 + b"]" * 500)) is not None  # the function's own limit
