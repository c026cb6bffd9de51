"""Our CPU per job against the floor that cannot go: the official SDK's own CPU for the same calls.

    .venv/bin/python -m tests.bench.profile_sweep [--jobs 2000 5000] [--latency-ms 20] [--concurrency 8]
                                                  [--repeat 3] [--profile] [--top 30] [--plain]

For each N: a file store is seeded with N tracked jobs whose records are up to date (the
common tick: nothing changed), the ICE emulator runs in a process of its own (its CPU is not
ours) with those N jobs in flight, one sweep primes the store in a process of its own (it
binds each answer's digest to its record, ``RecordStore.answer_digests``, as the sweep after
a deploy does once), and a fresh process then measures, ``--repeat`` times:

- ``sweep``: the handler with a timer event on a warm instance (one direct request first
  opens the SDK's connections), ``time.process_time()`` around it: every thread's CPU;
- ``floor``: the same GetUrlUploadInfos calls (the same batches of 10, the same client and
  config, ``ICE_CONCURRENCY`` in flight) through the bare SDK in the same process:
  ``client.get_url_upload_infos_with_options`` and nothing else.

Printed: both CPU figures, their ratio (the target is at most 1.4 at N = 5,000) and our CPU
per job, ``(sweep - floor) / N``, in microseconds. With ``--profile`` one more sweep runs
under yappi (CPU clock, every thread; ``pip install yappi``) or, without it, under cProfile
per thread (``threading.setprofile``, thread CPU time), and the top functions of ours
(``function/``) are printed by their own CPU time.

The answers are shaped like ICE's (a media ID, an upload URL, UserData with nested JSON, an
ISO creation time); ``--plain`` answers only JobId, Status, CreationTime and UploadURL.
Not run by the test suite except with a tiny N (``tests/integration/test_profile_smoke.py``).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

ROOT = Path(__file__).resolve().parents[2]
FUNCTION = ROOT / "function"

from tests.bench.ice_process import ACCESS_KEY_ID, ACCESS_KEY_SECRET, IceProcess  # noqa: E402

CREATED = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
TIMER_EVENT = {"triggerTime": "t", "triggerName": "sweep", "payload": ""}


def job_id(index: int) -> str:
    return f"prof{index:08d}"


def ice_jobs(count: int, *, plain: bool = False) -> Iterator[Dict[str, str]]:
    for index in range(count):
        job = {"JobId": job_id(index), "Status": "UPLOADING", "CreationTime": CREATED,
               "UploadURL": f"https://media.example.com/bench/{index}.mp4"}
        if not plain:
            job["MediaId"] = f"{index:08x}a5c671efbf9ae6e6c6a5aa0b"
            job["UserData"] = json.dumps({"MessageCallback": {"CallbackURL": "https://cb.example.com/ice"},
                                          "Extend": {"batch": "b17", "index": index}})
        yield job


def seed_store(root: Path, count: int, *, plain: bool) -> None:
    """The file store's layout written directly: markers, and records as a sweep would have left them."""
    sys.path.insert(0, str(FUNCTION))
    from ice_upload_sync.records import UploadInfo, normalize, record_json

    (root / "jobs").mkdir(parents=True, exist_ok=True)
    (root / "pending").mkdir(parents=True, exist_ok=True)
    for job in ice_jobs(count, plain=plain):
        marker = {"job_id": job["JobId"], "first_seen_at": CREATED, "source": "direct"}
        (root / "pending" / job["JobId"]).write_text(json.dumps(marker))
        record = normalize(UploadInfo.from_api(job), source="timer", request_id="seed", now=CREATED)
        (root / "jobs" / f"{job['JobId']}.json").write_bytes(record_json(record))


# ---------------------------------------------------------------- the measured process


def _app(context: Any) -> Any:
    import index

    index.initialize(context)
    return index


