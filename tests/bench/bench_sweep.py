"""Sweep benchmark: the common tick and the hard case, on every store, against the floor.

    .venv/bin/python -m tests.bench.bench_sweep [--jobs 1000 10000 100000] [--modes unchanged changed]
                                                [--stores file oss tablestore] [--latency-ms 20]
                                                [--concurrency 8] [--qps 1000] [--naive-jobs 200]
                                                [--store-latency-ms 2] [--json]

For each N and store, N jobs are tracked (pending markers written straight into the store)
and one sweep in a process of its own records them from ICE's answers, as the sweeps
before the measured one would have (whatever a store keeps to tell "unchanged" cheaply is
written the way production writes it). Then, in fresh processes:

- ``unchanged`` (the common tick): ICE still answers ``UPLOADING`` for every job: nothing
  to write;
- ``changed`` (after a wave of uploads finished): ICE now answers ``Success`` for every job
  stored as ``UPLOADING``: every record is rewritten as final and every marker removed.

Every server runs in a process of its own, so its CPU and memory are not the sweep's: the
ICE emulator (``--latency-ms`` per call), OSS (moto's S3 server behind the OSS dialect, no
added latency: moto's own work and a new connection per request) and the local Tablestore
server (``--store-latency-ms`` per call). Measured per run:

- ``sweep``: the handler with a timer event on a warm instance (SDK imported, a lookup made,
  the store's client used), in a fresh process: wall time, API calls, CPU of the process
  (every thread, user + system) during the sweep, and the process's peak RSS;
- ``floor``: the bare official SDK making the same ceil(N/10) GetUrlUploadInfos calls
  (batches of 10, ``ICE_CONCURRENCY`` in flight) against the same emulator, in a fresh
  process: its CPU over those calls. What the sweep spends above it is ours;
- ``naive``: the first ``--naive-jobs`` jobs one at a time, each its own invocation (a timer
  event naming one job: one call, one write when it changed), on a store of their own,
  extrapolated to N.

Printed per run: wall / ideal (ideal = ceil(N/10) x latency / concurrency), our CPU per job,
the SDK floor per job and the sweep's CPU over it, API calls, the store's requests per job
(by kind, counted in its SDK: what OSS bills; none for the file store), peak RSS, the naive
baseline and the speedup over it. ``--json`` prints one JSON line per run instead. The rate limit is
set out of the way (``--qps``) so that ICE's latency, not the limit, sets the pace. Not run
by the test suite except with a tiny N (``tests/integration/test_bench_smoke.py``).

To see where a measured sweep spends: ``BENCH_PROFILE=<file>`` writes a pstats file of every
thread's cProfile (``python -m pstats <file>``), ``BENCH_TRACEMALLOC=<file>`` what the sweep left
allocated and its traced peak. Both slow the sweep many times over: their CPU figures mean nothing.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

ROOT = Path(__file__).resolve().parents[2]
FUNCTION = ROOT / "function"

from tests.bench.ice_process import (  # noqa: E402
    ACCESS_KEY_ID,
    ACCESS_KEY_SECRET,
    TABLESTORE_INSTANCE,
    IceProcess,
    OssProcess,
    TablestoreProcess,
)

MODES = ("unchanged", "changed")
STORES = ("file", "oss", "tablestore")
CREATED = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
COMPLETED = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())  # ICE's own format for CompleteTime
TIMER_EVENT = {"triggerTime": "t", "triggerName": "sweep", "payload": ""}


def job_id(index: int) -> str:
    return f"bench{index:08d}"


def ice_jobs(count: int, *, finished: bool) -> Iterator[Dict[str, str]]:
    """ICE-shaped answers: uploading, or (``finished``) the same jobs succeeded."""
    for index in range(count):
        job = {"JobId": job_id(index), "Status": "UPLOADING", "CreationTime": CREATED,
               "UploadURL": f"https://media.example.com/bench/{index}.mp4",
               "MediaId": f"{index:08x}a5c671efbf9ae6e6c6a5aa0b",
               "UserData": json.dumps({"MessageCallback": {"CallbackURL": "https://cb.example.com/ice"},
                                       "Extend": {"batch": "b17", "index": index}})}
        if finished:
            job.update(Status="Success", CompleteTime=COMPLETED, FileSize=str(10_485_760 + index))
        yield job


# ---------------------------------------------------------------- the measured processes


def _context() -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(request_id="bench", credentials=None,
                           function=SimpleNamespace(name="bench", timeout="3600"))


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the process
    return usage.ru_utime + usage.ru_stime


def _warm_instance(context: Any) -> Any:
    """``index`` initialized, its SDK imported, one lookup made and the store's client used; nothing written."""
    import logging

    import index

    index.initialize(context)
    logging.getLogger("ice_upload_sync").setLevel(logging.WARNING)
    app = index._app
    app.gateway.prepare()
    for outcome in app.gateway.lookup([job_id(0)], [], deadline=time.monotonic() + 60):
        assert outcome.answer is not None, f"the warm-up lookup failed: {outcome.error}"
    app.store.load(job_id(0))
    return index


