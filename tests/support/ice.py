"""A local stand-in for the ICE (Intelligent Cloud Editing, 2020-11-09) OpenAPI endpoint.

The unmodified official SDK (``alibabacloud_ice20201109``) talks to it over plain HTTP on
loopback. It authenticates every request the way the real service does for the SDK's default
V3 signature (``ACS3-HMAC-SHA256``), with :class:`tests.support.acs3.Acs3Verifier`: it recomputes
the canonical request exactly like ``alibabacloud_tea_openapi.utils.Utils.get_authorization`` and
compares signatures, checks the timestamp window, nonce reuse, the payload hash and STS security
tokens. It answers ``GetUrlUploadInfos`` from jobs seeded with :meth:`IceEmulator.put_job` and
creates jobs for ``UploadMediaByURL``. Faults (throttling, 5xx) and latency can be injected; every call is
recorded in :attr:`IceEmulator.calls`.

``GetEventCallback`` and ``SetEventCallback`` read and replace the region's one callback setting (the one
:meth:`IceEmulator.set_callback` sets), with ICE's documented rules (``SetEventCallback`` reference and
event list, help.aliyun.com/document_detail/444780): an AuthKey of at most 32 characters holding upper-case,
lower-case letters and digits (and nothing else), a CallbackURL of at most 256 bytes, an MNS queue named
``ice-callback-...``, event types from ICE's list (:data:`ICE_EVENT_TYPES`). Refused as ICE refuses: HTTP 400
``InvalidParameter`` / ``MissingParameter``, never echoing the key. Unverified, and chosen here: a
SetEventCallback replaces the whole setting (what it does not send is gone); without ``CallbackType`` the
type follows from CallbackURL or CallbackQueueName; without ``AuthSwitch`` it is on when an AuthKey is sent;
``EventTypeList`` is required; with the switch off a sent key is kept (and read back) but not used; an MNS
setting is kept and read back, but nothing is delivered (there is no MNS here).

It also calls back like ICE. With a callback setting (:meth:`IceEmulator.set_callback`: the CallbackURL and
the AuthKey, ICE's one setting per region), a job finished on command (:meth:`IceEmulator.finish_job`) or on
a schedule (:meth:`IceEmulator.finish_job_in`, or ``auto_finish_s`` for jobs that ``UploadMediaByURL``
creates) is POSTed to that URL as ICE's ``UploadByURLComplete`` message, signed with ``X-ICE-TIMESTAMP`` and
``X-ICE-SIGNATURE``, from background threads. ICE's delivery rule (contract section 7): only a 200 within
3 s counts; anything else (a timeout, another status, a refused connection) is retried twice, 1 s apart,
then dropped. Every attempt is logged in :attr:`IceEmulator.callback_attempts`; a delivery's fate is in
:attr:`IceEmulator.callback_deliveries` and :meth:`IceEmulator.wait_for_callback` waits for it.

What ICE documents of the message (its event list): ``EventType``, ``UserId`` (a number), ``EventTime``
(UTC, ``yyyy-MM-ddTHH:mm:ssZ``) and a ``MessageBody`` object whose ``Status`` is ``Success`` or ``Fail``;
for URL uploads its fields follow ``events/http-callback.json`` (``JobId``, ``MediaId``, ``SourceURL``)
plus VOD's error fields (``ErrorCode``, ``ErrorMessage``) on a failure and ``UserData`` when the job has
some. Unverified, and chosen here: MediaId only on a success (VOD: "populated after the video is pulled"),
no ``Size``, a fresh timestamp and signature on each attempt, the 1 s counted from the end of the previous
attempt.

Standard library only. Run it on its own for local work (``make emulator [PORT=9000]`` runs the first line;
it prints the environment to point the function or the command line at it)::

    python -m tests.support.ice --sample-jobs --port 8080
    python -m tests.support.ice --port 8080 --seed jobs.json
    python -m tests.support.ice --callback-url http://127.0.0.1:9000/ice-callback --callback-key KEY \\
        --finish-after 5
"""
from __future__ import annotations

import argparse
import errno
import hashlib
import heapq
import http.client
import json
import logging
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union
from urllib.parse import unquote, urlsplit

from tests.support.acs3 import ApiError
from tests.support.openapi import OpenApiEmulator

API_VERSION = "2020-11-09"
MAX_JOB_QUERY = 10
MAX_UPLOAD_URLS = 20
DEFAULT_HOST_ID = "ice.cn-shanghai.aliyuncs.com"
ICE_FIELDS = ("UploadURL", "Status", "MediaId", "CreationTime", "CompleteTime", "ErrorCode", "ErrorMessage",
              "UserData", "FileSize")
ACTIONS = ("GetUrlUploadInfos", "UploadMediaByURL", "GetEventCallback", "SetEventCallback")
NONEXISTS_STYLES = ("list", "stringified")

URL_UPLOAD_EVENT = "UploadByURLComplete"
DEFAULT_USER_ID = 1234567890123456  # the account of events/http-callback.json
DEFAULT_FILE_SIZE = "1048576"  # a finished job's FileSize when neither the job nor the caller has one
DEFAULT_ERROR_CODE = "URLInvalidError"  # VOD's example failure
DEFAULT_ERROR_MESSAGE = "download the video from url failed"
# a delivery's outcome
PENDING, DELIVERED, DROPPED, STOPPED = "pending", "delivered", "dropped", "stopped"

