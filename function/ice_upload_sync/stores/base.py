"""The record store interface every adapter implements."""
from __future__ import annotations

import abc
import enum
import json
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple, Union
from urllib.parse import urlsplit

from .. import jsontext
from ..errors import ConfigError, StoreError
from ..notify import Owed
from ..records import JobRecord, MergeResult


@dataclass(frozen=True)
class Tracking:
    """The pending marker: the job is tracked and not final. Its age drives expiry."""

    job_id: str
    first_seen_at: str
    source: str

    def to_json(self) -> bytes:
        return json.dumps({"job_id": self.job_id, "first_seen_at": self.first_seen_at,
                           "source": self.source}).encode("utf-8")

    @classmethod
    def from_json(cls, job_id: str, raw: bytes, fallback_time: str, fallback_source: str = "timer") -> Tracking:
        try:
            data = jsontext.loads(raw or b"{}")
        except ValueError:
            data = {}
        if not isinstance(data, dict):
            data = {}
        return cls(job_id, str(data.get("first_seen_at") or fallback_time),
                   str(data.get("source") or fallback_source))


class Tracked(enum.Enum):
    """What ``RecordStore.track`` did; true only for ``CREATED`` (the answer's ``tracked`` counts those)."""

    CREATED = "created"  # a marker was made now (for a new job, or one we had recorded ``expired``)
    ALREADY = "already"  # a marker existed: the job was tracked already
    SETTLED = "settled"  # ICE itself made the job final (``records.settled_by_ice``): nothing to track

    def __bool__(self) -> bool:
        return self is Tracked.CREATED


Unreadable = Callable[[str, StoreError], None]  # ``RecordStore.records``' callback for a record it skips


def read_or_skip(read: Callable[[], Optional[JobRecord]], job_id: str,
                 unreadable: Optional[Unreadable]) -> Optional[JobRecord]:
    """``read()`` for ``records``: a ``StoreError`` is raised, or, with ``unreadable``, handed to it
    (the job ID, the error) and None returned, so that one bad record never hides the others."""
    try:
        return read()
    except StoreError as exc:
        if unreadable is None:
            raise
        unreadable(job_id, exc)
        return None


def endpoint_override(variable: str, value: str) -> str:
    """``host[:port]`` (HTTPS) or ``http(s)://host[:port]`` from ``OSS_ENDPOINT`` / ``TABLESTORE_ENDPOINT``."""
    text = value if "://" in value else "https://" + value
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc \
            or parts.path not in ("", "/") or parts.query:
        raise ConfigError(f"{variable} {value!r} must be host[:port] or http(s)://host[:port]")
    return f"{parts.scheme}://{parts.netloc}"


def in_fc_region(region: str, environ: Optional[Mapping[str, str]] = None) -> bool:
    """True inside FC running in ``region`` (or not saying where): where internal endpoints answer.

    FC sets ``FC_FUNCTION_NAME`` and ``FC_REGION``; internal endpoints answer only callers
    in their own region.
    """
    env = os.environ if environ is None else environ
    fc_region = env.get("FC_REGION", "").strip()
    in_fc = bool(env.get("FC_FUNCTION_NAME", "").strip() or fc_region)
    return in_fc and fc_region in ("", region)


