"""Sweep benchmark: N pending jobs against the ICE emulator with injected latency.

    .venv/bin/python -m tests.bench.bench_sweep [--jobs 1000 10000 100000] [--latency-ms 20]
                                                [--concurrency 8] [--naive-jobs 200] [--write]
                                                [--store file|tablestore] [--store-latency-ms 2]

For each N: the store is seeded with N tracked jobs (records already up to date, the
usual sweep; ``--write`` leaves records out so every job is written), the emulator runs
in a process of its own with N jobs in flight (so does the local Tablestore server, with
``--store-latency-ms`` per call, for ``--store tablestore``), and two fresh processes sweep:

- ``pipelined``: the handler with a timer event, as FC runs it on a warm instance (one
  direct request first opens the SDK's connections; ``bench_cold_start`` measures that);
- ``naive``: one job per call, sequential, one write per job (the first ``--naive-jobs``
  jobs only, extrapolated to N: at 20 ms a call it would take N x 20 ms).

Printed per run: API calls (and ceil(N/10)), wall time, jobs per second, the ratio to the
ideal ceil(N/10) x latency / concurrency, and the sweeping process's peak RSS. Not run by
the test suite (``tests/integration/test_bench_smoke.py`` runs it with a tiny N).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List

ROOT = Path(__file__).resolve().parents[2]

from tests.bench.ice_process import (  # noqa: E402
    ACCESS_KEY_ID,
    ACCESS_KEY_SECRET,
    TABLESTORE_INSTANCE,
    IceProcess,
    TablestoreProcess,
)

CREATED = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def job_id(index: int) -> str:
    return f"bench{index:08d}"


def ice_jobs(count: int) -> Iterator[Dict[str, str]]:
    for index in range(count):
        yield {"JobId": job_id(index), "Status": "UPLOADING", "CreationTime": CREATED,
               "UploadURL": f"https://media.example.com/bench/{index}.mp4"}


def seed_store(root: Path, count: int, with_records: bool) -> None:
    """Write the file store's layout directly (the store's own writes fsync: too slow to seed 100,000)."""
    sys.path.insert(0, str(ROOT / "function"))
    from ice_upload_sync.records import UploadInfo, normalize

    (root / "jobs").mkdir(parents=True, exist_ok=True)
    (root / "pending").mkdir(parents=True, exist_ok=True)
    for job in ice_jobs(count):
        marker = {"job_id": job["JobId"], "first_seen_at": CREATED, "source": "direct"}
        (root / "pending" / job["JobId"]).write_text(json.dumps(marker))
        if with_records:
            record = normalize(UploadInfo.from_api(job), source="timer", request_id="seed", now=CREATED)
            (root / "jobs" / f"{job['JobId']}.json").write_text(
                json.dumps(record.to_dict(), ensure_ascii=False, indent=1))


def seed_tablestore(endpoint: str, table: str, count: int, with_records: bool) -> None:
    """Tables and rows through the store itself (batched, so 100,000 jobs take seconds, not minutes)."""
    sys.path.insert(0, str(ROOT / "function"))
    from ice_upload_sync.ice import Credentials
    from ice_upload_sync.records import UploadInfo, normalize
    from ice_upload_sync.stores.base import Tracking
    from ice_upload_sync.stores.tablestore import TablestoreStore

    store = TablestoreStore(TABLESTORE_INSTANCE, table, endpoint, Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET))
    store.create_tables()
    chunk: list = []
    for job in ice_jobs(count):
        if with_records:
            chunk.append(normalize(UploadInfo.from_api(job), source="timer", request_id="seed", now=CREATED))
        else:
            store.track(Tracking(job["JobId"], CREATED, "direct"))
        if len(chunk) == 200:
            store.save_many(chunk)
            chunk = []
    if chunk:
        store.save_many(chunk)


# ---------------------------------------------------------------- the measured process

CHILD = r"""
import json, resource, sys, time
from types import SimpleNamespace
mode, jobs, naive_jobs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
import logging
import index
context = SimpleNamespace(request_id="bench", credentials=None, function=SimpleNamespace(name="bench", timeout="3600"))
index.initialize(context)
app = index._app
logging.getLogger("ice_upload_sync").setLevel(logging.WARNING)
if mode == "pipelined":
    # a warm instance, as the timer usually finds one: SDK connections open, lazy imports done
    first = next(iter(app.store.pending_job_ids()))
    index.handler(json.dumps({"JobIds": [first]}), context)
    started = time.perf_counter()
    summary = index.handler(json.dumps({"triggerTime": "t", "triggerName": "sweep", "payload": ""}), context)
    wall = time.perf_counter() - started
    out = {"jobs": summary["checked"], "api_calls": summary["api_calls"], "wall_s": wall,
           "written": summary["written"], "unchanged": summary["unchanged"], "failed": summary["failed_count"]}
else:
    from ice_upload_sync.records import format_time, normalize
    from datetime import datetime, timezone
    sample = []
    for job_id in app.store.pending_job_ids():
        sample.append(job_id)
        if len(sample) >= naive_jobs:
            break
    calls = written = 0
    started = time.perf_counter()
    for job_id in sample:
        outcome = app.gateway.query("JobIds", (job_id,), deadline=time.monotonic() + 60)
        calls += outcome.api_calls
        now = format_time(datetime.now(timezone.utc))
        for info in outcome.answer.infos:
            written += app.store.save(normalize(info, source="timer", request_id=outcome.answer.request_id,
                                                now=now)).changed
    wall = time.perf_counter() - started
    out = {"jobs": len(sample), "api_calls": calls, "wall_s": wall, "written": written}
