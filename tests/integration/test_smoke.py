"""``ice-upload-sync smoke`` end to end: the ICE emulator, the real function behind the local FC front end.

The command runs as a user types it (``cli.main``), configured like the function (``ICE_*``,
``ALIBABA_CLOUD_*``, ``RECORD_STORE``). ``--via invoke`` hands ICE's answer to the front end's
InvokeFunction with tests/support/fc_invoke.py, the stand-in for ``s invoke --event-file``;
``--via callback`` waits for the emulator's signed callback to reach the front end's HTTP trigger.
"""
from __future__ import annotations

import io
import json
import re
import shlex
import sys
import threading
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import pytest
from ice_upload_sync import cli

from tests.conftest import ACCESS_KEY_ID, ACCESS_KEY_SECRET
from tests.scenario import CALLBACK_AUTH_KEY
from tests.support.fc import FcFrontEnd, Invocation
from tests.support.ice import IceEmulator

FC_INVOKE = Path(__file__).resolve().parents[1] / "support" / "fc_invoke.py"
MEDIA_URL = "https://media.example.com/videos/smoke test.mp4"
SWEEP_AFTER_S = 2.0  # from the direct invocation to the sweep that finds the job final
WAIT = ["--timeout", "120", "--interval", "0.2"]  # generous: cold instances on a busy machine


@pytest.fixture
def environment(ice: IceEmulator, tmp_path: Path, monkeypatch) -> Dict[str, str]:
    """The command's environment, and the function's: the same ICE, keys and store."""
    for name in ("ALIBABA_CLOUD_SECURITY_TOKEN", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy",
                 "OSS_ENDPOINT", "TABLESTORE_ENDPOINT", "CALLBACK_URL", "CALLBACK_AUTH_KEY"):
        monkeypatch.delenv(name, raising=False)
    env = {"ICE_ENDPOINT": ice.endpoint, "ICE_REGION": "cn-shanghai", "ALIBABA_CLOUD_ACCESS_KEY_ID": ACCESS_KEY_ID,
           "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ACCESS_KEY_SECRET, "RECORD_STORE": f"file://{tmp_path / 'records'}"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def deployment(env: Dict[str, str], tmp_path: Path,
               on_invocation: Optional[Callable[[Invocation], None]] = None) -> FcFrontEnd:
    return FcFrontEnd(env=env, failure_dir=tmp_path / "failed", on_invocation=on_invocation)


def smoke(*argv: str) -> Tuple[int, str]:
    out = io.StringIO()
    code = cli.main(["smoke", "--url", MEDIA_URL, *argv], out=out)
    return code, out.getvalue()


def invoke_command(fc: FcFrontEnd) -> str:
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(FC_INVOKE))} --url {fc.url} --event-file {{event_file}}"


def job_id_in(text: str) -> str:
    return re.search(r"JobId\s+([0-9a-f]{32})", text).group(1)


def record(env: Dict[str, str], job_id: str) -> Optional[dict]:
    path = Path(env["RECORD_STORE"][len("file://"):]) / "jobs" / f"{job_id}.json"
    return json.loads(path.read_text()) if path.is_file() else None


# ---------------------------------------------------------------- --via invoke


@pytest.mark.parametrize("ice_status, exit_code", [("Normal", 0), ("UPLOAD_FAIL", 1)])
def test_via_invoke_the_function_tracks_the_job_and_smoke_waits_for_its_final_record(
        ice, environment, tmp_path, capsys, ice_status, exit_code):
    """The direct invocation records the job pending (ICE has not finished it); ICE then finishes it and,
    seconds later, the sweep timer fires: the record turns final, and smoke prints both states and the
    time to record. (The seconds leave smoke ample time to see the pending record first.)"""
    holder: List[FcFrontEnd] = []

    def after(invocation: Invocation) -> None:
        if invocation.kind == "direct":  # the smoke's own invocation: ICE finishes the job, a sweep follows
            [job_id] = [call for call in ice.calls if call.action == "GetUrlUploadInfos"][-1].job_ids
            ice.finish_job(job_id, ice_status, error_code="URLInvalidError",
                           error_message="download the video from url failed")
            sweep = threading.Timer(SWEEP_AFTER_S, holder[0].fire_timer, args=("sweep",))
            sweep.daemon = True
            sweep.start()

    with deployment(environment, tmp_path, after) as fc:
        holder.append(fc)
        code, text = smoke("--invoke-command", invoke_command(fc), *WAIT)
        fc.wait_idle()
        kinds = [invocation.kind for invocation in fc.invocations]
    error = capsys.readouterr().err
    job_id = job_id_in(text)
    assert code == exit_code, text + error
    assert kinds == ["direct", "timer"]
    assert "exit status 0" in text and "HTTP 200" in text  # the helper's output, as s invoke's would be
    states = re.findall(r"^\s+\+\s*[0-9.]+ s  (\w+)", text, re.MULTILINE)
    final = "succeeded" if ice_status == "Normal" else "failed"
    assert states == ["pending", final], text
    assert record(environment, job_id)["state"] == final
    event_file = re.search(r"--event-file (\S+)", text).group(1)
    assert not Path(event_file).exists()  # the temporary event is removed
    [upload] = [call for call in ice.calls if call.action == "UploadMediaByURL"]
    assert upload.upload_urls == (MEDIA_URL,)
    if exit_code == 0:
        assert re.search(r"time to record: [0-9.]+ s from UploadMediaByURL's answer", text) and not error
    else:  # ICE's own error, from the record
        assert f"job {job_id} failed in ICE (URLInvalidError: download the video from url failed" in error
        assert "time to record" not in text


