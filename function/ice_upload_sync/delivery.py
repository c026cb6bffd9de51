"""Sending one completion event to every target at once (contract section 9): never past a deadline, never raising.

A ``Target`` is where events go: a ``NOTIFY_URL`` endpoint (``webhook.Webhook``: a signed POST)
or the ``NOTIFY_EVENTBRIDGE`` bus (``eventbridge.EventBridgeBus``: ``PutEvents``). Each one
sends with ``send(event, timeout_s)`` and classifies its own answer into an ``Outcome``:

- ``delivered``: the target took the event (2xx; the bus: ``PutEvents`` accepted it);
- ``retry``: no answer (timeout, connection error), 408, 429, 5xx, or the bus saying it is busy;
- ``give_up_after_tries``: any other answer (the retry policy gives up after a few tries);
- ``not_tried``: ``deliver`` did not send (no time left, or the target failed earlier in this
  invocation).

What happens next (backoff, giving up) is ``notify.advance``'s to decide, not this module's.
Logs name the job, the event id, the target's host and the status; never a secret, a
signature, or an endpoint's query.
"""
from __future__ import annotations

import enum
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Collection, List, Optional, Protocol, Sequence, Tuple

from .cloudevent import CloudEvent

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 10.0  # one request; Standard Webhooks suggests 15-30 s, a sweep has many to send
MIN_REQUEST_S = 0.05  # less time than this left before the deadline: not worth opening a connection
SKIPPED = "skipped: it failed earlier in this invocation"

_ERROR_TEXT_MAX = 200


class TextEnum(str, enum.Enum):
    """A str enum that reads as its value in logs and messages, on every Python version."""

    def __str__(self) -> str:
        return str(self.value)


class Outcome(TextEnum):
    """What came of sending an event to one target (see the module's docstring)."""

    DELIVERED = "delivered"
    RETRY = "retry"
    GIVE_UP_AFTER_TRIES = "give_up_after_tries"
    NOT_TRIED = "not_tried"


DELIVERED = Outcome.DELIVERED
RETRY = Outcome.RETRY
GIVE_UP_AFTER_TRIES = Outcome.GIVE_UP_AFTER_TRIES
NOT_TRIED = Outcome.NOT_TRIED


def classify_status(status: int) -> Outcome:
    """An HTTP answer's outcome, for every target that speaks HTTP."""
    if 200 <= status <= 299:
        return DELIVERED
    if status in (408, 429) or status >= 500:
        return RETRY
    return GIVE_UP_AFTER_TRIES  # other 4xx, redirects, 1xx we never asked for


@dataclass(frozen=True)
class SendResult:
    """What one target's ``send`` came to. ``error`` is short and safe to log and store."""

    outcome: Outcome
    status: Optional[int] = None  # the HTTP status, when an answer came
    error: Optional[str] = None
    retry_after_s: Optional[float] = None  # how long the answer asked us to wait, when it did


class Target(Protocol):
    """Where events go. ``key`` is what the outbox records once the target needs nothing more;
    ``host`` names it in logs (never a secret or a URL's query)."""

    @property
    def key(self) -> str: ...

    @property
    def host(self) -> str: ...

    def send(self, event: CloudEvent, timeout_s: float) -> SendResult:
        """Send ``event``, each socket operation bounded by ``timeout_s``; never raise."""
        ...


@dataclass(frozen=True)
class EndpointResult:
    """What one target answered to one attempt. ``error`` is short and safe to log and store."""

    endpoint: Target
    outcome: Outcome
    status: Optional[int] = None
    error: Optional[str] = None
    retry_after_s: Optional[float] = None  # the answer's Retry-After, when it had one (``retry`` only)
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class DeliveryResult:
    event_id: str
    job_id: str
    results: Tuple[EndpointResult, ...]

    @property
    def delivered(self) -> bool:
        return all(result.outcome == DELIVERED for result in self.results)


def deliver(event: CloudEvent, targets: Sequence[Target], *, deadline: float, timeout_s: float = DEFAULT_TIMEOUT_S,
            skip: Collection[str] = (), clock: Callable[[], float] = time.monotonic) -> DeliveryResult:
    """Send ``event`` to every target at once; return by ``deadline`` (a ``clock()`` time) whatever happens.

    Each request is bounded by ``min(timeout_s, time left)`` for each socket operation, and the
    whole call by ``deadline``: requests run in threads, and one still running then (a DNS
    lookup hanging, an endpoint trickling its answer) is reported ``retry`` and left to end by
    its own timeout; whatever it gets is ignored (at least once: the event is sent again).
    Targets whose ``key`` is in ``skip`` (they failed earlier in this invocation) are
    ``not_tried``: a target that is down never holds the others' events back. Never raises.
    """
    slots: List[Optional[EndpointResult]] = [None] * len(targets)
    workers: List[Optional[threading.Thread]] = []
    for index, target in enumerate(targets):
        remaining = deadline - clock()
        if target.key in skip:
            slots[index] = EndpointResult(target, NOT_TRIED, error=SKIPPED)
            workers.append(None)
            continue
        if remaining < MIN_REQUEST_S:
            slots[index] = EndpointResult(target, NOT_TRIED, error="no time left before the deadline")
            workers.append(None)
            continue
        worker = threading.Thread(target=_send_to, args=(slots, index, target, event, min(timeout_s, remaining),
                                                         clock),
                                  name=f"notify-{target.host}", daemon=True)
        try:
            worker.start()
        except RuntimeError:  # "can't start new thread": the instance is at its limit; try later
            slots[index] = EndpointResult(target, NOT_TRIED, error="no thread to send with")
            worker = None
        workers.append(worker)
    results = []
    for index, (target, worker) in enumerate(zip(targets, workers)):
        if worker is not None:
            worker.join(max(0.0, deadline - clock()))
        result = slots[index] if worker is None or not worker.is_alive() else None
        if result is None:
            result = EndpointResult(target, RETRY, error="no answer before the deadline")
        results.append(result)
        _log_result(event, result)
    return DeliveryResult(event.id, event.job_id, tuple(results))


def _send_to(slots: List[Optional[EndpointResult]], index: int, target: Target, event: CloudEvent,
             timeout_s: float, clock: Callable[[], float]) -> None:
    started = clock()
    try:
        sent = target.send(event, timeout_s)
    except Exception as exc:  # noqa: BLE001 - deliver never raises; the class name is enough to act on
        sent = SendResult(RETRY, error=f"unexpected {type(exc).__name__}")
    slots[index] = EndpointResult(target, sent.outcome, sent.status, sent.error and sent.error[:_ERROR_TEXT_MAX],
                                  sent.retry_after_s if sent.outcome == RETRY else None, clock() - started)


def _log_result(event: CloudEvent, result: EndpointResult) -> None:
    if result.outcome == DELIVERED:
        logger.info("notify: job %s %s (event %s) delivered to %s: HTTP %s in %.0f ms", event.job_id,
                    event.type, event.id, result.endpoint.host, result.status, result.elapsed_s * 1000)
    else:  # a skipped target was logged when it failed; once per event would flood the log
        logger.log(logging.DEBUG if result.error == SKIPPED else logging.WARNING,
                   "notify: job %s %s (event %s) not delivered to %s (%s): %s", event.job_id, event.type,
                   event.id, result.endpoint.host, result.outcome, result.error)
