"""Completion-event delivery benchmark: a sweep that delivers a backlog of owed events.

    .venv/bin/python -m tests.bench.bench_notify [--events 100 1000] [--targets webhook eventbridge both]
                                                 [--latency-ms 0] [--concurrency 1 8] [--json]

The hard case of section 9: the endpoint or the bus was down for a while, N final jobs owe
their event, and the next sweep delivers them all. For each N and target set, N final
records are written into a file store with their outbox entries (due now), then a fresh
process runs one timer sweep on a warm instance (the ICE and EventBridge SDKs imported and
their clients built, as after an earlier sweep) and reports:

- wall time of the sweep and events delivered (``notified``);
- CPU of the whole process during the sweep (every thread, user + system), per event: what
  an FC instance with a fraction of a vCPU pays per event;
- peak RSS of the process.

Targets: ``webhook`` (one ``NOTIFY_URL``: tests/support/webhook_receiver.py, which verifies
every signature with the standardwebhooks library), ``eventbridge`` (``NOTIFY_EVENTBRIDGE``:
tests/support/eventbridge.py through the official SDK, ACS3-signed), or ``both``. The
servers run in processes of their own, so their CPU is not the sweep's; ``--latency-ms``
delays each EventBridge answer. ``ICE_CONCURRENCY`` events are in flight at once (each to
all its targets in parallel); ``--concurrency 1`` shows one at a time.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[2]
FUNCTION = ROOT / "function"

from tests.bench.ice_process import ACCESS_KEY_ID, ACCESS_KEY_SECRET, ServerProcess  # noqa: E402

BUS = "bench-events"
SECRET = "whsec_" + base64.b64encode(b"b" * 32).decode()


class EventBridgeProcess(ServerProcess):
    module = "tests.support.eventbridge"

    def __init__(self, *, latency_ms: float = 0.0) -> None:
        super().__init__("--bus", BUS, "--latency-ms", str(latency_ms))


class WebhookProcess(ServerProcess):
    module = "tests.support.webhook_receiver"
    keyed = False

    def __init__(self) -> None:
        super().__init__("--secret", SECRET)


def seed(root: Path, events: int) -> None:
    """N final records, each owing its event (the store writes the entry with the record)."""
    sys.path.insert(0, str(FUNCTION))
    from ice_upload_sync.config import Settings
    from ice_upload_sync.ice import Credentials
    from ice_upload_sync.stores import open_store

    from tests.store_records import final

    settings = Settings(record_store=f"file://{root}", notify_eventbridge_bus=BUS)
    store = open_store(settings, Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET))
    for number in range(events):
        job_id = f"{number:032x}"
        store.save(final(job_id, upload_url=f"https://media.example.com/{job_id}.mp4",
                         file_size=1_048_576))


def child(env: Dict[str, str]) -> dict:
    """In a fresh process: warm an instance, then time one sweep that delivers the backlog."""
    os.environ.update(env)
    sys.path.insert(0, str(FUNCTION))
    from types import SimpleNamespace

    import index

    context = SimpleNamespace(request_id="bench", credentials=None,
                              function=SimpleNamespace(name="bench", handler="index.handler", timeout="300"))
    index.initialize(context)
    app = index._app
    app.gateway.prepare()
    if app.bus is not None:
        app.bus.prepare()
    started_cpu, started = time.process_time(), time.monotonic()
    summary = index.handler(json.dumps({"triggerTime": "2026-12-02T00:00:00Z", "triggerName": "sweep",
                                        "payload": ""}).encode(), context)
    wall, cpu = time.monotonic() - started, time.process_time() - started_cpu
    return {"wall_s": wall, "cpu_s": cpu, "notified": summary["notified"], "notify_failed": summary["notify_failed"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run(events: int, targets: str, latency_ms: float, concurrency: int = 8) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-notify-") as work:
        root = Path(work) / "records"
        seed(root, events)
        env = {"RECORD_STORE": f"file://{root}", "ICE_ENDPOINT": "http://127.0.0.1:9", "ICE_REGION": "cn-shanghai",
               "ALIBABA_CLOUD_ACCESS_KEY_ID": ACCESS_KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ACCESS_KEY_SECRET,
               "CALLBACK_AUTH_KEY": "bench", "ICE_CONCURRENCY": str(concurrency)}
        webhook = WebhookProcess() if targets in ("webhook", "both") else None
        bus = EventBridgeProcess(latency_ms=latency_ms) if targets in ("eventbridge", "both") else None
        try:
            if webhook is not None:
                webhook.__enter__()
                env.update(NOTIFY_URL=webhook.endpoint, NOTIFY_SECRET=SECRET)
            if bus is not None:
                bus.__enter__()
                env.update(NOTIFY_EVENTBRIDGE=BUS, EVENTBRIDGE_ENDPOINT=bus.endpoint)
            output = subprocess.run([sys.executable, "-m", "tests.bench.bench_notify", "--child", json.dumps(env)],
                                    cwd=ROOT, capture_output=True, text=True, check=True,
                                    env={**os.environ, "PYTHONPATH": str(ROOT)})
        finally:
            for server in (webhook, bus):
                if server is not None:
                    server.__exit__(None, None, None)
    result = json.loads(output.stdout.strip().splitlines()[-1])
    targets_count = 2 if targets == "both" else 1
    return {"events": events, "targets": targets, "latency_ms": latency_ms, "concurrency": concurrency, **result,
            "cpu_ms_per_event": 1000 * result["cpu_s"] / events,
            "complete": result["notified"] == events * targets_count}


def main(argv: List[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--targets", nargs="+", choices=["webhook", "eventbridge", "both"],
                        default=["webhook", "eventbridge", "both"])
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8],
                        help="ICE_CONCURRENCY: events in flight at once (default 8, the function's default)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    if not args.json:
        print(f"{'events':>7} {'targets':>12} {'in flight':>9} {'wall s':>8} {'CPU s':>7} {'CPU ms/event':>13} "
              f"{'notified':>9} {'peak RSS MB':>12}")
    for events in args.events:
        for targets in args.targets:
            for concurrency in args.concurrency:
                report(run(events, targets, args.latency_ms, concurrency), args.json)


def report(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
        return
    print(f"{result['events']:>7} {result['targets']:>12} {result['concurrency']:>9} {result['wall_s']:>8.2f} "
          f"{result['cpu_s']:>7.2f} {result['cpu_ms_per_event']:>13.2f} {result['notified']:>9} "
          f"{result['peak_rss_mb']:>12.0f}" + ("" if result["complete"] else "  INCOMPLETE"))

if __name__ == "__main__":
    main()
