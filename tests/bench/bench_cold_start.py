"""Cold-start benchmark: time and RSS of a bare interpreter, `import index`, `initialize`, first call.

    .venv/bin/python -m tests.bench.bench_cold_start

Each phase runs in a fresh interpreter (as on a new FC instance) against the ICE emulator.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.emulators.ice import IceEmulator

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, os, resource, sys, time
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


def main() -> int:
    with IceEmulator() as ice:
        ice.add_access_key("cold-ak", "cold-secret")
        ice.put_job("cold0001", Status="Success")
        env = {"PATH": "/usr/bin:/bin", "ICE_ENDPOINT": ice.endpoint, "ALIBABA_CLOUD_ACCESS_KEY_ID": "cold-ak",
               "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "cold-secret", "RECORD_STORE": "file:///tmp/ice-cold-start",
               "PYTHONPATH": str(ROOT / "function")}
        result = subprocess.run([sys.executable, "-c", PROBE], env=env, check=True, capture_output=True, text=True)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    print("  ".join(f"{key}={value:.1f}" for key, value in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
