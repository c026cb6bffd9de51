"""Cold-start benchmark on the artifact that ships: the zip extracted read-only, run as FC runs it.

    .venv/bin/python -m tests.bench.bench_cold_start [--runs 5] [--stores file oss]

Builds the package (``make package``'s recipe) into a temporary folder, zips it, extracts the
zip twice (as shipped, with its compiled bytecode; and with every ``.pyc`` removed, as the
package was before it carried any), and for each copy measures fresh interpreters of the
runtime's Python (CPython 3.10), median of ``--runs``:

(a) the bare interpreter (``python -I -S -c pass``);
(b) importing the ICE SDK client from the package;
(c) a cold, signed HTTP callback through tests/fc_runtime.py: interpreter start, the
    initializer, the handler (tracking the job and handing the request back to a loopback
    trigger that answers 202, as FC's does to an async request), up to the answer; and the
    same with ``CALLBACK_HANDBACK=off``, which leaves the lookup to the sweep;
(d) a cold timer sweep of 10 tracked jobs, the same way.

CPU is user + system time of the whole process since it started (what 0.25 vCPU has to
pay for); wall is on this machine's full cores. The ICE emulator and the OSS server run in
this process, on loopback, with no injected latency. ``at 0.25 vCPU`` is CPU / 0.25: the
wall time the template's instance needs for that CPU, before any FC overhead.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Dict, List, Optional

from tests.deploy import artifact
from tests.deploy import package as pkg
from tests.fc_runtime import FcInstance, answer_body
from tests.scenario import CALLBACK_AUTH_KEY, load_event, seed_jobs, signed_http_event
from tests.support.ice import IceEmulator
from tests.support.trigger_stub import Trigger

ROOT = Path(__file__).resolve().parents[2]
KEY_ID, SECRET = "cold-ak", "cold-secret"
TEMPLATE_VCPU = 0.25


def child_cpu(command: List[str], env: Dict[str, str]) -> Dict[str, float]:
    """CPU (user + system) and wall time of one process, start to exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), "wall_s": wall}