def _floor(app: Any, batches: List[tuple], concurrency: int) -> float:
    """CPU of the bare SDK making these calls, ``concurrency`` in flight, in this process."""
    from concurrent.futures import ThreadPoolExecutor

    from ice_upload_sync.ice import CONNECT_TIMEOUT_S, READ_TIMEOUT_S

    gateway = app.gateway
    client = gateway.client()
    sdk = gateway._sdk

    def call(batch: tuple) -> int:
        request = sdk.Request(job_ids=",".join(batch))
        runtime = sdk.RuntimeOptions(read_timeout=int(READ_TIMEOUT_S * 1000),
                                     connect_timeout=int(CONNECT_TIMEOUT_S * 1000), autoretry=False)
        response = client.get_url_upload_infos_with_options(request, runtime)
        return len(response.body.urlupload_info_list or ())

    gc.collect()
    started = time.process_time()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        answered = sum(pool.map(call, batches))
    cpu = time.process_time() - started
    assert answered == sum(len(batch) for batch in batches), "the floor's calls did not answer every job"
    return cpu


def _sweep(index: Any, context: Any) -> Dict[str, Any]:
    gc.collect()
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    summary = index.handler(json.dumps(TIMER_EVENT), context)
    return {"cpu_s": time.process_time() - cpu_started, "wall_s": time.perf_counter() - wall_started,
            "checked": summary["checked"], "written": summary["written"], "unchanged": summary["unchanged"],
            "api_calls": summary["api_calls"], "failed": summary["failed_count"]}


def child(mode: str, repeat: int, top: int) -> Dict[str, Any]:
    from types import SimpleNamespace

    context = SimpleNamespace(request_id="profile", credentials=None,
                              function=SimpleNamespace(name="profile", timeout="3600"))
    index = _app(context)
    app = index._app
    pending = list(app.store.pending_job_ids())
    # a warm instance, as the timer usually finds one: SDK imported, connections open
    index.handler(json.dumps({"JobIds": pending[:1]}), context)
    if mode == "prime":
        return _sweep(index, context)
    batches = [tuple(pending[start:start + 10]) for start in range(0, len(pending), 10)]
    if mode == "profile":
        return {"profile": _profiled(lambda: _sweep(index, context), top)}
    runs = []
    for _ in range(repeat):
        sweep = _sweep(index, context)
        floor = _floor(app, batches, app.settings.ice_concurrency)
        runs.append({**sweep, "floor_cpu_s": floor, "floor_calls": len(batches)})
    return {"runs": runs}


def _profiled(run: Any, top: int) -> str:
    """``run()`` under a CPU-clock profiler across threads; the top functions of ours, by own time."""
    ours = str(FUNCTION) + os.sep
    try:
        import yappi
    except ImportError:
        yappi = None
    if yappi is not None:
        yappi.set_clock_type("cpu")
        yappi.start(builtins=False, profile_threads=True)
        try:
            run()
        finally:
            yappi.stop()
        stats = yappi.get_func_stats()
        total = sum(stat.tsub for stat in stats)
        mine = sorted((s for s in stats if s.module.startswith(ours)), key=lambda s: s.tsub, reverse=True)
        lines = [f"yappi, CPU clock, all threads: {total:.3f}s profiled, {sum(s.tsub for s in mine):.3f}s "
                 f"in our functions (own time; profiling inflates both)",
                 f"{'own s':>8} {'total s':>8} {'calls':>8}  function"]
        for stat in mine[:top]:
            where = f"{os.path.relpath(stat.module, FUNCTION)}:{stat.lineno}"
            lines.append(f"{stat.tsub:8.3f} {stat.ttot:8.3f} {stat.ncall:8d}  {stat.name} ({where})")
        yappi.clear_stats()
        return "\n".join(lines)
    return _cprofiled(run, top, ours)


def _cprofiled(run: Any, top: int, ours: str) -> str:
    import cProfile
    import pstats

    profilers: List[cProfile.Profile] = []
    lock = threading.Lock()

    def start_in_thread(frame: Any, event: str, arg: Any) -> None:
        sys.setprofile(None)
        profiler = cProfile.Profile(time.thread_time)
        with lock:
            profilers.append(profiler)
        profiler.enable()

    main = cProfile.Profile(time.thread_time)
    threading.setprofile(start_in_thread)
    main.enable()
    try:
        run()
    finally:
        main.disable()
        threading.setprofile(None)
        for profiler in profilers:
            profiler.disable()  # threads of the pools are gone; their data stays
    stats = pstats.Stats(main)
    for profiler in profilers:
        stats.add(profiler)
    rows = [(key, value) for key, value in stats.stats.items() if key[0].startswith(ours)]  # type: ignore[attr-defined]
    rows.sort(key=lambda row: row[1][2], reverse=True)
    lines = ["cProfile per thread (thread CPU time; pip install yappi for yappi)",
             f"{'own s':>8} {'total s':>8} {'calls':>8}  function"]
    for (filename, line, name), (_cc, calls, own, total, _callers) in rows[:top]:
        lines.append(f"{own:8.3f} {total:8.3f} {calls:8d}  {name} ({os.path.relpath(filename, FUNCTION)}:{line})")
    return "\n".join(lines)


