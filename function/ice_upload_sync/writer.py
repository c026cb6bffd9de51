"""The record writer: ICE's answers -> records -> the store, on a bounded pool of writer threads.

The use case hands it one ``Answer`` at a time (``RecordWriter.write``) and reads what the
writes did in its ``Summary``: written, unchanged, expired, failed and not found jobs, and
the records whose completion events are owed. An answer whose every job the store already
holds as this very answer makes it (its ``answer_digest`` vouched for by the store) is
settled without normalizing it, unless a job of it is due to expire.

Memory stays bounded: at most ``4 x threads`` writes wait, so when ICE answers faster than
the store writes, the caller waits here instead of piling answers up. A store that batches
(``RecordStore.batches_writes``) gets ``SAVE_MANY_ANSWERS`` answers per ``save_many`` call.
Whatever goes wrong with one job fails that job alone, never the invocation.
"""
from __future__ import annotations

import contextlib
import logging
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import AbstractSet, Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from .config import Settings
from .errors import StoreError
from .events import SyncRequest, is_valid_job_id
from .ice import BatchOutcome
from .logs import ContextThreadPool
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
from .stores.base import RecordStore
from .summary import Summary

logger = logging.getLogger(__name__)

SAVE_MANY_ANSWERS = 5  # answers (of up to 10 jobs) per save_many call: Tablestore reads 50 jobs per BatchGetRow


@dataclass(frozen=True)
class Answer:
    """ICE's answer to one batch, with what recording it needs to know."""

    outcome: BatchOutcome  # ``outcome.answer`` is None when ICE gave none (the use case settles those)
    request: SyncRequest  # the records' source, and the statuses its callbacks claimed
    now: datetime  # the invocation's time: the records' ``updated_at``, and the age expiry counts to
    tracked: AbstractSet[str]  # jobs known to be tracked: one ICE leaves out is recorded ``not_found``

    def job_ids(self) -> List[str]:
        """Every job ID this answer is about: the IDs asked for, and those ICE answered (by URL too)."""
        job_ids: Dict[str, None] = dict.fromkeys(self.outcome.keys if self.outcome.kind == "JobIds" else ())
        if self.outcome.answer is not None:
            job_ids.update(dict.fromkeys(info.job_id for info in self.outcome.answer.infos
                                         if is_valid_job_id(info.job_id)))
        return list(job_ids)


@dataclass
class _Report:
    """What writing some answers did; built on a writer thread, added to the summary on the caller's."""

    written: int = 0
    unchanged: int = 0
    expired: int = 0
    failed: List[str] = field(default_factory=list)
    not_found: List[str] = field(default_factory=list)
    owed: List[JobRecord] = field(default_factory=list)  # written into an announced state


