"""FC's Python runtime as contract section 1a describes it: one instance, one process, our conventions not assumed.

Written by us from what the runtime and its documentation say it does (we do not have its
code), so that the suite runs the function the way FC runs it:

- the code package is the working directory and first on ``sys.path`` (``/code``), its
  vendored folder after it (``PYTHONPATH=/code/python``); bytecode is never written there;
- the root logger already has a handler that prefixes each line with the request ID;
  ``FC_*`` variables are removed except ``FC_FUNCTION_NAME`` and ``FC_REGION``;
- the initializer runs once per instance, then the handler once per event, on the same thread;
- ``event`` is ``bytes``; ``context`` has exactly the documented attributes, with
  ``function.timeout`` as text; python3.12's context has no ``credentials`` and no ``service``;
- whatever either function returns goes through ``json.dumps(value, indent=4,
  sort_keys=True, default=...)`` unless it is ``str``/``bytes``; ``default`` knows only
  ``Decimal``, dates and objects with ``to_json()``; if that fails, the invocation fails;
- a failed initializer fails the instance's start and the request that caused it (FC tries
  the initializer again for the next request);
- an exception becomes ``{"errorMessage", "errorType", "stackTrace"}``.

Run as a script by the interpreter under test (stdlib only, any Python from 3.9), it reads
one invocation per line on stdin and answers one line per invocation on stdout::

    python fc_runtime.py --code DIR [--vendor DIR] [--runtime python3.10]
    <- {"event_b64": "...", "request_id": "r1", "timeout": "300", "retry_count": 0}
    -> {"initializer": {...} | null, "result": "<the serialized answer>" | null,
        "error": {"errorMessage", "errorType", "stackTrace"} | null, "cpu_s": .., "wall_s": ..,
        "process_cpu_s": .., "loaded": [top-level module names]}

``FcInstance`` drives it from the tests; ``tests/support/fc.py`` runs a pool of them behind
an HTTP trigger.
"""
from __future__ import annotations

import base64
import datetime
import decimal
import json
import os
import select
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

KEPT_FC_VARIABLES = ("FC_FUNCTION_NAME", "FC_REGION")


# ------------------------------------------------------------------ inside the instance


def fc_default(value: Any) -> Any:
    """What the runtime's ``json.dumps`` knows beyond plain JSON: Decimal, dates, ``to_json()``."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return to_json()
    raise TypeError(f"{value!r} is not JSON serializable")


def serialize(value: Any) -> Any:
    """The runtime's rule for a return value; raises as the runtime would fail the invocation."""
    if isinstance(value, (str, bytes)):
        return value if isinstance(value, str) else value.decode("utf-8", errors="replace")
    return json.dumps(value, indent=4, sort_keys=True, default=fc_default)


def error_of(exc: BaseException) -> Dict[str, Any]:
    return {"errorMessage": str(exc), "errorType": type(exc).__name__,
            "stackTrace": traceback.format_tb(exc.__traceback__)}


class _Namespace:
    """An object with exactly the given attributes: any other one raises AttributeError, as on FC."""

    def __init__(self, **attributes: Any) -> None:
        self.__dict__.update(attributes)

    def __repr__(self) -> str:
        return f"FCContext({', '.join(sorted(self.__dict__))})"


def make_context(runtime: str, request_id: str, timeout: str, handler: str, retry_count: int = 0) -> _Namespace:
    env = os.environ
    function = _Namespace(name=env.get("FC_FUNCTION_NAME", "ice-upload-sync"), handler=handler, memory=256,
                          timeout=timeout)
    attributes: Dict[str, Any] = dict(
        request_id=request_id, function=function, region=env.get("FC_REGION", "cn-shanghai"),
        account_id="1234567890123456", retry_count=retry_count,
        tracing=_Namespace(span_context=None, jaeger_endpoint=None, span_baggages={}, parent_span_id=None),
    )
    if runtime != "python3.12":  # python3.12 has neither, and puts the credentials in ALIBABA_CLOUD_*
        attributes["credentials"] = _Namespace(
            access_key_id=env.get("ALIBABA_CLOUD_ACCESS_KEY_ID", ""),
            access_key_secret=env.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ""),
            security_token=env.get("ALIBABA_CLOUD_SECURITY_TOKEN", ""))
        attributes["service"] = _Namespace(name="ice-upload-sync", log_project="", log_store="", qualifier="LATEST",
                                           version_id="")
    return _Namespace(**attributes)