class Stores:
    """Where the cold instance records: a fresh file folder or OSS bucket per run."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.oss = None

    def env(self, kind: str) -> Dict[str, str]:
        if kind == "file":
            return {"RECORD_STORE": f"file://{self.work / 'records' / uuid.uuid4().hex}"}
        if self.oss is None:
            from tests.support.oss_moto import OssMotoServer

            self.oss = OssMotoServer().__enter__()
        bucket = f"cold-{uuid.uuid4().hex[:20]}"
        self.oss.create_bucket(bucket)
        return {"RECORD_STORE": f"oss://{bucket}/records", "OSS_ENDPOINT": self.oss.endpoint}

    def close(self) -> None:
        if self.oss is not None:
            self.oss.__exit__(None, None, None)


def track_jobs(env: Dict[str, str], job_ids: List[str]) -> None:
    """Pending markers for ``job_ids`` in the store ``env`` names (written from this process, as another instance)."""
    sys.path.insert(0, str(ROOT / "function"))
    from datetime import datetime, timezone

    from ice_upload_sync.config import Settings
    from ice_upload_sync.ice import Credentials
    from ice_upload_sync.records import format_time
    from ice_upload_sync.stores import Tracking, open_store

    settings = Settings.from_env({"ICE_REGION": "cn-shanghai", **env})
    store = open_store(settings, Credentials(KEY_ID, SECRET))
    now = format_time(datetime.now(timezone.utc))
    for job_id in job_ids:
        store.track(Tracking(job_id, now, "direct"))


def cold_invocation(code: Path, python: str, env: Dict[str, str], event: dict,
                    check: Callable[[dict], None]) -> Dict[str, float]:
    with FcInstance(code, python=python, vendor=code / pkg.VENDOR_DIR, env=env) as instance:
        answer = instance.invoke(event, timeout="300")
        check(answer_body(answer))
    return {"cpu_s": answer["process_cpu_s"], "wall_s": answer["instance_wall_s"],
            "ice_sdk_loaded": float("alibabacloud_ice20201109" in answer["loaded"])}


def measure(code: Path, python: str, ice: IceEmulator, trigger: Trigger, stores: Stores, kinds: List[str],
            runs: int) -> Dict:
    base = {"PATH": "/usr/bin:/bin", "ICE_ENDPOINT": ice.endpoint,
            "ICE_REGION": "cn-shanghai", "ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET, "CALLBACK_AUTH_KEY": CALLBACK_AUTH_KEY}
    path_setup = f"import sys; sys.path[:0] = [{str(code)!r}, {str(code / pkg.VENDOR_DIR)!r}]; "
    figures: Dict[str, List[Dict[str, float]]] = {}

    def add(name: str, value: Dict[str, float]) -> None:
        figures.setdefault(name, []).append(value)

    sweep_jobs = [f"{index:032x}" for index in range(1, 11)]
    for job_id in sweep_jobs:
        ice.put_job(job_id, Status="UPLOADING", CreationTime=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def callback_answer(body: dict) -> None:
        summary = json.loads(body["body"])
        assert body["statusCode"] == 200 and summary["tracked"] + summary["written"] >= 1, body

    def handed_back(body: dict) -> None:
        callback_answer(body)
        assert json.loads(body["body"])["handed_back"] is True, body

    def sweep_answer(body: dict) -> None:
        assert body["checked"] == 10 and body["failed_count"] == 0, body

    for _ in range(runs):
        add("(a) bare interpreter", child_cpu([python, "-B", "-I", "-S", "-c", "pass"], base))
        add("(b) import ICE SDK client", child_cpu(
            [python, "-B", "-I", "-S", "-c", path_setup + "import alibabacloud_ice20201109.client"], base))
        for kind in kinds:
            env = {**base, **stores.env(kind), "CALLBACK_HANDBACK": "on", "CALLBACK_URL": trigger.url}
            add(f"(c) cold HTTP callback, {kind}",
                cold_invocation(code, python, env, signed_http_event(url=trigger.url), handed_back))
            env = {**base, **stores.env(kind), "CALLBACK_HANDBACK": "off"}
            add(f"(c) ... hand-back off, {kind}",
                cold_invocation(code, python, env, signed_http_event(), callback_answer))
            env = {**base, **stores.env(kind)}
            track_jobs(env, sweep_jobs)
            add(f"(d) cold sweep of 10 jobs, {kind}",
                cold_invocation(code, python, env, load_event("timer-sweep.json"), sweep_answer))
    return {name: {key: statistics.median(v[key] for v in values) for key in values[0]}
            for name, values in figures.items()}


def report(title: str, medians: Dict) -> None:
    ice_cpu = medians["(b) import ICE SDK client"]["cpu_s"]
    print(f"\n{title}")
    print(f"  {'':34} {'CPU ms':>8} {'wall ms':>8} {'at 0.25 vCPU':>13} {'x ICE import':>13}")
    for name, value in medians.items():
        print(f"  {name:34} {value['cpu_s'] * 1000:8.0f} {value['wall_s'] * 1000:8.0f} "
              f"{value['cpu_s'] / TEMPLATE_VCPU * 1000:10.0f} ms {value['cpu_s'] / ice_cpu:12.2f}x")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--stores", nargs="+", choices=["file", "oss"], default=["file", "oss"])
    args = parser.parse_args(argv)
    python = pkg.find_cpython(pkg.PYTHON_VERSION)
    if python is None:
        print(f"needs a CPython {pkg.PYTHON_VERSION} (the runtime's) to run the artifact's native modules")
        return 2
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(name, None)
    work = Path(tempfile.mkdtemp(prefix="ice-cold-start-"))
    stores = Stores(work)
    try:
        zip_path = artifact.build_zip(work)
        shipped = artifact.extract(zip_path, work / "code")
        source_only = artifact.extract(zip_path, work / "code-no-bytecode", bytecode=False)
        print(f"Python {python} ({pkg.PYTHON_VERSION}), {os.cpu_count()} cores; "
              f"zip {zip_path.stat().st_size / 2**20:.1f} MiB; median of {args.runs} fresh interpreters per line; "
              "ICE and OSS on loopback, no latency")
        with IceEmulator() as ice, Trigger() as trigger:
            ice.add_access_key(KEY_ID, SECRET)
            for job in seed_jobs():
                fields = dict(job)
                ice.put_job(fields.pop("JobId"), **fields)
            report("as shipped (compiled bytecode):",
                   measure(shipped, python, ice, trigger, stores, args.stores, args.runs))
            report("without bytecode (every module compiled at start):",
                   measure(source_only, python, ice, trigger, stores, args.stores, args.runs))
    finally:
        stores.close()
        artifact.make_writable(work)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