def test_a_function_that_never_writes_the_record_fails_with_what_to_check(ice, environment, capsys):
    code, text = smoke("--invoke-command", "true", "--timeout", "1.5", "--interval", "0.2")
    error = capsys.readouterr().err
    job_id = job_id_in(text)
    assert code == 1
    assert f"the function never wrote the record of job {job_id} in 1.5 s" in error
    assert "s logs" in error and "ice-upload-sync ice-callback show" in error and "RECORD_STORE here" in error
    assert "the store cannot be read (yet)" in text  # no job was ever recorded: the folder does not exist


@pytest.mark.parametrize("command, says", [
    (None, ["'s' was not found", "npm install -g @serverless-devs/s", "--via callback"]),  # the default, s invoke
    ("no-such-program-for-smoke --event-file {event_file}", ["'no-such-program-for-smoke' was not found",
                                                             "check --invoke-command"]),
])
def test_an_invoke_command_that_cannot_run_makes_no_job(ice, environment, tmp_path, monkeypatch, capsys,
                                                        command, says):
    monkeypatch.setenv("PATH", str(tmp_path / "empty") if command is None else "/usr/bin:/bin")
    ice.reset_calls()
    code, text = smoke(*(["--invoke-command", command] if command else []), *WAIT)
    error = capsys.readouterr().err
    assert code == 1 and all(words in error for words in says), error
    assert "No job was made in ICE" in error and "1. UploadMediaByURL" not in text
    assert [call.action for call in ice.calls] == []  # found before the upload, not after it


def test_an_invoke_command_that_fails_is_a_failure_with_a_hint(ice, environment, monkeypatch, capsys):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    code, text = smoke("--invoke-command", "false", *WAIT)
    error = capsys.readouterr().err
    assert code == 1 and "the invoke command exited with status 1" in error and "s config get" in error, error
    assert f"Job {job_id_in(text)} exists in ICE all the same" in error
    assert "3. waiting" not in text  # no wait for a record nobody was told about


def test_ices_refusal_of_the_upload_is_named_and_nothing_is_invoked(ice, environment, capsys):
    ice.fail_next(1, status=403, code="Forbidden.RAM", message="User not authorized to operate on the resource.")
    code, text = smoke("--invoke-command", "true", "--json", *WAIT)
    error = capsys.readouterr().err
    assert code == 1 and "refused UploadMediaByURL: HTTP 403 Forbidden.RAM" in error
    assert "grant ice:UploadMediaByURL" in error
    summary = json.loads(text)
    assert summary["ok"] is False and "Forbidden.RAM" in summary["error"] and "invoke" not in summary


# ---------------------------------------------------------------- --via callback


def test_via_callback_ices_signed_callback_reaches_the_trigger_and_the_record_follows(
        ice, environment, tmp_path, capsys):
    env = {**environment, "CALLBACK_AUTH_KEY": CALLBACK_AUTH_KEY, "CALLBACK_HANDBACK": "on"}
    with deployment(env, tmp_path) as fc:
        trigger = f"{fc.url}/ice-callback"
        fc.update_env(CALLBACK_URL=trigger)
        ice.set_callback(trigger, CALLBACK_AUTH_KEY)
        ice.auto_finish_s = 0.5  # the upload ends half a second after UploadMediaByURL
        code, text = smoke("--via", "callback", "--json", *WAIT)
        summary = json.loads(text)
        delivery = ice.wait_for_callback(summary["job_id"], timeout_s=30)
        fc.wait_idle()
        kinds = [invocation.kind for invocation in fc.invocations]
    assert code == 0, capsys.readouterr().err
    assert summary["ok"] is True and summary["via"] == "callback" and "invoke" not in summary
    assert summary["record"]["state"] == "succeeded" and summary["record"]["source"] == "callback"
    assert summary["states"][-1]["state"] == "succeeded" and summary["time_to_record_s"] > 0.5
    assert delivery.outcome == "delivered" and delivery.attempts[0].status == 200
    assert "direct" not in kinds and kinds[0] == "http"  # nothing invoked: the callback did it
