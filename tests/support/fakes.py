"""One scriptable ICE and one in-memory record store, for the tests that drive the use case without a wire.

``ScriptedIce`` stands in for ``ice.IceGateway`` (the use case's ``sweep.Gateway``): a test says
what ICE answers for each job, which batches fail and how, and how long each takes, then reads
which batches it was asked, and from which threads. ``MemoryStore`` is a whole ``RecordStore``
in dicts, saving by ``saving.plan_save`` as every store does, its state open to the test. Both
behave as the real thing does unless a knob says otherwise, so a test states its scenario by
their state and knobs, not by a subclass.

The emulators (``tests/support``) are the other kind of stand-in: servers the real SDKs talk to.
"""
from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import (
    Any,
    Collection,
    Dict,
    FrozenSet,
    Iterable,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Set,
    Tuple,
    Union,
)

from ice_upload_sync.errors import StoreError, UpstreamError
from ice_upload_sync.ice import BatchOutcome, IceAnswer
from ice_upload_sync.ice import batches as batches_of_ten
from ice_upload_sync.notify import Owed
from ice_upload_sync.records import (
    JobRecord,
    MergeResult,
    UnencodableRecord,
    UploadInfo,
    record_json,
    settled_by_ice,
)
from ice_upload_sync.saving import plan_save
from ice_upload_sync.stores import RecordStore, Tracked, Tracking
from ice_upload_sync.stores.base import Unreadable, read_or_skip

CREATED = "2026-11-25T02:00:00Z"  # when the markers a MemoryStore starts with were made

# ---------------------------------------------------------------- ICE


@dataclass(frozen=True)
class Asked:
    """One batch ``ScriptedIce`` was asked about."""

    kind: str  # "JobIds" | "UploadURLs"
    keys: Tuple[str, ...]
    thread: str  # the name of the thread that asked


def ice_error(code: str = "InvalidParameter", status: int = 400, *, retryable: bool = False,
              permanent: bool = False) -> UpstreamError:
    """ICE's refusal of a batch, as the gateway reports it: by default HTTP 400 InvalidParameter, not retried."""
    return UpstreamError(f"ICE answered HTTP {status} {code}", code=code, retryable=retryable, permanent=permanent)


