"""The main job, locally: the ICE emulator + the file store, no cloud account needed.

Starts the emulator on loopback, seeds it with jobs in several states, replays every
file in ``events/`` through the real handler (the official SDK signs real HTTP calls to
the emulator), then prints the resulting records as a table.

    make local                      # or: .venv/bin/python -m tests.local_run [--keep]
    .venv/bin/python -m tests.local_run --store tablestore   # the local Tablestore server instead
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import textwrap
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Dict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "function"))

from tests.emulators.ice import IceEmulator  # noqa: E402
from tests.emulators.tablestore import TablestoreServer  # noqa: E402
from tests.scenario import (  # noqa: E402
    CALLBACK_AUTH_KEY,
    CALLBACK_URL,
    EVENTS_DIR,
    JOB,
    load_event,
    seed_jobs,
    signed_http_event,
)

# A story order: jobs are submitted, ICE calls back, someone asks, the timer sweeps.
ORDER = [
    "upload-media-by-url-response.json", "http-callback.json", "eventbridge-callback.json",
    "mns-queue-batch.json", "callback-vod-flat.json", "direct-job-ids.json",
    "direct-upload-urls.json", "timer-check-jobs.json", "timer-sweep.json",
]
# (header, record field, width): one row fits a 100-column terminal with single spaces between.
# "open": the job is pending (tracked, not final), so sweeps keep checking it.
COLUMNS = [("job_id", "job_id", 32), ("state", "state", 10), ("ice_status", "ice_status", 13),
           ("size", "file_size", 7), ("done UTC", "completed_at", 8), ("source", "source", 8),
           ("error_code", "error_code", 10), ("open", "pending", 4)]
WIDTH = 100
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
    parser.add_argument("--records", default=str(ROOT / ".local-records"), help="file store folder")
    parser.add_argument("--keep", action="store_true", help="keep records from an earlier run")
    parser.add_argument("--verbose", action="store_true", help="show the function's JSON log lines")
    args = parser.parse_args()
    collected = _Collected()
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="  log %(levelname)s %(name)s: %(message)s")
    else:
        logging.basicConfig(level=logging.WARNING, handlers=[collected])

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(name, None)  # the SDK would send even loopback calls through a proxy
    records = Path(args.records)
    if records.exists() and not args.keep:
        shutil.rmtree(records)
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
        })
        where = str(records)
        if args.store == "tablestore":
            os.environ.update({"RECORD_STORE": "tablestore://local/ice_uploads",
                               "TABLESTORE_ENDPOINT": tablestore.endpoint})
            from ice_upload_sync.stores.tablestore import main as tablestore_setup

            tablestore_setup(["create-tables"])  # the one-off set-up, as a user runs it
            where = f"tablestore://local/ice_uploads at {tablestore.endpoint}"
        print(f"ICE emulator at {ice.endpoint} with {len(seed_jobs())} seeded jobs\nrecords in {where}\n")

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
        print(f"{'timer-sweep.json (2 jobs finished)':34} {'ok':8} {'':9}  " + _brief(answer))
        print(f"\n{len(ice.calls)} GetUrlUploadInfos calls in all; the first event's time includes "
              "importing the ICE SDK.\n")
        _print_table(index._app.store, sorted(ice._jobs), where)
    _print_warnings(collected)
    return 0


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
