"""Where a store's save path spends its time: requests per job, wall and CPU per job, store by store.

    .venv/bin/python -m tests.bench.bench_store_writes [--stores file oss tablestore] [--jobs 2000]
                                                       [--modes unchanged finished new] [--store-latency-ms 2]
                                                       [--profile] [--json]

No ICE: the records a sweep would save (ICE's answers, normalized) are built in the measured
process and written the way the sweep writes them: ``save_many`` in groups of 50 where the store
``batches_writes``, else ``save`` one record at a time, on as many writer threads as the store asks
for (``write_concurrency``), at most 8 (``ICE_CONCURRENCY``). Modes, each on a store seeded for it:

- ``unchanged``: the record stored (``UPLOADING``) again: nothing to write;
- ``finished``: ``UPLOADING`` stored, ``Success`` answered: every record rewritten final and
  every marker removed (after a wave of uploads finished);
- ``new``: only the marker stored: every job's first record.

Printed per store and mode: wall per job, CPU per job (the measured process, every thread, user
+ system), and what the store asked of its backend per job: requests by kind (OSS: method and
key kind, record / marker / lock; Tablestore: API) with their mean wall time, or the file
store's fsyncs, renames and removals. With ``--profile``, yappi's CPU clock over every thread
says how that CPU splits between the SDK, its HTTP stack, our code and the kernel-bound calls.
Every server runs in a process of its own (OSS: moto behind the OSS dialect, with keep-alive;
Tablestore: the local server with ``--store-latency-ms`` per call), so their CPU is not counted.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterator, List

ROOT = Path(__file__).resolve().parents[2]
FUNCTION = ROOT / "function"

from tests.bench.ice_process import (  # noqa: E402
    ACCESS_KEY_ID,
    ACCESS_KEY_SECRET,
    TABLESTORE_INSTANCE,
    OssProcess,
    TablestoreProcess,
)

MODES = ("unchanged", "finished", "new")
STORES = ("file", "oss", "tablestore")
# whole hours, so that the measured process (which imports this module again) answers the same times
STARTED = int(os.environ.get("BENCH_STORE_WRITES_STARTED") or int(time.time()) // 3600 * 3600)
CREATED = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(STARTED - 3600))
COMPLETED = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(STARTED))
GROUP = 50  # records per save_many call: writer.py's SAVE_MANY_ANSWERS answers of 10
POOL = 8  # writer threads for a store without write_concurrency (ICE_CONCURRENCY)


def job_id(index: int) -> str:
    return f"bench{index:08d}"


def answer(index: int, *, finished: bool) -> Dict[str, str]:
    """An item of GetUrlUploadInfos as bench_sweep's emulator answers it."""
    item = {"JobId": job_id(index), "Status": "UPLOADING", "CreationTime": CREATED,
            "UploadURL": f"https://media.example.com/bench/{index}.mp4",
            "MediaId": f"{index:08x}a5c671efbf9ae6e6c6a5aa0b",
            "UserData": json.dumps({"MessageCallback": {"CallbackURL": "https://cb.example.com/ice"},
                                    "Extend": {"batch": "b17", "index": index}})}
    if finished:
        item.update(Status="Success", CompleteTime=COMPLETED, FileSize=str(10_485_760 + index))
    return item


def records(count: int, *, finished: bool) -> Iterator[Any]:
    from ice_upload_sync.records import UploadInfo, format_time, normalize

    now = format_time(datetime.now(timezone.utc))
    for index in range(count):
        yield normalize(UploadInfo.from_api(answer(index, finished=finished)), source="timer",
                        request_id="bench", now=now)


def open_store(config: Dict[str, str]) -> Any:
    sys.path.insert(0, str(FUNCTION))
    from ice_upload_sync.ice import Credentials

    credentials = Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET)
    if config["store"] == "file":
        from ice_upload_sync.stores.file import FileStore

        return FileStore(config["root"])
    if config["store"] == "oss":
        from ice_upload_sync.stores.oss import OssStore

        return OssStore(config["bucket"], "bench", config["endpoint"], "cn-shanghai", credentials)
    from ice_upload_sync.stores.tablestore import TablestoreStore

    return TablestoreStore(TABLESTORE_INSTANCE, config["table"], config["endpoint"], credentials)


