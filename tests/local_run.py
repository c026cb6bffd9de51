"""The main job, locally: the ICE emulator + the file store, no cloud account needed.

Starts the emulator on loopback, seeds it with jobs in several states, replays every
file in ``events/`` through the real handler (the official SDK signs real HTTP calls to
the emulator), then prints the resulting records as a table.

The records go where the command line looks when ``RECORD_STORE`` is unset (``./.records``),
so ``ice-upload-sync stats`` shows them. Nothing is ever deleted: a rerun replays the story
over its own records (the same job IDs, merged by the record's rules), and a folder holding
records or markers of other jobs (an operator's ``check`` or ``sweep`` wrote them) is
refused before anything is written, because the story's sweeps would ask the emulator about
those jobs and record what it says: that it has never heard of them.

    make local                      # or: .venv/bin/python -m tests.local_run [--records DIR]
    .venv/bin/python -m tests.local_run --store tablestore   # the local Tablestore server instead
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Optional, Set

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "function"))

from ice_upload_sync.config import Settings  # noqa: E402

from tests.scenario import (  # noqa: E402
    CALLBACK_AUTH_KEY,
    CALLBACK_URL,
    EVENTS_DIR,
    JOB,
    load_event,
    seed_jobs,
    signed_http_event,
)
from tests.support.fc import FcFrontEnd  # noqa: E402
from tests.support.ice import IceEmulator  # noqa: E402
from tests.support.tablestore import TablestoreServer  # noqa: E402

# A story order: jobs are submitted, ICE calls back, someone asks, the timer sweeps.
ORDER = [
    "upload-media-by-url-response.json", "http-callback.json", "eventbridge-callback.json",
    "mns-queue-batch.json", "callback-vod-flat.json", "direct-job-ids.json",
    "direct-upload-urls.json", "timer-check-jobs.json", "timer-sweep.json",
]
# ICE calls back, for real: (job, seconds after the previous callback was recorded, ICE's final status).
# The local FC keeps an idle instance KEEP_ALIVE_S (FC: about a minute) so the story takes seconds:
# the first callback meets no instance, the second one within the keep-alive an instance that has
# looked a job up, the third none again (they were reclaimed), the fourth a warm one.
CALLBACK_STORY = [
    ("cb0000000000000000000000000000c1", 0.0, "Normal"),
    ("cb0000000000000000000000000000c2", 0.5, "Normal"),
    ("cb0000000000000000000000000000c3", 3.0, "UPLOAD_FAIL"),
    ("cb0000000000000000000000000000c4", 0.5, "Normal"),
]
KEEP_ALIVE_S = 2.0
# (header, record field, width): one row fits a 100-column terminal with single spaces between.
# "open": the job is pending (tracked, not final), so sweeps keep checking it.
COLUMNS = [("job_id", "job_id", 32), ("state", "state", 10), ("ice_status", "ice_status", 13),
           ("size", "file_size", 7), ("done UTC", "completed_at", 8), ("source", "source", 8),
           ("error_code", "error_code", 10), ("open", "pending", 4)]
WIDTH = 100
# The command line's store when RECORD_STORE is unset ("./.records", relative to where it runs).
DEFAULT_RECORDS = Settings.record_store.partition("://")[2]
# Warnings the story triggers on purpose, and why; any other warning is shown as it is.
EXPECTED_WARNINGS = {
    "unknown ICE upload status 'TRANSCODING_QUEUED'": (
        "one seeded job carries a status word ICE's documentation does not list: it is recorded as "
        "processing, with ICE's word kept in ice_status, and logged once per look so you notice new words"),
}


class _Collected(logging.Handler):
    """Keeps the story's log lines to show after the table, instead of between its rows."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: Dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        line = f"{record.levelname} {record.name}: {record.getMessage()}"
        self.lines[line] = self.lines.get(line, 0) + 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["file", "tablestore"], default="file",
                        help="file: a folder; tablestore: the local Tablestore server through the official SDK")
    parser.add_argument("--records", default=DEFAULT_RECORDS,
                        help=f"file store folder (default {DEFAULT_RECORDS}: the command line's default store); "
                             "never emptied, and refused if it holds records of other jobs")
    parser.add_argument("--keep", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old scripts
    parser.add_argument("--verbose", action="store_true", help="show the function's JSON log lines")
    args = parser.parse_args()
    collected = _Collected()
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="  log %(levelname)s %(name)s: %(message)s")
    else:
        logging.basicConfig(level=logging.WARNING, handlers=[collected])

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(name, None)  # the SDK would send even loopback calls through a proxy
    records = Path(args.records).absolute()
    reader = _reader_command(records, os.environ.get("RECORD_STORE"))
    ignored = _forget_the_shells_function_variables()
    story_jobs = set(JOB.values()) | {job_id for job_id, _gap, _status in CALLBACK_STORY}
    earlier = 0
    if args.store == "file":  # the Tablestore story never opens the folder
        refusal = _refusal(records, story_jobs)
        if refusal:
            print(refusal, file=sys.stderr)
            return 1
        earlier = len(_job_ids_in(records))
    with IceEmulator() as ice, TablestoreServer(instance="local") as tablestore:
        ice.add_access_key("local-ak", "local-secret")
        tablestore.add_access_key("local-ak", "local-secret")
        for job in seed_jobs():
            fields = dict(job)
            ice.put_job(fields.pop("JobId"), **fields)
        os.environ.update({
            "ICE_ENDPOINT": ice.endpoint, "ICE_REGION": "cn-shanghai",
            "ALIBABA_CLOUD_ACCESS_KEY_ID": "local-ak", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "local-secret",
            "RECORD_STORE": f"file://{records}", "CALLBACK_AUTH_KEY": CALLBACK_AUTH_KEY,
            "CALLBACK_URL": CALLBACK_URL,
            "CALLBACK_HANDBACK": "off",  # CALLBACK_URL is the sample's public trigger: never hand a request there
        })
        where = str(records)
        if args.store == "tablestore":
            os.environ.update({"RECORD_STORE": "tablestore://local/ice_uploads",
                               "TABLESTORE_ENDPOINT": tablestore.endpoint})
            from ice_upload_sync.stores.tablestore import main as tablestore_setup

            tablestore_setup(["create-tables"])  # the one-off set-up, as a user runs it
            where = f"tablestore://local/ice_uploads at {tablestore.endpoint}"
        print(f"ICE emulator at {ice.endpoint} with {len(seed_jobs())} seeded jobs\nrecords in {where}")
        if earlier:
            print(f"(it holds {earlier} of this story's jobs from an earlier run: the story updates them in place)")
        if ignored:
            print(textwrap.fill(f"not used from your shell (the story sets its own): {', '.join(ignored)}", WIDTH))
        print()

        import index

        context = SimpleNamespace(request_id="local", region="cn-shanghai", credentials=None,
                                  function=SimpleNamespace(name="ice-upload-sync", timeout="60"))
        started = time.monotonic()
        index.initialize(context)
        if not args.verbose:  # the table below says what the summary lines would
            logging.getLogger("ice_upload_sync").setLevel(logging.WARNING)
        print(f"initialize: {(time.monotonic() - started) * 1000:.0f} ms (settings and the store; the ICE SDK "
              "is imported by the first lookup)\n")
        print(f"{'event':34} {'answer':8} {'took':>9}  what it did")
        names = ORDER + sorted(p.name for p in EVENTS_DIR.glob("*.json") if p.name not in ORDER)
        for name in names:
            path = EVENTS_DIR / name
            if not path.exists():
                continue
            event = signed_http_event() if name == "http-callback.json" else json.loads(path.read_text())
            context.request_id = f"local-{uuid.uuid4().hex[:8]}"
            started = time.monotonic()
            try:
                answer = index.handler(json.dumps(event).encode(), context)
            except Exception as exc:  # show it and go on: this is a demo of every event
                print(f"{name:34} raised {type(exc).__name__}: {exc}"[:WIDTH])
                continue
            took = (time.monotonic() - started) * 1000
            if isinstance(answer, dict) and "statusCode" in answer:
                summary = json.loads(answer["body"])
                label = f"HTTP {answer['statusCode']}"
            else:
                summary, label = answer, "ok"
            print(f"{name:34} {label:8} {took:6.1f} ms  " + _brief(summary))
        # ICE moves on: one queued job finishes, one fails; the next timer sweep records both.
        ice.update_job(JOB["upload1"], Status="UPLOAD_SUCCESS", CompleteTime=_now_plain(), FileSize="5242880")
        ice.update_job(JOB["mns2"], Status="DOWNLOAD_FAIL", CompleteTime=_now_plain(),
                       ErrorCode="DownloadTimeout", ErrorMessage="source did not answer")
        answer = index.handler(json.dumps(load_event("timer-sweep.json")).encode(), context)
        print(f"{'timer-sweep.json (ICE finished 2)':34} {'ok':8} {'':9}  " + _brief(answer))
        _callback_story(ice, index._app.store)
        print(f"\n{len(ice.calls)} GetUrlUploadInfos calls in all; the first event's time includes "
              "importing the ICE SDK.\n")
        _print_table(index._app.store, sorted(ice._jobs), where)
    if args.store == "file":
        print(f"Read them with the command line (stats, list, get JOB_ID):\n  {reader}")
    else:
        print("The local Tablestore server has stopped, and its records are gone with it; the file store\n"
              "keeps them: make local, then .venv/bin/ice-upload-sync stats")
    _print_warnings(collected)
    return 0


