"""The use case: request -> look up in ICE -> normalize -> merge -> write -> summary.

A sweep is a pipeline with bounded memory: the store lists pending jobs in ascending
order, page by page; batches of 10 go to ICE with ``ICE_CONCURRENCY`` calls in flight
(the gateway's token bucket paces them); each answer is merged and written by a pool of
writer threads (as many, or as few as the store asks for), through the store's
``save_many`` where it has one. At most a few dozen batches are held at any moment,
whatever the backlog. A sweep resumes after the store's cursor, wraps around
to the start, and stops taking new batches at its time budget, leaving the cursor where
it stopped: a backlog larger than one invocation is worked through over several runs.
"""
from __future__ import annotations

import itertools
import logging
import queue
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Protocol, Sequence, Set, Tuple, Union
from urllib.parse import quote

from .config import Settings
from .errors import StoreError, UpstreamError
from .events import RefusedMessage, Shard, SyncRequest, is_valid_job_id
from .ice import BATCH_SIZE, BatchOutcome
from .logs import ContextThreadPool
from .outbox import Outbox
from .records import (
    JobRecord,
    MergeResult,
    UploadInfo,
    answer_digest,
    expire_if_stale,
    format_time,
    is_known_status,
    map_status,
    normalize,
    not_found_record,
    plain_ice_time,
    well_formed_text,
)
from .redact import redact_urls
from .stores.base import RecordStore, Tracked, Tracking

logger = logging.getLogger(__name__)

LIST_CAP = 100  # job IDs listed per kind in the answer; the *_count fields give the totals
SWEEP_CURSOR = "sweep"
OWED_NOW_CAP = 1000  # events a non-sweep invocation tries at once; the rest wait for the sweep
SAVE_MANY_ANSWERS = 5  # answers (of up to 10 jobs) per save_many call: Tablestore reads 50 jobs per BatchGetRow


class Gateway(Protocol):
    def lookup(self, job_ids: Sequence[str], upload_urls: Sequence[str], *, deadline: float,
               retry: bool = True) -> Iterator[BatchOutcome]: ...


