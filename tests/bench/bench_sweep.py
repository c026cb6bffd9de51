"""Sweep benchmark: N pending jobs against the ICE emulator with injected latency.

    .venv/bin/python -m tests.bench.bench_sweep [--jobs 1000] [--latency-ms 20] [--concurrency 8]

Prints API calls, wall time, jobs per second, the ratio to the ideal
(ceil(N/10) x latency / concurrency) and peak RSS. Not run by the test suite.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "function"))

from tests.emulators.ice import IceEmulator  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--qps", type=float, default=1000)
    args = parser.parse_args()

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(name, None)  # the SDK would send even loopback calls through a proxy
    with IceEmulator() as ice, tempfile.TemporaryDirectory() as folder:
        ice.add_access_key("bench-ak", "bench-secret")
        job_ids = [f"bench{i:08d}" for i in range(args.jobs)]
        for job_id in job_ids:
            ice.put_job(job_id, Status="UPLOADING", CreationTime=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        os.environ.update({
            "ICE_ENDPOINT": ice.endpoint, "ALIBABA_CLOUD_ACCESS_KEY_ID": "bench-ak",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "bench-secret", "RECORD_STORE": f"file://{folder}",
            "ICE_CONCURRENCY": str(args.concurrency), "ICE_MAX_QPS": str(args.qps),
        })
        import logging

        import index

        context = SimpleNamespace(request_id="bench", credentials=None,
                                  function=SimpleNamespace(name="bench", timeout=3600))
        index.initialize(context)
        logging.getLogger("ice_upload_sync").setLevel(logging.WARNING)
        # track every job (first invocation), then measure a sweep of all of them
        for start in range(0, len(job_ids), 1000):
            index.handler(json.dumps({"UploadJobs": [{"JobId": j} for j in job_ids[start:start + 1000]]}), context)
        ice.reset_calls()
        ice.latency_s = args.latency_ms / 1000
        started = time.perf_counter()
        summary = index.handler(json.dumps({"triggerTime": "t", "triggerName": "sweep", "payload": ""}), context)
        wall = time.perf_counter() - started
    calls = summary["api_calls"]
    ideal = math.ceil(args.jobs / 10) * (args.latency_ms / 1000) / args.concurrency
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"jobs={args.jobs} latency={args.latency_ms:g}ms concurrency={args.concurrency} "
          f"api_calls={calls} (ideal {math.ceil(args.jobs / 10)}) wall={wall:.2f}s "
          f"jobs/s={args.jobs / wall:.0f} ratio_to_ideal={wall / ideal:.2f} peak_rss={rss_mb:.0f}MB "
          f"checked={summary['checked']} unchanged={summary['unchanged']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
