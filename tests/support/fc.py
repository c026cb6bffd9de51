"""A local FC front end: the function's HTTP trigger, asynchronous invocations, timers and an instance pool.

What FC3 puts in front of a built-in Python runtime, on 127.0.0.1, for the tests, the benchmarks and
by hand. Each instance is a fresh interpreter running the function through ``tests/fc_runtime.py``
(:class:`tests.fc_runtime.FcInstance`: the initializer, then the handler, FC's way), by default the
source tree ``function/``, or a packaged directory with its vendored folder.

- **HTTP trigger**, any method and any path. Each request becomes FC3's HTTP-trigger event
  (contract section 2): ``version``; ``rawPath`` (the path as sent, without the query); ``headers``
  (names canonicalized as FC does, ``x-ice-signature`` -> ``X-Ice-Signature``, repeated values joined
  with commas); ``queryParameters`` (likewise); ``body``, text for a textual ``Content-Type``
  (``text/*``, JSON, XML, JavaScript, form data), otherwise base64 with ``isBase64Encoded`` true (FC:
  "if the content type is binary, the body is base64"); ``requestContext`` with ``accountId``,
  ``domainName`` (the Host the client used), ``domainPrefix``, ``requestId``, ``time``, ``timeEpoch``
  and ``http`` {``method``, ``path`` (decoded), ``protocol``, ``sourceIp``, ``userAgent``}. So
  ``http://{domainName}{rawPath}`` is the URL the client used: with ``CALLBACK_URL=f"{fc.url}/ice-callback"``
  the URL ICE signs, ``CALLBACK_URL`` and the URL derived from the event are one string.
  The handler's ``{statusCode, headers, isBase64Encoded, body}`` is the answer; any other value it
  returns is the body of a 200. A function error (an exception, a timeout, the process dying) is
  answered as FC answers it on a synchronous HTTP invocation: 502, ``X-Fc-Error-Type:
  UnhandledInvocationError``, the error JSON as body. Every answer carries ``X-Fc-Request-Id``.
- **Asynchronous invocations**: a request with ``X-Fc-Invocation-Type: Async`` is answered 202 at once
  (with its ``X-Fc-Request-Id``, the ``requestId`` of its event), kept in memory until it is settled
  (never dropped while the front end runs; bodies over FC's 128 KB async limit are refused with 400),
  and run on an instance of the pool as soon as one is free. A run that raises, times out or loses
  its instance is retried up to ``max_async_retry_attempts`` times (FC's ``maxAsyncRetryAttempts``,
  default 3), ``async_retry_backoff_s`` doubling between attempts, ``context.retry_count`` counting
  them; then it goes to the failure destination: one JSON file per invocation in ``failure_dir``,
  shaped like FC's message (``timestamp``, ``requestContext`` {``requestId``, ``functionArn``,
  ``condition``, ``approximateInvokeCount``}, ``requestPayload``, ``responseContext``
  {``statusCode``, ``functionError``}, ``responsePayload``), which ``ice-upload-sync replay`` reads.
  Returning normally is success, whatever the ``statusCode`` (contract section 7).
- **Timers**: :meth:`FcFrontEnd.fire_timer` fires ``{"triggerTime", "triggerName", "payload"}`` now
  (an asynchronous invocation, as FC's timers are), :meth:`FcFrontEnd.start_timer` every N seconds.
- **Direct invocations**: :meth:`FcFrontEnd.invoke` (synchronous, any event), :meth:`FcFrontEnd.invoke_async`,
  and over HTTP as FC3's ``InvokeFunction`` API (what ``s invoke`` calls): ``POST
  /2023-03-30/functions/{function_name}/invocations`` with the event as the body, synchronous unless
  ``X-Fc-Invocation-Type: Async`` (then 202 at once, as above). The handler's result is the body of a 200;
  a function error is a 200 too, with ``X-Fc-Error-Type: UnhandledInvocationError`` and the error JSON as
  body; another function's name is a 404. No signature is checked. That one path (with POST) is taken from
  the HTTP trigger; every other path and method is the trigger's. ``python -m tests.support.fc_invoke``
  sends an event file there, the way ``s invoke --event-file`` does.
- **The pool**: one request at a time per instance; a request that finds no idle instance starts a new
  one (up to ``max_instances``: beyond, a synchronous request is refused with 429 as FC throttles,
  an asynchronous one waits); an instance idle for ``idle_s`` (60 s, FC's keep-alive since its
  2025-12-09 billing change) is reclaimed and its process ended. ``env`` is every instance's
  environment (``tests/fc_runtime.py`` turns ``CALLBACK_HANDBACK`` off unless ``env`` turns it on).
- **Figures**: :attr:`FcFrontEnd.invocations` logs every run (kind, path, status, cold or warm,
  instance, attempt, wall time, CPU, what the instance logged meanwhile); :attr:`FcFrontEnd.instances`
  gives each instance's CPU (its whole process, cold start included) and fate; :attr:`FcFrontEnd.failures`
  the failure-destination messages.

Chosen here, not documented by FC: which content types count as text, the answer to a handler
result that is not a response struct, the backoff, the error bodies of FC's own refusals (429, 400,
413), and that the most recently used idle instance takes the next request.

Run it by hand (``{url}`` in a value is replaced by the front end's URL)::

    python -m tests.support.fc --port 9000 --env RECORD_STORE=file:///tmp/records \\
        --env CALLBACK_URL={url}/ice-callback --env CALLBACK_AUTH_KEY=LocalCallbackKey1
"""
from __future__ import annotations