@dataclass
class Summary:
    """The handler's answer (contract section 6) plus a few counters that explain it.

    ``not_found``, ``failed`` and ``deferred`` list at most ``LIST_CAP`` job IDs each
    (a sweep of 100,000 jobs must not answer megabytes); ``*_count`` are the totals. Upload
    URLs among them are listed with their query redacted (presigned URLs carry credentials).
    """

    checked: int = 0
    written: int = 0
    unchanged: int = 0
    not_found: List[str] = field(default_factory=list)
    failed: List[str] = field(default_factory=list)
    api_calls: int = 0
    tracked: int = 0  # new pending markers
    expired: int = 0
    deferred: List[str] = field(default_factory=list)  # tracked, left for the next sweep
    ignored: List[str] = field(default_factory=list)  # callback messages not about URL uploads
    complete: bool = True  # False when a sweep stopped at its budget or deadline
    not_found_count: int = 0
    failed_count: int = 0
    deferred_count: int = 0
    cursor: Optional[str] = None  # where an unfinished sweep stopped; the next one resumes after it
    shard: Optional[str] = None  # "i/K" for a sharded sweep
    # malformed messages of a batch (at most LIST_CAP; refused_count is the total): the handler raises
    refused: List[RefusedMessage] = field(default_factory=list)
    refused_count: int = 0
    # every failed key, not only the listed hundred: the run's end asks which are still tracked
    failed_ids: List[str] = field(default_factory=list, repr=False)
    # completion events (contract section 9): endpoints that answered 2xx, and those not delivered to this time
    notified: int = 0
    notify_failed: int = 0
    # records this invocation took into an announced state (the store owes their events), to try at
    # once; a sweep delivers from the outbox instead, so this holds at most OWED_NOW_CAP of them
    owed_now: List[JobRecord] = field(default_factory=list, repr=False)
    # keys ICE gave no answer for (deferred or failed alike): a dead integration never looks healthy
    unreached: List[str] = field(default_factory=list)
    unreached_count: int = 0
    ice_error: Optional[str] = None  # the first refusal that will not pass by itself, else the first error
    ice_refused: bool = False  # ice_error will not pass by itself (credentials, permission, endpoint)

    def add_unreached(self, keys: Sequence[str], error: Optional[UpstreamError]) -> None:
        self.unreached_count += len(keys)
        room = LIST_CAP - len(self.unreached)
        self.unreached += [redact_urls(key) for key in keys[:max(0, room)]]
        permanent = error is not None and error.permanent
        if error is not None and (self.ice_error is None or (permanent and not self.ice_refused)):
            self.ice_error = redact_urls(str(error))
            self.ice_refused = permanent

    def add_owed(self, record: JobRecord) -> None:
        if len(self.owed_now) < OWED_NOW_CAP:
            self.owed_now.append(record)

    def add_failed(self, job_id: str) -> None:
        job_id = redact_urls(job_id)
        self.failed_count += 1
        self.failed_ids.append(job_id)
        if len(self.failed) < LIST_CAP:
            self.failed.append(job_id)

    def add_not_found(self, job_id: str) -> None:
        self.not_found_count += 1
        if len(self.not_found) < LIST_CAP:
            self.not_found.append(redact_urls(job_id))

    def add_deferred(self, job_id: str) -> None:
        self.deferred_count += 1
        if len(self.deferred) < LIST_CAP:
            self.deferred.append(redact_urls(job_id))

    def defer_failed(self, job_ids: Iterable[str]) -> None:
        """Move these failed jobs to ``deferred``: still tracked, the next sweep retries them."""
        moving = set(job_ids)
        for job_id in dict.fromkeys(j for j in self.failed_ids if j in moving):
            self.add_deferred(job_id)
        self.failed_ids = [j for j in self.failed_ids if j not in moving]
        self.failed = self.failed_ids[:LIST_CAP]
        self.failed_count = len(self.failed_ids)

    def to_dict(self) -> dict:
        return {
            "checked": self.checked, "written": self.written, "unchanged": self.unchanged,
            "not_found": self.not_found, "failed": self.failed, "api_calls": self.api_calls,
            "tracked": self.tracked, "expired": self.expired, "deferred": self.deferred,
            "ignored": self.ignored, "complete": self.complete,
            "not_found_count": self.not_found_count, "failed_count": self.failed_count,
            "deferred_count": self.deferred_count, "cursor": self.cursor, "shard": self.shard,
            "refused": [message.to_dict() for message in self.refused], "refused_count": self.refused_count,
            "notified": self.notified, "notify_failed": self.notify_failed,
            "unreached": self.unreached, "unreached_count": self.unreached_count, "ice_error": self.ice_error,
        }


@dataclass
class _Report:
    """What writing one batch did; built on a writer thread, added to the summary on the caller's."""

    written: int = 0
    unchanged: int = 0
    expired: int = 0
    failed: List[str] = field(default_factory=list)
    not_found: List[str] = field(default_factory=list)
    owed: List[JobRecord] = field(default_factory=list)  # written into an announced state