class _RequestIdFilter:
    """FC's log handler prefixes every line with the current request ID."""

    request_id = "-"

    def filter(self, record: Any) -> bool:
        record.fc_request_id = self.request_id
        return True


def serve(code: str, vendor: Optional[str], runtime: str, handler_name: str, initializer_name: str) -> int:
    import importlib
    import logging

    os.chdir(code)
    sys.path[:0] = [code] + ([vendor] if vendor else [])
    sys.dont_write_bytecode = True  # /code is read-only
    for name in [n for n in os.environ if n.startswith("FC_") and n not in KEPT_FC_VARIABLES]:
        del os.environ[name]
    request_filter = _RequestIdFilter()
    fc_handler = logging.StreamHandler(sys.stderr)
    fc_handler.addFilter(request_filter)
    fc_handler.setFormatter(logging.Formatter("%(asctime)s %(fc_request_id)s [%(levelname)s] %(message)s"))
    logging.getLogger().addHandler(fc_handler)
    logging.getLogger().setLevel(logging.INFO)

    def load(spec: str) -> Any:
        module_name, _, function_name = spec.rpartition(".")
        return getattr(importlib.import_module(module_name), function_name)

    initialized = False
    for line in sys.stdin:
        request = json.loads(line)
        request_filter.request_id = request["request_id"]
        context = make_context(runtime, request["request_id"], request.get("timeout", "300"), handler_name,
                               int(request.get("retry_count", 0)))
        answer: Dict[str, Any] = {"initializer": None, "result": None, "error": None}
        cpu, wall = time.process_time(), time.perf_counter()
        if not initialized:
            try:
                answer["initializer"] = {"result": serialize(load(initializer_name)(context))}
                initialized = True
            except Exception as exc:  # the instance does not start; neither does this request
                answer["initializer"] = {"error": error_of(exc)}
                answer["error"] = error_of(exc)
        if initialized:
            try:
                answer["result"] = serialize(load(handler_name)(base64.b64decode(request["event_b64"]), context))
            except Exception as exc:
                answer["error"] = error_of(exc)
        answer["cpu_s"], answer["wall_s"] = time.process_time() - cpu, time.perf_counter() - wall
        answer["process_cpu_s"] = sum(os.times()[:2])  # since the interpreter started: a cold start's whole cost
        answer["loaded"] = sorted({name.partition(".")[0] for name in sys.modules})
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()
    return 0


# ------------------------------------------------------------------ the tests' side


