"""docs/deploy.md steps 8 to 10, run as the guide writes them, against the local stand-ins.

The guide's own ``ice-upload-sync`` lines (``ice-callback show`` and ``set``, both ``smoke``s,
``stats`` and ``get``) are taken from the page, their placeholders filled in the way a reader
fills them, and run in order against the ICE emulator and the real function behind the local FC
front end. The default ``smoke`` runs ``s invoke -t template.yml --event-file FILE``; an ``s`` on
PATH stands in for Serverless Devs and hands the event to the front end's InvokeFunction
(tests/support/fc_invoke.py). ``replay`` needs a message of the reader's own and ``create-tables``
a Tablestore instance: the parser check of test_deploy_guide.py covers them.
"""
from __future__ import annotations

import io
import json
import os
import re
import stat
import sys
from pathlib import Path
from typing import Dict, List

import pytest
from ice_upload_sync import cli

from tests.conftest import ACCESS_KEY_ID, ACCESS_KEY_SECRET
from tests.deploy.test_deploy_guide import COMMANDS, DOC
from tests.support.fc import FcFrontEnd, describe

FC_INVOKE = Path(__file__).resolve().parents[1] / "support" / "fc_invoke.py"
AUTH_KEY = "Ak7q0ZrW3mXbT8vLkN2sYc5dHfJ9aPuE"
MEDIA_URL = "https://media.example.com/videos/guide.mp4"
RUN = ("ice-callback", "smoke", "stats", "get")  # the commands this file runs; the others need the reader's own

S_STUB = """#!{python}
# Serverless Devs' `s invoke -t template.yml --event-file FILE`, for the guide's smoke: the event goes to the
# local FC front end's InvokeFunction instead of the deployed function.
import os, subprocess, sys
args = sys.argv[1:]
if args[:1] != ["invoke"] or "--event-file" not in args:
    sys.exit("this stand-in for s knows only `s invoke ... --event-file FILE`, got: " + " ".join(args))
event_file = args[args.index("--event-file") + 1]
sys.exit(subprocess.call([sys.executable, {fc_invoke!r}, "--url", os.environ["GUIDE_FC_URL"],
                          "--event-file", event_file]))
"""


def guide_lines() -> List[List[str]]:
    """The guide's ``ice-upload-sync`` commands this file runs, in the page's order (the MNS route's
    ``set --queue`` last: it would replace the HTTP route's setting the smoke test needs)."""
    lines = [(command.words, command.text) for _, command in COMMANDS
             if command.words[:1] == ["ice-upload-sync"] and command.words[1:2] and command.words[1] in RUN]
    return [words for words, text in lines if "MNS route" not in text] + \
        [words for words, text in lines if "MNS route" in text]


def filled(words: List[str], values: Dict[str, str]) -> List[str]:
    """A reader's substitutions: shell variables from deploy.env, ``<placeholders>`` by what they name."""
    out = []
    for word in words[1:]:
        for name, value in values.items():
            word = word.replace(name, value)
        assert "<" not in word and "$" not in word, f"the guide's {word!r} has a placeholder this test does not fill"
        out.append(word)
    return out


def what_fc_ran(fc: FcFrontEnd) -> str:
    """The front end's invocations, their answers and logs: what a failure message needs to be read."""
    lines = []
    for call in fc.invocations:
        lines.append(f"- {describe(call)}: {' '.join((call.result or '').split())[:300]}")
        lines.extend(f"    {line}" for line in call.log.splitlines()[-15:])
    return "the front end ran:\n" + "\n".join(lines or ["(nothing)"])


def run(argv: List[str]):
    out = io.StringIO()
    code = cli.main(argv, out=out)
    return code, out.getvalue()