class _RecordedReads(dict):
    """An empty environment that notes every name the function's settings look up in it."""

    def __init__(self) -> None:
        super().__init__()
        self.names: Set[str] = set()

    def get(self, key, default=None):
        self.names.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.names.add(key)
        return super().__getitem__(key)

    def __contains__(self, key) -> bool:
        self.names.add(key)
        return super().__contains__(key)


def _forget_the_shells_function_variables() -> List[str]:
    """Removes from the environment every variable the function reads, and the credential ones.

    A deployer's shell holds them (README "Deploy" sources them): a NOTIFY_URL would get the
    story's demo events, signed with the real secret; an STS token would make the emulator refuse
    every call; tuning would change the story. The story sets what it needs itself."""
    reads = _RecordedReads()
    Settings.from_env(reads)
    names = sorted(name for name in os.environ if name in reads.names or name.startswith("ALIBABA_CLOUD_"))
    for name in names:
        del os.environ[name]
    return names


def _job_ids_in(records: Path) -> Set[str]:
    """Job IDs with a record or a marker in a file store folder: ``jobs/<job_id>.json`` and any file
    under ``pending/`` whose name is the job ID (contract section 5); hidden files are temporary ones."""
    found: Set[str] = set()
    jobs = records / "jobs"
    if jobs.is_dir():
        found.update(p.name[: -len(".json")] for p in jobs.iterdir()
                     if p.name.endswith(".json") and not p.name.startswith("."))
    for _, _, names in os.walk(records / "pending"):
        found.update(name for name in names if not name.startswith("."))
    return found


