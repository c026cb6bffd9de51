"""Operator CLI defects (file store; run with -k file to keep it short)."""
import base64
import io
import json

import pytest
from ice_upload_sync import cli

from tests.scenario import JOB


def run(*argv):
    out = io.StringIO()
    return cli.main(list(argv), out=out), out.getvalue()


def test_replay_of_a_message_as_mns_receivemessage_returns_it(seeded, fc, tmp_path):
    """MNS ReceiveMessage answers 9 fields; unwrap_failed_event only peels dicts of <= 8 keys."""
    failed = {"timestamp": 1764039521000,
              "requestContext": {"requestId": "r", "functionArn": "acs:fc:::f",
                                 "condition": "UnhandledInvocationError", "approximateInvokeCount": 4},
              "requestPayload": json.dumps({"JobIds": [JOB["succeeded"]]}),
              "responseContext": {"statusCode": 200, "functionError": "UnhandledInvocationError"},
              "responsePayload": ""}
    message = {"MessageId": "5F290C926D472878-2-14D9529A8FA-200000001",
               "ReceiptHandle": "1-ODU4OTkzNDU5My0xNDM1MTk3NjAwLTItNg==",
               "MessageBodyMD5": "C5DD56A39F5F7BB8B3337C6D11B6D8C7",
               "MessageBody": base64.b64encode(json.dumps(failed).encode()).decode(),
               "EnqueueTime": "1250700979248", "NextVisibleTime": "1250700799348", "FirstDequeueTime": "1250700779318",
               "DequeueCount": "1", "Priority": "8"}
    path = tmp_path / "failed-message.json"
    path.write_text(json.dumps(message))
    code, text = run("replay", str(path))
    print(code, text)
    assert code == 0 and fc.record(JOB["succeeded"]) is not None


def test_replay_of_an_ice_callback_body_loses_its_event_type(seeded, fc, tmp_path):
    """The handler ignores a ProduceMediaComplete callback; `replay` of the same file tracks and writes it."""
    callback = {"EventType": "ProduceMediaComplete", "UserId": 1, "MessageBody": {"JobId": JOB["unknown"]}}
    assert fc.invoke(callback)["ignored"] == ["ProduceMediaComplete"] and fc.pending() == set()
    path = tmp_path / "callback.json"
    path.write_text(json.dumps(callback))
    code, text = run("replay", str(path), "--json")
    print(code, text)
    assert fc.pending() == set() and fc.record(JOB["unknown"]) is None, "replay tracked a non-upload job"


def test_one_corrupt_record_makes_list_and_stats_unusable(seeded, fc):
    if fc.store_kind != "file":
        pytest.skip("file store shows it simplest")
    fc.invoke({"JobIds": [JOB["succeeded"], JOB["failed"]]})
    (fc.view.root / "jobs" / "0000-stray.json").write_text("")  # e.g. an editor's empty save, a copy gone wrong
    code_list, text = run("list")
    code_stats, stats = run("stats")
    print(code_list, text, code_stats)
    # Adapted: CONTRACT 10 says the bad record is named and skipped, with a count, and the exit
    # code says something was skipped (1, every other record still shown); it was (1, 1) with
    # nothing shown before.
    assert (code_list, code_stats) == (1, 1)
    assert JOB["succeeded"] in text and JOB["failed"] in text, "one unreadable record hides every other one"
    assert "2 record(s)" in text and "2 record(s)" in stats and "1 unreadable" in stats