def _count_store_requests() -> Dict[str, int]:
    """Every request the store's SDK sends from now on, by kind, counted where the SDK sends it.

    OSS: ``oss2.http.Session.do_request``, as ``LIST`` (a bucket listing), ``DELETE-MULTIPLE`` or
    the object request's method; Tablestore: the API each ``OTSClient._request_helper`` call names.
    OSS bills each of them (GET-type or PUT-type), Tablestore by capacity units. The file store
    sends none. Only the SDK the store imported is counted (the others are not imported here).
    """
    counts: Dict[str, int] = {}
    lock = threading.Lock()

    def counted(kind: str) -> None:
        with lock:
            counts[kind] = counts.get(kind, 0) + 1

    if "oss2" in sys.modules:  # imported by the store chosen; importing it here would cost the others memory
        import oss2.http

        send = oss2.http.Session.do_request

        def do_request(session: Any, request: Any, timeout: Any) -> Any:
            params = request.params or {}
            kind = ("LIST" if "list-type" in params or "prefix" in params
                    else "DELETE-MULTIPLE" if "delete" in params else request.method)
            counted(kind)
            return send(session, request, timeout)

        oss2.http.Session.do_request = do_request  # type: ignore[method-assign]
    if "tablestore" in sys.modules:
        from tablestore.client import OTSClient

        helper = OTSClient._request_helper

        def request_helper(client: Any, api_name: str, *args: Any, **kwargs: Any) -> Any:
            counted(api_name)
            return helper(client, api_name, *args, **kwargs)

        OTSClient._request_helper = request_helper  # type: ignore[method-assign]
    return counts


def _profile_threads() -> List[Any]:
    """Profile this thread and every thread started from now on (cProfile sees one thread only)."""
    import cProfile

    profiles: List[Any] = [cProfile.Profile()]
    run = threading.Thread.run

    def profiled_run(thread: threading.Thread) -> None:
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.runcall(run, thread)

    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    profiles[0].enable()
    return profiles


def _dump_profiles(profiles: List[Any], path: str) -> None:
    import pstats

    profiles[0].disable()
    for profile in profiles[1:]:
        profile.disable()  # a pool thread still parked in its queue
    stats = pstats.Stats(profiles[0])
    for profile in profiles[1:]:
        with contextlib.suppress(TypeError):  # a profile that saw no call
            stats.add(profile)
    stats.dump_stats(path)


def child_sweep(warm: bool) -> Dict[str, Any]:
    context = _context()
    if warm:
        index = _warm_instance(context)
    else:  # priming: only the records matter
        import index

        index.initialize(context)
    requests = _count_store_requests()  # after the warm-up: the sweep's own
    profile_to = os.environ.get("BENCH_PROFILE") if warm else None  # a pstats file: every thread's profile
    profiles = _profile_threads() if profile_to else None
    allocations_to = os.environ.get("BENCH_TRACEMALLOC") if warm else None  # what the sweep left allocated
    if allocations_to:
        import tracemalloc

        tracemalloc.start(8)
        before = tracemalloc.take_snapshot()
    cpu, started = _cpu_s(), time.perf_counter()
    summary = index.handler(json.dumps(TIMER_EVENT), context)
    wall, cpu = time.perf_counter() - started, _cpu_s() - cpu
    if profiles is not None:
        _dump_profiles(profiles, str(profile_to))
    if allocations_to:
        peak = tracemalloc.get_traced_memory()[1]
        grown = tracemalloc.take_snapshot().compare_to(before, "traceback")
        with open(allocations_to, "w", encoding="utf-8") as out:
            out.write(f"peak traced: {peak / 1e6:.1f} MB\n")
            for stat in grown[:15]:
                out.write(f"{stat.size_diff / 1e6:+.2f} MB in {stat.count_diff:+d} blocks\n")
                out.write("".join(f"    {line}\n" for line in stat.traceback.format()[-8:]))
    return {"wall_s": wall, "cpu_s": cpu, "checked": summary["checked"], "written": summary["written"],
            "unchanged": summary["unchanged"], "api_calls": summary["api_calls"],
            "failed": summary["failed_count"], "complete": summary["complete"], "peak_rss_mb": _peak_rss_mb(),
            "store_requests": dict(sorted(requests.items())), "store_requests_total": sum(requests.values())}