usage = resource.getrusage(resource.RUSAGE_SELF)
out["peak_rss_mb"] = usage.ru_maxrss / 1024
out["cpu_s"] = usage.ru_utime + usage.ru_stime
out["sys_s"] = usage.ru_stime
print(json.dumps(out))
"""


def measure(mode: str, store: Dict[str, str], endpoint: str, args: argparse.Namespace, jobs: int) -> dict:
    env = {**{k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
           "PYTHONPATH": str(ROOT / "function"), "ICE_ENDPOINT": endpoint,
           "ALIBABA_CLOUD_ACCESS_KEY_ID": ACCESS_KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ACCESS_KEY_SECRET,
           **store, "ICE_CONCURRENCY": str(args.concurrency), "ICE_MAX_QPS": str(args.qps)}
    result = subprocess.run([sys.executable, "-c", CHILD, mode, str(jobs), str(args.naive_jobs)], env=env,
                            check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(jobs: int, args: argparse.Namespace) -> List[dict]:
    rows = []
    ideal = math.ceil(jobs / 10) * (args.latency_ms / 1000) / args.concurrency
    naive_count = min(jobs, args.naive_jobs)
    with contextlib.ExitStack() as stack:
        if args.store == "tablestore":
            tablestore = stack.enter_context(TablestoreProcess(latency_ms=args.store_latency_ms))
            stores = {name: {"RECORD_STORE": f"tablestore://{TABLESTORE_INSTANCE}/{name}",
                             "TABLESTORE_ENDPOINT": tablestore.endpoint} for name in ("pipelined", "naive")}
            seed_tablestore(tablestore.endpoint, "pipelined", jobs, with_records=not args.write)
            if args.naive_jobs:
                seed_tablestore(tablestore.endpoint, "naive", naive_count, with_records=not args.write)
        else:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-sweep-")))
            stores = {name: {"RECORD_STORE": f"file://{folder / name}"} for name in ("pipelined", "naive")}
            seed_store(folder / "pipelined", jobs, with_records=not args.write)
            if args.naive_jobs:
                seed_store(folder / "naive", naive_count, with_records=not args.write)
        with IceProcess(ice_jobs(jobs), latency_ms=args.latency_ms) as ice:
            pipelined = measure("pipelined", stores["pipelined"], ice.endpoint, args, jobs)
            naive = measure("naive", stores["naive"], ice.endpoint, args, jobs) if args.naive_jobs else None
    rows.append({"mode": "pipelined", "N": jobs, **pipelined, "ideal_s": ideal,
                 "ratio_to_ideal": pipelined["wall_s"] / ideal if ideal else float("nan"),
                 "jobs_per_s": pipelined["jobs"] / pipelined["wall_s"]})
    if naive:
        per_job = naive["wall_s"] / max(1, naive["jobs"])
        rows.append({"mode": f"naive ({naive['jobs']} jobs, x{jobs / max(1, naive['jobs']):g})", "N": jobs,
                     **naive, "wall_s": per_job * jobs, "api_calls": jobs, "ideal_s": ideal,
                     "ratio_to_ideal": per_job * jobs / ideal if ideal else float("nan"),
                     "jobs_per_s": 1 / per_job, "speedup": per_job * jobs / pipelined["wall_s"]})
    return rows


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--qps", type=float, default=1000, help="ICE_MAX_QPS (the default 50 would be the limit)")
    parser.add_argument("--naive-jobs", type=int, default=200, help="jobs the naive baseline sweeps (0: skip)")
    parser.add_argument("--write", action="store_true", help="no records yet: every job is written")
    parser.add_argument("--json", action="store_true", help="print one JSON line per run")
    parser.add_argument("--store", choices=["file", "tablestore"], default="file",
                        help="tablestore: the local Tablestore server in a process of its own")
    parser.add_argument("--store-latency-ms", type=float, default=2.0,
                        help="added to every Tablestore call (an in-region round trip)")
    args = parser.parse_args(argv)
    store = args.store if args.store == "file" else f"tablestore ({args.store_latency_ms:g}ms per call)"
    print(f"latency={args.latency_ms:g}ms concurrency={args.concurrency} qps={args.qps:g} store={store} "
          f"{'every job written' if args.write else 'records up to date'}", flush=True)
    for jobs in args.jobs:
        for row in run(jobs, args):
            if args.json:
                print(json.dumps(row), flush=True)
                continue
            extra = f" speedup={row['speedup']:.0f}x" if "speedup" in row else ""
            print(f"{row['mode']:<28} N={row['N']:<7} api_calls={row['api_calls']:<7} "
                  f"(ceil(N/10)={math.ceil(row['N'] / 10)}) wall={row['wall_s']:.2f}s jobs/s={row['jobs_per_s']:.0f} "
                  f"ideal={row['ideal_s']:.2f}s ratio={row['ratio_to_ideal']:.2f} "
                  f"peak_rss={row['peak_rss_mb']:.0f}MB cpu={row['cpu_s']:.1f}s sys={row['sys_s']:.1f}s{extra}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
