"""The ICE emulator in a process of its own, for benchmarks.

In the benchmark's own process the emulator would share the interpreter lock with the
code under test, and its memory would count in the peak RSS; a real ICE is elsewhere.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterable, Optional

ROOT = Path(__file__).resolve().parents[2]
ACCESS_KEY_ID = "bench-ak"
ACCESS_KEY_SECRET = "bench-secret"


class IceProcess:
    """``with IceProcess(jobs, latency_ms=20) as ice: ice.endpoint``; ``jobs`` are ICE-shaped dicts."""

    def __init__(self, jobs: Iterable[Dict[str, str]], *, latency_ms: float = 0.0) -> None:
        self.jobs = jobs
        self.latency_ms = latency_ms
        self.endpoint = ""
        self._process: Optional[subprocess.Popen] = None
        self._seed: Optional[str] = None

    def __enter__(self) -> IceProcess:
        handle, self._seed = tempfile.mkstemp(prefix="ice-seed-", suffix=".json")
        with os.fdopen(handle, "w", encoding="utf-8") as seed:
            seed.write("[")
            for index, job in enumerate(self.jobs):  # streamed: 100,000 jobs never sit in a list here
                seed.write(("," if index else "") + json.dumps(job))
            seed.write("]")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.emulators.ice", "--port", "0", "--seed", self._seed,
             "--latency-ms", str(self.latency_ms), "--access-key-id", ACCESS_KEY_ID,
             "--access-key-secret", ACCESS_KEY_SECRET],
            cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        line = self._process.stdout.readline() if self._process.stdout else ""
        if "listening on " not in line:
            self.__exit__(None, None, None)
            raise RuntimeError(f"the ICE emulator did not start: {line!r}")
        self.endpoint = line.split("listening on ", 1)[1].split()[0]
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
            self._process = None
        if self._seed is not None:
            os.unlink(self._seed)
            self._seed = None