def child_naive(jobs: int) -> Dict[str, Any]:
    context = _context()
    index = _warm_instance(context)
    calls = written = 0
    cpu, started = _cpu_s(), time.perf_counter()
    for index_ in range(jobs):
        event = {**TIMER_EVENT, "payload": json.dumps({"JobIds": [job_id(index_)]})}
        summary = index.handler(json.dumps(event), context)
        calls += summary["api_calls"]
        written += summary["written"]
    wall, cpu = time.perf_counter() - started, _cpu_s() - cpu
    return {"jobs": jobs, "wall_s": wall, "cpu_s": cpu, "api_calls": calls, "written": written,
            "peak_rss_mb": _peak_rss_mb()}


def child_floor(jobs: int, concurrency: int) -> Dict[str, Any]:
    """The official SDK alone: the client the gateway builds, the same calls, nothing of ours."""
    from urllib.parse import urlsplit

    from alibabacloud_ice20201109 import models
    from alibabacloud_ice20201109.client import Client
    from alibabacloud_tea_openapi.utils_models import Config
    from darabonba.runtime import RuntimeOptions

    endpoint = urlsplit(os.environ["ICE_ENDPOINT"])
    client = Client(Config(access_key_id=ACCESS_KEY_ID, access_key_secret=ACCESS_KEY_SECRET,
                           endpoint=endpoint.netloc, protocol=endpoint.scheme, region_id="cn-shanghai",
                           connect_timeout=2000, read_timeout=10000, max_idle_conns=concurrency))

    def call(keys: List[str]) -> int:
        request = models.GetUrlUploadInfosRequest(job_ids=",".join(keys))
        runtime = RuntimeOptions(read_timeout=10000, connect_timeout=2000, autoretry=False)
        response = client.get_url_upload_infos_with_options(request, runtime)
        return len(response.body.urlupload_info_list or ())

    call([job_id(0)])  # warm, like the sweep's instance
    ids = [job_id(index) for index in range(jobs)]
    batches = [ids[start:start + 10] for start in range(0, jobs, 10)]
    cpu, started = _cpu_s(), time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        answered = sum(pool.map(call, batches))
    wall, cpu = time.perf_counter() - started, _cpu_s() - cpu
    assert answered == jobs, f"the floor's calls answered {answered} of {jobs} jobs"
    return {"calls": len(batches), "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": _peak_rss_mb()}


