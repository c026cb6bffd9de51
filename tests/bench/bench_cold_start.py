"""Cold-start benchmark: time and RSS of a bare interpreter, `import index`, `initialize`, first calls.

    .venv/bin/python -m tests.bench.bench_cold_start [--runs 5]

Each run is a fresh interpreter (as on a new FC instance) against the ICE emulator (no
injected latency, so a call's time is our code, the SDK and loopback). Medians over the
runs are printed; RSS is the process's peak (``ru_maxrss``) after each phase.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.emulators.ice import IceEmulator

ROOT = Path(__file__).resolve().parents[2]

BARE = r"""
import json, resource, time
print(json.dumps({"bare_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

PROBE = r"""
import json, resource, sys, time
from types import SimpleNamespace
def rss(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out = {"bare_rss_mb": rss()}
t = time.perf_counter(); import index; out["import_ms"] = (time.perf_counter() - t) * 1000
out["import_rss_mb"] = rss()
ctx = SimpleNamespace(request_id="r", credentials=None, function=SimpleNamespace(timeout=60))
t = time.perf_counter(); index.initialize(ctx); out["initialize_ms"] = (time.perf_counter() - t) * 1000
out["initialize_rss_mb"] = rss()
import logging; logging.getLogger("ice_upload_sync").setLevel(logging.WARNING)
event = json.dumps({"JobIds": ["cold0001"]})
t = time.perf_counter(); index.handler(event, ctx); out["first_call_ms"] = (time.perf_counter() - t) * 1000
t = time.perf_counter(); index.handler(event, ctx); out["second_call_ms"] = (time.perf_counter() - t) * 1000
out["final_rss_mb"] = rss()
print(json.dumps(out))
"""


def main(argv: list = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    runs = []
    with IceEmulator() as ice, tempfile.TemporaryDirectory(prefix="ice-cold-start-") as folder:
        ice.add_access_key("cold-ak", "cold-secret")
        ice.put_job("cold0001", Status="Success")
        env = {"PATH": "/usr/bin:/bin", "ICE_ENDPOINT": ice.endpoint, "ALIBABA_CLOUD_ACCESS_KEY_ID": "cold-ak",
               "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "cold-secret", "RECORD_STORE": f"file://{folder}",
               "PYTHONPATH": str(ROOT / "function")}
        subprocess.run([sys.executable, "-c", PROBE], env=env, check=True, capture_output=True)  # .pyc files
        for _ in range(args.runs):
            figures = {}
            for name, script in (("bare", BARE), ("probe", PROBE)):
                started = _now()
                result = subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True,
                                        text=True)
                if name == "bare":
                    figures["bare_start_ms"] = (_now() - started) * 1000
                figures.update(json.loads(result.stdout.strip().splitlines()[-1]))
            runs.append(figures)
    medians = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    print(f"median of {args.runs} fresh interpreters (Python {sys.version.split()[0]}):")
    print("  ".join(f"{key}={value:.1f}" for key, value in medians.items()))
    print(f"import index adds {medians['import_ms']:.1f} ms and "
          f"{medians['import_rss_mb'] - medians['bare_rss_mb']:.1f} MB to the bare interpreter")
    return 0


def _now() -> float:
    import time

    return time.perf_counter()


if __name__ == "__main__":
    sys.exit(main())