# ---------------------------------------------------------------- the driver


def run_child(mode: str, store: Path, endpoint: str, args: argparse.Namespace) -> Dict[str, Any]:
    env = {**{k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
           "PYTHONPATH": os.pathsep.join([str(FUNCTION), str(ROOT)]), "ICE_ENDPOINT": endpoint,
           "ALIBABA_CLOUD_ACCESS_KEY_ID": ACCESS_KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ACCESS_KEY_SECRET,
           "RECORD_STORE": f"file://{store}", "ICE_CONCURRENCY": str(args.concurrency),
           "ICE_MAX_QPS": str(args.qps)}
    result = subprocess.run([sys.executable, "-m", "tests.bench.profile_sweep", "--child", mode,
                             "--repeat", str(args.repeat), "--top", str(args.top)],
                            env=env, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"the {mode} process failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(jobs: int, args: argparse.Namespace) -> Dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="profile-sweep-") as folder:
        store = Path(folder) / "store"
        seed_store(store, jobs, plain=args.plain)
        with IceProcess(ice_jobs(jobs, plain=args.plain), latency_ms=args.latency_ms) as ice:
            prime = run_child("prime", store, ice.endpoint, args)
            measured = run_child("measure", store, ice.endpoint, args)
            profile = run_child("profile", store, ice.endpoint, args)["profile"] if args.profile else None
    runs = measured["runs"]
    ratios = [run["cpu_s"] / run["floor_cpu_s"] for run in runs]
    median = sorted(range(len(runs)), key=lambda i: ratios[i])[len(runs) // 2]
    chosen = runs[median]
    return {"N": jobs, "prime_written": prime["written"], "runs": runs, "ratio_median": ratios[median],
            "sweep_cpu_s": chosen["cpu_s"], "floor_cpu_s": chosen["floor_cpu_s"], "wall_s": chosen["wall_s"],
            "our_us_per_job": (chosen["cpu_s"] - chosen["floor_cpu_s"]) / jobs * 1e6,
            "floor_us_per_job": chosen["floor_cpu_s"] / jobs * 1e6,
            "ratios": [round(ratio, 3) for ratio in ratios], "profile": profile}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.profile_sweep")
    parser.add_argument("--jobs", type=int, nargs="+", default=[2000, 5000])
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--qps", type=float, default=1000, help="ICE_MAX_QPS (the default 50 would pace the sweep)")
    parser.add_argument("--repeat", type=int, default=3, help="sweep + floor pairs per N (the median is shown)")
    parser.add_argument("--profile", action="store_true", help="one more sweep under a profiler: top functions")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--plain", action="store_true", help="answers with only JobId, Status, CreationTime, URL")
    parser.add_argument("--json", action="store_true", help="one JSON line per N")
    parser.add_argument("--child", choices=["prime", "measure", "profile"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.repeat, args.top)))
        return 0
    print(f"latency={args.latency_ms:g}ms concurrency={args.concurrency} store=file "
          f"answers={'plain' if args.plain else 'ICE-shaped'} repeat={args.repeat} (median of the ratios shown)",
          flush=True)
    for jobs in args.jobs:
        row = measure(jobs, args)
        if args.json:
            print(json.dumps(row), flush=True)
            continue
        run = row["runs"][0]
        print(f"N={jobs:<6} sweep_cpu={row['sweep_cpu_s']:.3f}s sdk_floor={row['floor_cpu_s']:.3f}s "
              f"ratio={row['ratio_median']:.2f} (all: {row['ratios']}) ours={row['our_us_per_job']:.0f}us/job "
              f"floor={row['floor_us_per_job']:.0f}us/job wall={row['wall_s']:.2f}s api_calls={run['api_calls']} "
              f"unchanged={run['unchanged']} written={run['written']} (priming wrote {row['prime_written']})",
              flush=True)
        if row["profile"]:
            print(row["profile"], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