# ICE's event list (help.aliyun.com/document_detail/444780, tables 1-7; one entry of table 6, an
# "intelligent task" event, is listed there without its name, so it is missing here).
ICE_EVENT_TYPES = frozenset({
    "FileUploadComplete", URL_UPLOAD_EVENT, "ImageUploadComplete", "AttachedMediaUploadComplete",
    "RegisterStreamComplete", "StreamUploadComplete", "UploadStreamByURLComplete",
    "CreateAuditComplete", "RegisterMediaComplete", "DeleteMediaComplete", "MediaBaseChangeComplete",
    "WorkflowTaskComplete",
    "VideoAnalysisComplete", "SnapshotComplete", "DynamicImageComplete", "TranscodeComplete",
    "TranscodeParentComplete", "MediaConvertComplete", "MediaConvertOutputGroupComplete",
    "MediaConvertOutputComplete",
    "AIMediaAuditComplete", "AIProduceComplete", "MediaAiAnalysisComplete",
    "ProduceMediaComplete", "BatchProduceMediaComplete",
    "LiveRecordFileCreated", "LiveRecordTaskStatus", "LiveSnapshotFileCreated",
})
HTTP_CALLBACK, MNS_CALLBACK = "HTTP", "MNS"
CALLBACK_QUEUE_PREFIX = "ice-callback-"
MAX_AUTH_KEY_LENGTH = 32
MAX_CALLBACK_URL_BYTES = 256
MAX_QUEUE_NAME_LENGTH = 120  # MNS's rule for a queue name: letters, digits and hyphens

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiCall:
    """One request the emulator answered (authentication failures included)."""

    action: str
    access_key_id: Optional[str]
    security_token: Optional[str]
    job_ids: Tuple[str, ...]
    upload_urls: Tuple[str, ...]
    status: int
    error_code: Optional[str]
    request_id: str


@dataclass(frozen=True)
class CallbackSetting:
    """ICE's event callback setting (one per region; setting it replaces the previous one).

    ``callback_type`` HTTP: callbacks are POSTed to ``url``; MNS: they would go to the queue ``queue_name``
    (``url`` None; nothing is delivered here). ``auth_switch`` is ICE's AuthSwitch, on by default when there is
    an ``auth_key``: only then are callbacks signed. Only the events in ``event_types`` (ICE's EventTypeList)
    are sent. What ICE's ``SetEventCallback`` / ``GetEventCallback`` write and read.
    """

    url: Optional[str]
    auth_key: Optional[str] = field(default=None, repr=False)
    event_types: Tuple[str, ...] = (URL_UPLOAD_EVENT,)
    callback_type: str = HTTP_CALLBACK
    queue_name: Optional[str] = None
    auth_switch: Optional[str] = None  # "on" | "off"; None: on when there is a key

    def __post_init__(self) -> None:
        if self.callback_type == HTTP_CALLBACK:
            parts = urlsplit(self.url) if isinstance(self.url, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"the callback URL must be an http(s) URL with a host, not {self.url!r}")
        elif self.callback_type == MNS_CALLBACK:
            if not isinstance(self.queue_name, str) or not self.queue_name or self.url is not None:
                raise ValueError("an MNS callback setting has a queue_name and no url")
        else:
            raise ValueError(f"callback_type must be {HTTP_CALLBACK} or {MNS_CALLBACK}, not {self.callback_type!r}")
        switch = self.auth_switch if self.auth_switch is not None else ("on" if self.auth_key else "off")
        if switch not in ("on", "off"):
            raise ValueError(f"auth_switch must be 'on' or 'off', not {self.auth_switch!r}")
        object.__setattr__(self, "auth_switch", switch)
        object.__setattr__(self, "event_types", tuple(self.event_types))

    @property
    def signed(self) -> bool:
        """True when ICE signs the callbacks (the AuthSwitch is on and there is a key)."""
        return self.auth_switch == "on" and bool(self.auth_key)

    @property
    def delivered(self) -> bool:
        """True when this emulator POSTs callbacks for the setting (HTTP; there is no MNS here)."""
        return self.callback_type == HTTP_CALLBACK


@dataclass(frozen=True)
class CallbackTimings:
    """ICE's delivery rule: an answer within ``window_s``, ``attempts`` in all, ``retry_interval_s`` between
    the end of one attempt and the start of the next. Tests shrink them."""

    window_s: float = 3.0
    retry_interval_s: float = 1.0
    attempts: int = 3

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.retry_interval_s < 0 or self.attempts < 1:
            raise ValueError(f"impossible callback timings: {self}")


ICE_CALLBACK_TIMINGS = CallbackTimings()


@dataclass(frozen=True)
class CallbackAttempt:
    """One POST of a callback and what came of it (times are Unix seconds, ``time.time()``)."""

    delivery_id: int
    job_id: str
    attempt: int  # 1 .. CallbackTimings.attempts
    url: str
    timestamp: Optional[str]  # the X-ICE-TIMESTAMP sent (None with the AuthSwitch off)
    sent_at: float
    answered_at: Optional[float]  # None: no answer (timeout, refused, reset)
    status: Optional[int]  # the HTTP status, if one came back
    error: Optional[str]  # why the attempt does not count as delivered, None for a 200 in time
    duration_s: float  # from sending to the answer, or to giving up

    @property
    def delivered(self) -> bool:
        return self.error is None and self.status == 200