class SyncService:
    def __init__(self, gateway: Gateway, store: RecordStore, settings: Settings, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 bus: Optional[Any] = None) -> None:
        """``bus``: the ``eventbridge.EventBridgeBus`` when NOTIFY_EVENTBRIDGE is set (events go there too)."""
        self.gateway = gateway
        self.store = store
        self.settings = settings
        self.clock = clock
        self.max_age = timedelta(hours=settings.max_track_age_hours)
        self.unknown_grace = min(self.max_age, timedelta(minutes=settings.unknown_job_grace_minutes))
        self.concurrency = max(1, settings.ice_concurrency)
        self.outbox = Outbox(store, settings, clock, bus=bus)

    def run(self, request: SyncRequest, *, deadline: float, defer_lookups: bool = False) -> Summary:
        """Check every job the request names (or every pending job for a sweep).

        ``deadline`` is a ``time.monotonic()`` value. A job that should have been written
        and was not is ``deferred`` when it is still tracked (its pending marker exists, so
        the next sweep tries again), and ``failed`` otherwise: the caller raises only for
        those, since FC re-running the whole invocation adds nothing for the others. With
        ``defer_lookups`` (a callback on an instance whose ICE client is not ready) the
        request's jobs are only tracked: every one that is tracked is deferred to the sweep.
        """
        started = time.monotonic()
        summary = Summary(ignored=list(request.ignored), shard=str(request.shard) if request.shard else None,
                          refused=list(request.refused[:LIST_CAP]), refused_count=len(request.refused))
        now = self.clock()
        # A store that batches gets five answers (up to 50 records) per save_many call.
        group = SAVE_MANY_ANSWERS if _capability(self.store, "save_many") is not None else 1
        with _Writer(self._write_concurrency(), summary, group=group) as writer:
            tracked_ids: Set[str] = set()
            untracked: Set[str] = set()
            if request.track:
                tracked_ids, untracked = self._track(request, now, summary, writer)
            if request.sweep:
                self._sweep(request, now, summary, deadline, started, writer)
            elif defer_lookups and request.track and not request.upload_urls:
                # deferred only where a marker makes the next sweep look: a job ICE already
                # finished has none, and its record stands as ICE last described it
                for job_id in request.job_ids:
                    if job_id in tracked_ids:
                        summary.add_deferred(job_id)
                    elif job_id not in untracked:
                        logger.info("job %s is final by ICE's answer already: its record stands", job_id)
            else:
                job_ids = [j for j in request.job_ids if j not in untracked]
                self._check(job_ids, request.upload_urls, request, now, summary, deadline, tracked_ids, writer)
        self._defer_still_tracked(summary, deadline)
        # completion events: what this invocation's writes owe, at once; a sweep, all that is due
        if request.sweep:
            self.outbox.deliver_due(deadline=deadline, counts=summary, shard=request.shard)
        else:
            self.outbox.deliver_now(summary.owed_now, deadline=deadline, counts=summary)
        return summary

    def _write_concurrency(self) -> int:
        """Writer threads: ``ICE_CONCURRENCY``, or fewer when the store says more do not help.

        A store may set ``write_concurrency`` (optional, an int): the file store sets 1,
        since its writes are local syscalls that only fight over the interpreter lock
        (measured: a sweep of 10,000 unchanged jobs 1.2x the ideal with one writer, 1.6x
        with eight); network stores (OSS) wait on round trips and use the full pool.
        """
        preferred = getattr(self.store, "write_concurrency", None)
        if isinstance(preferred, int) and preferred >= 1:
            return min(self.concurrency, preferred)
        return self.concurrency

    # -- steps --------------------------------------------------------------------

    def _track(self, request: SyncRequest, now: datetime, summary: Summary,
               writer: _Writer) -> Tuple[Set[str], Set[str]]:
        """ICE told us these jobs exist: record them as tracked before asking about them."""
        def track(job_id: str) -> Union[Tracked, StoreError]:
            try:
                return self.store.track(Tracking(job_id, format_time(now), request.source))
            except StoreError as exc:
                return exc

        tracked, failed = set(), set()
        for job_id, outcome in zip(request.job_ids, writer.map(track, request.job_ids)):
            if isinstance(outcome, StoreError):
                logger.error("cannot track job %s: %s", job_id, outcome)
                summary.add_failed(job_id)
                failed.add(job_id)
                continue
            summary.tracked += bool(outcome)
            if outcome is not Tracked.SETTLED:  # ICE finished it: no marker, nothing will retry it
                tracked.add(job_id)
        return tracked, failed

    def _sweep(self, request: SyncRequest, now: datetime, summary: Summary, deadline: float, started: float,
               writer: _Writer) -> None:
        """Every pending job (of the shard), from after the cursor round to it, until the budget."""
        cursor_name = request.shard.cursor_name if request.shard else SWEEP_CURSOR
        load_cursor = _capability(self.store, "load_cursor")
        save_cursor = _capability(self.store, "save_cursor")
        cursor: Optional[str] = None
        if load_cursor is not None and save_cursor is not None:
            try:
                cursor = load_cursor(cursor_name)
            except StoreError as exc:  # start from the beginning: slower to be fair, never wrong
                logger.warning("cannot read the sweep cursor %s: %s", cursor_name, exc)
        keys = _Listing(_wrapped(self.store, cursor), request.shard)
        stop_at = self._stop_submitting_at(started, deadline)
        progress = _Progress()
        # ICE refusing us for good (credentials, permission, endpoint) refuses every batch alike:
        # stop asking, leave the rest tracked, and let the invocation fail loudly (index.py)
        for number, outcome in self._pipelined(keys, deadline=deadline, stop_at=stop_at,
                                               halt=lambda outcome: outcome.error is not None
                                               and outcome.error.permanent):
            summary.checked += len(outcome.keys)
            out_of_time = outcome.answer is None and outcome.error is not None and outcome.error.code == "Deadline"
            progress.finished(number, outcome.keys[-1], checked=not out_of_time)
            self._settle(outcome, request, now, summary, set(outcome.keys), writer)
        writer.drain()
        stopped_at = progress.last_key
        summary.complete = keys.exhausted and progress.unbroken
        if save_cursor is None:
            return
        # Finished: forget the cursor (the next sweep starts at the top). Stopped: the last
        # job of the unbroken run of checked batches, so nothing before it is skipped.
        new_cursor = None if summary.complete else (stopped_at or cursor)
        summary.cursor = new_cursor
        if new_cursor == cursor:
            return
        try:
            save_cursor(cursor_name, new_cursor)
        except StoreError as exc:  # the next sweep repeats some jobs: costly, not wrong
            logger.warning("cannot save the sweep cursor %s: %s", cursor_name, exc)

    def _stop_submitting_at(self, started: float, deadline: float) -> float:
        """Stop taking new batches a little before the deadline, so the calls in flight finish."""
        margin = min(2.0, 0.2 * max(0.0, deadline - started))
        stop_at = deadline - margin
        if self.settings.sweep_budget_s is not None:
            stop_at = min(stop_at, started + self.settings.sweep_budget_s)
        return stop_at

    def _pipelined(self, keys: Iterator[str], *, deadline: float, stop_at: float,
                   halt: Callable[[BatchOutcome], bool] = lambda outcome: False,
                   ) -> Iterator[Tuple[int, BatchOutcome]]:
        """(batch number, outcome) in the order the batches finish, ``ICE_CONCURRENCY`` in flight.

        Batches are read from ``keys`` only while fewer than twice that many are waiting,
        so a listing of any length is held a window at a time; none starts after ``stop_at``,
        nor after an outcome for which ``halt`` is true (those in flight still finish).
        """
        halted = False
        window = 2 * self.concurrency

        def one(batch: Tuple[str, ...]) -> List[BatchOutcome]:
            return list(self.gateway.lookup(batch, (), deadline=deadline))

        in_flight: Dict[Future, int] = {}
        ready: List[Tuple[int, Future]] = []
        numbers = itertools.count()
        # Each batch reports itself done here: one cheap wake-up per batch, where ``wait()``
        # over the whole window locks every future in it, twice, at every wake-up.
        finished: queue.SimpleQueue[Future] = queue.SimpleQueue()
        with ContextThreadPool(max_workers=self.concurrency, thread_name_prefix="ice") as pool:
            try:
                while True:
                    # refill first: ICE keeps working while the answers that came back are written
                    while len(in_flight) < window and time.monotonic() < stop_at and not halted:
                        batch = tuple(itertools.islice(keys, BATCH_SIZE))
                        if not batch:
                            break
                        future = pool.submit(one, batch)
                        in_flight[future] = next(numbers)
                        future.add_done_callback(finished.put)
                    for number, future in ready:
                        for outcome in future.result():
                            yield number, outcome
                    if not in_flight:
                        return
                    done = [finished.get()]
                    while not finished.empty():
                        done.append(finished.get())
                    ready = sorted(((in_flight.pop(future), future) for future in done), key=lambda item: item[0])
                    halted = halted or any(halt(outcome) for _number, future in ready for outcome in future.result())
            finally:
                for future in in_flight:
                    future.cancel()

    def _check(self, job_ids: Sequence[str], upload_urls: Sequence[str], request: SyncRequest,
               now: datetime, summary: Summary, deadline: float, tracked: Set[str], writer: _Writer) -> None:
        summary.checked += len(job_ids) + len(upload_urls)
        for outcome in self.gateway.lookup(job_ids, upload_urls, deadline=deadline):
            self._settle(outcome, request, now, summary, tracked, writer)

    def _settle(self, outcome: BatchOutcome, request: SyncRequest, now: datetime, summary: Summary,
                tracked: Set[str], writer: _Writer) -> None:
        summary.api_calls += outcome.api_calls
        if outcome.answer is None:
            self._lookup_failed(outcome, request, summary, tracked)
            return
        if outcome.kind != "JobIds":
            # NonExists names URLs as ICE saw them: decoded, or as we encoded them
            missing = set(outcome.answer.non_exists)
            for url in outcome.keys:
                if url in missing or quote(url, safe="") in missing:
                    summary.add_not_found(url)
        writer.submit_grouped(self._write_answers, (outcome, request, now, tracked))

    def _write_answers(self, answers: List[Tuple[BatchOutcome, SyncRequest, datetime, Set[str]]]) -> _Report:
        """Answers -> records -> the store, in one ``save_many`` where the store has it. On a writer thread.

        Never raises: whatever goes wrong with one job fails that job (logged with its ID),
        and an exception that escapes the per-job guards fails the jobs of these answers
        that it left unsettled, never the invocation.
        """
        report = _Report()
        try:
            vouched = self._vouched_digests(answers)
            records: List[JobRecord] = []
            for outcome, request, now, tracked in answers:
                records += self._records_of(outcome, request, now, tracked, report, vouched)
            self._save_all(records, answers[0][2], report)
        except Exception:  # noqa: BLE001 - a bug must cost its jobs, not the sweep
            settled = set(report.failed) | set(report.not_found)
            unsettled = [job_id for job_id in _job_ids_of(answers) if job_id not in settled]
            logger.exception("writing %d job(s) failed unexpectedly: %s", len(unsettled), ", ".join(unsettled[:10]))
            report = _Report(failed=[*report.failed, *unsettled], not_found=report.not_found)
        return report

    def _vouched_digests(self, answers: List[Tuple[BatchOutcome, SyncRequest, datetime, Set[str]]]
                         ) -> Dict[str, str]:
        """For the jobs of these answers, the ``answer_digest`` of the answer each stored record
        was made from, where the store can vouch for it (``RecordStore.answer_digests``): one
        cheap read for many jobs, and an answer with the same digest changes nothing."""
        answer_digests = _capability(self.store, "answer_digests")
        if answer_digests is None:
            return {}
        job_ids = [info.job_id for outcome, _request, _now, _tracked in answers if outcome.answer is not None
                   for info in outcome.answer.infos if is_valid_job_id(info.job_id)]
        if not job_ids:
            return {}
        try:
            return dict(answer_digests(job_ids))
        except Exception as exc:  # noqa: BLE001 - only a shortcut: the ordinary path decides, and reports failures
            logger.warning("cannot read the answer digests of %d job(s) (%s: %s); checking them the ordinary way",
                           len(job_ids), type(exc).__name__, str(exc)[:200])
            return {}

    def _records_of(self, outcome: BatchOutcome, request: SyncRequest, now: datetime, tracked: Set[str],
                    report: _Report, vouched: Dict[str, str]) -> List[JobRecord]:
        """The records to save for one answer. An item whose digest the store vouches for is
        settled here as unchanged, without normalizing it, unless the job is due to expire."""
        answer = outcome.answer
        assert answer is not None
        claimed = {hint.job_id: hint.status for hint in request.hints if hint.job_id and hint.status}
        stamp = format_time(now)
        stale_before = self._stale_before(now) if vouched else None
        records: List[JobRecord] = []
        seen = set()
        for info in answer.infos:
            if not is_valid_job_id(info.job_id):
                # it becomes a file name and a key: never trust it blindly, even from ICE
                logger.warning("ICE answered an upload with JobId %r, not a job ID we can record "
                               "(request %r)", info.job_id[:80], answer.request_id)
                continue
            seen.add(info.job_id)
            try:
                digest = answer_digest(info)
                # an unknown status word takes the ordinary way: it is warned about at every look
                if vouched.get(info.job_id) == digest and info.job_id not in claimed \
                        and _not_stale(info, stale_before) and is_known_status(info.status):
                    report.unchanged += 1  # the store holds what this very answer makes, and keeps it
                    continue
                record = normalize(info, source=request.source, request_id=answer.request_id, now=stamp,
                                   digest=digest)
            except Exception:  # noqa: BLE001 - normalizers are total; if one is not, only this job pays
                logger.exception("cannot normalize job %s (request %r)", info.job_id, answer.request_id)
                report.failed.append(info.job_id)
                continue
            if info.job_id in claimed and map_status(claimed[info.job_id]) != record.state:
                # a callback is a hint: ICE's answer is what we record, the difference is worth a line
                logger.info("callback said %r for job %s, ICE answers %r (request %r): recorded ICE's",
                            claimed[info.job_id], info.job_id, info.status, answer.request_id)
            records.append(record)
        if outcome.kind == "JobIds":
            # ICE lists unknown IDs in NonExists; an ID it leaves out entirely is unknown too.
            for job_id in outcome.keys:
                if job_id in seen:
                    continue
                try:
                    known = job_id in tracked or self._is_tracked(job_id)
                except Exception as exc:  # noqa: BLE001 - StoreError, or a store bug: this job fails alone
                    _log_failure(f"cannot tell whether job {job_id} is tracked", exc)
                    report.failed.append(job_id)
                    continue
                if known:
                    records.append(not_found_record(job_id, source=request.source,
                                                    request_id=well_formed_text(answer.request_id), now=stamp))
                else:
                    report.not_found.append(job_id)  # nobody tracked it: reported, never written
        return records

    def _stale_before(self, now: datetime) -> Optional[str]:
        """A job created at this time (as ``format_time`` writes it) or earlier is due to expire.

        Times we write sort as they happen, and ``created <= now - max_age`` holds exactly when
        the creation time sorts before ``format_time(now - max_age)`` or equals it (whole seconds
        against a moment with a fraction); None when no creation time can be that old.
        """
        try:
            return format_time(now - self.max_age)
        except OverflowError:
            return None

    def _save_all(self, records: List[JobRecord], now: datetime, report: _Report) -> None:
        ready: List[JobRecord] = []
        for record in records:
            try:
                record = self._expire_if_stale(record, now)
            except Exception as exc:  # noqa: BLE001 - StoreError, or a store bug: this job fails alone
                _log_failure(f"cannot record job {record.job_id}", exc)
                report.failed.append(record.job_id)
                continue
            report.expired += record.state == "expired"
            ready.append(record)
        save_many = _capability(self.store, "save_many")
        results: Sequence[Union[MergeResult, StoreError]]
        if save_many is not None and ready:
            try:
                results = save_many(ready)
            except StoreError as exc:  # the whole call failed: every record of it did
                results = [exc] * len(ready)
            except Exception:  # noqa: BLE001 - a store bug no job can be blamed for yet: one at a time finds it
                logger.exception("saving %d records together failed unexpectedly; saving them one at a time",
                                 len(ready))
                results = [self._save_one(record) for record in ready]
        else:
            results = [self._save_one(record) for record in ready]
        for record, result in zip(ready, results):
            if isinstance(result, StoreError):
                logger.error("cannot record job %s: %s", record.job_id, result)
                report.failed.append(record.job_id)
            elif result.changed:
                report.written += 1
                if result.owed:
                    report.owed.append(result.record)
            else:
                report.unchanged += 1

    def _save_one(self, record: JobRecord) -> Union[MergeResult, StoreError]:
        """``store.save``; any failure becomes a ``StoreError`` for this job alone."""
        try:
            return self.store.save(record)
        except StoreError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - the store's bug, this job's failure
            logger.exception("saving job %s failed unexpectedly", record.job_id)
            return StoreError(f"{type(exc).__name__} while saving job {record.job_id}: {str(exc)[:200]}")

    def _expire_if_stale(self, record: JobRecord, now: datetime) -> JobRecord:
        if record.final:
            return record
        tracked_since = None
        if record.created_at is None:
            marker = self.store.tracking(record.job_id)
            tracked_since = marker.first_seen_at if marker else None
        max_age = self.max_age
        if record.state == "not_found" and self._never_known(record.job_id):
            max_age = self.unknown_grace  # a made-up or mistyped ID must not be swept for days
        return expire_if_stale(record, tracked_since=tracked_since, now=now, max_age=max_age)

    def _never_known(self, job_id: str) -> bool:
        """ICE has never described this job to us: no record, or only a ``not_found`` one.

        One read, only for jobs ICE does not know today (rare); a job ICE described before
        and has lost keeps the whole ``MAX_TRACK_AGE_HOURS``.
        """
        stored = self.store.load(job_id)
        return stored is None or stored.state == "not_found"

    def _lookup_failed(self, outcome: BatchOutcome, request: SyncRequest, summary: Summary,
                       tracked: Set[str]) -> None:
        """A batch ICE did not answer. A job we track (listed by the sweep, or tracked by this
        request) is deferred whatever ICE did: its marker stays, so the next sweep asks again.
        Anything else is failed (``_defer_still_tracked`` still looks for a marker)."""
        error = outcome.error
        summary.add_unreached(outcome.keys, error)
        for key in outcome.keys:
            if outcome.kind == "JobIds" and key in tracked:
                summary.add_deferred(key)
            else:
                summary.add_failed(key)  # ``_defer_still_tracked`` looks for its marker at the end
        # running out of time is the plan working (the sweep finishes them); anything else is an error
        level = logging.WARNING if error is not None and error.code == "Deadline" else logging.ERROR
        logger.log(level, "GetUrlUploadInfos failed for %d %s after %d call(s): %s",
                   len(outcome.keys), outcome.kind, outcome.api_calls, error)

    def _defer_still_tracked(self, summary: Summary, deadline: float) -> None:
        """Failed jobs whose pending marker exists become ``deferred`` (contract section 6).

        The next sweep lists them and tries again, so raising (FC re-runs the whole
        invocation up to three times) would only repeat the work. A job whose marker cannot
        be confirmed (the store fails to answer, no time is left) stays failed: the handler
        raises for it. So does an upload URL, which has no marker to look for.
        """
        if not summary.failed_count:
            return
        still_tracked: List[str] = []
        stamp = format_time(self.clock())
        for job_id in summary.failed_ids:
            if time.monotonic() >= deadline:
                break
            if not is_valid_job_id(job_id):
                continue
            try:
                if self.store.tracking(job_id) is not None or self._reopen(job_id, stamp):
                    still_tracked.append(job_id)
            except Exception as exc:  # noqa: BLE001 - the store is failing: the rest stay failed, and we raise
                _log_failure("cannot tell whether the jobs not recorded are still tracked", exc)
                break
        if still_tracked:
            summary.defer_failed(still_tracked)
            shown = ", ".join(still_tracked[:10]) + (" ..." if len(still_tracked) > 10 else "")
            logger.error("%d job(s) not recorded but still tracked: the next sweep retries them (%s)",
                         len(still_tracked), shown)

    def _reopen(self, job_id: str, stamp: str) -> bool:
        """A job we recorded ``expired`` that could not be looked up now: track it again, so
        the sweep records ICE's real outcome (a check of it says ICE may have one). True if tracked."""
        stored = self.store.load(job_id)
        if stored is None or stored.state != "expired":
            return False
        return self.store.track(Tracking(job_id, stamp, stored.source)) is not Tracked.SETTLED

    def _is_tracked(self, job_id: str) -> bool:
        return self.store.tracking(job_id) is not None or self.store.load(job_id) is not None