class RecordStore(abc.ABC):
    """One record per job plus a pending marker while the job is tracked and not final.

    Every store inherits this class and implements its abstract primitives (docs/architecture.md
    lists them): what a save does is decided by ``saving.plan_save``, and a store only carries the
    plan out with its own atomicity. What it may leave alone has a working default here, so no
    caller ever probes a store for a capability.
    """

    notify_states: Tuple[str, ...] = ()  # set by open_store from NOTIFY_STATES (empty: no events owed)
    # the most writer threads worth running (None: ICE_CONCURRENCY); the file store says 1: its
    # writes are local syscalls that would only fight over the interpreter lock
    write_concurrency: Optional[int] = None
    # ``save_many`` writes many records for about the cost of one (Tablestore: a BatchWriteRow; the
    # file store: one fsync of its folder for the group): the sweep then hands it several answers at
    # once. Otherwise each record is saved on its own, several at once (``write_concurrency``).
    batches_writes: bool = False

    @abc.abstractmethod
    def describe(self) -> str: ...

    def bind(self, credentials: Any) -> None:
        """Use these credentials from now on (FC's STS credentials rotate). Default: unused."""
        return None

    @abc.abstractmethod
    def load(self, job_id: str) -> Optional[JobRecord]: ...

    @abc.abstractmethod
    def save_many(self, records: Sequence[JobRecord]) -> List[Union[MergeResult, StoreError]]:
        """Save each record (the one write path): one result per record, in the same order.

        Each is its ``MergeResult``, or the ``StoreError`` that kept it from being written (the
        others are still written). A job named twice is saved in the order given. Saving means
        carrying out ``saving.plan_save``: the entry owed first, then the marker opened, the
        record written, its answer digest bound, the marker of a final job removed; atomically
        against other writers, and durably before the result is returned.
        """

    def save(self, fresh: JobRecord) -> MergeResult:
        """``save_many`` for one record; its ``StoreError`` raised."""
        result = self.save_many([fresh])[0]
        if isinstance(result, StoreError):
            raise result
        return result

    @abc.abstractmethod
    def track(self, tracking: Tracking) -> Tracked:
        """Create the marker unless the job is already tracked or ICE made it final.

        A job recorded ``expired`` (our verdict, not ICE's) is tracked again: a callback or a
        check for it means ICE may have an outcome, and the next sweep must be able to record it.
        """

    @abc.abstractmethod
    def tracking(self, job_id: str) -> Optional[Tracking]: ...

    @abc.abstractmethod
    def pending_job_ids(self, after: Optional[str] = None) -> Iterator[str]:
        """Every tracked, non-final job, streamed page by page, in ascending ``job_id`` order.

        With ``after``, only the jobs whose ID sorts strictly after it: the sweep resumes
        there (its cursor) and then wraps around to the start.
        """

    @abc.abstractmethod
    def load_cursor(self, name: str) -> Optional[str]:
        """The last job ID the sweep called ``name`` checked, or None (start from the top).

        Names are ``sweep`` or ``sweep-<i>-of-<K>`` for a shard.
        """

    @abc.abstractmethod
    def save_cursor(self, name: str, value: Optional[str]) -> None:
        """Remember where the sweep ``name`` stopped; None forgets it (start over)."""

    @abc.abstractmethod
    def records(self, after: Optional[str] = None, *,
                unreadable: Optional[Unreadable] = None) -> Iterator[JobRecord]:
        """Every record in ascending ``job_id`` order (after ``after``), streamed a page at a time.

        For the operator's command line (``list``, ``stats``); the function's own paths never
        read the whole store. A record that cannot be read or does not parse raises
        ``StoreError``; with ``unreadable``, it is handed to it (its job ID, the error) and
        skipped, so one bad record never hides the others.
        """

    # -- with working defaults ------------------------------------------------------

    def vouched(self, digests: Mapping[str, str]) -> Set[str]:
        """The jobs among ``digests`` (job ID -> the ``answer_digest`` of ICE's answer now) whose stored
        record the store vouches was made from exactly that answer (see ``answer_digests`` for what
        vouching means). What the sweep asks; by default, from ``answer_digests``. A store that
        can tell without knowing the bound digest itself (OSS: from the listings' ETags) overrides it."""
        bound = self.answer_digests(list(digests))
        return {job_id for job_id, digest in digests.items() if bound.get(job_id) == digest}

    def tidy(self) -> None:
        """Housekeeping at the end of a sweep (OSS: old claims); bounded to a second or two. Default: none."""
        return None

    def answer_digests(self, job_ids: Sequence[str]) -> Mapping[str, str]:
        """What lets a sweep settle an unchanged answer with one cheap read and no normalizing.

        ``save`` binds ``fresh.answer_digest`` (the digest of the ICE answer item the record
        was normalized from; None for records not made from one) to the record it leaves
        stored, when that record is not final and holds ``fresh``'s information: always
        after writing it, and when it finds the same information stored already (then it
        writes the binding, if the stored one differs, and at most bookkeeping with it:
        the merge result stays "unchanged"). This returns, for each of
        ``job_ids`` it can vouch for, the digest bound to its record. Vouching means all of:

        - the record stored now is the one the digest was bound to: no write since, by
          anyone (another instance, an older version of this code, a hand edit, a save that
          crashed halfway) has left the binding in place for a different record;
        - that record is not final (and so the job is still tracked).

        Jobs it cannot vouch for are left out, and so is any it fails to read: the sweep then
        checks them the ordinary way (``save``), which is always right. Default: none.
        """
        return {}

    # -- the outbox of completion events (contract section 9; outbox.py delivers) ---------
    #
    # ``notify_states`` (set by ``open_store`` from NOTIFY_STATES when NOTIFY_URL is set; empty:
    # no notifications) tells ``save_many`` which states are announced. When ``plan_save`` says a
    # save owes an event (``SavePlan.owe``), the store writes that entry with ``owe`` BEFORE it
    # writes the record (durably, like the pending marker), and returns the plan's MergeResult
    # (``owed=True``). One entry per job: a later announced state replaces it. Entries of final
    # jobs stay after their marker goes: sweeps list the outbox on its own.
    #
    # Sending is claimed (contract section 9): an invocation ``claim``s an entry before it sends
    # it, and only the holder ``settle``s or ``reschedule``s it. ``claim``, ``settle`` and
    # ``reschedule`` are compare-and-sets: each writes only if the job's entry still has the
    # ``Owed.claim_key`` (event, holder, expiry) of the entry it is given, atomically with the
    # write (file: under the job's lock; OSS: under the job's lease lock; Tablestore: a row
    # condition on the ``event_id`` and ``claim`` columns). ``owe`` is not: a newer state's
    # entry replaces the older one, claimed or not, and the holder's settle then leaves it.

    @abc.abstractmethod
    def owe(self, entry: Owed) -> None:
        """Create or replace the job's outbox entry with ``entry``, its claim as given (file/OSS:
        ``<root>/outbox/<job_id>``)."""

    @abc.abstractmethod
    def owed(self, after: Optional[str] = None) -> Iterator[Owed]:
        """Every outbox entry in ascending ``job_id`` order, a page at a time; an entry that does
        not parse (``BadOutboxEntry``) is logged and skipped."""

    @abc.abstractmethod
    def claim(self, entry: Owed, holder: str, now: datetime, until: datetime) -> Optional[Owed]:
        """Claim the job's entry for ``holder`` until ``until``, before sending it.

        Only if ``entry`` (as listed or owed) is not claimed at ``now`` and the stored entry
        still has its ``claim_key``; one write. Returns the entry as claimed (what the holder
        settles or reschedules), or None: someone else holds it or got there first, a newer
        state replaced it, or it is gone; the caller leaves it alone.
        """

    @abc.abstractmethod
    def settle(self, entry: Owed) -> bool:
        """Remove the job's entry if it still has ``entry.claim_key`` (never a newer state's, nor one
        claimed since); True if removed."""

    @abc.abstractmethod
    def reschedule(self, entry: Owed) -> bool:
        """Replace the job's entry with ``entry.released()`` if it still has ``entry.claim_key``: the
        holder's next attempt, its claim given up. True if replaced."""