class FcInstance:
    """One FC instance of the function in ``code`` (a fresh interpreter), fed events one at a time.

    ``python`` is the interpreter FC would run (the artifact needs the runtime's own version
    for its native modules); ``isolated`` runs it with ``-I -S`` so nothing but the package
    and the standard library is importable. ``invoke`` returns the runtime's answer for one
    event, with the CPU the process has used since it started (``process_cpu_s``) and the
    top-level modules it has loaded (``loaded``).
    """

    def __init__(self, code: Path, *, python: str = sys.executable, vendor: Optional[Path] = None,
                 env: Optional[Mapping[str, str]] = None, runtime: str = "python3.10", isolated: bool = True,
                 handler: str = "index.handler", initializer: str = "index.initialize") -> None:
        # -B: /code is read-only (root ignores permission bits; -I ignores PYTHONDONTWRITEBYTECODE)
        command = [python, "-B", *(["-I", "-S"] if isolated else []), str(Path(__file__).resolve()),
                   "--code", str(code), "--runtime", runtime, "--handler", handler, "--initializer", initializer]
        if vendor is not None:
            command += ["--vendor", str(vendor)]
        # CALLBACK_HANDBACK off unless ``env`` says on: the sample callbacks name a public trigger
        # (fcapp.run), and no test may hand a request back there; hand-back tests give a loopback one
        environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONDONTWRITEBYTECODE": "1",
                       "FC_FUNCTION_NAME": "ice-upload-sync", "FC_REGION": "cn-shanghai",
                       "FC_FUNC_CODE_PATH": str(code), "CALLBACK_HANDBACK": "off", **(env or {})}
        self.started = time.perf_counter()
        self._log_file = tempfile.TemporaryFile(mode="w+")  # a pipe would fill up and stall a chatty instance
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self._log_file, env=environment, text=True, cwd=str(code))
        self.answers: List[Dict[str, Any]] = []
        self.log = ""

    def invoke(self, event: Any, *, request_id: Optional[str] = None, timeout: str = "300",
               wait_s: float = 120, retry_count: int = 0) -> Dict[str, Any]:
        """``retry_count``: ``context.retry_count``, what FC sets on a retried asynchronous invocation."""
        raw = event if isinstance(event, bytes) else (event.encode() if isinstance(event, str)
                                                       else json.dumps(event).encode())
        request = {"event_b64": base64.b64encode(raw).decode(), "timeout": timeout,
                   "request_id": request_id or f"req-{len(self.answers) + 1}", "retry_count": retry_count}
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        ready, _, _ = select.select([self._process.stdout], [], [], wait_s)
        if not ready:  # a hung instance: FC would time the invocation out
            self._process.kill()
            raise RuntimeError(f"no answer within {wait_s} s: {self.close()[-3000:]}")
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError(f"the instance died: {self.close()[-3000:]}")
        answer = json.loads(line)
        answer["instance_wall_s"] = time.perf_counter() - self.started  # from the interpreter's start
        self.answers.append(answer)
        return answer

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def alive(self) -> bool:
        """The interpreter is still running (it may die on its own: ``os._exit``, a crash, a kill)."""
        return self._process.poll() is None

    def kill(self) -> None:
        """End the interpreter now; an ``invoke`` waiting on it raises ("the instance died")."""
        if self._process.poll() is None:
            self._process.kill()

    def log_since(self, offset: int = 0, limit: int = 1 << 20) -> Tuple[str, int]:
        """What the instance has written to stderr from byte ``offset`` on (at most ``limit`` bytes),
        and the offset after it; readable while the instance runs (``pread`` leaves the file
        position the interpreter writes at alone)."""
        if self._log_file.closed:
            data = self.log.encode("utf-8", errors="replace")[offset:offset + limit]
        else:
            data = os.pread(self._log_file.fileno(), limit, offset)
        return data.decode("utf-8", errors="replace"), offset + len(data)

    def close(self) -> str:
        """Stop the instance; its log (what it wrote to stderr)."""
        if self._process.returncode is None:
            try:
                self._process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.communicate()
        if not self._log_file.closed:
            self._log_file.seek(0)
            self.log = self._log_file.read()
            self._log_file.close()
        return self.log

    def __enter__(self) -> FcInstance:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


def answer_body(answer: Mapping[str, Any]) -> Any:
    """The invocation's answer as the caller receives it, parsed; raises on an invocation error."""
    if answer["error"] is not None:
        raise AssertionError(f"invocation failed: {answer['error']['errorType']}: {answer['error']['errorMessage']}")
    return json.loads(answer["result"])


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="FC's Python runtime loop, for tests")
    parser.add_argument("--code", required=True)
    parser.add_argument("--vendor")
    parser.add_argument("--runtime", default="python3.10", choices=("python3.9", "python3.10", "python3.12"))
    parser.add_argument("--handler", default="index.handler")
    parser.add_argument("--initializer", default="index.initialize")
    args = parser.parse_args(argv)
    return serve(args.code, args.vendor, args.runtime, args.handler, args.initializer)


if __name__ == "__main__":
    sys.exit(main())
