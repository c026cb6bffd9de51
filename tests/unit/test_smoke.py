"""``ice-upload-sync smoke``'s pure parts: the options, the invoke command, the watch's clock, the verdicts.

The wires (ICE, the invoke command, the store, the deployed function) are exercised end to end in
tests/integration/test_smoke.py; here only what decides: no network, no process, no store.
"""
from __future__ import annotations

import json
from typing import List, Tuple

import pytest
from ice_upload_sync import cli
from ice_upload_sync.events import SyncRequest, parse_event
from ice_upload_sync.records import JobRecord
from ice_upload_sync.smoke import (
    ABSENT,
    DEFAULT_INVOKE_COMMAND,
    TRACKED,
    UNREADABLE,
    BadUsage,
    CommandResult,
    Seen,
    SmokeOptions,
    UploadJob,
    invoke_argv,
    invoke_failed_message,
    missing_program_message,
    refused_message,
    verdict,
    wait_for_record,
)

JOB = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
NOW = "2026-01-01T00:00:00Z"


def record(state: str, **fields) -> JobRecord:
    return JobRecord(job_id=JOB, state=state, source=fields.pop("source", "direct"), ice_request_id="r-1",
                     first_seen_at=NOW, updated_at=NOW, **fields)


# ---------------------------------------------------------------- the options


def test_the_default_invoke_command_is_the_readmes_direct_invocation_with_the_event_file_in_place():
    assert invoke_argv(DEFAULT_INVOKE_COMMAND, "/tmp/e.json") == [
        "s", "invoke", "-t", "template.yml", "--event-file", "/tmp/e.json"]


@pytest.mark.parametrize("template, argv", [
    ("python -m tests.support.fc_invoke --url http://127.0.0.1:9 --event-file {event_file}",
     ["python", "-m", "tests.support.fc_invoke", "--url", "http://127.0.0.1:9", "--event-file", "/a b/e.json"]),
    ("tool --event={event_file} 'two words'", ["tool", "--event=/a b/e.json", "two words"]),  # one word each
    ("true", ["true"]),  # a command may ignore the event
    ("echo '{\"a\": 1}' {event_file}", ["echo", '{"a": 1}', "/a b/e.json"]),  # other braces are left alone
])
def test_the_invoke_command_is_split_like_a_shell_and_the_event_file_stays_one_word(template, argv):
    assert invoke_argv(template, "/a b/e.json") == argv


@pytest.mark.parametrize("options, complaint", [
    ({"media_url": "ftp://media.example.com/a.mp4"}, "http(s) URL"),
    ({"media_url": "media.example.com/a.mp4"}, "http(s) URL"),
    ({"media_url": "https:///a.mp4"}, "http(s) URL"),
    ({"media_url": None}, "http(s) URL"),
    ({"invoke_command": "s invoke 'unclosed"}, "cannot be split"),
    ({"invoke_command": "   "}, "empty"),
    ({"via": "callback", "invoke_command": "true"}, "for --via invoke"),
    ({"via": "carrier-pigeon"}, "--via"),
    ({"timeout_s": 0}, "--timeout"),
    ({"interval_s": -1}, "--interval"),
    ({"timeout_s": float("nan")}, "--timeout"),
    ({"user_data": "{not json"}, "JSON object"),
    ({"user_data": "[1, 2]"}, "JSON object"),
])
def test_bad_options_are_refused_before_anything_is_sent(options, complaint):
    arguments = {"media_url": "https://media.example.com/a.mp4", **options}
    with pytest.raises(BadUsage, match=complaint.replace("(", r"\(").replace(")", r"\)")):
        SmokeOptions.build(arguments.pop("media_url"), **arguments)


def test_good_options_keep_what_was_given():
    options = SmokeOptions.build(" https://media.example.com/a b.mp4 ", user_data='{"Extend": {"t": "smoke"}}')
    assert options.media_url == "https://media.example.com/a b.mp4"
    assert (options.via, options.invoke_command) == ("invoke", DEFAULT_INVOKE_COMMAND)
    assert (options.timeout_s, options.interval_s, options.user_data) == (600.0, 2.0, '{"Extend": {"t": "smoke"}}')
    assert SmokeOptions.build("http://m.example.com/a.mp4", via="callback").via == "callback"