def _peak_rss_mb() -> float:
    """This process's own peak RSS. Linux's ``ru_maxrss`` starts from the parent's at fork, so a
    driver that seeded 100,000 jobs through a store's SDK made every later child read as large
    as itself; ``VmHWM`` belongs to the process's own memory, from its exec."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def child(args: argparse.Namespace) -> Dict[str, Any]:
    if args.child == "floor":
        return child_floor(args.jobs[0], args.concurrency)
    if args.child == "naive":
        return child_naive(args.jobs[0])
    return child_sweep(warm=args.child == "sweep")


def run_child(what: str, jobs: int, env: Dict[str, str], ice: str, args: argparse.Namespace) -> Dict[str, Any]:
    environment = {**{k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
                   "PYTHONPATH": os.pathsep.join([str(FUNCTION), str(ROOT)]), "ICE_ENDPOINT": ice,
                   "ALIBABA_CLOUD_ACCESS_KEY_ID": ACCESS_KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ACCESS_KEY_SECRET,
                   "ICE_CONCURRENCY": str(args.concurrency), "ICE_MAX_QPS": str(args.qps), **env}
    result = subprocess.run([sys.executable, "-m", "tests.bench.bench_sweep", "--child", what, "--jobs", str(jobs),
                             "--concurrency", str(args.concurrency)],
                            env=environment, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"the {what} process failed:\n{result.stderr[-4000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- stores


@dataclass(frozen=True)
class BenchStore:
    kind: str
    env: Dict[str, str]  # RECORD_STORE and its endpoint, for the measured processes


class Stores:
    """Fresh stores of each kind; the OSS and Tablestore servers start on first use and live until ``close``."""

    def __init__(self, args: argparse.Namespace, folder: Path, stack: contextlib.ExitStack) -> None:
        self.args = args
        self.folder = folder
        self.stack = stack
        self._oss: Optional[OssProcess] = None
        self._tablestore: Optional[TablestoreProcess] = None

    def new(self, kind: str, job_count: int) -> BenchStore:
        """A store of ``kind`` tracking jobs 0 .. job_count - 1, with no records yet."""
        name = f"b{uuid.uuid4().hex[:12]}"
        if kind == "file":
            store = BenchStore(kind, {"RECORD_STORE": f"file://{self.folder / name}"})
            seed_file_markers(self.folder / name, job_count)
            return store
        if kind == "oss":
            if self._oss is None:
                self._oss = self.stack.enter_context(OssProcess(keep_alive=self.args.oss_server == "keep-alive"))
            self._oss.create_bucket(name)
            store = BenchStore(kind, {"RECORD_STORE": f"oss://{name}/bench", "OSS_ENDPOINT": self._oss.endpoint})
        else:
            if self._tablestore is None:
                self._tablestore = self.stack.enter_context(
                    TablestoreProcess(latency_ms=self.args.store_latency_ms))
            store = BenchStore(kind, {"RECORD_STORE": f"tablestore://{TABLESTORE_INSTANCE}/{name}",
                                      "TABLESTORE_ENDPOINT": self._tablestore.endpoint})
        seed_markers_through_the_store(store, job_count)
        return store


def _function_on_path() -> None:
    if str(FUNCTION) not in sys.path:
        sys.path.insert(0, str(FUNCTION))


def seed_file_markers(root: Path, count: int) -> None:
    """The file store's markers written directly (the store's own writes fsync: slow to seed 100,000)."""
    _function_on_path()
    from ice_upload_sync.stores.base import Tracking

    (root / "jobs").mkdir(parents=True, exist_ok=True)
    (root / "pending").mkdir(parents=True, exist_ok=True)
    for index in range(count):
        (root / "pending" / job_id(index)).write_bytes(Tracking(job_id(index), CREATED, "direct").to_json())


def seed_markers_through_the_store(store: BenchStore, count: int) -> None:
    """OSS and Tablestore: ``track`` through the store itself, 16 at a time."""
    _function_on_path()
    from ice_upload_sync.config import Settings
    from ice_upload_sync.ice import Credentials
    from ice_upload_sync.stores import open_store
    from ice_upload_sync.stores.base import Tracking

    settings = Settings.from_env({**store.env, "ICE_REGION": "cn-shanghai"})
    opened: Any = open_store(settings, Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET))
    if store.kind == "tablestore":
        opened.create_tables()
    with ThreadPoolExecutor(max_workers=16) as pool:
        created = sum(pool.map(lambda index: bool(opened.track(Tracking(job_id(index), CREATED, "direct"))),
                               range(count)))
    assert created == count, f"{created} of {count} markers created in {store.kind}"


# ---------------------------------------------------------------- the driver


def bench(jobs: int, args: argparse.Namespace) -> Iterator[Dict[str, Any]]:
    """Rows for N = ``jobs``: per mode, per store."""
    ideal = math.ceil(jobs / 10) * (args.latency_ms / 1000) / args.concurrency
    naive_jobs = min(jobs, args.naive_jobs)
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-sweep-")))
        stores = Stores(args, folder, stack)
        with IceProcess(ice_jobs(jobs, finished=False), latency_ms=args.latency_ms) as ice:
            # every store primed from the same answers: the records the sweeps before would have left
            prepared = {}
            for kind in args.stores:
                pipelined = stores.new(kind, jobs)
                naive = stores.new(kind, naive_jobs) if naive_jobs else None
                for store, count in ((pipelined, jobs), (naive, naive_jobs)):
                    if store is not None:
                        primed = run_child("prime", count, store.env, ice.endpoint, args)
                        if primed["written"] != count or not primed["complete"]:
                            raise RuntimeError(f"priming {kind} wrote {primed['written']} of {count} records")
                prepared[kind] = (pipelined, naive)
            if "unchanged" in args.modes:
                yield from measure("unchanged", jobs, ideal, prepared, ice.endpoint, args)
        if "changed" in args.modes:
            # the unchanged sweep wrote nothing: the same records, now behind ICE's news
            with IceProcess(ice_jobs(jobs, finished=True), latency_ms=args.latency_ms) as ice:
                yield from measure("changed", jobs, ideal, prepared, ice.endpoint, args)


def measure(mode: str, jobs: int, ideal: float, prepared: Dict[str, Any], ice: str,
            args: argparse.Namespace) -> Iterator[Dict[str, Any]]:
    floor = run_child("floor", jobs, {}, ice, args)
    for kind, (pipelined, naive_store) in prepared.items():
        sweep = run_child("sweep", jobs, pipelined.env, ice, args)
        row: Dict[str, Any] = {
            "mode": mode, "store": kind, "N": jobs, **sweep, "ideal_calls": math.ceil(jobs / 10),
            "ideal_s": ideal, "ratio_to_ideal": _ratio(sweep["wall_s"], ideal),
            "jobs_per_s": _ratio(sweep["checked"], sweep["wall_s"]),
            "cpu_us_per_job": sweep["cpu_s"] / jobs * 1e6,
            "floor_cpu_s": floor["cpu_s"], "floor_calls": floor["calls"],
            "floor_us_per_job": floor["cpu_s"] / jobs * 1e6,
            "cpu_over_floor": _ratio(sweep["cpu_s"], floor["cpu_s"]),
            "ours_us_per_job": (sweep["cpu_s"] - floor["cpu_s"]) / jobs * 1e6,
            "requests_per_job": sweep["store_requests_total"] / jobs,
        }
        if naive_store is not None:
            naive = run_child("naive", min(jobs, args.naive_jobs), naive_store.env, ice, args)
            per_job = naive["wall_s"] / naive["jobs"]
            row.update(naive_jobs=naive["jobs"], naive_wall_s=per_job * jobs, naive_jobs_per_s=_ratio(1, per_job),
                       naive_cpu_us_per_job=naive["cpu_s"] / naive["jobs"] * 1e6,
                       naive_api_calls=naive["api_calls"], naive_written=naive["written"],
                       speedup=_ratio(per_job * jobs, sweep["wall_s"]))
        yield row


def _ratio(part: float, whole: float) -> Optional[float]:
    return part / whole if whole else None  # None, not NaN: strict JSON


def _x(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}"


def _kinds(counts: Dict[str, int], jobs: int) -> str:
    return "(" + ", ".join(f"{kind} {count / jobs:.3f}" for kind, count in counts.items()) + ")" if counts else ""


def describe(row: Dict[str, Any]) -> str:
    naive = ""
    if "naive_wall_s" in row:
        naive = (f" | naive {row['naive_wall_s']:.1f}s ({_x(row['naive_jobs_per_s'])} jobs/s, "
                 f"{row['naive_cpu_us_per_job']:.0f}us/job, from {row['naive_jobs']}) speedup x{_x(row['speedup'])}")
    return (f"{row['store']:<10} {row['mode']:<9} N={row['N']:<7} wall={row['wall_s']:.2f}s "
            f"ideal={row['ideal_s']:.2f}s x{_x(row['ratio_to_ideal'])} | cpu {row['cpu_us_per_job']:.0f}us/job "
            f"floor {row['floor_us_per_job']:.0f}us/job x{_x(row['cpu_over_floor'])} (ours +"
            f"{row['ours_us_per_job']:.0f}us/job) | api_calls={row['api_calls']} (ceil(N/10)={row['ideal_calls']}) "
            f"written={row['written']} unchanged={row['unchanged']} failed={row['failed']} "
            f"| store requests {row['requests_per_job']:.3f}/job {_kinds(row['store_requests'], row['N'])} "
            f"| peak_rss={row['peak_rss_mb']:.0f}MB{naive}")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_sweep")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1000, 10000, 100000],
                        help="N, one run each (1,000 / 10,000 / 100,000)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                        help="unchanged: ICE answers what is stored; changed: ICE says Success for every job")
    parser.add_argument("--stores", nargs="+", choices=STORES, default=list(STORES))
    parser.add_argument("--latency-ms", type=float, default=20, help="the ICE emulator's time per call")
    parser.add_argument("--concurrency", type=int, default=8, help="ICE_CONCURRENCY")
    parser.add_argument("--qps", type=float, default=1000, help="ICE_MAX_QPS (the default 50 would pace the sweep)")
    parser.add_argument("--naive-jobs", type=int, default=200, help="jobs the naive baseline checks (0: skip)")
    parser.add_argument("--store-latency-ms", type=float, default=2.0,
                        help="added to every call of the local Tablestore server (an in-region round trip)")
    parser.add_argument("--oss-server", choices=["keep-alive", "werkzeug"], default="keep-alive",
                        help="werkzeug: moto's own server, a new connection per request (OSS keeps them alive)")
    parser.add_argument("--json", action="store_true", help="one JSON line per run")
    parser.add_argument("--child", choices=["prime", "sweep", "naive", "floor"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    print(f"ICE latency={args.latency_ms:g}ms concurrency={args.concurrency} qps={args.qps:g} "
          f"tablestore latency={args.store_latency_ms:g}ms oss server={args.oss_server} cores={os.cpu_count()} "
          f"python={sys.version.split()[0]}", flush=True)
    for jobs in args.jobs:
        for row in bench(jobs, args):
            print(json.dumps(row) if args.json else describe(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