class RecordWriter:
    """Records answers on a pool of writer threads, and adds what each write did to ``summary``.

    A context manager: leaving it waits for every write (``drain``), then stops the threads.
    """

    def __init__(self, store: RecordStore, settings: Settings, summary: Summary) -> None:
        self.store = store
        self.summary = summary
        self.max_age = timedelta(hours=settings.max_track_age_hours)
        self.unknown_grace = min(self.max_age, timedelta(minutes=settings.unknown_job_grace_minutes))
        threads = writer_threads(store, settings)
        self.max_waiting = 4 * threads
        # A store that batches gets five answers (up to 50 records) per save_many call.
        self.group = SAVE_MANY_ANSWERS if store.batches_writes else 1
        self._pool = ContextThreadPool(max_workers=threads, thread_name_prefix="store")
        self._waiting: Deque[Future] = deque()
        self._grouped: List[Answer] = []

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        try:
            if exc_info[0] is None:
                self.drain()
        finally:
            self._pool.shutdown(wait=True)

    def map(self, fn: Callable[[str], Any], items: Iterable[str]) -> Iterator[Any]:
        """``fn`` over ``items`` on the writer threads (other store calls: tracking), in order."""
        return self._pool.map(fn, items)

    def write(self, answer: Answer) -> None:
        """Record ``answer``'s jobs: once ``group`` answers are collected, and the rest at ``drain``."""
        self._grouped.append(answer)
        if len(self._grouped) >= self.group:
            self._flush()

    def drain(self) -> None:
        """Wait for every write handed over so far; the summary then holds what they did."""
        self._flush()
        while self._waiting:
            self._add(self._waiting.popleft().result())

    def _flush(self) -> None:
        if not self._grouped:
            return
        answers, self._grouped = self._grouped, []
        self._waiting.append(self._pool.submit(self._write_answers, answers))
        while self._waiting and (self._waiting[0].done() or len(self._waiting) > self.max_waiting):
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

    # -- on a writer thread -------------------------------------------------------

    def _write_answers(self, answers: List[Answer]) -> _Report:
        """Answers -> records -> the store, in one ``save_many`` where the store batches.

        Never raises: whatever goes wrong with one job fails that job (logged with its ID),
        and an exception that escapes the per-job guards fails the jobs of these answers
        that it left unsettled, never the invocation.
        """
        report = _Report()
        try:
            digests = _digests(answers)
            vouched = self._vouched(digests)
            records: List[JobRecord] = []
            for answer in answers:
                records += self._records_of(answer, report, vouched, digests)
            self._save_all(records, answers[0].now, report)
        except Exception:  # noqa: BLE001 - a bug must cost its jobs, not the sweep
            settled = set(report.failed) | set(report.not_found)
            job_ids = dict.fromkeys(job_id for answer in answers for job_id in answer.job_ids())
            unsettled = [job_id for job_id in job_ids if job_id not in settled]
            logger.exception("writing %d job(s) failed unexpectedly: %s", len(unsettled), ", ".join(unsettled[:10]))
            report = _Report(failed=[*report.failed, *unsettled], not_found=report.not_found)
        return report

    def _vouched(self, digests: Dict[int, Tuple[str, str]]) -> Dict[str, str]:
        """The jobs of these answers whose stored record the store vouches was made from this very
        answer (``RecordStore.vouched``), with that answer's digest: one cheap look for many jobs,
        and such an answer changes nothing."""
        by_job = dict(digests.values())
        if not by_job:
            return {}
        try:
            return {job_id: by_job[job_id] for job_id in self.store.vouched(by_job) if job_id in by_job}
        except Exception as exc:  # noqa: BLE001 - only a shortcut: the ordinary path decides, and reports failures
            logger.warning("cannot read the answer digests of %d job(s) (%s: %s); checking them the ordinary way",
                           len(by_job), type(exc).__name__, str(exc)[:200])
            return {}

    def _records_of(self, answer: Answer, report: _Report, vouched: Dict[str, str],
                    digests: Dict[int, Tuple[str, str]]) -> List[JobRecord]:
        """The records to save for one answer. An item whose digest the store vouches for is
        settled here as unchanged, without normalizing it, unless the job is due to expire."""
        outcome, request = answer.outcome, answer.request
        ice_answer = outcome.answer
        assert ice_answer is not None
        claimed = {hint.job_id: hint.status for hint in request.hints if hint.job_id and hint.status}
        stamp = format_time(answer.now)
        stale_before = self._stale_before(answer.now) if vouched else None
        records: List[JobRecord] = []
        seen = set()
        for info in ice_answer.infos:
            if not is_valid_job_id(info.job_id):
                # it becomes a file name and a key: never trust it blindly, even from ICE
                logger.warning("ICE answered an upload with JobId %r, not a job ID we can record "
                               "(request %r)", info.job_id[:80], ice_answer.request_id)
                continue
            seen.add(info.job_id)
            try:
                made = digests.get(id(info))
                digest = made[1] if made is not None else answer_digest(info)  # raises what _digests passed over
                # an unknown status word takes the ordinary way: it is warned about at every look
                if vouched.get(info.job_id) == digest and info.job_id not in claimed \
                        and _not_stale(info, stale_before) and is_known_status(info.status):
                    report.unchanged += 1  # the store holds what this very answer makes, and keeps it
                    continue
                record = normalize(info, source=request.source, request_id=ice_answer.request_id, now=stamp,
                                   digest=digest)
            except Exception:  # noqa: BLE001 - normalizers are total; if one is not, only this job pays
                logger.exception("cannot normalize job %s (request %r)", info.job_id, ice_answer.request_id)
                report.failed.append(info.job_id)
                continue
            if info.job_id in claimed and map_status(claimed[info.job_id]) != record.state:
                # a callback is a hint: ICE's answer is what we record, the difference is worth a line
                logger.info("callback said %r for job %s, ICE answers %r (request %r): recorded ICE's",
                            claimed[info.job_id], info.job_id, info.status, ice_answer.request_id)
            records.append(record)
        if outcome.kind == "JobIds":
            # ICE lists unknown IDs in NonExists; an ID it leaves out entirely is unknown too.
            for job_id in outcome.keys:
                if job_id in seen:
                    continue
                try:
                    known = job_id in answer.tracked or self._is_tracked(job_id)
                except Exception as exc:  # noqa: BLE001 - StoreError, or a store bug: this job fails alone
                    _log_failure(f"cannot tell whether job {job_id} is tracked", exc)
                    report.failed.append(job_id)
                    continue
                if known:
                    records.append(not_found_record(job_id, source=request.source,
                                                    request_id=well_formed_text(ice_answer.request_id), now=stamp))
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
        results: Sequence[Union[MergeResult, StoreError]] = []
        if not self.store.batches_writes:  # a round trip a record anyway: each guarded on its own
            results = [self._save_one(record) for record in ready]
        elif ready:
            try:
                results = self.store.save_many(ready)
            except StoreError as exc:  # the whole call failed: every record of it did
                results = [exc] * len(ready)
            except Exception:  # noqa: BLE001 - a store bug no job can be blamed for yet: one at a time finds it
                logger.exception("saving %d records together failed unexpectedly; saving them one at a time",
                                 len(ready))
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

    def _is_tracked(self, job_id: str) -> bool:
        return self.store.tracking(job_id) is not None or self.store.load(job_id) is not None


def writer_threads(store: RecordStore, settings: Settings) -> int:
    """Writer threads: ``ICE_CONCURRENCY``, or fewer when the store says more do not help.

    A store may set ``write_concurrency``: the file store sets 1, since its writes are local
    syscalls that only fight over the interpreter lock (measured: a sweep of 10,000 unchanged
    jobs 1.2x the ideal with one writer, 1.6x with eight); network stores (OSS) wait on round
    trips and use the full pool.
    """
    concurrency = max(1, settings.ice_concurrency)
    preferred = store.write_concurrency
    return concurrency if preferred is None else max(1, min(concurrency, preferred))


def _digests(answers: List[Answer]) -> Dict[int, Tuple[str, str]]:
    """``answer_digest`` of every answer item with a job ID we can record, made once for the vouching
    and the records: by the item's ``id()`` (the answers outlive the call), (job ID, digest). An
    item whose digest cannot be made is left out; making the record fails it, saying why."""
    digests: Dict[int, Tuple[str, str]] = {}
    for answer in answers:
        for info in answer.outcome.answer.infos if answer.outcome.answer is not None else ():
            if is_valid_job_id(info.job_id):
                with contextlib.suppress(Exception):
                    digests[id(info)] = (info.job_id, answer_digest(info))
    return digests


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