@pytest.mark.parametrize("argv", [
    ["smoke"],  # no --url
    ["smoke", "--url", "ftp://media.example.com/a.mp4"],
    ["smoke", "--url", "https://media.example.com/a.mp4", "--via", "mail"],
    ["smoke", "--url", "https://media.example.com/a.mp4", "--timeout", "soon"],
    ["smoke", "--url", "https://media.example.com/a.mp4", "--via", "callback", "--invoke-command", "true"],
])
def test_bad_usage_exits_2_before_ice_is_called(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2 and "error" in capsys.readouterr().err


# ---------------------------------------------------------------- the event handed to the function


def test_the_event_is_icess_answer_as_the_function_reads_a_forwarded_upload():
    job = UploadJob(JOB, "m-1", "https://media.example.com/a.mp4", "req-1")
    event = job.direct_event()
    assert event == {"RequestId": "req-1", "UploadJobs": [
        {"JobId": JOB, "SourceURL": "https://media.example.com/a.mp4", "MediaId": "m-1"}]}
    request = parse_event(json.dumps(event).encode())
    assert isinstance(request, SyncRequest) and request.source == "direct"
    assert request.job_ids == (JOB,) and request.track  # tracked, then looked up: the README's direct path


# ---------------------------------------------------------------- the watch


class Script:
    """The store's answers, one per look, on a clock that moves only when the watch sleeps."""

    def __init__(self, looks: List[Seen]) -> None:
        self.looks = looks
        self.now = 100.0
        self.sleeps: List[float] = []

    def read(self) -> Seen:
        return self.looks.pop(0) if len(self.looks) > 1 else self.looks[0]

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def watch(script: Script, timeout_s: float = 10.0, interval_s: float = 2.0) -> Tuple[Seen, float, List[tuple]]:
    changes: List[tuple] = []
    seen, elapsed = wait_for_record(script.read, since=99.0, timeout_s=timeout_s, interval_s=interval_s,
                                    report=lambda at, look: changes.append((at, look.state)), clock=script.clock,
                                    sleep=script.sleep)
    return seen, elapsed, changes


def test_the_watch_reports_each_change_once_and_stops_at_the_final_record():
    pending, done = record("pending", ice_status="PENDING"), record("succeeded", ice_status="Normal")
    script = Script([Seen(ABSENT), Seen(ABSENT), Seen(TRACKED), Seen("pending", pending), Seen("pending", pending),
                     Seen("succeeded", done)])
    seen, elapsed, changes = watch(script)
    assert seen.record == done and seen.final
    # elapsed counts from ICE's answer (99), a second before the first look
    assert changes == [(1.0, ABSENT), (5.0, TRACKED), (7.0, "pending"), (11.0, "succeeded")]
    assert elapsed == 11.0 and script.sleeps == [2.0] * 5


def test_a_new_ice_status_is_a_change_and_the_watch_ends_at_the_timeout():
    script = Script([Seen("processing", record("processing", ice_status="DOWNLOADING")),
                     Seen("processing", record("processing", ice_status="UPLOADING"))])
    seen, elapsed, changes = watch(script, timeout_s=5.0)
    assert [state for _, state in changes] == ["processing", "processing"] and not seen.final
    assert script.sleeps == [2.0, 2.0, 1.0] and elapsed == 6.0  # the last sleep ends at the deadline


def test_what_a_look_says():
    failed = record("failed", ice_status="UPLOAD_FAIL", error_code="URLInvalidError", error_message="download failed")
    assert "no record yet" in Seen(ABSENT).describe()
    assert "tracked" in Seen(TRACKED).describe()
    assert "bucket gone" in Seen(UNREADABLE, error="bucket gone").describe()
    assert Seen("failed", failed).describe() == (
        "failed (ICE status UPLOAD_FAIL, error URLInvalidError: download failed, source direct)")
    assert "media m-9" in Seen("succeeded", record("succeeded", media_id="m-9", source="callback")).describe()


# ---------------------------------------------------------------- the verdicts


def decide(seen: Seen, via: str = "invoke", store: str = "oss://bucket/records") -> str:
    return verdict(seen, JOB, via=via, timeout_s=30, store=store, region="cn-shanghai")


def test_only_a_final_succeeded_record_passes():
    assert decide(Seen("succeeded", record("succeeded", ice_status="Normal"))) is None


def test_a_failed_job_names_ices_error():
    message = decide(Seen("failed", record("failed", ice_status="UPLOAD_FAIL", error_code="URLInvalidError",
                                           error_message="download the video from url failed")))
    assert f"job {JOB} failed in ICE" in message
    assert "URLInvalidError: download the video from url failed" in message and "--url" in message


def test_an_expired_or_unknown_job_says_why():
    assert "as expired" in decide(Seen("expired", record("expired")))
    message = decide(Seen("not_found", record("not_found")))
    assert "knows no job" in message and "ICE_REGION" in message and "cn-shanghai" in message


def test_a_job_still_pending_points_at_the_callback_and_the_sweep():
    message = decide(Seen("processing", record("processing", ice_status="UPLOADING")))
    assert "still processing (ICE status UPLOADING) after 30 s" in message
    assert "ice-callback show" in message and f"ice-upload-sync check {JOB}" in message


@pytest.mark.parametrize("seen, via, extra", [
    (Seen(ABSENT), "invoke", "did not even track it"),
    (Seen(ABSENT), "callback", ""),
    (Seen(TRACKED), "invoke", "it tracks the job"),
    (Seen(UNREADABLE, error="OSS bucket b: NoSuchBucket"), "callback", "NoSuchBucket"),
])
def test_a_record_never_written_is_named_with_what_to_check(seen, via, extra):
    message = decide(seen, via)
    assert message.startswith(f"the function never wrote the record of job {JOB} in 30 s")
    assert extra in message and "s logs" in message and "ice-upload-sync ice-callback show" in message
    assert "RECORD_STORE here (oss://bucket/records)" in message


def test_a_folder_store_is_named_as_this_machines():
    assert "a folder on this machine" in decide(Seen(ABSENT), store="file:///tmp/records")


def test_the_invoke_commands_failures_say_how_to_fix_them():
    missing = missing_program_message("s", "was not found", JOB)
    assert "npm install -g @serverless-devs/s" in missing and "--via callback" in missing and JOB in missing
    assert "check --invoke-command" in missing_program_message("/opt/bin/fcinvoke", "is not executable", JOB)
    failed = invoke_failed_message(CommandResult(("s", "invoke", "--event-file", "/tmp/e.json"), 3, "boom"), JOB)
    assert "exited with status 3" in failed and "s invoke --event-file /tmp/e.json" in failed
    assert "s config get" in failed


@pytest.mark.parametrize("code, status, hint", [
    ("Forbidden.RAM", 403, "grant ice:UploadMediaByURL"),
    ("NoPermission", 403, "grant ice:UploadMediaByURL"),
    ("SomethingNew", 403, "grant ice:UploadMediaByURL"),
    ("InvalidAccessKeyId.NotFound", 404, "ALIBABA_CLOUD_ACCESS_KEY_ID"),
    ("InvalidApi.NotPurchase", 400, "activate"),
    ("InvalidParameter", 400, "check --url"),
    ("Throttling.User", 400, "try again"),
    ("Teapot", 418, None),
])
def test_ices_refusal_names_its_code_and_what_to_fix(code, status, hint):
    message = refused_message(code, status, "what ICE said", "req-9", "ICE in cn-shanghai (ice.example)")
    assert message.startswith(f"ICE in cn-shanghai (ice.example) refused UploadMediaByURL: HTTP {status} {code}")
    assert "what ICE said" in message and "(request req-9)" in message
    assert (hint in message) if hint else (";" not in message)