@dataclass(frozen=True)
class CallbackDelivery:
    """One callback message and its attempts; ``outcome`` is pending, delivered, dropped or stopped."""

    delivery_id: int
    job_id: str
    event_type: str
    url: str
    body: bytes  # exactly what was POSTed
    outcome: str
    attempts: Tuple[CallbackAttempt, ...]

    @property
    def message(self) -> Dict[str, Any]:
        return json.loads(self.body)

    @property
    def settled(self) -> bool:
        return self.outcome != PENDING


@dataclass
class _Delivery:
    """A delivery while it runs (mutated under the callback lock); callers get ``snapshot()``s."""

    delivery_id: int
    job_id: str
    setting: CallbackSetting
    body: bytes
    outcome: str = PENDING
    attempts: List[CallbackAttempt] = field(default_factory=list)

    def snapshot(self) -> CallbackDelivery:
        return CallbackDelivery(self.delivery_id, self.job_id, URL_UPLOAD_EVENT, self.setting.url, self.body,
                                self.outcome, tuple(self.attempts))


def ice_signature(callback_url: str, timestamp: str, auth_key: str) -> str:
    """``X-ICE-SIGNATURE``: hex md5 of "{CallbackURL}|{timestamp}|{AuthKey}".

    Written here rather than imported from the function, so a bug in the function's verifier cannot
    hide behind the same bug in the emulator.
    """
    return hashlib.md5(f"{callback_url}|{timestamp}|{auth_key}".encode()).hexdigest()


def is_failure(status: str) -> bool:
    """ICE's failed statuses (FAIL, UPLOAD_FAIL, DOWNLOAD_FAIL, ...) all say so."""
    return "FAIL" in status.upper()