class ScriptedIce:
    """GetUrlUploadInfos as a test scripts it, asked in batches of 10 as ``ice.IceGateway`` asks.

    What it answers for a job ID:

    - ``jobs``: job ID -> the fields ICE answers for it (the ``URLUploadInfoList`` item's keys:
      ``Status``, ``CreationTime``, ``UserData``...), read as the SDK's answer is read
      (``UploadInfo.from_api``). It is the dict given, not a copy: a test may change it between runs;
    - ``default``: the fields for every other job ID (None: ICE knows no other job);
    - ``unknown``: IDs ICE lists in ``NonExists`` whatever ``jobs`` and ``default`` say. Any other ID
      it has no fields for is listed there too.

    An upload URL is answered with the jobs of ``jobs`` whose ``UploadURL`` it is, else listed in
    ``NonExists``.

    What goes wrong, by key (a job ID or an upload URL; name one key of a batch to fail that batch):

    - ``failing``: key -> the ``UpstreamError`` its batch ends with after one call (``ice_error``
      makes ICE's refusals, retryable or permanent as a test needs);
    - ``out_of_time``: keys whose batch finds no time left before its first call, as the gateway
      reports running into the deadline (code ``Deadline``, retryable, no call made);
    - ``latency_s``: how long each batch takes, slept in the thread that asks.

    Batches are answered one after another in the thread iterating ``lookup`` (a sweep asks
    from several threads at once); ``asked`` records each batch and that thread, in the order
    asked. ``deadline`` and ``retry`` are not looked at: the retry loop and the deadline checks
    are the real gateway's, tested on their own.
    """

    def __init__(self, jobs: Optional[Dict[str, Dict[str, Any]]] = None, *,
                 default: Optional[Mapping[str, Any]] = None, unknown: Iterable[str] = (),
                 failing: Optional[Mapping[str, UpstreamError]] = None, out_of_time: Iterable[str] = (),
                 latency_s: float = 0.0) -> None:
        self.jobs: Dict[str, Dict[str, Any]] = {} if jobs is None else jobs
        self.default = default
        self.unknown: Set[str] = set(unknown)
        self.failing: Dict[str, UpstreamError] = dict(failing or {})
        self.out_of_time: Set[str] = set(out_of_time)
        self.latency_s = latency_s
        self.asked: List[Asked] = []
        self._lock = threading.Lock()

    @property
    def batches(self) -> List[Tuple[str, ...]]:
        """The keys (job IDs or upload URLs) of every batch asked, in the order asked."""
        return [asked.keys for asked in self.asked]

    @property
    def checked(self) -> List[str]:
        """Every job ID asked about, in the order asked."""
        return [key for asked in self.asked if asked.kind == "JobIds" for key in asked.keys]

    @property
    def threads(self) -> Set[str]:
        """The names of the threads that asked."""
        return {asked.thread for asked in self.asked}

    def lookup(self, job_ids: Sequence[str], upload_urls: Sequence[str], *, deadline: float,
               retry: bool = True) -> Iterator[BatchOutcome]:
        """Every key in batches of 10, job IDs first (they never share a call with URLs)."""
        work = [("JobIds", keys) for keys in batches_of_ten(job_ids)]
        work += [("UploadURLs", keys) for keys in batches_of_ten(upload_urls)]
        for kind, keys in work:
            yield self._answer(kind, keys)

    def _answer(self, kind: str, keys: Tuple[str, ...]) -> BatchOutcome:
        with self._lock:
            self.asked.append(Asked(kind, keys, threading.current_thread().name))
            request_id = f"req-{len(self.asked)}"
        if self.latency_s:
            time.sleep(self.latency_s)
        if self.out_of_time.intersection(keys):
            error = UpstreamError("no time left for GetUrlUploadInfos after 0 call(s)", code="Deadline",
                                  retryable=True)
            return BatchOutcome(kind, keys, None, error, 0)
        failure = next((self.failing[key] for key in keys if key in self.failing), None)
        if failure is not None:
            return BatchOutcome(kind, keys, None, failure, 1)
        infos: List[UploadInfo] = []
        missing: List[str] = []
        for key in keys:
            described = self._described(kind, key)
            infos += described
            if not described:
                missing.append(key)
        return BatchOutcome(kind, keys, IceAnswer(request_id, tuple(infos), tuple(missing)), None, 1)

    def _described(self, kind: str, key: str) -> List[UploadInfo]:
        """What ICE answers for one key: the items it describes it with (none: it is in ``NonExists``)."""
        if key in self.unknown:
            return []
        if kind == "UploadURLs":
            return [UploadInfo.from_api({"JobId": job_id, **fields}) for job_id, fields in list(self.jobs.items())
                    if fields.get("UploadURL") == key]
        fields = self.jobs.get(key, self.default)
        return [] if fields is None else [UploadInfo.from_api({"JobId": key, **fields})]


# ---------------------------------------------------------------- the record store

FAILABLE = ("load", "tracking", "track", "save", "save_many", "answer_digests", "owe", "claim", "settle",
            "reschedule")


@dataclass(frozen=True)
class _Failure:
    job_ids: Optional[FrozenSet[str]]  # None: every job
    error: Optional[Exception]  # None: a StoreError naming the method and the job