def seed(config: Dict[str, str], count: int, *, with_records: bool) -> None:
    """Markers for every job, and (``with_records``) its UPLOADING record, written the cheapest way."""
    from ice_upload_sync.records import record_json
    from ice_upload_sync.stores.base import Tracking

    store = open_store(config)
    stored = list(records(count, finished=False)) if with_records else []
    marker = {job_id(index): Tracking(job_id(index), CREATED, "direct").to_json() for index in range(count)}
    if config["store"] == "file":  # straight into the layout: the store's own writes fsync
        root = Path(config["root"])
        for job, body in marker.items():
            (root / "pending" / job).write_bytes(body)
        for record in stored:
            (root / "jobs" / f"{record.job_id}.json").write_bytes(record_json(record))
    elif config["store"] == "oss":  # plain puts, as the store lays them out
        bucket = store._current_bucket()
        puts = [(f"bench/pending/{job}", body) for job, body in marker.items()]
        puts += [(f"bench/jobs/{record.job_id}.json", record_json(record)) for record in stored]
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda put: bucket.put_object(*put), puts))
    else:
        store.create_tables()
        for start in range(0, count, 200):
            chunk = stored[start:start + 200]
            if chunk:
                store.save_many(chunk)  # markers first, then the records: batched
            else:
                for index in range(start, min(count, start + 200)):
                    store.track(Tracking(job_id(index), CREATED, "direct"))


# ---------------------------------------------------------------- the measured process

def child(config: Dict[str, str], mode: str, count: int, profile: bool) -> Dict[str, Any]:
    import resource
    import threading

    store = open_store(config)
    fresh = list(records(count, finished=mode == "finished"))
    requests: Dict[str, List[float]] = {}
    lock = threading.Lock()

    def counted(kind: str, started: float) -> None:
        with lock:
            requests.setdefault(kind, []).append(time.perf_counter() - started)

    if config["store"] == "oss":
        import oss2

        real_do = oss2.api._Base._do

        def do(self, method, bucket_name, key, **kwargs):
            started = time.perf_counter()
            try:
                return real_do(self, method, bucket_name, key, **kwargs)
            finally:
                text = key.decode() if isinstance(key, bytes) else str(key or "")
                part = text.split("/")[1] if text.count("/") >= 2 else "bucket"
                counted(f"{method} {dict(jobs='record', pending='marker', locks='lock').get(part, part)}", started)

        oss2.api._Base._do = do
    elif config["store"] == "tablestore":
        from tablestore.client import OTSClient

        real_request = OTSClient._request_helper

        def request(self, api_name, *args, **kwargs):
            started = time.perf_counter()
            try:
                return real_request(self, api_name, *args, **kwargs)
            finally:
                counted(api_name, started)

        OTSClient._request_helper = request
    else:
        real = {"fsync": os.fsync, "replace": os.replace, "unlink": os.unlink}

        def wrap(name: str):
            def call(*args):
                started = time.perf_counter()
                try:
                    return real[name](*args)
                finally:
                    counted(name, started)
            return call

        for name in real:
            setattr(os, name, wrap(name))

    write_concurrency = min(POOL, store.write_concurrency or POOL)  # as the sweep's writer does
    if profile:
        import yappi

        yappi.set_clock_type("cpu")
        yappi.start()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    if store.batches_writes:
        groups = [fresh[start:start + GROUP] for start in range(0, count, GROUP)]
        with ThreadPoolExecutor(write_concurrency) as pool:
            results = [result for group in pool.map(store.save_many, groups) for result in group]
    else:
        with ThreadPoolExecutor(write_concurrency) as pool:
            results = list(pool.map(store.save, fresh))
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    out: Dict[str, Any] = {
        "store": config["store"], "mode": mode, "N": count, "wall_s": wall,
        "cpu_s": (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime),
        "sys_s": after.ru_stime - usage.ru_stime,
        "written": sum(1 for r in results if not isinstance(r, Exception) and r.changed),
        "failed": sum(1 for r in results if isinstance(r, Exception)),
        "requests": {kind: {"per_job": len(times) / count, "mean_ms": 1000 * sum(times) / len(times)}
                     for kind, times in sorted(requests.items())},
    }
    if profile:
        yappi.stop()
        out["profile"] = _by_package(yappi.get_func_stats())
    return out