def _refusal(records: Path, story_jobs: Set[str]) -> Optional[str]:
    """Why the story must not write into ``records``, or None: it writes only its own jobs' records."""
    if not records.exists():
        return None
    if not records.is_dir():
        return f"local run: {records} is not a folder; give another with --records DIR"
    if any(records.iterdir()) and not ((records / "jobs").is_dir() or (records / "pending").is_dir()):
        return (f"local run: {records} is not empty and is not a record store (no jobs/, no pending/); "
                "nothing was written. Give another folder with --records DIR")
    others: List[str] = sorted(_job_ids_in(records) - story_jobs)
    if not others:
        return None
    shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
    why = (f"local run: {records} holds {len(others)} job(s) this story did not write: {shown} "
           "(ice-upload-sync check, sweep and replay write there when RECORD_STORE is unset). The story's "
           "sweeps would ask its emulator about them and record that ICE does not know them, and its demo "
           "jobs would mix with them, so nothing was written. Run the story elsewhere:")
    return "\n".join([textwrap.fill(why, WIDTH, break_on_hyphens=False), "  make local ARGS='--records .local-records'",
                      "and read that folder with RECORD_STORE=file://.local-records .venv/bin/ice-upload-sync stats"])


def _reader_command(records: Path, record_store: Optional[str]) -> str:
    """The command line that reads ``records``: bare when it is the command line's default store."""
    script = Path(sys.executable).parent / "ice-upload-sync"
    command = "ice-upload-sync"
    if script.exists():
        relative = os.path.relpath(script)
        command = relative if not relative.startswith("..") else str(script)
    if record_store is None and records == Path(DEFAULT_RECORDS).absolute():
        return f"{command} stats"
    variable = f"RECORD_STORE=file://{records}"
    if len(variable) + len(command) + 9 > WIDTH:  # the shell's line continuation, not a wrap
        return f"{variable} \\\n  {command} stats"
    return f"{variable} {command} stats"


def _print_warnings(collected: _Collected) -> None:
    if not collected.lines:
        return
    print("\nWarnings logged during the run:")
    for line, count in collected.lines.items():
        reason = next((why for text, why in EXPECTED_WARNINGS.items() if text in line), None)
        print(textwrap.fill(f"{count} x {line}", WIDTH, initial_indent="- ", subsequent_indent="  "))
        if reason:
            print(textwrap.fill(f"expected: {reason}.", WIDTH, initial_indent="  ", subsequent_indent="  "))


def _now_plain() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())