class _Writer:
    """A bounded pool for store writes; reports are added to the summary on the caller's thread.

    At most ``4 x size`` writes wait: when ICE answers faster than the store writes, the
    sweep waits here instead of piling answers up in memory.
    """

    def __init__(self, size: int, summary: Summary, *, group: int = 1) -> None:
        self.size = size
        self.summary = summary
        self.max_waiting = 4 * size
        self.group = group
        self._pool = ContextThreadPool(max_workers=size, thread_name_prefix="store")
        self._waiting: Deque[Future] = deque()
        self._grouped: List[Any] = []
        self._group_fn: Optional[Callable[[List[Any]], _Report]] = None

    def __enter__(self) -> _Writer:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            if exc_info[0] is None:
                self.drain()
        finally:
            self._pool.shutdown(wait=True)

    def map(self, fn: Callable[[str], Any], items: Iterable[str]) -> Iterator[Any]:
        return self._pool.map(fn, items)

    def submit(self, fn: Callable[..., _Report], *args: Any) -> None:
        self._waiting.append(self._pool.submit(fn, *args))
        while self._waiting and (self._waiting[0].done() or len(self._waiting) > self.max_waiting):
            self._add(self._waiting.popleft().result())

    def submit_grouped(self, fn: Callable[[List[Any]], _Report], item: Any) -> None:
        """``fn(items)`` once ``group`` items are collected (and for the rest at ``drain``)."""
        self._group_fn = fn
        self._grouped.append(item)
        if len(self._grouped) >= self.group:
            self._flush()

    def _flush(self) -> None:
        if self._grouped and self._group_fn is not None:
            items, self._grouped = self._grouped, []
            self.submit(self._group_fn, items)

    def drain(self) -> None:
        self._flush()
        while self._waiting:
            self._add(self._waiting.popleft().result())

    def _add(self, report: _Report) -> None:
        summary = self.summary
        summary.written += report.written
        summary.unchanged += report.unchanged
        summary.expired += report.expired
        for job_id in report.failed:
            summary.add_failed(job_id)
        for job_id in report.not_found:
            summary.add_not_found(job_id)
        for record in report.owed:
            summary.add_owed(record)