class MemoryStore(RecordStore):
    """Records, markers, cursors and the outbox in dicts: a whole ``RecordStore``, saving by ``plan_save``.

    Pending jobs are listed in ascending order, as the file and OSS stores list them.
    ``save_many`` saves each record with ``save``, which carries out ``plan_save`` under one
    lock, in its order. Its state is open to a test: ``stored`` (the records), ``markers``,
    ``cursors``, ``outbox`` and ``bound`` (the answer digests its saves bound). It records
    ``saved`` (each job ID ``save`` was asked to save, in order), ``save_many_calls`` (how many
    records each ``save_many`` got) and ``saved_by`` (the names of the threads that saved).

    Knobs given when it is made:

    - ``pending``: the jobs tracked from the start (their markers made at ``CREATED``);
    - ``batches_writes``: its ``save_many`` is one round trip (as Tablestore's is), so the writer
      hands it several answers at once; otherwise the writer calls ``save`` once per record;
    - ``vouches``: ``answer_digests`` vouches for the digests its saves bound, as the file and
      Tablestore stores do; otherwise it has the base class's default (none);
    - ``keeps_pending``: a save never removes a marker, so every tracked job stays pending, one
      recorded final or expired included.

    Sets a test fills:

    - ``unwritable`` job IDs: their save fails with a ``StoreError`` before it does anything (no
      outbox entry, no marker: unlike a real store, whose record write fails after both);
    - ``refused`` writes, named as the file and OSS stores lay them out (``jobs/<id>.json``,
      ``pending/<id>``, ``outbox/<id>``): that step of a save fails, after the steps before it,
      as a real store's refused write does;
    - ``corrupt`` job IDs: their stored record cannot be read (``load`` and their save raise,
      ``records`` hands them to ``unreadable``).

    And ``fail(method, job_ids, error)``: one method raises for some jobs (see there).
    """

    vouches: bool = False
    keeps_pending: bool = False

    def __init__(self, pending: Sequence[str] = (), *, batches_writes: bool = False, vouches: bool = False,
                 keeps_pending: bool = False) -> None:
        # a knob left out keeps the class's value, which a subclass may set
        self.batches_writes = batches_writes or self.batches_writes
        self.vouches = vouches or self.vouches
        self.keeps_pending = keeps_pending or self.keeps_pending
        self.stored: Dict[str, JobRecord] = {}
        self.outbox: Dict[str, Owed] = {}
        self.markers: Dict[str, Tracking] = {j: Tracking(j, CREATED, "direct") for j in pending}
        self.cursors: Dict[str, str] = {}
        self.bound: Dict[str, str] = {}  # the answer digests plan_save bound, by job ID
        self.saved: List[str] = []
        self.save_many_calls: List[int] = []
        self.saved_by: Set[str] = set()
        self.unwritable: Set[str] = set()
        self.refused: Set[str] = set()
        self.corrupt: Set[str] = set()
        self._failures: Dict[str, List[_Failure]] = {}
        self._lock = threading.Lock()

    def fail(self, method: str, job_ids: Optional[Collection[str]] = None,
             error: Optional[Exception] = None) -> MemoryStore:
        """Make ``method`` raise ``error`` when it is called for one of ``job_ids``; returns the store.

        ``method`` is one of ``FAILABLE``; ``save_many`` fails as a whole when any of its records
        is one of them. ``job_ids`` None: every job. ``error`` None: a ``StoreError`` naming the
        method and the job (give another exception for a store's bug, or an SDK error nobody
        translated). It raises as the method is entered, before it does anything; other methods
        reading the same data are not affected (a record that cannot be read at all: ``corrupt``).
        Rules add up: the first one a call matches raises.
        """
        if method not in FAILABLE:
            raise ValueError(f"MemoryStore cannot fail {method!r}: only {', '.join(FAILABLE)}")
        chosen = None if job_ids is None else frozenset(job_ids)
        self._failures.setdefault(method, []).append(_Failure(chosen, error))
        return self

    def _check(self, method: str, job_ids: Iterable[str]) -> None:
        """Raise what ``fail`` asked of ``method`` for these jobs, if anything."""
        failures = self._failures.get(method)
        if not failures:
            return
        job_ids = list(job_ids)
        for failure in failures:
            if failure.job_ids is None:
                hit: Optional[str] = "every job"
            else:
                hit = next((job_id for job_id in job_ids if job_id in failure.job_ids), None)
                if hit is None:
                    continue
            raise failure.error if failure.error is not None else StoreError(
                f"memory store: {method} failed for {hit}: injected")

    def describe(self) -> str:
        return "memory"

    def load(self, job_id: str) -> Optional[JobRecord]:
        self._check("load", (job_id,))
        return self._read(job_id)

    def _read(self, job_id: str) -> Optional[JobRecord]:
        if job_id in self.corrupt:
            raise StoreError(f"memory store: record {job_id} is corrupt")
        return self.stored.get(job_id)

    def _write(self, key: str) -> None:
        """One write of a save is about to happen (``jobs/<id>.json``, ``pending/<id>``, ``outbox/<id>``)."""
        if key in self.refused:
            raise StoreError(f"memory store: cannot write {key}: refused")

    def tracking(self, job_id: str) -> Optional[Tracking]:
        self._check("tracking", (job_id,))
        return self.markers.get(job_id)

    def track(self, tracking: Tracking) -> Tracked:
        self._check("track", (tracking.job_id,))
        with self._lock:
            if tracking.job_id in self.markers:
                return Tracked.ALREADY
            if settled_by_ice(self._read(tracking.job_id)):
                return Tracked.SETTLED
            self.markers[tracking.job_id] = tracking
            return Tracked.CREATED

    def save_many(self, records: Sequence[JobRecord]) -> List[Union[MergeResult, StoreError]]:
        self.save_many_calls.append(len(records))
        self._check("save_many", (record.job_id for record in records))
        results: List[Union[MergeResult, StoreError]] = []
        for fresh in records:
            try:
                results.append(self.save(fresh))
            except StoreError as exc:
                results.append(exc)
        return results

    def save(self, fresh: JobRecord) -> MergeResult:
        job_id = fresh.job_id
        self.saved.append(job_id)
        self._check("save", (job_id,))
        if job_id in self.unwritable:
            raise StoreError(f"memory store: cannot write {job_id}")
        with self._lock:
            self.saved_by.add(threading.current_thread().name)
            plan = plan_save(self._read(job_id), self.markers.get(job_id), fresh, self.notify_states,
                             bound=self.bound.get(job_id))
            if plan.write is not None:
                try:  # encoded first, as the real stores do: a record they could not hold leaves nothing
                    record_json(plan.write)
                except UnencodableRecord as exc:
                    raise StoreError(f"memory store: {exc}") from None
            if plan.owe is not None:
                self._write(f"outbox/{job_id}")
                self.outbox[job_id] = plan.owe
            if plan.open_marker is not None:
                self._write(f"pending/{job_id}")
                self.markers[job_id] = plan.open_marker
            if plan.write is not None:
                self._write(f"jobs/{job_id}.json")
            self.stored[job_id] = plan.result.record
            if plan.result.changed or plan.result.record.final:
                self.bound.pop(job_id, None)  # bound to the record that was there
            if plan.bind is not None:
                self.bound[job_id] = plan.bind
            if plan.result.record.final and not self.keeps_pending:
                self.markers.pop(job_id, None)  # a final record is no longer pending
            return plan.result

    def answer_digests(self, job_ids: Sequence[str]) -> Mapping[str, str]:
        self._check("answer_digests", job_ids)
        if not self.vouches:
            return super().answer_digests(job_ids)
        with self._lock:
            return {job_id: self.bound[job_id] for job_id in job_ids if job_id in self.bound}

    def pending_job_ids(self, after: Optional[str] = None) -> Iterator[str]:
        return iter(sorted(j for j in list(self.markers) if after is None or j > after))

    def records(self, after: Optional[str] = None, *,
                unreadable: Optional[Unreadable] = None) -> Iterator[JobRecord]:
        for job_id in sorted(j for j in list(self.stored) if after is None or j > after):
            record = read_or_skip(functools.partial(self.load, job_id), job_id, unreadable)
            if record is not None:
                yield record

    def load_cursor(self, name: str) -> Optional[str]:
        return self.cursors.get(name)

    def save_cursor(self, name: str, value: Optional[str]) -> None:
        if value is None:
            self.cursors.pop(name, None)
        else:
            self.cursors[name] = value

    # the outbox (RecordStore's compare-and-sets, under the one lock)

    def owe(self, entry: Owed) -> None:
        self._check("owe", (entry.job_id,))
        with self._lock:
            self.outbox[entry.job_id] = entry

    def owed(self, after: Optional[str] = None) -> Iterator[Owed]:
        with self._lock:
            entries = sorted(self.outbox.values(), key=lambda entry: entry.job_id)
        return iter([entry for entry in entries if after is None or entry.job_id > after])

    def _unchanged(self, entry: Owed) -> bool:
        current = self.outbox.get(entry.job_id)
        return current is not None and current.claim_key == entry.claim_key

    def claim(self, entry: Owed, holder: str, now: datetime, until: datetime) -> Optional[Owed]:
        self._check("claim", (entry.job_id,))
        with self._lock:
            if not entry.claimable(now) or not self._unchanged(entry):
                return None
            claimed = self.outbox[entry.job_id].claimed_for(holder, until)
            self.outbox[entry.job_id] = claimed
            return claimed

    def settle(self, entry: Owed) -> bool:
        self._check("settle", (entry.job_id,))
        with self._lock:
            if not self._unchanged(entry):
                return False
            del self.outbox[entry.job_id]
            return True

    def reschedule(self, entry: Owed) -> bool:
        self._check("reschedule", (entry.job_id,))
        with self._lock:
            if not self._unchanged(entry):
                return False
            self.outbox[entry.job_id] = entry.released()
            return True