@pytest.fixture
def stand_ins(ice, tmp_path, monkeypatch):
    for name in ("ALIBABA_CLOUD_SECURITY_TOKEN", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy",
                 "OSS_ENDPOINT", "TABLESTORE_ENDPOINT", "NOTIFY_URL", "NOTIFY_SECRET", "NOTIFY_EVENTBRIDGE"):
        monkeypatch.delenv(name, raising=False)
    ice.auto_finish_s = 1.0  # ICE downloads the media, then calls back (if told to)
    env = {"ICE_ENDPOINT": ice.endpoint, "ICE_REGION": "cn-shanghai", "ALIBABA_CLOUD_ACCESS_KEY_ID": ACCESS_KEY_ID,
           "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ACCESS_KEY_SECRET, "RECORD_STORE": f"file://{tmp_path / 'records'}",
           "CALLBACK_AUTH_KEY": AUTH_KEY}
    # As deployed (template.yml): the hand-back on. The test runtime turns it off unless told, and an ICE
    # callback that met a cold instance then waited for a sweep this stand-in never runs. Idle instances
    # are reclaimed at once, so every callback meets a cold one, as after a minute's quiet on FC.
    with FcFrontEnd(env={**env, "CALLBACK_HANDBACK": "on"}, failure_dir=tmp_path / "failed", idle_s=0.3) as fc:
        fc.update_env(CALLBACK_URL=f"{fc.url}/ice-callback")
        stub = tmp_path / "bin" / "s"
        stub.parent.mkdir()
        stub.write_text(S_STUB.format(python=sys.executable, fc_invoke=str(FC_INVOKE)))
        stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
        for name, value in {**env, "GUIDE_FC_URL": fc.url}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("PATH", f"{stub.parent}{os.pathsep}{os.environ.get('PATH', '')}")
        monkeypatch.chdir(DOC.parents[1])  # smoke runs from the folder holding template.yml
        yield fc


def test_steps_8_to_10_work_as_the_guide_writes_them(ice, stand_ins):
    fc = stand_ins
    lines = guide_lines()
    assert [words[1] for words in lines] == ["ice-callback", "ice-callback", "smoke", "smoke", "stats", "get",
                                             "ice-callback"], "the guide's steps 8-10 changed: update this test"
    values = {"<system_url>": fc.url, "$CALLBACK_AUTH_KEY": AUTH_KEY, "$ICE_CALLBACK_QUEUE": "ice-callback-uploads",
              "https://<your media file>": MEDIA_URL}
    for words in lines:
        argv = filled(words, values)
        if argv[0] == "smoke":
            # the guide's 2 s and 600 s would do; these only spare the suite's time, and a broken route fails
            # in a minute rather than ten
            argv += ["--interval", "0.2", "--timeout", "60"]
        if "--queue" in argv:  # the other route, on an account of its own: ICE's setting still empty
            ice.set_callback(None)
        code, text = run(argv)
        assert code == 0, f"`ice-upload-sync {' '.join(argv)}` exited {code}:\n{text}\n{what_fc_ran(fc)}"
        if argv[0] == "smoke":
            job_id = re.search(r"JobId\s+([0-9a-f]{32})", text).group(1)
            values["<job-id>"] = job_id
            assert re.search(r"time to record: [0-9.]+ s", text), text
            record = json.loads((Path(os.environ["RECORD_STORE"][7:]) / "jobs" / f"{job_id}.json").read_text())
            assert record["state"] == "succeeded"
            if "callback" in argv:  # a cold instance took ICE's callback and handed it back to be looked up
                assert "http-async" in [call.kind for call in fc.invocations], what_fc_ran(fc)
        if argv[:2] == ["ice-callback", "set"] and "--url" in argv:
            setting = ice.callback_setting
            assert (setting.url, setting.auth_key) == (f"{fc.url}/ice-callback", AUTH_KEY)
            assert "UploadByURLComplete" in setting.event_types
    setting = ice.callback_setting  # the MNS route's line, last
    assert (setting.callback_type, setting.queue_name, setting.event_types) == (
        "MNS", "ice-callback-uploads", ("UploadByURLComplete",))
