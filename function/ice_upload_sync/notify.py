"""When a completion event is owed, sent again, or given up (contract section 9): the retry policy.

Every decision of when an event goes out is here, pure; what carries them out is elsewhere:
the event and its signature in ``cloudevent.py``, sending it to every target in
``delivery.py`` (the targets: ``webhook.py``, ``eventbridge.py``), the outbox's claims,
parallel sends and store writes in ``outbox.py``.

- ``owes_notification``: whether a write owes an event (it took the record into a state of
  ``NOTIFY_STATES``).
- ``Owed``: what a store keeps per job while an event is owed (one entry per job; a newer
  state's entry replaces the older one; the claim of the invocation sending it).
- ``entry_status``: whether an entry still matches its record: deliver it, wait, drop it, or
  owe the record's state instead.
- ``advance``: an attempt's ``delivery.DeliveryResult`` turned into the next entry (or None:
  settled): a target that took the event is done; one that refused it is given up on its
  ``GIVE_UP_AFTER_TRIES_COUNT``-th try; one that did not answer is tried again after
  ``retry_delay_s``'s backoff (or its Retry-After) until ``MAX_TRACK_AGE_HOURS``.
- Within one invocation: ``try_now`` (what is left to a later invocation: too little time, or
  only targets that are down) and ``CLAIM_S`` (how long an invocation holds an entry it sends;
  a holder that crashed delays its event by this).

Which answers count as which ``delivery.Outcome`` is each target's own reading of its wire
(``webhook.Webhook``, ``eventbridge.EventBridgeBus``). Logs name the job, the event id and the
target's host; never a secret.
"""
from __future__ import annotations

import json
import logging
import random
import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Callable, Collection, Optional, Sequence, Tuple

from . import jsontext
from .cloudevent import event_id, event_type
from .delivery import DELIVERED, GIVE_UP_AFTER_TRIES, NOT_TRIED, RETRY, DeliveryResult, Target, TextEnum
from .records import STATES, JobRecord, format_time, parse_time

logger = logging.getLogger(__name__)

GIVE_UP_AFTER_TRIES_COUNT = 3  # answers other than 2xx / 408 / 429 / 5xx: given up after this many tries
FIRST_RETRY_S = 60.0
MAX_RETRY_S = 3600.0
# An entry whose record is not (yet) in its state: the writer owes before it writes the record,
# so within this time the record may still be on its way; after it, the write never happened.
STALE_ENTRY_GRACE = timedelta(minutes=15)
MIN_TRY_S = 0.2  # less time than this left: leave the entry to the next sweep
# How long a claim keeps other invocations off an entry. It covers one attempt (every target
# in parallel, each at most delivery.DEFAULT_TIMEOUT_S) and the write that settles it (OSS: up
# to 5 s waiting for the job's lock, and a few requests) about twice over, and no more: a
# holder that crashed delays its event by this, about the first retry's backoff (FIRST_RETRY_S).
CLAIM_S = 60.0

_ERROR_TEXT_MAX = 200


# ---------------------------------------------------------------- the outbox entry


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
            data = jsontext.loads(raw)
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


# ---------------------------------------------------------------- the policy


def owes_notification(before: Optional[JobRecord], after: JobRecord, states: Collection[str]) -> bool:
    """True when a write took the record into an announced state (the first record counts).

    A later record in the same state (a newer ``completed_at``, a rewrite) owes nothing new: its
    event would carry the same id, which receivers already have.
    """
    return after.state in states and (before is None or before.state != after.state)


class EntryStatus(TextEnum):
    """``entry_status``'s answer: what to do with an owed entry now."""

    DELIVER = "deliver"
    WAIT = "wait"
    DROP = "drop"
    REOWE = "reowe"


DELIVER = EntryStatus.DELIVER
WAIT = EntryStatus.WAIT
DROP = EntryStatus.DROP
REOWE = EntryStatus.REOWE


def entry_status(entry: Owed, record: Optional[JobRecord], now: datetime, *, states: Collection[str] = (),
                 grace: timedelta = STALE_ENTRY_GRACE) -> EntryStatus:
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


def try_now(pending: Sequence[Target], down: Collection[str], time_left_s: float) -> bool:
    """Whether an invocation sends a due entry now, or leaves it owed to a later one.

    Not with less than ``MIN_TRY_S`` left, nor when every target still ``pending`` is ``down``
    (it answered ``retry`` earlier in this invocation: ``Progress.unreachable``): a target that
    timed out or failed to connect would cost every remaining entry its timeout, so it is
    skipped for the rest of the invocation (``delivery.deliver``'s ``skip``), while the other
    targets still get their events. An entry with no target pending is tried: nothing is
    sent, and it is settled.
    """
    return time_left_s >= MIN_TRY_S and not (pending and all(target.key in down for target in pending))