def _by_package(stats: Any) -> Dict[str, float]:
    """CPU seconds by where the code lives (own time of each function, every thread)."""
    places = {"ice_upload_sync": "ours", "/oss2/": "oss2", "/tablestore/": "tablestore SDK",
              "/requests/": "requests", "/urllib3/": "urllib3", "/http/": "http.client", "/json/": "json",
              "/ssl.py": "ssl", "/socket.py": "socket", "/hmac.py": "hmac", "/concurrent/": "thread pools",
              "/threading.py": "thread pools", "/google/protobuf": "protobuf", "/crcmod": "crc"}
    totals: Dict[str, float] = {}
    for stat in stats:
        place = next((name for marker, name in places.items() if marker in stat.module), None)
        if place is None:
            place = "builtins and C calls (syscalls)" if stat.module in ("", "<built-in>") or \
                stat.module.startswith("<") else "other: " + Path(stat.module).parts[-2]
        totals[place] = totals.get(place, 0.0) + stat.tsub
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


# ---------------------------------------------------------------- driving it

def measure(config: Dict[str, str], mode: str, count: int, profile: bool) -> Dict[str, Any]:
    env = {**{k: v for k, v in os.environ.items() if "proxy" not in k.lower()},
           "PYTHONPATH": f"{FUNCTION}{os.pathsep}{ROOT}", "BENCH_STORE_WRITES_STARTED": str(STARTED)}
    script = ("import json, sys; from tests.bench.bench_store_writes import child; "
              "print(json.dumps(child(json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == '1')))")
    command = [sys.executable, "-c", script, json.dumps(config), mode, str(count), "1" if profile else "0"]
    result = subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def backend(store: str, latency_ms: float) -> Iterator[Any]:
    if store == "oss":
        with OssProcess() as oss:
            yield oss
    elif store == "tablestore":
        with TablestoreProcess(latency_ms=latency_ms) as tablestore:
            yield tablestore
    else:
        yield None


def run(store: str, mode: str, count: int, args: argparse.Namespace) -> Dict[str, Any]:
    sys.path.insert(0, str(FUNCTION))
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(backend(store, args.store_latency_ms))
        config = {"store": store}
        if store == "file":
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-writes-")))
            (folder / "jobs").mkdir()
            (folder / "pending").mkdir()
            config["root"] = str(folder)
        elif store == "oss":
            config.update(bucket=f"bw-{uuid.uuid4().hex[:20]}", endpoint=server.endpoint)
            server.create_bucket(config["bucket"])
        else:
            config.update(table=f"bw_{uuid.uuid4().hex[:12]}", endpoint=server.endpoint)
        seed(config, count, with_records=mode != "new")
        return measure(config, mode, count, args.profile)


def main(argv: List[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--stores", nargs="+", choices=STORES, default=list(STORES))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--store-latency-ms", type=float, default=2.0, help="added to every Tablestore call")
    parser.add_argument("--profile", action="store_true", help="CPU by package (yappi, every thread)")
    parser.add_argument("--json", action="store_true", help="one JSON line per run")
    args = parser.parse_args(argv)
    print(f"N={args.jobs} groups of {GROUP} per save_many; tablestore latency={args.store_latency_ms:g}ms; "
          f"cores={os.cpu_count()}", flush=True)
    for store in args.stores:
        for mode in args.modes:
            row = run(store, mode, args.jobs, args)
            if args.json:
                print(json.dumps(row), flush=True)
                continue
            count = row["N"]
            print(f"{store:10} {mode:9} wall {1000 * row['wall_s'] / count:6.3f} ms/job  "
                  f"cpu {1000 * row['cpu_s'] / count:6.3f} ms/job (sys {1000 * row['sys_s'] / count:.3f})  "
                  f"written={row['written']} failed={row['failed']}", flush=True)
            for kind, numbers in row["requests"].items():
                print(f"{'':21}{kind:16} {numbers['per_job']:6.3f} per job, {numbers['mean_ms']:7.3f} ms each",
                      flush=True)
            for place, seconds in row.get("profile", {}).items():
                if seconds * 1000 / count >= 0.005:
                    print(f"{'':21}cpu in {place:34} {1000 * seconds / count:7.3f} ms/job", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