def _callback_story(ice: IceEmulator, store) -> None:
    """Uploads finish in the emulator, which POSTs each callback to the local FC's HTTP trigger as
    ICE does (a 200 within 3 s, else two retries 1 s apart); each instance is a fresh interpreter
    running the function as FC's runtime does. One line per callback: what met it, whether ICE had
    to retry, and the time from ICE's first attempt to the record."""
    instance_env = {name: os.environ[name] for name in (
        "ICE_ENDPOINT", "ICE_REGION", "ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        "RECORD_STORE", "TABLESTORE_ENDPOINT", "CALLBACK_AUTH_KEY") if os.environ.get(name)}
    created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() - 600))
    for job_id, _gap, _status in CALLBACK_STORY:
        ice.put_job(job_id, Status="UPLOADING", CreationTime=created,
                    UploadURL=f"https://media.example.com/videos/{job_id[-2:]}.mp4")
    print(f"\nICE calls back: uploads finish, and ICE POSTs each callback to the local FC's trigger\n"
          f"(idle instances kept {KEEP_ALIVE_S:g} s here, about 60 s on FC; no timer runs meanwhile)\n")
    print(f"{'job_id':32} {'ICE said':8} {'instance':8} {'tries':5} {'answered':>8}  {'then':18} {'to record':>9}")
    with FcFrontEnd(env={**instance_env, "CALLBACK_HANDBACK": "on"}, idle_s=KEEP_ALIVE_S) as fc:
        trigger = f"{fc.url}/ice-callback"
        fc.update_env(CALLBACK_URL=trigger)  # the URL ICE signs: the trigger's own
        ice.set_callback(trigger, CALLBACK_AUTH_KEY)
        try:
            for job_id, gap, status in CALLBACK_STORY:
                time.sleep(gap)
                seen = len(fc.invocations)
                ice.finish_job(job_id, status=status)
                ice.wait_for_callback(job_id, timeout_s=30)
                recorded_at = _wait_final(store, job_id, timeout_s=30)
                attempts = [a for a in ice.callback_attempts if a.job_id == job_id]
                callback = next((i for i in fc.invocations[seen:] if i.kind == "http"), None)
                answer = json.loads(callback.value()["body"]) if callback is not None and callback.result else {}
                instance = "new" if callback is None or callback.cold else "kept"
                then = ("handed back" if answer.get("handed_back") else
                        "looked up in place" if answer.get("written") else "left to the sweep")
                took = f"{(recorded_at - attempts[0].sent_at) * 1000:.0f} ms" if recorded_at and attempts else "-"
                answered = f"{attempts[0].duration_s * 1000:.0f} ms" if attempts and attempts[0].duration_s else "-"
                print(f"{job_id:32} {('Success' if 'FAIL' not in status else 'Fail'):8} {instance:8} "
                      f"{len(attempts):<5} {answered:>8}  {then:18} {took:>9}")
        finally:
            ice.set_callback(None)
    print("\nICE counts a callback as delivered only on a 200 within 3 s (tries: its attempts). A new instance\n"
          "has no ICE client yet: it answers at once and hands the lookup to an asynchronous run of itself\n"
          "(CALLBACK_HANDBACK); a kept one that has looked a job up before looks it up in place.")


def _wait_final(store, job_id: str, timeout_s: float) -> Optional[float]:
    """When (time.time()) the job's record was first seen final, or None."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = store.load(job_id)
        if record is not None and record.final:
            return time.time()
        time.sleep(0.02)
    return None


def _brief(summary: dict) -> str:
    """The answer's non-zero counts in a few words (lists are counted: a job ID alone takes 32 columns)."""
    counts = {key: summary.get(key) for key in ("checked", "written", "unchanged", "tracked")}
    counts.update({key: len(summary.get(key) or ()) for key in ("not_found", "deferred", "failed", "ignored")})
    counts["calls"] = summary.get("api_calls")
    return " ".join(f"{key}={value}" for key, value in counts.items() if value)


def _print_table(store, job_ids, where: str) -> None:
    """What the store holds for every job ICE knows, read back through the store's own interface."""
    rows = [record.to_dict() for record in map(store.load, job_ids) if record is not None]
    pending = set(store.pending_job_ids())
    print(" ".join(header.ljust(width) for header, _, width in COLUMNS).rstrip())
    print(" ".join("-" * width for _, _, width in COLUMNS))
    for row in sorted(rows, key=lambda r: (r["final"], r["state"], r["job_id"])):
        row["pending"] = "yes" if row["job_id"] in pending else ""
        if row["completed_at"]:
            row["completed_at"] = row["completed_at"][11:19]  # the demo's jobs all finish today
        cells = []
        for _, name, width in COLUMNS:
            value = row.get(name)
            text = "-" if value is None else str(value)
            cells.append((text if len(text) <= width else text[: width - 1] + "~").ljust(width))
        print(" ".join(cells).rstrip())
    print(f"\n{len(rows)} records, {len(pending)} pending, in\n{where}")


if __name__ == "__main__":
    sys.exit(main())
