"""The local servers in processes of their own, for benchmarks.

In the benchmark's own process a server would share the interpreter lock with the code
under test, and its memory would count in the peak RSS; a real ICE, OSS or Tablestore is elsewhere.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Dict, Iterable, List, Optional

ROOT = Path(__file__).resolve().parents[2]
ACCESS_KEY_ID = "bench-ak"
ACCESS_KEY_SECRET = "bench-secret"
TABLESTORE_INSTANCE = "bench"


class ServerProcess:
    """``python -m <module> --port 0 ...`` until its first line says where it listens."""

    module = ""
    keyed = True  # the server takes --access-key-id / --access-key-secret

    def __init__(self, *args: str) -> None:
        self.args = list(args)
        self.endpoint = ""
        self._process: Optional[subprocess.Popen] = None

    def _arguments(self) -> List[str]:
        return self.args

    def __enter__(self):
        keys = ["--access-key-id", ACCESS_KEY_ID, "--access-key-secret", ACCESS_KEY_SECRET] if self.keyed else []
        self._process = subprocess.Popen(
            [sys.executable, "-m", self.module, "--port", "0", *keys, *self._arguments()],
            cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        line = self._process.stdout.readline() if self._process.stdout else ""
        found = re.search(r"(https?://[^\s;,]+)", line)
        if found is None:
            self.__exit__(None, None, None)
            raise RuntimeError(f"{self.module} did not start: {line!r}")
        self.endpoint = found.group(1)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
            self._process = None


class IceProcess(ServerProcess):
    """``with IceProcess(jobs, latency_ms=20) as ice: ice.endpoint``; ``jobs`` are ICE-shaped dicts."""

    module = "tests.support.ice"

    def __init__(self, jobs: Iterable[Dict[str, str]], *, latency_ms: float = 0.0) -> None:
        super().__init__("--latency-ms", str(latency_ms))
        self.jobs = jobs
        self._seed: Optional[str] = None

    def _arguments(self) -> List[str]:
        handle, self._seed = tempfile.mkstemp(prefix="ice-seed-", suffix=".json")
        with os.fdopen(handle, "w", encoding="utf-8") as seed:
            seed.write("[")
            for index, job in enumerate(self.jobs):  # streamed: 100,000 jobs never sit in a list here
                seed.write(("," if index else "") + json.dumps(job))
            seed.write("]")
        return [*self.args, "--seed", self._seed]

    def __exit__(self, *exc_info: object) -> None:
        super().__exit__(*exc_info)
        if self._seed is not None:
            os.unlink(self._seed)
            self._seed = None


class TablestoreProcess(ServerProcess):
    """The local Tablestore server, instance ``bench``, each call taking ``latency_ms``."""

    module = "tests.support.tablestore"

    def __init__(self, *, latency_ms: float = 0.0) -> None:
        super().__init__("--instance", TABLESTORE_INSTANCE, "--latency-ms", str(latency_ms))


class OssProcess(ServerProcess):
    """OSS on moto's S3 server behind the OSS dialect; ``create_bucket`` per store. moto checks no
    signature and adds no latency beyond its own work.

    ``keep_alive`` (the default) serves it with HTTP/1.1 keep-alive (``tests.bench.oss_keepalive``),
    as OSS does; without it, werkzeug's server (``tests.support.oss_moto``) closes every
    connection after one answer, and each request pays for a new connection in the client.
    """

    keyed = False

    def __init__(self, *, keep_alive: bool = True) -> None:
        super().__init__()
        self.module = "tests.bench.oss_keepalive" if keep_alive else "tests.support.oss_moto"

    def create_bucket(self, name: str) -> None:
        """``name``: 3-63 lower-case letters, digits and hyphens."""
        request = urllib.request.Request(f"{self.endpoint}/{name}/", method="PUT", data=b"")
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10) as answer:
            answer.read()