class _Listing:
    """The sweep's job IDs, filtered to one shard; ``exhausted`` once the listing ran out."""

    def __init__(self, job_ids: Iterator[str], shard: Optional[Shard]) -> None:
        self._job_ids = job_ids
        self._shard = shard
        self.exhausted = False

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        for job_id in self._job_ids:
            if self._shard is None or job_id in self._shard:
                return job_id
        self.exhausted = True
        raise StopIteration


def _wrapped(store: RecordStore, cursor: Optional[str]) -> Iterator[str]:
    """Pending jobs after ``cursor``, then from the start up to and including it."""
    if cursor is None:
        yield from store.pending_job_ids()
        return
    try:
        after = store.pending_job_ids(after=cursor)  # type: ignore[call-arg]
    except TypeError:  # a store without ``after``: skip the first part ourselves
        after = (job_id for job_id in store.pending_job_ids() if job_id > cursor)
    yield from after
    yield from itertools.takewhile(lambda job_id: job_id <= cursor, store.pending_job_ids())


class _Progress:
    """How far the sweep got without a gap: batches finish out of order, the cursor must not.

    Holds only the batches that finished ahead of an unfinished one (at most the window).
    """

    def __init__(self) -> None:
        self.last_key: Optional[str] = None  # last key of the unbroken run of checked batches
        self.unbroken = True  # False once a batch ran out of time
        self._next = 0
        self._ahead: Dict[int, Tuple[str, bool]] = {}

    def finished(self, number: int, last_key: str, *, checked: bool) -> None:
        self._ahead[number] = (last_key, checked)
        while self.unbroken and self._next in self._ahead:
            key, ok = self._ahead.pop(self._next)
            if not ok:
                self.unbroken = False
                self._ahead.clear()
                break
            self.last_key = key
            self._next += 1
        if not self.unbroken:
            self._ahead.clear()