import argparse
import base64
import ipaddress
import json
import re
import secrets
import sys
import threading
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Sequence, Set, Tuple
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.fc_runtime import FcInstance
from tests.support.loopback import KeepAliveHandler, LoopbackServer, TrackingHTTPServer

FUNCTION_DIR = Path(__file__).resolve().parents[2] / "function"

HTTP = "http"  # kinds of invocation, as the log names them
HTTP_ASYNC = "http-async"
TIMER = "timer"
DIRECT = "direct"
DIRECT_ASYNC = "direct-async"
HTTP_KINDS = (HTTP, HTTP_ASYNC)

BUSY, IDLE, RECLAIMED, DIED, STOPPED = "busy", "idle", "reclaimed", "died", "stopped"  # an instance's state

FUNCTION_ERROR = "UnhandledInvocationError"  # X-Fc-Error-Type of a function error; FC's own refusals: FcCommonError
MAX_SYNC_BODY = 32 * 1024 * 1024  # FC's limit for a synchronous invocation's request
MAX_ASYNC_BODY = 128 * 1024  # ... and for an asynchronous one (contract section 7)
MAX_RETRY_ATTEMPTS = 8  # maxAsyncRetryAttempts is 0-8
MAX_BACKOFF_S = 30.0
LOG_TAIL = 64 * 1024  # what is kept of an instance's stderr, per invocation and per instance
MAX_LOG_READ = 16 * 1024 * 1024
MAX_RECORDS = 100_000  # invocation records kept (the oldest go first)
MAX_SETTLED = 10_000  # settled asynchronous requests remembered for wait_for
STOP_WAIT_S = 10.0

TEXT_TYPES = frozenset({"application/json", "application/xml", "application/javascript", "application/x-javascript",
                        "application/ecmascript", "application/x-www-form-urlencoded"})
Answer = Tuple[int, List[Tuple[str, str]], bytes]  # (status, headers, body) of an HTTP answer
INVOKE_FUNCTION_PATH = re.compile(r"/2023-03-30/functions/([^/?#]+)/invocations")  # FC3's InvokeFunction
NOT_FORWARDED = frozenset({"connection", "content-length", "transfer-encoding", "keep-alive", "x-fc-request-id"})


# ---------------------------------------------------------------- what the front end reports


@dataclass(frozen=True)
class Invocation:
    """One run of the handler on an instance (an asynchronous request has one per attempt)."""

    request_id: str
    kind: str  # http, http-async, timer, direct, direct-async
    path: Optional[str]  # the rawPath of an HTTP-trigger request
    status: Optional[int]  # the answer's statusCode (HTTP trigger; 502 for an unusable one) or 200; None: failed
    error: Optional[Dict[str, Any]]  # {errorMessage, errorType, stackTrace} (FC's) when the function failed
    cold: bool  # the instance's first request: its interpreter started for it
    instance_id: int
    attempt: int  # 1 for a synchronous invocation; 1, 2, ... for an asynchronous one
    started_at: float  # time.time() when it reached its instance (a cold one: when the interpreter started)
    wall_s: float  # from started_at to the answer
    cpu_s: Optional[float]  # CPU the instance spent inside the invocation (its initializer included)
    instance_cpu_s: Optional[float]  # CPU the instance's process had used by the end of it, cold start included
    result: Optional[str]  # what the handler returned, serialized as the runtime does
    log: str  # what the instance wrote to stderr during the invocation (its last 64 KB)

    def value(self) -> Any:
        """The handler's return value, parsed (``result`` is JSON unless the handler returned text)."""
        if self.result is None:
            raise ValueError(f"invocation {self.request_id} failed: {self.error}")
        return json.loads(self.result)


@dataclass(frozen=True)
class InstanceFigures:
    instance_id: int
    pid: int
    state: str  # busy, idle, reclaimed (idle for idle_s), died (crashed, timed out), stopped (with the front end)
    started_at: float  # time.time()
    ended_at: Optional[float]
    requests: int
    cpu_s: Optional[float]  # CPU its process had used at its last answer: everything it cost, cold start included
    log: str  # the last 64 KB it wrote to stderr, once it has ended


class TimerSchedule:
    """A timer trigger firing every ``every_s`` seconds (the first time ``every_s`` after it starts)."""

    def __init__(self, front_end: FcFrontEnd, trigger_name: str, every_s: float, payload: str) -> None:
        self.trigger_name, self.every_s, self.payload = trigger_name, every_s, payload
        self.request_ids: List[str] = []
        self._front_end = front_end
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"fc-timer-{trigger_name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.wait(self.every_s):
            try:
                self.request_ids.append(self._front_end.fire_timer(self.trigger_name, self.payload))
            except RuntimeError:  # stopping, or the queue is full: FC would drop the tick too
                pass

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=STOP_WAIT_S)


# ---------------------------------------------------------------- the FC3 event and answer


def canonical_header(name: str) -> str:
    """FC's (Go's) canonical header name: ``x-ice-signature`` -> ``X-Ice-Signature``."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def is_text_type(content_type: Optional[str]) -> bool:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return (media_type.startswith("text/") or media_type in TEXT_TYPES or media_type.endswith("+json")
            or media_type.endswith("+xml"))


def fc_request_id() -> str:
    """An ID shaped like the HTTP trigger's (``1-6744f1e1-0f5b2c3d4e5f6a7b8c9d0e1f``)."""
    return f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"