def utc_now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def json_body(message: Dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON; ``\\u`` escapes only if the text cannot be UTF-8 (a lone surrogate in a raw job)."""
    try:
        return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(message, separators=(",", ":")).encode("ascii")


def split_list(value: Optional[str]) -> List[str]:
    """ICE's comma-separated list parameters: items trimmed, empty items dropped."""
    if not value:
        return []
    return [item.strip() for item in value.split(",") if item.strip()]


def dedupe(items: Sequence[str]) -> List[str]:
    return list(dict.fromkeys(items))


def auth_key_problem(key: str) -> Optional[str]:
    """Why ICE refuses ``key`` as an AuthKey, or None; the text never quotes the key."""
    if len(key) > MAX_AUTH_KEY_LENGTH:
        return f"at most {MAX_AUTH_KEY_LENGTH} characters, got {len(key)}"
    if not key.isascii() or not key.isalnum():
        return "only letters and digits"
    if not (any(c.isupper() for c in key) and any(c.islower() for c in key) and any(c.isdigit() for c in key)):
        return "it must contain upper-case letters, lower-case letters and digits"
    return None


def queue_name_problem(name: str) -> Optional[str]:
    """Why ICE refuses ``name`` as a CallbackQueueName, or None."""
    if not name.startswith(CALLBACK_QUEUE_PREFIX) or len(name) == len(CALLBACK_QUEUE_PREFIX):
        return f"the queue name must start with {CALLBACK_QUEUE_PREFIX} (and go on after it)"
    if len(name) > MAX_QUEUE_NAME_LENGTH or not all(c.isascii() and (c.isalnum() or c == "-") for c in name):
        return f"an MNS queue name has at most {MAX_QUEUE_NAME_LENGTH} letters, digits and hyphens"
    return None


# ------------------------------------------------------------------ the emulator


class IceEmulator(OpenApiEmulator):
    """ICE's OpenAPI on loopback. ``with IceEmulator() as ice: ...`` or ``start()`` / ``stop()``."""

    thread_name = "ice-emulator"
    server_version = "IceEmulator/1.0"
    api_version = API_VERSION
    actions = ACTIONS
    default_host_id = DEFAULT_HOST_ID
    product = "ICE"
    call_type = ApiCall

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, nonexists_style: str = "list",
                 callback_url: Optional[str] = None, callback_auth_key: Optional[str] = None,
                 callback_timings: CallbackTimings = ICE_CALLBACK_TIMINGS, user_id: int = DEFAULT_USER_ID,
                 auto_finish_s: Optional[float] = None) -> None:
        """``callback_url`` / ``callback_auth_key``: the initial callback setting (:meth:`set_callback`).
        ``auto_finish_s``: jobs created by ``UploadMediaByURL`` finish successfully that long after."""
        if nonexists_style not in NONEXISTS_STYLES:
            raise ValueError(f"nonexists_style must be one of {NONEXISTS_STYLES}, not {nonexists_style!r}")
        if callback_auth_key is not None and callback_url is None:
            raise ValueError("callback_auth_key needs a callback_url")
        super().__init__(host, port)
        self.nonexists_style = nonexists_style
        self._jobs: Dict[str, Dict[str, Any]] = {}
        self._calls: List[ApiCall] = []
        self._faults: List[Tuple[int, str, str]] = []
        self.callback_timings = callback_timings
        self.user_id = user_id
        self.auto_finish_s = auto_finish_s
        # Callback state has its own lock: a delivery never waits for an API answer, or the reverse.
        self._callback_lock = threading.Condition()
        self._callback_setting: Optional[CallbackSetting] = None
        self._deliveries: List[_Delivery] = []
        self._attempt_log: List[CallbackAttempt] = []
        self._schedule: List[Tuple[float, int, str, Dict[str, Any]]] = []  # (due, seq, job_id, finish kwargs)
        self._scheduled_finishes: Dict[str, int] = {}  # job_id -> finishes still to come
        self._schedule_seq = 0
        self._delivery_seq = 0  # delivery ids, never reused (reset_callbacks keeps counting)
        self._scheduler: Optional[threading.Thread] = None
        self._senders: Set[threading.Thread] = set()
        self._in_flight: Set[http.client.HTTPConnection] = set()
        self._callbacks_stopped = threading.Event()
        if callback_url is not None:
            self.set_callback(callback_url, callback_auth_key)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> IceEmulator:
        self._callbacks_stopped.clear()  # a restarted emulator calls back again
        return super().start()

    def stop(self) -> None:
        """Idempotent. Scheduled finishes are dropped, and deliveries end as ``stopped`` (in-flight
        attempts are cut off), so nothing is POSTed after ``stop`` returns."""
        self._stop_callbacks()
        super().stop()

    # ---------------------------------------------------------------- state

    def put_job(self, job_id: str, *, raw: bool = False, **fields: Any) -> None:
        """Create or replace a job. Fields use ICE's response names; fields not given are omitted.

        ICE sends every field as a string, so values are turned into strings; with ``raw``
        they are served exactly as given (any JSON value: a hostile answer for the fuzzers).
        """
        job = self._check_fields(fields, raw=raw)
        with self._lock:
            self._jobs.pop(job_id, None)  # a replaced job moves to the end, like a new one
            self._jobs[job_id] = job

    def update_job(self, job_id: str, **fields: str) -> None:
        job = self._check_fields(fields)
        with self._lock:
            if job_id not in self._jobs:
                raise KeyError(job_id)
            self._jobs[job_id].update(job)

    def job(self, job_id: str) -> Dict[str, str]:
        with self._lock:
            return dict(self._jobs[job_id])

    @staticmethod
    def _check_fields(fields: Dict[str, Any], *, raw: bool = False) -> Dict[str, Any]:
        unknown = set(fields) - set(ICE_FIELDS)
        if unknown:
            raise ValueError(f"unknown ICE job fields {sorted(unknown)}; use {ICE_FIELDS}")
        return dict(fields) if raw else {name: str(value) for name, value in fields.items()}

    # ---------------------------------------------------------------- faults and records

    def fail_next(self, count: int, *, status: int = 400, code: str = "Throttling.User",
                  message: str = "Request was denied due to user flow control.") -> None:
        """The next ``count`` API calls (after authentication) answer this error."""
        self._add_faults(count, (status, code, message))

    def throttle_next(self, count: int) -> None:
        self.fail_next(count)

    def server_error_next(self, count: int, status: int = 503) -> None:
        if status == 500:
            code, message = "InternalError", "The request processing has failed due to some unknown error."
        else:
            code, message = "ServiceUnavailable", "The request has failed due to a temporary failure of the server."
        self.fail_next(count, status=status, code=code, message=message)

    @property
    def calls(self) -> List[ApiCall]:
        return self._recorded_calls()

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    # ---------------------------------------------------------------- callbacks: the setting

    def set_callback(self, url: Optional[str], auth_key: Optional[str] = None, *,
                     event_types: Iterable[str] = (URL_UPLOAD_EVENT,), queue_name: Optional[str] = None,
                     auth_switch: Optional[str] = None) -> None:
        """Replace the callback setting, as ICE's SetEventCallback does; ``None`` (and no queue) removes it.

        ``queue_name`` instead of ``url``: an MNS setting. ``auth_key`` None turns ICE's AuthSwitch off. The key
        is not checked against ICE's rules here (the SetEventCallback action refuses what ICE refuses).
        """
        if url is None and queue_name is None:
            setting = None
        elif queue_name is not None:
            setting = CallbackSetting(url, auth_key, tuple(event_types), MNS_CALLBACK, queue_name, auth_switch)
        else:
            setting = CallbackSetting(url, auth_key, tuple(event_types), auth_switch=auth_switch)
        with self._callback_lock:
            self._callback_setting = setting

    @property
    def callback_setting(self) -> Optional[CallbackSetting]:
        with self._callback_lock:
            return self._callback_setting

    # ---------------------------------------------------------------- callbacks: finishing jobs

    def finish_job(self, job_id: str, status: str = "Normal", *, media_id: Optional[str] = None,
                   file_size: Optional[Union[int, str]] = None, error_code: Optional[str] = None,
                   error_message: Optional[str] = None) -> None:
        """Finish a job as ICE does, then call back (in the background; this returns at once).

        The job gets ``status`` and a ``CompleteTime`` (now, UTC, ICE's "YYYY-MM-DD HH:MM:SS"). A success
        keeps or gets a ``MediaId`` and a ``FileSize`` and carries ErrorCode "200" / ErrorMessage "Success",
        as ICE's reference answer does; a failure (a status with FAIL in it) gets ``error_code`` and
        ``error_message`` (VOD's URLInvalidError by default). Raises ``KeyError`` for an unknown job.
        """
        if not isinstance(status, str) or not status:
            raise ValueError(f"status must be a non-empty string, not {status!r}")
        finished_at = time.time()
        failed = is_failure(status)
        with self._lock:
            job = self._jobs[job_id]
            update = {"Status": status, "CompleteTime": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(finished_at))}
            if media_id is not None or not failed:
                update["MediaId"] = media_id or job.get("MediaId") or uuid.uuid4().hex
            if failed:
                update["ErrorCode"] = error_code or DEFAULT_ERROR_CODE
                update["ErrorMessage"] = error_message or DEFAULT_ERROR_MESSAGE
            else:
                size = file_size if file_size is not None else job.get("FileSize") or DEFAULT_FILE_SIZE
                update["FileSize"] = str(size)
                update["ErrorCode"], update["ErrorMessage"] = "200", "Success"
            job.update(update)
            finished = dict(job)
        self._call_back(job_id, finished, finished_at)

    def finish_job_in(self, job_id: str, delay_s: float, status: str = "Normal", **finish: Any) -> None:
        """Finish a job ``delay_s`` seconds from now (arguments as :meth:`finish_job`); call it once per job
        for a schedule of several. Raises ``KeyError`` now for a job that does not exist, ``RuntimeError``
        once the emulator is stopped."""
        if delay_s < 0:
            raise ValueError(f"delay_s must not be negative, not {delay_s!r}")
        self.job(job_id)
        with self._callback_lock:
            if self._callbacks_stopped.is_set():
                raise RuntimeError("the emulator is stopped: start it again to schedule finishes")
            self._schedule_seq += 1
            heapq.heappush(self._schedule, (time.monotonic() + delay_s, self._schedule_seq, job_id,
                                            {"status": status, **finish}))
            self._scheduled_finishes[job_id] = self._scheduled_finishes.get(job_id, 0) + 1
            if self._scheduler is None or not self._scheduler.is_alive():
                self._scheduler = threading.Thread(target=self._run_schedule, name="ice-finish-schedule",
                                                   daemon=True)
                self._scheduler.start()
            self._callback_lock.notify_all()

    # ---------------------------------------------------------------- callbacks: what happened

    @property
    def callback_attempts(self) -> List[CallbackAttempt]:
        """Every attempt, in the order they ended."""
        with self._callback_lock:
            return list(self._attempt_log)

    @property
    def callback_deliveries(self) -> List[CallbackDelivery]:
        """Every callback message, in the order the jobs finished."""
        with self._callback_lock:
            return [delivery.snapshot() for delivery in self._deliveries]

    def wait_for_callback(self, job_id: str, timeout_s: float = 10.0) -> CallbackDelivery:
        """The job's latest delivery once it is settled (delivered, dropped or stopped) and no finish of
        the job is still scheduled. ``LookupError`` if no callback for the job is sent or to come (no
        setting, or the job never finished); ``TimeoutError`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._callback_lock:
            while True:
                deliveries = [delivery for delivery in self._deliveries if delivery.job_id == job_id]
                scheduled = self._scheduled_finishes.get(job_id, 0)
                if not deliveries and not scheduled:
                    raise LookupError(f"no callback for job {job_id} was sent and none is scheduled")
                if not scheduled and deliveries[-1].outcome != PENDING:
                    return deliveries[-1].snapshot()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"the callback for job {job_id} is not settled after {timeout_s} s "
                                       f"({scheduled} finishes scheduled)")
                self._callback_lock.wait(remaining)

    def wait_for_callbacks(self, timeout_s: float = 30.0) -> List[CallbackDelivery]:
        """Every delivery, once all are settled and no finish is scheduled (for benchmarks)."""
        deadline = time.monotonic() + timeout_s
        with self._callback_lock:
            while self._schedule or any(delivery.outcome == PENDING for delivery in self._deliveries):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"callbacks are not settled after {timeout_s} s")
                self._callback_lock.wait(remaining)
            return [delivery.snapshot() for delivery in self._deliveries]

    def reset_callbacks(self) -> None:
        """Forget settled deliveries and their attempts (pending ones and the schedule are kept)."""
        with self._callback_lock:
            self._deliveries = [delivery for delivery in self._deliveries if delivery.outcome == PENDING]
            kept = {delivery.delivery_id for delivery in self._deliveries}
            self._attempt_log = [attempt for attempt in self._attempt_log if attempt.delivery_id in kept]

    # ---------------------------------------------------------------- callbacks: delivery

    def _call_back(self, job_id: str, job: Dict[str, Any], finished_at: float) -> None:
        """Start delivering the job's UploadByURLComplete message, if the setting asks for it."""
        with self._callback_lock:
            setting = self._callback_setting
            if setting is None or not setting.delivered or URL_UPLOAD_EVENT not in setting.event_types:
                return
            self._delivery_seq += 1
            delivery = _Delivery(self._delivery_seq, job_id, setting,
                                 json_body(self._callback_message(job_id, job, finished_at)))
            self._deliveries.append(delivery)
            if self._callbacks_stopped.is_set():
                delivery.outcome = STOPPED
                self._callback_lock.notify_all()
                return
            sender = threading.Thread(target=self._deliver, args=(delivery,),
                                      name=f"ice-callback-{delivery.delivery_id}", daemon=True)
            self._senders.add(sender)
            sender.start()

    def _callback_message(self, job_id: str, job: Dict[str, Any], finished_at: float) -> Dict[str, Any]:
        failed = is_failure(str(job.get("Status", "")))
        body: Dict[str, Any] = {"Status": "Fail" if failed else "Success"}
        if job.get("UploadURL") is not None:
            body["SourceURL"] = job["UploadURL"]
        if not failed and job.get("MediaId") is not None:
            body["MediaId"] = job["MediaId"]
        body["JobId"] = job_id
        if failed:
            body["ErrorCode"] = job.get("ErrorCode")
            body["ErrorMessage"] = job.get("ErrorMessage")
        if job.get("UserData"):
            body["UserData"] = job["UserData"]
        return {"EventType": URL_UPLOAD_EVENT, "UserId": self.user_id,
                "EventTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(finished_at)), "MessageBody": body}

    def _deliver(self, delivery: _Delivery) -> None:
        """Up to ``attempts`` POSTs, ``retry_interval_s`` apart, until one is answered 200 in time."""
        timings = self.callback_timings
        outcome = DROPPED
        try:
            for number in range(1, timings.attempts + 1):
                if number > 1 and self._callbacks_stopped.wait(timings.retry_interval_s):
                    outcome = STOPPED
                    break
                attempt = self._attempt(delivery, number)
                with self._callback_lock:
                    delivery.attempts.append(attempt)
                    self._attempt_log.append(attempt)
                    self._callback_lock.notify_all()
                if attempt.delivered:
                    outcome = DELIVERED
                    break
                if self._callbacks_stopped.is_set():
                    outcome = STOPPED
                    break
            if outcome == DROPPED:
                logger.info("callback for job %s dropped after %d attempts", delivery.job_id, timings.attempts)
        finally:
            with self._callback_lock:
                delivery.outcome = outcome
                self._senders.discard(threading.current_thread())
                self._callback_lock.notify_all()

    def _attempt(self, delivery: _Delivery, number: int) -> CallbackAttempt:
        setting, window = delivery.setting, self.callback_timings.window_s
        headers = {"Content-Type": "application/json", "User-Agent": f"{self.server_version} (callback)"}
        timestamp = None
        if setting.signed:
            timestamp = str(int(time.time()))
            headers["X-ICE-TIMESTAMP"] = timestamp
            headers["X-ICE-SIGNATURE"] = ice_signature(setting.url, timestamp, setting.auth_key)
        parts = urlsplit(setting.url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection_type = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        connection = connection_type(parts.hostname, parts.port, timeout=window)
        status: Optional[int] = None
        error: Optional[str] = None
        answered_at: Optional[float] = None
        with self._callback_lock:
            self._in_flight.add(connection)
        sent_at, started = time.time(), time.monotonic()
        try:
            connection.request("POST", target, body=delivery.body, headers=headers)
            response = connection.getresponse()
            response.read()
            status, answered_at = response.status, time.time()
            if time.monotonic() - started > window:  # a trickling answer can outlast the socket timeout
                error = f"answered after the {window:g} s window"
            elif status != 200:
                error = f"HTTP {status}"
        except socket.timeout:
            error = f"no answer within {window:g} s"
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, cut off by stop()
            error = f"{type(exc).__name__}: {exc}"
        finally:
            duration = time.monotonic() - started
            with self._callback_lock:
                self._in_flight.discard(connection)
            connection.close()
        return CallbackAttempt(delivery.delivery_id, delivery.job_id, number, setting.url, timestamp, sent_at,
                               answered_at, status, error, duration)

    def _run_schedule(self) -> None:
        """The scheduler thread: finishes each scheduled job when it is due, until ``stop``."""
        while True:
            with self._callback_lock:
                while True:
                    if self._callbacks_stopped.is_set():
                        return
                    now = time.monotonic()
                    if self._schedule and self._schedule[0][0] <= now:
                        _, _, job_id, finish = heapq.heappop(self._schedule)
                        break
                    self._callback_lock.wait(self._schedule[0][0] - now if self._schedule else None)
            try:
                self.finish_job(job_id, **finish)
            except Exception:  # noqa: BLE001 - a job removed since: the schedule goes on
                logger.exception("scheduled finish of job %s failed", job_id)
            finally:
                with self._callback_lock:
                    left = self._scheduled_finishes.get(job_id, 1) - 1
                    if left > 0:
                        self._scheduled_finishes[job_id] = left
                    else:
                        self._scheduled_finishes.pop(job_id, None)
                    self._callback_lock.notify_all()

    def _stop_callbacks(self) -> None:
        with self._callback_lock:
            self._callbacks_stopped.set()
            self._schedule.clear()
            self._scheduled_finishes.clear()
            self._callback_lock.notify_all()
            threads = [thread for thread in (self._scheduler, *self._senders) if thread is not None]
            connections = list(self._in_flight)
        for connection in connections:  # wakes an attempt waiting for its answer
            if connection.sock is not None:
                try:
                    connection.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout=self.callback_timings.window_s + 1.0)

    # ---------------------------------------------------------------- request handling (OpenApiEmulator)

    def _call_fields(self, params: Dict[str, str]) -> Dict[str, Any]:
        return {"job_ids": tuple(split_list(params.get("JobIds"))),
                "upload_urls": tuple(unquote(item) for item in split_list(params.get("UploadURLs")))}

    def _call(self, action: str, params: Dict[str, str],
              fields: Dict[str, Any]) -> Tuple[Dict[str, Any], Optional[str]]:
        fault = self._next_fault()
        if fault is not None:
            raise ApiError(*fault)
        if action == "GetUrlUploadInfos":
            return self._get_url_upload_infos(fields["job_ids"], fields["upload_urls"]), None
        if action == "GetEventCallback":
            return self._get_event_callback(), None
        if action == "SetEventCallback":
            return self._set_event_callback(params), None
        return self._upload_media_by_url(fields["upload_urls"], params.get("UserData")), None

    # ---------------------------------------------------------------- actions

    def _get_url_upload_infos(self, job_ids: Sequence[str], upload_urls: Sequence[str]) -> Dict[str, Any]:
        if job_ids:
            keys, by_url = job_ids, False
        elif upload_urls:
            keys, by_url = upload_urls, True
        else:
            raise ApiError(400, "MissingParameter", "The input parameter \"JobIds or UploadURLs\" that is "
                           "mandatory for processing this request is not supplied.")
        if len(keys) > MAX_JOB_QUERY:
            name = "UploadURLs" if by_url else "JobIds"
            raise ApiError(400, "InvalidParameter",
                           f"The parameter {name} is invalid: at most {MAX_JOB_QUERY} items, got {len(keys)}.")
        infos: List[Dict[str, str]] = []
        missing: List[str] = []
        with self._lock:
            for key in dedupe(keys):
                if by_url:
                    found = [(job_id, job) for job_id, job in self._jobs.items() if job.get("UploadURL") == key]
                else:
                    found = [(key, self._jobs[key])] if key in self._jobs else []
                if not found:
                    missing.append(key)
                infos.extend({"JobId": job_id, **job} for job_id, job in found)
        if self.nonexists_style == "stringified" and missing:
            non_exists: List[str] = [repr(missing)]
        else:
            non_exists = missing
        return {"NonExists": non_exists, "URLUploadInfoList": infos}

    def _get_event_callback(self) -> Dict[str, Any]:
        """The setting as ICE answers it: AuthSwitch and AuthKey only for HTTP; nothing at all when unset."""
        setting = self.callback_setting
        if setting is None:
            return {}
        answer: Dict[str, Any] = {"CallbackType": setting.callback_type, "EventTypeList": ",".join(setting.event_types)}
        if setting.callback_type == MNS_CALLBACK:
            answer["CallbackQueueName"] = setting.queue_name
            return answer
        answer.update({"CallbackURL": setting.url, "AuthSwitch": setting.auth_switch})
        if setting.auth_key:
            answer["AuthKey"] = setting.auth_key
        return answer

    def _set_event_callback(self, params: Dict[str, str]) -> Dict[str, Any]:
        """Replace the setting after ICE's checks; an error never quotes the AuthKey."""
        url, queue = params.get("CallbackURL") or None, params.get("CallbackQueueName") or None
        callback_type = params.get("CallbackType") or (HTTP_CALLBACK if url else MNS_CALLBACK if queue else None)
        if callback_type is None:
            raise _missing("CallbackType")
        if callback_type not in (HTTP_CALLBACK, MNS_CALLBACK):
            raise _invalid("CallbackType", f"it must be {HTTP_CALLBACK} or {MNS_CALLBACK}")
        events = dedupe(split_list(params.get("EventTypeList")))
        if not events:
            raise _missing("EventTypeList")
        unknown = [event for event in events if event not in ICE_EVENT_TYPES]
        if unknown:
            raise _invalid("EventTypeList", f"unknown event type(s) {', '.join(unknown)}")
        if callback_type == MNS_CALLBACK:
            if queue is None:
                raise _missing("CallbackQueueName")
            problem = queue_name_problem(queue)
            if problem:
                raise _invalid("CallbackQueueName", problem)
            self.set_callback(None, event_types=events, queue_name=queue)
            return {"Success": True}
        if url is None:
            raise _missing("CallbackURL")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _invalid("CallbackURL", "it must be an http(s) URL with a host")
        if len(url.encode("utf-8")) > MAX_CALLBACK_URL_BYTES:
            raise _invalid("CallbackURL", f"at most {MAX_CALLBACK_URL_BYTES} bytes")
        key = params.get("AuthKey") or None
        switch = params.get("AuthSwitch") or ("on" if key else "off")
        if switch not in ("on", "off"):
            raise _invalid("AuthSwitch", "it must be on or off")
        if key is not None:
            problem = auth_key_problem(key)
            if problem:
                raise _invalid("AuthKey", problem)
        elif switch == "on":
            raise _missing("AuthKey")
        self.set_callback(url, key, event_types=events, auth_switch=switch)
        return {"Success": True}

    def _upload_media_by_url(self, upload_urls: Sequence[str], user_data: Optional[str]) -> Dict[str, Any]:
        if not upload_urls:
            raise ApiError(400, "MissingParameter", "The input parameter \"UploadURLs\" that is mandatory for "
                           "processing this request is not supplied.")
        if len(upload_urls) > MAX_UPLOAD_URLS:
            raise ApiError(400, "InvalidParameter",
                           f"The parameter UploadURLs is invalid: at most {MAX_UPLOAD_URLS} URLs, "
                           f"got {len(upload_urls)}.")
        created = utc_now_iso()
        upload_jobs = []
        with self._lock:
            for url in upload_urls:
                job_id, media_id = uuid.uuid4().hex, uuid.uuid4().hex
                job = {"UploadURL": url, "Status": "PENDING", "CreationTime": created, "MediaId": media_id}
                if user_data:
                    job["UserData"] = user_data
                self._jobs[job_id] = job
                upload_jobs.append({"JobId": job_id, "SourceURL": url, "MediaId": media_id})
        if self.auto_finish_s is not None:
            for upload_job in upload_jobs:
                self.finish_job_in(upload_job["JobId"], self.auto_finish_s)
        return {"UploadJobs": upload_jobs}


def _missing(name: str) -> ApiError:
    return ApiError(400, "MissingParameter", f"The input parameter \"{name}\" that is mandatory for processing "
                    "this request is not supplied.")


def _invalid(name: str, why: str) -> ApiError:
    return ApiError(400, "InvalidParameter", f"The parameter {name} is invalid: {why}.")


# ------------------------------------------------------------------ command line


def build(argv: Optional[List[str]] = None) -> IceEmulator:
    """The emulator the command line describes, seeded and keyed, not yet started."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.ice", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0: any free port (default 8080)")
    parser.add_argument("--access-key-id", default="local-ak")
    parser.add_argument("--access-key-secret", default="local-secret")
    parser.add_argument("--security-token", default=None, help="makes the key an STS key")
    parser.add_argument("--seed", default=None, help="JSON list of jobs: {\"JobId\": ..., ICE fields...}")
    parser.add_argument("--sample-jobs", action="store_true",
                        help="seed the jobs of make local and the sample events (tests/scenario.py)")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--nonexists-style", choices=NONEXISTS_STYLES, default="list")
    parser.add_argument("--callback-url", default=None, help="where finished jobs are called back (ICE's CallbackURL)")
    parser.add_argument("--callback-key", default=None, help="the AuthKey callbacks are signed with (AuthSwitch on)")
    parser.add_argument("--finish-after", type=float, default=None, metavar="SECONDS",
                        help="jobs created by UploadMediaByURL finish successfully this long after")
    parser.add_argument("--callback-window", type=float, default=ICE_CALLBACK_TIMINGS.window_s, metavar="SECONDS",
                        help="how long a callback waits for its 200 (ICE: 3)")
    parser.add_argument("--callback-retry-interval", type=float, default=ICE_CALLBACK_TIMINGS.retry_interval_s,
                        metavar="SECONDS", help="the pause between attempts (ICE: 1)")
    args = parser.parse_args(argv)
    if args.callback_key is not None and args.callback_url is None:
        parser.error("--callback-key needs --callback-url")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0-65535, got {args.port}")
    try:
        timings = CallbackTimings(args.callback_window, args.callback_retry_interval)
        emulator = IceEmulator(args.host, args.port, nonexists_style=args.nonexists_style,
                               callback_url=args.callback_url, callback_auth_key=args.callback_key,
                               callback_timings=timings, auto_finish_s=args.finish_after)
    except ValueError as error:
        parser.error(str(error))
    emulator.add_access_key(args.access_key_id, args.access_key_secret, args.security_token)
    emulator.latency_s = args.latency_ms / 1000.0
    if args.sample_jobs:
        from tests.scenario import seed_jobs  # the jobs make local seeds (standard library only, like this)

        _put_jobs(emulator, seed_jobs())
    if args.seed:
        with open(args.seed, encoding="utf-8") as handle:
            jobs = json.load(handle)
        if not isinstance(jobs, list):
            parser.error("the seed file must hold a JSON list of jobs")
        _put_jobs(emulator, jobs)
    return emulator


def _put_jobs(emulator: IceEmulator, jobs: Iterable[Dict[str, Any]]) -> None:
    for job in jobs:
        fields = {name: str(value) for name, value in job.items() if name != "JobId"}
        emulator.put_job(str(job["JobId"]), **fields)


def start_lines(emulator: IceEmulator) -> List[str]:
    """What the command line prints once it listens: the endpoint on the first line (scripts read it
    there), then the environment that points the function or the command line at it."""
    keys = ", ".join(emulator.auth.access_key_ids())
    setting = emulator.callback_setting
    if setting is None:
        callbacks = "no callbacks"
    elif setting.delivered:
        callbacks = f"callbacks to {setting.url}, {'signed' if setting.signed else 'unsigned'}"
    else:
        callbacks = f"callbacks to the MNS queue {setting.queue_name} (not delivered here)"
    with emulator._lock:
        job_ids = list(emulator._jobs)
    lines = [f"ICE emulator listening on {emulator.endpoint} (access keys: {keys}; {len(job_ids)} jobs; "
             f"{callbacks})", "Point the function or the command line at it with:",
             f"  export ICE_ENDPOINT={emulator.endpoint}", "  export ICE_REGION=cn-shanghai"]
    for key_id, (secret, token) in sorted(emulator.auth.keys.items()):
        lines.append(f"  export ALIBABA_CLOUD_ACCESS_KEY_ID={key_id}")
        lines.append(f"  export ALIBABA_CLOUD_ACCESS_KEY_SECRET={secret}")
        if token:
            lines.append(f"  export ALIBABA_CLOUD_SECURITY_TOKEN={token}")
    if job_ids:
        lines.append(f"then, for instance: .venv/bin/ice-upload-sync check {job_ids[0]}")
    lines.append("Ctrl-C stops it.")
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    emulator = build(argv)
    try:
        emulator.start()
    except OSError as error:  # the port is taken (EADDRINUSE), or the host is not this machine's
        reason = "the port is already in use" if error.errno == errno.EADDRINUSE else (error.strerror or str(error))
        print(f"ICE emulator: cannot listen on {emulator.host}:{emulator._port}: {reason}; choose another "
              "port: make emulator PORT=9000 (or --port 9000; --port 0 takes any free one)", file=sys.stderr)
        return 1
    emulator.serve_until_interrupted("\n".join(start_lines(emulator)).replace("{", "{{").replace("}", "}}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