def _job_ids_of(answers: List[Tuple[BatchOutcome, SyncRequest, datetime, Set[str]]]) -> List[str]:
    """Every job ID these answers are about: the IDs asked for, and those ICE answered (by URL too)."""
    job_ids: Dict[str, None] = {}
    for outcome, _request, _now, _tracked in answers:
        if outcome.kind == "JobIds":
            job_ids.update(dict.fromkeys(outcome.keys))
        if outcome.answer is not None:
            job_ids.update(dict.fromkeys(info.job_id for info in outcome.answer.infos if is_valid_job_id(info.job_id)))
    return list(job_ids)


def _not_stale(info: UploadInfo, stale_before: Optional[str]) -> bool:
    """The job this answer describes is not due to expire (``expire_if_stale`` would keep it).

    Only a creation time ICE sent, in one of its usual shapes, decides here; a job without
    one counts from when we began tracking it, which only the ordinary path reads.
    """
    created_at = plain_ice_time(info.creation_time)
    return created_at is not None and (stale_before is None or created_at > stale_before)


def _log_failure(what: str, exc: Exception) -> None:
    """A store's failure in one line; anything else (a bug) with its stack trace."""
    if isinstance(exc, StoreError):
        logger.error("%s: %s", what, exc)
    else:
        logger.error("%s: %s", what, exc, exc_info=exc)


def _capability(store: Any, name: str) -> Optional[Callable[..., Any]]:
    """An optional store method, or None; the protocol's own placeholder does not count."""
    method = getattr(store, name, None)
    if method is None or getattr(type(store), name, None) is getattr(RecordStore, name, None):
        return None
    return method


def invocation_deadline(started: float, timeout_s: Optional[float], default_s: float = 60.0) -> float:
    """A monotonic deadline leaving a margin before FC's own timeout.

    FC's context has no remaining-time method: the deadline is counted from ``started``
    (the invocation's ``time.monotonic()``) and the function's timeout (None: ``default_s``).
    """
    budget = default_s if timeout_s is None else max(0.5, timeout_s * 0.9 - 1.0)
    return started + budget
