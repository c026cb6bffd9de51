"""Completion events (contract section 9): a signed CloudEvent per job and state, owed until delivered.

The parts, each usable alone:

- ``build_event(record, region)``: the CloudEvents 1.0 structured-JSON event, its body encoded
  once. ``id`` is ``event_id(job_id, state)``: the first 32 hex digits of SHA-256 of
  ``"<job_id>\\n<state>"``. So a repeat (a retry, a second sweep, a duplicate callback) carries
  the same id and receivers deduplicate on it; a different state of the same job is a
  different event. Hex digits only: no ``.`` (the Standard Webhooks signed string is
  ``{id}.{timestamp}.{body}``) and valid as an EventBridge event id (letters, digits,
  hyphens). ``subject`` and ``type`` carry the job ID and the state in readable form.
- ``webhook_headers(...)``: the Standard Webhooks headers. ``webhook-timestamp`` is the time of
  the attempt, not of the event (receivers refuse timestamps more than 5 minutes off, and a
  retry may come hours later); ``webhook-signature`` holds one ``v1,<base64>`` per key of
  ``NOTIFY_SECRET``, space-separated, so rotation never breaks a receiver.
- ``deliver(event, endpoints, secrets, deadline=..., timeout_s=...)``: one POST per endpoint,
  in parallel, never past ``deadline``, never raising; each answer classified:
  ``delivered`` (2xx), ``retry`` (timeout, connection error, 408, 429, 5xx), ``give_up_after_tries``
  (any other answer: the caller gives up after ``GIVE_UP_AFTER_TRIES``), ``not_tried`` (no time
  left). Redirects are not followed and count as ``give_up_after_tries``: urllib would resend a
  302's POST as a bodiless GET, and following one sends the signed record to a host nobody
  configured; NOTIFY_URL must be the final URL (Standard Webhooks: "3xx: failure").
  A 401 / 403 (a receiver refusing our signature: the two sides hold different secrets) is
  ``give_up_after_tries`` too: sending the same bytes for three days cannot fix it.
- The outbox: ``Owed`` is what a store keeps per job while an event is owed (one entry per
  job; a newer state's entry replaces the older one; the claim of the invocation sending it),
  ``advance`` turns a delivery's result into the next entry (or None: settled) with
  ``retry_delay_s``'s backoff, ``entry_status`` tells whether an entry still matches its record.

Pure except ``deliver`` (and ``attempt``, which calls it). Logs name the job, the event id, the
endpoint's host and the status; never the secret, a signature, or the endpoint's query.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import random
import re
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Callable, Collection, Dict, List, Mapping, Optional, Protocol, Sequence, Tuple
from urllib.parse import urlsplit

from .config import NotifyEndpoint, WebhookSecret
from .records import STATES, JobRecord, UnencodableRecord, format_time, parse_time

logger = logging.getLogger(__name__)

SPECVERSION = "1.0"
CONTENT_TYPE = "application/cloudevents+json"
DATA_CONTENT_TYPE = "application/json"
USER_AGENT = "ice-upload-sync"

# deliver's outcome per endpoint
DELIVERED = "delivered"
RETRY = "retry"
GIVE_UP_AFTER_TRIES = "give_up_after_tries"
NOT_TRIED = "not_tried"
SKIPPED = "skipped: it failed earlier in this invocation"

GIVE_UP_AFTER_TRIES_COUNT = 3  # answers other than 2xx / 408 / 429 / 5xx: given up after this many tries
DEFAULT_TIMEOUT_S = 10.0  # one request; Standard Webhooks suggests 15-30 s, a sweep has many to send
MIN_REQUEST_S = 0.05  # less time than this left before the deadline: not worth opening a connection
FIRST_RETRY_S = 60.0
MAX_RETRY_S = 3600.0
# An entry whose record is not (yet) in its state: the writer owes before it writes the record,
# so within this time the record may still be on its way; after it, the write never happened.
STALE_ENTRY_GRACE = timedelta(minutes=15)

_ERROR_TEXT_MAX = 200


def event_id(job_id: str, state: str) -> str:
    """Stable for this job and this state; see the module's docstring."""
    return hashlib.sha256(f"{job_id}\n{state}".encode("utf-8", "surrogatepass")).hexdigest()[:32]


