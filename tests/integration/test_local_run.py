"""The five-minute first run (``make local``) works end to end, with either local store, and
never touches records it did not write."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Dict

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What a newcomer's shell has: no store named, no ICE account, no proxy.
UNSET = ("RECORD_STORE", "ICE_ENDPOINT", "ICE_REGION", "ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
         "ALIBABA_CLOUD_SECURITY_TOKEN", "TABLESTORE_ENDPOINT", "NOTIFY_URL")


def shell_env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy") and k not in UNSET}
    env["PYTHONPATH"] = str(ROOT)  # `python -m tests.local_run` from any folder
    return env


def local_run(*args: str, cwd: Path = ROOT, **variables: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.local_run", *args], cwd=cwd,
                          env={**shell_env(), **variables}, capture_output=True, text=True, timeout=120)


def snapshot(folder: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("store", ["file", "tablestore"])
def test_the_local_run_replays_every_event_and_prints_the_records(store, tmp_path):
    result = local_run("--store", store, "--records", str(tmp_path / "records"))
    assert result.returncode == 0, result.stderr
    assert "raised" not in result.stdout
    assert "16 records, 3 pending" in result.stdout
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= 100, max(lines, key=len)  # fits a 100-column terminal
    table = lines[lines.index(next(line for line in lines if line.startswith("job_id"))):]
    assert not any("WARNING" in line for line in table[:15])  # warnings come after the table, explained
    assert "expected: one seeded job carries a status word" in result.stdout
    # ICE calls the local FC's trigger: new instances hand back, kept ones look up in place, and
    # ICE never has to retry (one attempt each, answered within its window)
    story = [row for row in (line.split() for line in lines if line.startswith("cb0000000000000000000000000000c"))
             if row[1] in ("Success", "Fail")]  # the callback table, not the records
    assert [row[2] for row in story] == ["new", "kept", "new", "kept"], story
    assert all(row[3] == "1" for row in story) and ["handed", "looked"] == sorted({row[6] for row in story})
    assert all(row[-1] == "ms" and float(row[-2]) < 5000 for row in story), story  # recorded within seconds


def test_the_command_line_reads_what_make_local_recorded_and_a_rerun_keeps_it(tmp_path):
    first = local_run(cwd=tmp_path)  # make local, in a clone at tmp_path
    assert first.returncode == 0, first.stderr
    assert f"records in {tmp_path / '.records'}\n" in first.stdout
    lines = first.stdout.splitlines()
    reader = lines[lines.index("Read them with the command line (stats, list, get JOB_ID):") + 1]
    assert reader.endswith("ice-upload-sync stats") and "RECORD_STORE" not in reader  # nothing to set
    stats = subprocess.run([sys.executable, "-m", "ice_upload_sync", "stats", "--json"], cwd=tmp_path,
                           env={**shell_env(), "PYTHONPATH": str(ROOT / "function")}, capture_output=True,
                           text=True, timeout=60)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["records"] == 16  # the CLI's default store is where make local wrote

    rerun = local_run(cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert "16 of this story's jobs from an earlier run" in rerun.stdout
    assert "16 records, 3 pending" in rerun.stdout


@pytest.mark.parametrize("planted, said", [
    ({"jobs/myown0001.json": b'{"job_id": "myown0001", "state": "processing"}'},
     "holds 1 job(s) this story did not write: myown0001"),
    ({"pending/ab/myown0002": b"", "jobs/3829500c0fef429fa4ec1680b122d001.json": b"{}"},
     "holds 1 job(s) this story did not write: myown0002"),
    ({"notes.txt": b"my notes"}, "is not a record store"),
], ids=["a record of another job", "a marker of another job", "a folder that is no store"])
def test_a_folder_holding_what_the_story_did_not_write_is_refused_untouched(planted, said, tmp_path):
    records = tmp_path / ".records"
    for name, content in planted.items():
        (records / name).parent.mkdir(parents=True, exist_ok=True)
        (records / name).write_bytes(content)
    before = snapshot(tmp_path)
    result = local_run(cwd=tmp_path)
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert said in message and "--records" in message and "Traceback" not in message
    assert "ICE emulator at" not in result.stdout  # refused before anything ran
    assert snapshot(tmp_path) == before


def test_the_tablestore_run_leaves_the_file_stores_alone(tmp_path):
    for folder in (".records", ".local-records"):  # the command line's default store, an older make local's
        (tmp_path / folder / "jobs").mkdir(parents=True)
        (tmp_path / folder / "jobs" / "myown0001.json").write_text('{"job_id": "myown0001"}')
    before = snapshot(tmp_path)
    result = local_run("--store", "tablestore", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "16 records, 3 pending" in result.stdout and "its records are gone with it" in result.stdout
    assert snapshot(tmp_path) == before and sorted(os.listdir(tmp_path)) == [".local-records", ".records"]


def test_a_deployers_shell_variables_do_not_leak_into_the_story(tmp_path):
    """README "Deploy" has the deployer source their variables: the story must not send its demo events
    to their NOTIFY_URL, nor present their STS token to the emulator (which then refuses every call)."""
    received = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(self.path)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = local_run("--records", str(tmp_path / "records"), NOTIFY_URL=f"http://127.0.0.1:{server.server_port}/",
                           NOTIFY_SECRET="whsec_" + "QUJD" * 11, ALIBABA_CLOUD_SECURITY_TOKEN="a-deployers-sts-token",
                           ICE_REGION="cn-beijing")
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    assert "raised" not in result.stdout and "deferred" not in result.stdout
    assert "16 records, 3 pending" in result.stdout
    assert received == []
    said = " ".join(result.stdout.split())
    ignored = said.split("not used from your shell (the story sets its own): ")[1].split(" initialize:")[0]
    assert {"ALIBABA_CLOUD_SECURITY_TOKEN", "ICE_REGION", "NOTIFY_SECRET", "NOTIFY_URL"} <= set(ignored.split(", "))
    assert "a-deployers-sts-token" not in result.stdout + result.stderr