def utc_iso(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


def _domain_prefix(host: str) -> str:
    hostname = urlsplit(f"//{host}").hostname or host
    try:
        ipaddress.ip_address(hostname)
        return hostname
    except ValueError:
        return hostname.split(".", 1)[0]


def http_event(*, method: str, target: str, headers: Sequence[Tuple[str, str]], body: bytes, source_ip: str,
               protocol: str, request_id: str, account_id: str, default_host: str) -> Dict[str, Any]:
    """The FC3 HTTP-trigger event for one request (``target`` as in the request line)."""
    if not target.startswith("/"):  # absolute form (a proxy's request): FC sees the path
        parts = urlsplit(target)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    raw_path, _, raw_query = target.partition("?")
    joined: Dict[str, str] = {}
    for name, value in headers:
        key = canonical_header(name)
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    joined.setdefault("X-Forwarded-Proto", "http")
    query: Dict[str, str] = {}
    for name, value in parse_qsl(raw_query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    text: Optional[str] = None
    if not body:
        text = ""
    elif is_text_type(joined.get("Content-Type")):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    now = time.time()
    host = joined.get("Host") or default_host
    return {
        "version": "v1",
        "rawPath": raw_path or "/",
        "headers": joined,
        "queryParameters": query,
        "body": text if text is not None else base64.b64encode(body).decode("ascii"),
        "isBase64Encoded": text is None,
        "requestContext": {
            "accountId": account_id,
            "domainName": host,
            "domainPrefix": _domain_prefix(host),
            "requestId": request_id,
            "time": utc_iso(now),
            "timeEpoch": str(int(now * 1000)),
            "http": {"method": method, "path": unquote(raw_path or "/"), "protocol": protocol,
                     "sourceIp": source_ip, "userAgent": joined.get("User-Agent", "")},
        },
    }


class UnusableAnswer(ValueError):
    """The handler returned an HTTP response struct FC cannot send."""


def http_answer(result: str) -> Tuple[int, List[Tuple[str, str]], bytes]:
    """(status, headers, body) for what the handler returned to an HTTP-trigger event."""
    try:
        value = json.loads(result)
    except ValueError:
        value = None
    if not (isinstance(value, dict) and "statusCode" in value):
        content_type = "text/plain; charset=utf-8" if value is None else "application/json"
        return 200, [("Content-Type", content_type)], result.encode("utf-8", errors="replace")
    status = value["statusCode"]
    if isinstance(status, str) and status.isdigit():
        status = int(status)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise UnusableAnswer(f"statusCode {status!r} is not an HTTP status")
    headers: List[Tuple[str, str]] = []
    raw_headers = value.get("headers") or {}
    if not isinstance(raw_headers, dict):
        raise UnusableAnswer("headers is not an object")
    for name, values in raw_headers.items():
        for item in values if isinstance(values, list) else [values]:
            if isinstance(item, (str, int, float)) and not isinstance(item, bool):
                headers.append((str(name), str(item)))
    body = value.get("body")
    if body is None:
        body = ""
    if not isinstance(body, str):
        body = json.dumps(body)
    if value.get("isBase64Encoded"):
        try:
            return status, headers, base64.b64decode(body, validate=True)
        except ValueError as exc:
            raise UnusableAnswer("isBase64Encoded is true but the body is not base64") from exc
    return status, headers, body.encode("utf-8", errors="replace")


def _fc_error(code: str, message: str) -> bytes:
    return json.dumps({"errorCode": code, "errorMessage": message}).encode()


# ---------------------------------------------------------------- inside the front end


class _Instance:
    def __init__(self, instance_id: int, process: FcInstance, spawned_at: float) -> None:
        self.instance_id = instance_id
        self.process = process
        self.spawned_at = spawned_at  # perf_counter() just before the interpreter started
        self.started_at = time.time()
        self.ended_at: Optional[float] = None
        self.state = BUSY
        self.requests = 0
        self.cpu_s: Optional[float] = None
        self.idle_since = 0.0
        self.log_offset = 0
        self.log_tail = ""

    def figures(self) -> InstanceFigures:
        return InstanceFigures(self.instance_id, self.process.pid, self.state, self.started_at, self.ended_at,
                               self.requests, self.cpu_s, self.log_tail)


class _AsyncRequest:
    def __init__(self, request_id: str, kind: str, path: Optional[str], event: bytes, sequence: int) -> None:
        self.request_id, self.kind, self.path, self.event, self.sequence = request_id, kind, path, event, sequence
        self.accepted_at = time.time()
        self.due_at = time.monotonic()
        self.attempts = 0
        self.running = False
        self.last: Optional[Invocation] = None


class FcFrontEnd(LoopbackServer):
    """FC3 in front of the function's code on 127.0.0.1: ``with FcFrontEnd(code, env=...) as fc: ...``.

    ``url`` is known once it is started; the environment can be completed with :meth:`update_env`
    until the first instance starts (it is every instance's). Everything stops with it: the HTTP
    server, the timers, the background threads (daemons) and every instance's process.
    """

    thread_name = "fc-front-end"
    poll_interval_s = 0.05

    def __init__(self, code: Path = FUNCTION_DIR, *, env: Optional[Mapping[str, str]] = None,
                 vendor: Optional[Path] = None, python: str = sys.executable, isolated: bool = False,
                 runtime: str = "python3.10", handler: str = "index.handler", initializer: str = "index.initialize",
                 idle_s: float = 60.0, max_instances: int = 10, timeout_s: float = 300.0,
                 initializer_timeout_s: float = 30.0, max_async_retry_attempts: int = 3,
                 async_retry_backoff_s: float = 0.5, failure_dir: Optional[Path] = None,
                 max_async_queue: int = 10_000, function_name: str = "ice-upload-sync",
                 region: str = "cn-shanghai", account_id: str = "1234567890123456",
                 on_invocation: Optional[Callable[[Invocation], None]] = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        if not 0 <= max_async_retry_attempts <= MAX_RETRY_ATTEMPTS:
            raise ValueError(f"max_async_retry_attempts must be 0-{MAX_RETRY_ATTEMPTS} (FC's range)")
        if idle_s <= 0 or timeout_s <= 0 or max_instances < 1 or max_async_queue < 1 or async_retry_backoff_s < 0:
            raise ValueError("idle_s, timeout_s, max_instances and max_async_queue must be positive, "
                             "async_retry_backoff_s not negative")
        self.code, self.vendor = Path(code), (Path(vendor) if vendor is not None else None)
        self.python, self.isolated, self.runtime = python, isolated, runtime
        self.handler, self.initializer = handler, initializer
        self.idle_s, self.max_instances, self.timeout_s = idle_s, max_instances, timeout_s
        self.initializer_timeout_s = initializer_timeout_s
        self.max_async_retry_attempts, self.async_retry_backoff_s = max_async_retry_attempts, async_retry_backoff_s
        self.failure_dir = Path(failure_dir) if failure_dir is not None else None
        self.max_async_queue = max_async_queue
        self.function_name, self.region, self.account_id = function_name, region, account_id
        self.function_arn = f"acs:fc:{region}:{account_id}:functions/{function_name}"
        self.on_invocation = on_invocation
        self._env: Dict[str, str] = {"FC_FUNCTION_NAME": function_name, "FC_REGION": region, **(env or {})}
        self._cond = threading.Condition()
        self._stopping = True  # until started
        self._live: List[_Instance] = []  # busy or idle
        self._all: List[_Instance] = []
        self._starting = 0
        self._records: Deque[Invocation] = deque(maxlen=MAX_RECORDS)
        self._pending: Dict[str, _AsyncRequest] = {}
        self._settled: OrderedDict[str, _AsyncRequest] = OrderedDict()
        self._sequence = 0
        self._failures: List[Dict[str, Any]] = []
        self._throttled = 0
        self._async_refusals = 0  # refuse_async_next
        self._threads: Set[threading.Thread] = set()
        self._timers: List[TimerSchedule] = []

    # ---------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the HTTP trigger's URL (any path under it is the trigger)."""
        return self.endpoint

    def start(self) -> FcFrontEnd:
        if self._server is not None:
            return self
        with self._cond:
            self._stopping = False
        super().start()
        for name, target in (("fc-async-dispatcher", self._dispatch), ("fc-idle-reaper", self._reap)):
            self._spawn_thread(name, target)
        return self

    def stop(self) -> None:
        """Idempotent; bounded: busy instances are killed, idle ones ended, threads joined."""
        if self._server is None:
            return
        with self._cond:
            self._stopping = True
            timers, self._timers = self._timers, []
            self._cond.notify_all()
        for timer in timers:
            timer.stop()
        super().stop()  # no new requests; keep-alive connections are cut (_stopped_server)
        with self._cond:
            idle = [instance for instance in self._live if instance.state == IDLE]
            for instance in idle:
                self._retire(instance, STOPPED)
            for instance in self._live:
                instance.process.kill()  # busy: its invocation fails at once and releases it
        for instance in idle:
            self._close(instance)
        deadline = time.monotonic() + STOP_WAIT_S
        with self._cond:
            while (self._live or self._starting) and time.monotonic() < deadline:
                self._cond.wait(0.05)
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _stopped_server(self, server: Any) -> None:
        server.close_connections()

    def _make_server(self) -> Any:
        server = TrackingHTTPServer((self.host, self._port), _TriggerHandler)
        server.front_end = self  # type: ignore[attr-defined]
        return server

    def _spawn_thread(self, name: str, target: Callable[..., None], *args: Any) -> None:
        def run() -> None:
            try:
                target(*args)
            finally:
                with self._cond:
                    self._threads.discard(threading.current_thread())
                    self._cond.notify_all()

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._cond:
            self._threads.add(thread)
        thread.start()

    # ---------------------------------------------------------------- configuration and figures

    @property
    def env(self) -> Dict[str, str]:
        """Every instance's environment (a copy)."""
        with self._cond:
            return dict(self._env)

    def update_env(self, **values: str) -> None:
        """Complete the environment (``CALLBACK_URL=f"{fc.url}/ice-callback"``); refused once an
        instance has started, so that every instance has the same."""
        with self._cond:
            if self._all or self._starting:
                raise RuntimeError("an instance has started: the environment is every instance's and is fixed now")
            self._env.update(values)

    @property
    def invocations(self) -> List[Invocation]:
        """Every run of the handler, in the order they ended."""
        with self._cond:
            return list(self._records)

    @property
    def instances(self) -> List[InstanceFigures]:
        """Every instance started, in the order they started."""
        with self._cond:
            return [instance.figures() for instance in self._all]

    @property
    def failures(self) -> List[Dict[str, Any]]:
        """The failure-destination messages, in the order they were written."""
        with self._cond:
            return list(self._failures)

    @property
    def throttled(self) -> int:
        """Synchronous requests refused with 429 because ``max_instances`` were busy."""
        with self._cond:
            return self._throttled

    def refuse_async_next(self, count: int = 1) -> None:
        """Fault injection: the next ``count`` asynchronous HTTP requests are refused (503, as when
        FC's asynchronous queue is full or the service is unavailable) instead of taken."""
        with self._cond:
            self._async_refusals += count

    def _take_async_refusal(self) -> bool:
        with self._cond:
            if self._async_refusals <= 0:
                return False
            self._async_refusals -= 1
            return True

    @property
    def pending_async(self) -> int:
        """Asynchronous requests accepted and not yet settled."""
        with self._cond:
            return len(self._pending)

    # ---------------------------------------------------------------- invoking

    def invoke(self, event: Any, *, wait_s: float = 60.0) -> Invocation:
        """A synchronous invocation of any event (bytes, text or a JSON value), as ``InvokeFunction``.

        Waits up to ``wait_s`` for an instance when ``max_instances`` are busy (then RuntimeError).
        """
        request_id = str(uuid.uuid4())
        acquired = self._acquire(wait_s)
        if acquired is None:
            raise RuntimeError(f"no instance free within {wait_s} s (or the front end is stopped)")
        return self._invoke(*acquired, _event_bytes(event), request_id, DIRECT, None, 1)

    def invoke_async(self, event: Any) -> str:
        """An asynchronous invocation of any event; its request ID (see :meth:`wait_for`)."""
        request_id = str(uuid.uuid4())
        if not self._enqueue(DIRECT_ASYNC, None, _event_bytes(event), request_id):
            raise RuntimeError("the front end is stopped or its asynchronous queue is full")
        return request_id

    def fire_timer(self, trigger_name: str = "sweep", payload: str = "") -> str:
        """The timer trigger ``trigger_name`` fires now (asynchronously, as FC's timers do); its request ID."""
        event = {"triggerTime": utc_iso(time.time()), "triggerName": trigger_name, "payload": payload}
        request_id = str(uuid.uuid4())
        if not self._enqueue(TIMER, None, json.dumps(event).encode(), request_id):
            raise RuntimeError("the front end is stopped or its asynchronous queue is full")
        return request_id

    def start_timer(self, trigger_name: str, every_s: float, payload: str = "") -> TimerSchedule:
        """Fire ``trigger_name`` every ``every_s`` seconds until :meth:`TimerSchedule.stop` or :meth:`stop`."""
        if every_s <= 0:
            raise ValueError("every_s must be positive")
        with self._cond:
            if self._stopping:
                raise RuntimeError("the front end is not running")
            schedule = TimerSchedule(self, trigger_name, every_s, payload)
            self._timers.append(schedule)
        return schedule

    def wait_for(self, request_id: str, timeout_s: float = 60.0) -> Invocation:
        """The last attempt of an asynchronous request once it is settled (succeeded, or given up and
        written to the failure destination). ``LookupError`` for an unknown ID, ``TimeoutError``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                settled = self._settled.get(request_id)
                if settled is not None:
                    assert settled.last is not None
                    return settled.last
                if request_id not in self._pending:
                    raise LookupError(f"no asynchronous request {request_id}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"asynchronous request {request_id} not settled after {timeout_s} s")
                self._cond.wait(remaining)

    def wait_idle(self, timeout_s: float = 60.0) -> None:
        """Until no asynchronous request is pending and no instance is busy (``TimeoutError`` after ``timeout_s``)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._pending or self._starting or any(instance.state == BUSY for instance in self._live):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"still busy after {timeout_s} s: {len(self._pending)} asynchronous "
                                       f"requests pending")
                self._cond.wait(remaining)

    # ---------------------------------------------------------------- the pool

    def _acquire(self, wait_s: Optional[float]) -> Optional[Tuple[_Instance, bool]]:
        """(instance, cold): the most recently used idle instance, else a new one while fewer than
        ``max_instances`` run; None when none is free within ``wait_s`` (None: until stopped)."""
        deadline = None if wait_s is None else time.monotonic() + wait_s
        with self._cond:
            while True:
                if self._stopping:
                    return None
                for instance in sorted((i for i in self._live if i.state == IDLE), key=lambda i: -i.idle_since):
                    if instance.process.alive:
                        instance.state = BUSY
                        return instance, False
                    self._retire(instance, DIED)  # it died while idle: FC would not route to it
                    instance.log_tail = instance.process.close()[-LOG_TAIL:]  # dead: returns at once
                if len(self._live) + self._starting < self.max_instances:
                    self._starting += 1
                    env = dict(self._env)
                    break
                remaining = 1.0 if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(min(remaining, 1.0))
        spawned_at = time.perf_counter()
        try:
            process = FcInstance(self.code, python=self.python, vendor=self.vendor, env=env, runtime=self.runtime,
                                 isolated=self.isolated, handler=self.handler, initializer=self.initializer)
        except BaseException:
            with self._cond:
                self._starting -= 1
                self._cond.notify_all()
            raise
        with self._cond:
            self._starting -= 1
            instance = _Instance(len(self._all) + 1, process, spawned_at)
            self._all.append(instance)
            self._live.append(instance)
            stopping = self._stopping
            if stopping:  # stop() came while it started: it runs nothing
                self._retire(instance, STOPPED)
            self._cond.notify_all()
        if stopping:
            process.kill()
            self._close(instance)
            return None
        return instance, True

    def _retire(self, instance: _Instance, state: str) -> None:
        """Out of the pool (under the lock); the caller ends its process."""
        instance.state, instance.ended_at = state, time.time()
        if instance in self._live:
            self._live.remove(instance)
        self._cond.notify_all()

    def _close(self, instance: _Instance) -> None:
        instance.log_tail = instance.process.close()[-LOG_TAIL:]

    def _release(self, instance: _Instance, dead: bool) -> None:
        with self._cond:
            instance.requests += 1
            ending = dead or self._stopping
            if ending:
                self._retire(instance, STOPPED if self._stopping else DIED)
            else:
                instance.state, instance.idle_since = IDLE, time.monotonic()
                self._cond.notify_all()
        if ending:
            self._close(instance)

    def _reap(self) -> None:
        """The idle reaper: an instance idle for ``idle_s`` is reclaimed and its process ended."""
        interval = max(0.05, min(1.0, self.idle_s / 4))
        while True:
            with self._cond:
                if self._stopping:
                    return
                now = time.monotonic()
                expired = [i for i in self._live if i.state == IDLE and now - i.idle_since >= self.idle_s]
                for instance in expired:
                    self._retire(instance, RECLAIMED)
            for instance in expired:
                self._close(instance)
            with self._cond:
                if self._stopping:
                    return
                self._cond.wait(interval)

    def _invoke(self, instance: _Instance, cold: bool, event: bytes, request_id: str, kind: str,
                path: Optional[str], attempt: int) -> Invocation:
        """Run one invocation on ``instance`` (busy, ours until released) and record it."""
        began = instance.spawned_at if cold else time.perf_counter()
        started_at = instance.started_at if cold else time.time()
        wait_s = self.timeout_s + (self.initializer_timeout_s if cold else 0)
        answer: Optional[Dict[str, Any]] = None
        dead = False
        try:
            answer = instance.process.invoke(event, request_id=request_id, timeout=f"{self.timeout_s:g}",
                                             wait_s=wait_s, retry_count=attempt - 1)
            error = answer["error"]
        except (RuntimeError, OSError, ValueError) as exc:  # timed out, died, or wrote garbage on stdout
            dead = True
            instance.process.kill()
            elapsed = time.perf_counter() - began
            if str(exc).startswith("no answer within"):
                error = {"errorMessage": f"Function timed out after {self.timeout_s:g} seconds"}
            else:
                error = {"errorMessage": f"Process exited unexpectedly before completing request "
                                         f"(duration: {elapsed * 1000:.0f}ms)"}
        wall_s = time.perf_counter() - began
        log, instance.log_offset = instance.process.log_since(instance.log_offset, MAX_LOG_READ)
        if answer is not None:
            instance.cpu_s = answer.get("process_cpu_s")
        result = None if answer is None or error is not None else answer["result"]
        status = None if result is None else (self._http_status(result) if kind in HTTP_KINDS else 200)
        record = Invocation(request_id, kind, path, status, error, cold, instance.instance_id, attempt, started_at,
                            wall_s, None if answer is None else answer.get("cpu_s"), instance.cpu_s, result,
                            log[-LOG_TAIL:])
        self._release(instance, dead)
        with self._cond:
            self._records.append(record)
            self._cond.notify_all()
        if self.on_invocation is not None:
            try:
                self.on_invocation(record)
            except Exception as exc:  # noqa: BLE001 - a reporting hook must not break the invocation
                print(f"fc front end: on_invocation failed: {exc!r}", file=sys.stderr)
        return record

    @staticmethod
    def _http_status(result: str) -> int:
        try:
            return http_answer(result)[0]
        except UnusableAnswer:
            return 502

    # ---------------------------------------------------------------- the HTTP trigger, synchronously

    def _acquire_now(self) -> Tuple[Optional[Tuple[_Instance, bool]], Optional[Answer]]:
        """(instance, cold) for a synchronous request, at once; or, when there is none, FC's answer instead:
        502 (the interpreter could not start), 503 (stopping) or 429 (``max_instances`` are busy)."""
        try:
            acquired = self._acquire(0)
        except OSError as exc:  # the interpreter could not be started
            return None, (502, [("X-Fc-Error-Type", FUNCTION_ERROR), ("Content-Type", "application/json")],
                          json.dumps({"errorMessage": f"the instance could not start: {exc}"}).encode())
        if acquired is not None:
            return acquired, None
        with self._cond:
            stopping = self._stopping
            if not stopping:
                self._throttled += 1
        if stopping:
            return None, (503, [("Content-Type", "application/json")], _fc_error("ServiceUnavailable", "stopping"))
        return None, (429, [("X-Fc-Error-Type", "FcCommonError"), ("Content-Type", "application/json")], _fc_error(
            "ResourceThrottled", f"all {self.max_instances} instances are busy (max_instances)"))

    def _invoke_http(self, event: bytes, request_id: str, path: str) -> Answer:
        acquired, refusal = self._acquire_now()
        if acquired is None:
            assert refusal is not None
            return refusal
        invocation = self._invoke(*acquired, event, request_id, HTTP, path, 1)
        if invocation.error is not None:
            return 502, [("X-Fc-Error-Type", FUNCTION_ERROR), ("Content-Type", "application/json")], json.dumps(
                invocation.error).encode()
        assert invocation.result is not None
        try:
            return http_answer(invocation.result)
        except UnusableAnswer as exc:
            return 502, [("X-Fc-Error-Type", FUNCTION_ERROR), ("Content-Type", "application/json")], json.dumps(
                {"errorMessage": f"the function's answer cannot be sent: {exc}"}).encode()

    # ---------------------------------------------------------------- InvokeFunction over HTTP, synchronously

    def _invoke_function(self, event: bytes, request_id: str) -> Answer:
        """The handler's result as the body of a 200; a function error is a 200 with ``X-Fc-Error-Type`` (the
        API's way; the HTTP trigger answers 502)."""
        acquired, refusal = self._acquire_now()
        if acquired is None:
            assert refusal is not None
            return refusal
        invocation = self._invoke(*acquired, event, request_id, DIRECT, None, 1)
        if invocation.error is not None:
            return 200, [("X-Fc-Error-Type", FUNCTION_ERROR), ("Content-Type", "application/json")], json.dumps(
                invocation.error).encode()
        assert invocation.result is not None
        return 200, [("Content-Type", "application/json")], invocation.result.encode("utf-8", errors="replace")

    # ---------------------------------------------------------------- asynchronous invocations

    def _enqueue(self, kind: str, path: Optional[str], event: bytes, request_id: str) -> bool:
        with self._cond:
            if self._stopping or len(self._pending) >= self.max_async_queue:
                return False
            self._sequence += 1
            self._pending[request_id] = _AsyncRequest(request_id, kind, path, event, self._sequence)
            self._cond.notify_all()
        return True

    def _dispatch(self) -> None:
        """The dispatcher: each due request, in order, on the next free instance, in a thread of its own."""
        while True:
            with self._cond:
                while True:
                    if self._stopping:
                        return
                    waiting = [r for r in self._pending.values() if not r.running]
                    request = min(waiting, key=lambda r: (r.due_at, r.sequence)) if waiting else None
                    delay = 1.0 if request is None else request.due_at - time.monotonic()
                    if request is not None and delay <= 0:
                        request.running = True
                        break
                    self._cond.wait(min(delay, 1.0))
            try:
                acquired = self._acquire(None)
            except OSError as exc:  # the interpreter could not be started: a failed attempt, no instance
                self._settle(request, None, {"errorMessage": f"the instance could not start: {exc}"})
                continue
            if acquired is None:  # stopping: the request stays pending (lost with the front end)
                with self._cond:
                    request.running = False
                return
            self._spawn_thread(f"fc-async-{request.request_id[:12]}", self._run_async, request, *acquired)

    def _run_async(self, request: _AsyncRequest, instance: _Instance, cold: bool) -> None:
        invocation = self._invoke(instance, cold, request.event, request.request_id, request.kind, request.path,
                                  request.attempts + 1)
        self._settle(request, invocation, invocation.error)

    def _settle(self, request: _AsyncRequest, invocation: Optional[Invocation], error: Optional[Dict]) -> None:
        with self._cond:
            request.attempts += 1
            request.last = invocation or request.last
            stopping = self._stopping
        given_up = error is not None and request.attempts > self.max_async_retry_attempts and not stopping
        if given_up:
            self._write_failure(request, error)
        with self._cond:
            request.running = False
            if error is None or given_up:
                self._pending.pop(request.request_id, None)
                if request.last is None:  # never reached an instance: report the failure itself
                    request.last = Invocation(request.request_id, request.kind, request.path, None, error, False, 0,
                                              request.attempts, time.time(), 0.0, None, None, None, "")
                self._settled[request.request_id] = request
                while len(self._settled) > MAX_SETTLED:
                    self._settled.popitem(last=False)
            else:
                backoff = min(MAX_BACKOFF_S, self.async_retry_backoff_s * 2 ** (request.attempts - 1))
                request.due_at = time.monotonic() + backoff
            self._cond.notify_all()

    def _write_failure(self, request: _AsyncRequest, error: Dict[str, Any]) -> None:
        """FC's failure-destination message for a request given up, in memory and as a file."""
        message = {
            "timestamp": int(time.time() * 1000),
            "requestContext": {"requestId": request.request_id, "functionArn": self.function_arn,
                               "condition": FUNCTION_ERROR, "approximateInvokeCount": request.attempts},
            "requestPayload": request.event.decode("utf-8", errors="replace"),
            "responseContext": {"statusCode": 200, "functionError": FUNCTION_ERROR},
            "responsePayload": json.dumps(error),
        }
        if self.failure_dir is not None:
            self.failure_dir.mkdir(parents=True, exist_ok=True)
            path = self.failure_dir / f"{message['timestamp']}-{request.request_id}.json"
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(message, indent=2))
            temporary.replace(path)
        with self._cond:
            self._failures.append(message)


def _event_bytes(event: Any) -> bytes:
    if isinstance(event, bytes):
        return event
    if isinstance(event, str):
        return event.encode()
    return json.dumps(event).encode()


class _TriggerHandler(KeepAliveHandler):
    """Every method, every path: the HTTP trigger."""

    server_version = "FcFrontEnd/1.0"

    def do_any(self) -> None:
        front_end: FcFrontEnd = self.server.front_end  # type: ignore[attr-defined]
        request_id = fc_request_id()
        body = self._read_body(request_id)
        if body is None:
            return
        invoke = INVOKE_FUNCTION_PATH.fullmatch(self.path.partition("?")[0]) if self.command == "POST" else None
        if invoke is not None:
            self._invoke_function(front_end, unquote(invoke.group(1)), body, request_id)
            return
        event = http_event(method=self.command, target=self.path, headers=list(self.headers.items()), body=body,
                           source_ip=self.client_address[0], protocol=self.request_version, request_id=request_id,
                           account_id=front_end.account_id, default_host=f"{front_end.host}:{front_end.port}")
        raw = json.dumps(event).encode()
        if (self.headers.get("X-Fc-Invocation-Type") or "").strip().lower() == "async":
            if len(body) > MAX_ASYNC_BODY:
                self._answer(400, [("Content-Type", "application/json")], _fc_error(
                    "EntityTooLarge", f"payload size exceeds maximum allowed size ({MAX_ASYNC_BODY} bytes)"),
                    request_id)
            elif not front_end._take_async_refusal() and front_end._enqueue(HTTP_ASYNC, event["rawPath"], raw,
                                                                             request_id):
                self._answer(202, [], b"", request_id)
            else:
                self._answer(503, [("Content-Type", "application/json")], _fc_error(
                    "ServiceUnavailable", "stopping, or the asynchronous queue is full"), request_id)
            return
        status, headers, data = front_end._invoke_http(raw, request_id, event["rawPath"])
        self._answer(status, headers, data, request_id)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_any

    def _invoke_function(self, front_end: FcFrontEnd, function_name: str, body: bytes, request_id: str) -> None:
        """FC3's InvokeFunction: the body is the event, as it is (a direct invocation)."""
        json_type = [("Content-Type", "application/json")]
        if function_name != front_end.function_name:
            self._answer(404, json_type, _fc_error("FunctionNotFound", f"function '{function_name}' does not exist"),
                         request_id)
        elif (self.headers.get("X-Fc-Invocation-Type") or "").strip().lower() == "async":
            if len(body) > MAX_ASYNC_BODY:
                self._answer(400, json_type, _fc_error(
                    "EntityTooLarge", f"payload size exceeds maximum allowed size ({MAX_ASYNC_BODY} bytes)"),
                    request_id)
            elif front_end._enqueue(DIRECT_ASYNC, None, body, request_id):
                self._answer(202, [], b"", request_id)
            else:
                self._answer(503, json_type, _fc_error("ServiceUnavailable",
                                                       "stopping, or the asynchronous queue is full"), request_id)
        else:
            self._answer(*front_end._invoke_function(body, request_id), request_id)

    def _read_body(self, request_id: str) -> Optional[bytes]:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            self._answer(411, [("Content-Type", "application/json")],
                         _fc_error("LengthRequired", "send a Content-Length"), request_id)
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_SYNC_BODY:
            self.close_connection = True
            self._answer(413 if length > 0 else 400, [("Content-Type", "application/json")], _fc_error(
                "EntityTooLarge" if length > 0 else "InvalidArgument",
                f"Content-Length must be 0-{MAX_SYNC_BODY}"), request_id)
            return None
        return self.rfile.read(length) if length else b""

    def _answer(self, status: int, headers: List[Tuple[str, str]], body: bytes, request_id: str) -> None:
        self.send_response(status)
        for name, value in headers:
            if name.lower() not in NOT_FORWARDED:
                self.send_header(name, value)
        self.send_header("X-Fc-Request-Id", request_id)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


# ---------------------------------------------------------------- by hand


def describe(invocation: Invocation) -> str:
    """One line of what an invocation was and how it ended, as `python -m tests.support.fc` prints it."""
    outcome = invocation.status if invocation.error is None else f"error: {invocation.error.get('errorMessage')}"
    return (f"{invocation.kind:<12} {invocation.path or '-':<24} {outcome}  "
            f"{'cold' if invocation.cold else 'warm'} instance {invocation.instance_id} attempt {invocation.attempt} "
            f"{invocation.wall_s * 1000:.0f} ms")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="A local FC front end for the function: HTTP trigger, "
                                                 "asynchronous invocations, timers, an instance pool")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000, help="0: any free port")
    parser.add_argument("--code", type=Path, default=FUNCTION_DIR, help="the code package (default: function/)")
    parser.add_argument("--vendor", type=Path, help="its vendored folder (PYTHONPATH=/code/python on FC)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter each instance runs")
    parser.add_argument("--isolated", action="store_true", help="run instances with -I -S (a packaged function)")
    parser.add_argument("--runtime", default="python3.10", choices=("python3.9", "python3.10", "python3.12"))
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="the function's environment; {url} in a value is the front end's URL")
    parser.add_argument("--idle-s", type=float, default=60.0, help="an idle instance is reclaimed after this")
    parser.add_argument("--max-instances", type=int, default=10)
    parser.add_argument("--timeout-s", type=float, default=300.0, help="the function's timeout")
    parser.add_argument("--max-async-retry-attempts", type=int, default=3)
    parser.add_argument("--failure-dir", type=Path, help="the failure destination: one JSON file per invocation")
    parser.add_argument("--timer", action="append", default=[], metavar="NAME=SECONDS",
                        help="a timer trigger with an empty payload (a sweep) firing every SECONDS")
    parser.add_argument("--show-logs", action="store_true", help="print what each invocation logged")
    args = parser.parse_args(argv)
    env: Dict[str, str] = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--env takes KEY=VALUE, not {item!r}")
        env[key] = value
    timers: List[Tuple[str, float]] = []
    for item in args.timer:
        name, sep, seconds = item.partition("=")
        try:
            timers.append((name, float(seconds)))
        except ValueError:
            parser.error(f"--timer takes NAME=SECONDS, not {item!r}")

    def report(invocation: Invocation) -> None:
        print(describe(invocation), flush=True)
        if args.show_logs and invocation.log:
            print(invocation.log.rstrip(), flush=True)

    front_end = FcFrontEnd(args.code, vendor=args.vendor, python=args.python, isolated=args.isolated,
                           runtime=args.runtime, idle_s=args.idle_s, max_instances=args.max_instances,
                           timeout_s=args.timeout_s, max_async_retry_attempts=args.max_async_retry_attempts,
                           failure_dir=args.failure_dir, on_invocation=report, host=args.host, port=args.port)
    front_end.start()
    front_end.update_env(**{key: value.replace("{url}", front_end.url) for key, value in env.items()})
    for name, seconds in timers:
        front_end.start_timer(name, seconds)
    front_end.serve_until_interrupted(
        f"FC front end on {{endpoint}} serving {args.code} (any path is the HTTP trigger, but POST "
        f"/2023-03-30/functions/{front_end.function_name}/invocations, InvokeFunction; "
        f"X-Fc-Invocation-Type: Async for asynchronous; idle instances reclaimed after {args.idle_s:g} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