def event_type(state: str) -> str:
    return f"ice.upload.{state}"


def event_source(region: str) -> str:
    return f"ice-upload-sync/{region}"


@dataclass(frozen=True)
class CloudEvent:
    """A CloudEvents 1.0 event in structured JSON mode; ``body`` is exactly what is sent and signed."""

    id: str
    source: str
    type: str
    subject: str  # the job ID
    time: str  # the record's updated_at
    data: Mapping[str, Any] = field(repr=False)  # the record (contract section 4)
    body: bytes = field(repr=False)
    specversion: str = SPECVERSION
    datacontenttype: str = DATA_CONTENT_TYPE

    @property
    def job_id(self) -> str:
        return self.subject

    @property
    def state(self) -> str:
        return str(self.data["state"])

    def to_dict(self) -> Dict[str, Any]:
        return _envelope(self.id, self.source, self.type, self.subject, self.time, self.data)


def _envelope(identifier: str, source: str, kind: str, subject: str, moment: str,
              data: Mapping[str, Any]) -> Dict[str, Any]:
    return {"specversion": SPECVERSION, "id": identifier, "source": source, "type": kind, "subject": subject,
            "time": moment, "datacontenttype": DATA_CONTENT_TYPE, "data": data}


def build_event(record: JobRecord, region: str) -> CloudEvent:
    """The event announcing that ``record`` is in its state. Raises ``UnencodableRecord`` for a
    record that is not strict JSON in UTF-8 (normalization makes that a bug, never ICE's doing)."""
    data = record.to_dict()
    identifier, source, kind = event_id(record.job_id, record.state), event_source(region), event_type(record.state)
    envelope = _envelope(identifier, source, kind, record.job_id, record.updated_at, data)
    try:
        body = json.dumps(envelope, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except (ValueError, TypeError, RecursionError) as exc:
        raise UnencodableRecord(f"the event of job {record.job_id} is not strict JSON in UTF-8 "
                                f"({type(exc).__name__}: {str(exc)[:120]})") from None
    return CloudEvent(identifier, source, kind, record.job_id, record.updated_at, data, body)


# ---------------------------------------------------------------- Standard Webhooks signature


def sign(message_id: str, timestamp: int, body: bytes, secrets: Sequence[WebhookSecret]) -> str:
    """``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` per key,
    space-separated (how Standard Webhooks rotates keys; verifiers accept any one that matches)."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return " ".join("v1," + base64.b64encode(hmac.new(secret.key, signed, hashlib.sha256).digest()).decode("ascii")
                    for secret in secrets)


def webhook_headers(event: CloudEvent, secrets: Sequence[WebhookSecret], timestamp: int) -> Dict[str, str]:
    """The request's headers. Without secrets (allowed for loopback endpoints only) no signature."""
    headers = {
        "Content-Type": CONTENT_TYPE,
        "User-Agent": USER_AGENT,
        "webhook-id": event.id,
        "webhook-timestamp": str(timestamp),
    }
    if secrets:
        headers["webhook-signature"] = sign(event.id, timestamp, event.body, secrets)
    return headers


# ---------------------------------------------------------------- delivery


class Target(Protocol):
    """Where events go: a ``NOTIFY_URL`` endpoint (``config.NotifyEndpoint``, POSTed to here) or
    the ``NOTIFY_EVENTBRIDGE`` bus (``eventbridge.EventBridgeBus``, whose ``put`` sends and
    classifies). ``key`` is what the outbox records once it needs nothing more; ``host`` names
    it in logs (never a secret or a URL's query)."""

    @property
    def key(self) -> str: ...

    @property
    def host(self) -> str: ...


def classify_status(status: int) -> str:
    if 200 <= status <= 299:
        return DELIVERED
    if status in (408, 429) or status >= 500:
        return RETRY
    return GIVE_UP_AFTER_TRIES  # other 4xx, redirects, 1xx we never asked for


@dataclass(frozen=True)
class EndpointResult:
    """What one endpoint answered to one attempt. ``error`` is short and safe to log and store."""

    endpoint: Target
    outcome: str  # DELIVERED, RETRY, GIVE_UP_AFTER_TRIES or NOT_TRIED
    status: Optional[int] = None
    error: Optional[str] = None
    retry_after_s: Optional[float] = None  # the answer's Retry-After, when it had one
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class DeliveryResult:
    event_id: str
    job_id: str
    results: Tuple[EndpointResult, ...]

    @property
    def delivered(self) -> bool:
        return all(result.outcome == DELIVERED for result in self.results)


def deliver(event: CloudEvent, endpoints: Sequence[Target], secrets: Sequence[WebhookSecret], *,
            deadline: float, timeout_s: float = DEFAULT_TIMEOUT_S, skip: Collection[str] = (),
            clock: Callable[[], float] = time.monotonic, wall_clock: Callable[[], float] = time.time,
            ) -> DeliveryResult:
    """Send ``event`` to every target at once (a POST to each endpoint, ``PutEvents`` to a bus);
    return by ``deadline`` (a ``clock()`` time) whatever happens.

    Each request is bounded by ``min(timeout_s, time left)`` for each socket operation, and the
    whole call by ``deadline``: requests run in threads, and one still running then (a DNS
    lookup hanging, an endpoint trickling its answer) is reported ``retry`` and left to end by
    its own timeout; whatever it gets is ignored (at least once: the event is sent again).
    Targets whose ``key`` is in ``skip`` (they failed earlier in this invocation) are
    ``not_tried``: a target that is down never holds the others' events back. Never raises.
    """
    timestamp = int(wall_clock())
    headers = webhook_headers(event, secrets, timestamp)
    slots: List[Optional[EndpointResult]] = [None] * len(endpoints)
    workers: List[Optional[threading.Thread]] = []
    for index, endpoint in enumerate(endpoints):
        remaining = deadline - clock()
        if endpoint.key in skip:
            slots[index] = EndpointResult(endpoint, NOT_TRIED, error=SKIPPED)
            workers.append(None)
            continue
        if remaining < MIN_REQUEST_S:
            slots[index] = EndpointResult(endpoint, NOT_TRIED, error="no time left before the deadline")
            workers.append(None)
            continue
        worker = threading.Thread(target=_deliver_to, args=(slots, index, endpoint, event, headers,
                                                            min(timeout_s, remaining), clock),
                                  name=f"notify-{endpoint.host}", daemon=True)
        try:
            worker.start()
        except RuntimeError:  # "can't start new thread": the instance is at its limit; try later
            slots[index] = EndpointResult(endpoint, NOT_TRIED, error="no thread to send with")
            worker = None
        workers.append(worker)
    results = []
    for index, (endpoint, worker) in enumerate(zip(endpoints, workers)):
        if worker is not None:
            worker.join(max(0.0, deadline - clock()))
        result = slots[index] if worker is None or not worker.is_alive() else None
        if result is None:
            result = EndpointResult(endpoint, RETRY, error="no answer before the deadline")
        results.append(result)
        _log_result(event, result)
    return DeliveryResult(event.id, event.job_id, tuple(results))


def _deliver_to(slots: List[Optional[EndpointResult]], index: int, endpoint: Target, event: CloudEvent,
                headers: Mapping[str, str], timeout_s: float, clock: Callable[[], float]) -> None:
    started = clock()
    outcome: Optional[str] = None
    try:
        if isinstance(endpoint, NotifyEndpoint):
            status, error, retry_after = _post(endpoint.url, event.body, headers, timeout_s)
        else:  # a bus (eventbridge.EventBridgeBus): its answer is classified by its own rules
            put = endpoint.put(event, timeout_s)
            outcome, status, error, retry_after = put.outcome, put.status, put.error, put.retry_after_s
    except Exception as exc:  # noqa: BLE001 - deliver never raises; the class name is enough to act on
        status, error, retry_after, outcome = None, f"unexpected {type(exc).__name__}", None, None
    if outcome is None:
        outcome = RETRY if status is None else classify_status(status)
    if status is not None and outcome != DELIVERED and error is None:
        error = f"HTTP {status}"
    slots[index] = EndpointResult(endpoint, outcome, status, error and error[:_ERROR_TEXT_MAX],
                                  retry_after if outcome == RETRY else None, clock() - started)


def _post(url: str, body: bytes, headers: Mapping[str, str],
          timeout_s: float) -> Tuple[Optional[int], Optional[str], Optional[float]]:
    """(status, error, retry_after_s); status None when no HTTP answer came."""
    # Imported here, not with the module: urllib.request costs about 28 ms of CPU (python3.10,
    # measured on a bare interpreter; nothing once the ICE SDK is loaded), and every path
    # imports this module while few of them deliver.
    import http.client
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with _opener().open(request, timeout=timeout_s) as response:
            return response.status, None, None
    except urllib.error.HTTPError as answer:  # every status urllib does not call success, 3xx included
        with answer:
            status, error = answer.code, None
            if 300 <= status <= 399:
                location = urlsplit(answer.headers.get("Location") or "").netloc or "elsewhere"
                error = f"HTTP {status} redirect to {location} not followed: NOTIFY_URL must be the final URL"
            return status, error, _retry_after_s(answer.headers.get("Retry-After"))
    except urllib.error.URLError as exc:  # no answer: connecting failed (urllib wraps the reason)
        return None, _transport_error(exc.reason, timeout_s), None
    except (http.client.HTTPException, OSError) as exc:  # a timeout or reset while reading the answer
        return None, _transport_error(exc, timeout_s), None


def _transport_error(reason: Any, timeout_s: float) -> str:
    import socket
    import ssl

    if isinstance(reason, (socket.timeout, TimeoutError)):
        return f"timed out after {timeout_s:.1f} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return "host name not resolved"
    if isinstance(reason, ssl.SSLError):
        return f"TLS: {getattr(reason, 'reason', None) or type(reason).__name__}"
    if isinstance(reason, BaseException):
        return f"connection error: {type(reason).__name__}"
    return f"connection error: {str(reason)[:80]}"


_opener_lock = threading.Lock()
_opener_instance: Any = None


def _opener() -> Any:
    """urllib's opener without redirects (see the module's docstring) and without proxies from the
    environment (the function talks to the endpoints itself; a stray HTTPS_PROXY would otherwise
    carry every event, loopback ones included)."""
    global _opener_instance
    with _opener_lock:
        if _opener_instance is None:
            import urllib.request

            class RefuseRedirects(urllib.request.HTTPRedirectHandler):
                def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                    return None  # urllib then raises HTTPError with the 3xx status

            _opener_instance = urllib.request.build_opener(urllib.request.ProxyHandler({}), RefuseRedirects())
        return _opener_instance


def _retry_after_s(value: Optional[str]) -> Optional[float]:
    """Retry-After as seconds from now (delta-seconds or an HTTP date), at most ``MAX_RETRY_S``."""
    text = (value or "").strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return min(float(text), MAX_RETRY_S)
    from email.utils import parsedate_to_datetime  # half this module's import time (6 ms); rarely needed

    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None or moment.tzinfo is None:
        return None
    return min(max(0.0, moment.timestamp() - time.time()), MAX_RETRY_S)


def _log_result(event: CloudEvent, result: EndpointResult) -> None:
    if result.outcome == DELIVERED:
        logger.info("notify: job %s %s (event %s) delivered to %s: HTTP %s in %.0f ms", event.job_id,
                    event.type, event.id, result.endpoint.host, result.status, result.elapsed_s * 1000)
    else:  # a skipped target was logged when it failed; once per event would flood the log
        logger.log(logging.DEBUG if result.error == SKIPPED else logging.WARNING,
                   "notify: job %s %s (event %s) not delivered to %s (%s): %s", event.job_id, event.type,
                   event.id, result.endpoint.host, result.outcome, result.error)


# ---------------------------------------------------------------- the outbox


class BadOutboxEntry(ValueError):
    """A stored outbox entry that is not one ``Owed.to_json`` wrote."""


_JOB_ID = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Owed:
    """An event the store owes: one per job, replaced when the job reaches a newer announced state.

    Times are ``YYYY-MM-DDTHH:MM:SSZ`` (UTC), so they sort as text. ``tries`` counts attempts
    that sent something (it sets the backoff); ``target_tries`` counts, per target ``key`` not
    yet done, the attempts that sent to that target (a target is given up after its own
    tries: one skipped while another was retried has not been tried); ``endpoints_done`` holds
    the ``key`` of every target that needs nothing more (it answered 2xx, or was given up): a
    retry goes only to the others.

    The claim (contract section 9: an invocation claims an entry before it sends it):
    ``claimed_until`` is when the claim of ``claimed_by`` (a token the claiming invocation
    drew) expires, "" when the entry is not claimed; a released entry keeps its last
    ``claimed_by``. Stores replace an entry only if it still has the ``claim_key`` the writer
    read (event, holder, expiry), so every write of an entry is told from the one before it.
    Entries written before claims existed have neither field: unclaimed.
    """

    job_id: str
    state: str
    event_id: str
    owed_since: str
    tries: int = 0
    next_attempt_at: str = ""  # "" (as built by for_record): owed_since, i.e. at once
    last_error: Optional[str] = None
    endpoints_done: Tuple[str, ...] = ()
    target_tries: Tuple[Tuple[str, int], ...] = ()  # (key, tries), sorted; absent in entries before it existed
    claimed_by: str = ""  # the holder's token ("": never claimed)
    claimed_until: str = ""  # when that claim expires ("": not claimed, or released)

    def __post_init__(self) -> None:
        if not self.next_attempt_at:
            object.__setattr__(self, "next_attempt_at", self.owed_since)

    @classmethod
    def for_record(cls, record: JobRecord, now: str) -> Owed:
        return cls(record.job_id, record.state, event_id(record.job_id, record.state), owed_since=now)

    def due(self, now: datetime) -> bool:
        return parse_time(self.next_attempt_at) <= now

    def pending_endpoints(self, endpoints: Sequence[Target]) -> Tuple[Target, ...]:
        done = set(self.endpoints_done)
        return tuple(endpoint for endpoint in endpoints if endpoint.key not in done)

    @property
    def claim_key(self) -> Tuple[str, str, str]:
        """What a compare-and-set of the entry compares: its event and its claim."""
        return self.event_id, self.claimed_by, self.claimed_until

    def claimable(self, now: datetime) -> bool:
        """Not claimed at ``now``: never claimed, released, or its holder's claim expired (a crash)."""
        return not self.claimed_until or parse_time(self.claimed_until) <= now

    def claimed_for(self, holder: str, until: datetime) -> Owed:
        return replace(self, claimed_by=holder, claimed_until=format_time(until))

    def released(self) -> Owed:
        """The claim given up (the holder's token stays, so this write differs from the claimed one)."""
        return replace(self, claimed_until="")

    def to_json(self) -> bytes:
        return json.dumps({
            "job_id": self.job_id, "state": self.state, "event_id": self.event_id, "owed_since": self.owed_since,
            "tries": self.tries, "next_attempt_at": self.next_attempt_at, "last_error": self.last_error,
            "endpoints_done": list(self.endpoints_done), "target_tries": dict(self.target_tries),
            "claimed_by": self.claimed_by, "claimed_until": self.claimed_until,
        }, ensure_ascii=True, separators=(",", ":")).encode("ascii")

    @classmethod
    def from_json(cls, raw: bytes) -> Owed:
        """Raises ``BadOutboxEntry`` saying what is wrong (never guessing a state or an id)."""
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadOutboxEntry(f"outbox entry is not JSON ({type(exc).__name__})") from None
        if not isinstance(data, dict):
            raise BadOutboxEntry("outbox entry is not a JSON object")
        job_id = data.get("job_id")
        if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
            raise BadOutboxEntry("outbox entry has no valid job_id")
        problems = []
        state, identifier = data.get("state"), data.get("event_id")
        if state not in STATES:
            problems.append("state")
        if not isinstance(identifier, str) or not identifier:
            problems.append("event_id")
        times = {}
        for name in ("owed_since", "next_attempt_at"):
            try:
                times[name] = format_time(parse_time(data.get(name)))  # type: ignore[arg-type]
            except (TypeError, ValueError, AttributeError):
                problems.append(name)
        tries = data.get("tries")
        if type(tries) is not int or tries < 0:
            problems.append("tries")
        last_error = data.get("last_error")
        if last_error is not None and not isinstance(last_error, str):
            problems.append("last_error")
        done = data.get("endpoints_done")
        if not isinstance(done, list) or not all(isinstance(key, str) for key in done):
            problems.append("endpoints_done")
        target_tries = data.get("target_tries", {})
        if not isinstance(target_tries, dict) or not all(
                isinstance(key, str) and type(count) is int and count >= 0 for key, count in target_tries.items()):
            problems.append("target_tries")
        claimed_by, claimed_until = data.get("claimed_by", ""), data.get("claimed_until", "")  # absent: unclaimed
        if not isinstance(claimed_by, str):
            problems.append("claimed_by")
        if claimed_until:
            try:
                claimed_until = format_time(parse_time(claimed_until))
            except (TypeError, ValueError, AttributeError):
                problems.append("claimed_until")
        elif claimed_until != "":
            problems.append("claimed_until")
        if problems:
            raise BadOutboxEntry(f"outbox entry of job {job_id} has bad {', '.join(problems)}")
        return cls(job_id, state, identifier, times["owed_since"], tries, times["next_attempt_at"], last_error,
                   tuple(done), tuple(sorted(target_tries.items())), claimed_by, claimed_until)


def owes_notification(before: Optional[JobRecord], after: JobRecord, states: Collection[str]) -> bool:
    """True when a write took the record into an announced state (the first record counts).

    A later record in the same state (a newer ``completed_at``, a rewrite) owes nothing new: its
    event would carry the same id, which receivers already have.
    """
    return after.state in states and (before is None or before.state != after.state)


# entry_status answers
DELIVER = "deliver"
WAIT = "wait"
DROP = "drop"
REOWE = "reowe"


def entry_status(entry: Owed, record: Optional[JobRecord], now: datetime, *, states: Collection[str] = (),
                 grace: timedelta = STALE_ENTRY_GRACE) -> str:
    """Whether to deliver ``entry`` now, given the record the store holds and ``NOTIFY_STATES``.

    - ``DELIVER``: the record is in the entry's state and the entry is due (build the event
      from this record, not from anything older).
    - ``WAIT``: not due; or the record is not in that state yet but may still be written (a
      store writes the entry before the record, so a crash between the two never loses an
      event).
    - after ``grace``, a record in another state: ``REOWE`` when that state is announced
      (replace the entry with ``Owed.for_record(record, now)``: two writers racing may leave
      the loser's entry behind the winner's record; a repeat at worst, same id), else ``DROP``
      (the write that owed it never happened).
    """
    if record is not None and record.state == entry.state:
        return DELIVER if entry.due(now) else WAIT
    if now - parse_time(entry.owed_since) < grace:
        return WAIT
    return REOWE if record is not None and record.state in states else DROP


def retry_delay_s(failed_tries: int, *, rand: Callable[[], float] = random.random) -> float:
    """Seconds before the next try after ``failed_tries`` failed ones: 1, 2, 4 ... minutes, at most
    an hour, each shortened by up to a fifth at random so retries of many events spread out."""
    ceiling = min(MAX_RETRY_S, FIRST_RETRY_S * 2 ** min(max(failed_tries, 1) - 1, 16))
    return ceiling * (1.0 - 0.2 * rand())


@dataclass(frozen=True)
class Progress:
    """What one attempt changed. ``entry`` is what the outbox keeps next; None: settled, remove it."""

    entry: Optional[Owed]
    delivered: Tuple[Target, ...] = ()
    given_up: Tuple[Target, ...] = ()
    failed: Tuple[Target, ...] = ()  # not delivered this time, tried again later
    unreachable: Tuple[Target, ...] = ()  # of ``failed``, those that answered ``retry``: down, not refusing this event

    @property
    def settled(self) -> bool:
        return self.entry is None


def advance(entry: Owed, result: DeliveryResult, *, now: datetime, max_age: timedelta,
            rand: Callable[[], float] = random.random) -> Progress:
    """The outbox entry after ``result``: the retry policy of contract section 9.

    - 2xx: that endpoint is done.
    - ``give_up_after_tries`` (4xx, 3xx): given up (done, logged as an error) on that target's
      ``GIVE_UP_AFTER_TRIES_COUNT``-th try, else tried again after the backoff.
    - ``retry`` (timeout, connection error, 408, 429, 5xx): tried again after the backoff (or
      the answer's Retry-After, when longer) until ``max_age`` after the entry was owed, then
      given up; the last try is moved to that limit rather than skipped past it.
    - ``not_tried``: nothing changes for that endpoint (no try is counted for it).

    The entry is settled (``entry`` None) when every endpoint in ``result`` is done.
    """
    if not any(item.outcome != NOT_TRIED for item in result.results):
        return Progress(entry)
    tries = entry.tries + 1
    own_tries = dict(entry.target_tries)
    done = list(entry.endpoints_done)
    delivered, given_up, failed, unreachable = [], [], [], []
    aged_out = now >= parse_time(entry.owed_since) + max_age
    errors, waits = [], []
    for item in result.results:
        key = item.endpoint.key
        if item.outcome == NOT_TRIED:
            failed.append(item.endpoint)
            continue
        own_tries[key] = own_tries.get(key, 0) + 1
        if item.outcome == DELIVERED:
            delivered.append(item.endpoint)
        elif (item.outcome == GIVE_UP_AFTER_TRIES and own_tries[key] >= GIVE_UP_AFTER_TRIES_COUNT) or \
                (item.outcome == RETRY and aged_out):
            given_up.append(item.endpoint)
            logger.error("notify: job %s %s (event %s) to %s given up after %d tries over %s: %s", entry.job_id,
                         event_type(entry.state), entry.event_id, item.endpoint.host, own_tries[key],
                         now - parse_time(entry.owed_since), item.error)
        else:
            failed.append(item.endpoint)
            if item.outcome == RETRY:
                unreachable.append(item.endpoint)
            errors.append(f"{item.endpoint.host}: {item.error}")
            waits.append(item.retry_after_s or 0.0)
            continue
        if key not in done:
            done.append(key)
    if not failed:
        return Progress(None, tuple(delivered), tuple(given_up))
    next_attempt = now + timedelta(seconds=max([retry_delay_s(tries, rand=rand), *waits]))
    limit = parse_time(entry.owed_since) + max_age
    if now < limit:  # retryable failures get one last try at the limit rather than none past it
        next_attempt = min(next_attempt, limit)
    updated = replace(entry, tries=tries, next_attempt_at=format_time(next_attempt),
                      last_error=("; ".join(errors)[:_ERROR_TEXT_MAX] or entry.last_error),
                      endpoints_done=tuple(done),
                      target_tries=tuple(sorted((key, count) for key, count in own_tries.items() if key not in done)))
    return Progress(updated, tuple(delivered), tuple(given_up), tuple(failed), tuple(unreachable))


def attempt(entry: Owed, record: JobRecord, *, region: str, endpoints: Sequence[Target],
            secrets: Sequence[WebhookSecret], deadline: float, now: datetime, max_age: timedelta,
            timeout_s: float = DEFAULT_TIMEOUT_S, skip: Collection[str] = ()) -> Progress:
    """One try of an entry that ``entry_status`` said to deliver: build, send, ``advance``.

    Sends only to the endpoints not yet done. With none left (NOTIFY_URL changed since the
    entry was owed), the entry is settled.
    """
    pending = entry.pending_endpoints(endpoints)
    if not pending:
        return Progress(None)
    result = deliver(build_event(record, region), pending, secrets, deadline=deadline, timeout_s=timeout_s,
                     skip=skip)
    return advance(entry, result, now=now, max_age=max_age)
