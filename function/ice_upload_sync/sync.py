"""The use case: request -> look up in ICE -> normalize -> merge -> write -> summary."""
from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Iterator, List, Optional, Protocol, Sequence, Tuple
from urllib.parse import quote

from .config import Settings
from .errors import StoreError
from .events import SyncRequest, is_valid_job_id
from .ice import BATCH_SIZE, BatchOutcome
from .records import JobRecord, expire_if_stale, format_time, map_status, normalize, not_found_record
from .stores.base import RecordStore, Tracking

logger = logging.getLogger(__name__)


class Gateway(Protocol):
    def lookup(self, job_ids: Sequence[str], upload_urls: Sequence[str], *, deadline: float,
               retry: bool = True) -> Iterator[BatchOutcome]: ...


@dataclass
class Summary:
    """The handler's answer (contract section 6) plus a few counters that explain it."""

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
    complete: bool = True  # False when a sweep stopped at its deadline

    def to_dict(self) -> dict:
        return {
            "checked": self.checked, "written": self.written, "unchanged": self.unchanged,
            "not_found": self.not_found, "failed": self.failed, "api_calls": self.api_calls,
            "tracked": self.tracked, "expired": self.expired, "deferred": self.deferred,
            "ignored": self.ignored, "complete": self.complete,
        }


class SyncService:
    def __init__(self, gateway: Gateway, store: RecordStore, settings: Settings, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.gateway = gateway
        self.store = store
        self.settings = settings
        self.clock = clock
        self.max_age = timedelta(hours=settings.max_track_age_hours)

    def run(self, request: SyncRequest, *, deadline: float) -> Summary:
        """Check every job the request names (or every pending job for a sweep).

        ``deadline`` is a ``time.monotonic()`` value. Jobs we track but could not look
        up in time are ``deferred`` (the sweep finishes them); anything that should have
        been written and was not is in ``failed``, and the caller raises.
        """
        summary = Summary(ignored=list(request.ignored))
        now = self.clock()
        tracked_ids = set()
        if request.track:
            tracked_ids = self._track(request, now, summary)
        if request.sweep:
            for chunk in _chunks(self.store.pending_job_ids(), BATCH_SIZE * self.settings.ice_concurrency * 4):
                if time.monotonic() >= deadline:
                    summary.complete = False  # the rest stay pending for the next run
                    break
                self._check(chunk, (), request, now, summary, deadline, tracked=set(chunk))
        else:
            job_ids = [j for j in request.job_ids if j not in summary.failed]
            self._check(job_ids, request.upload_urls, request, now, summary, deadline, tracked=tracked_ids)
        return summary

    # -- steps --------------------------------------------------------------------

    def _track(self, request: SyncRequest, now: datetime, summary: Summary) -> set:
        """ICE told us these jobs exist: record them as tracked before asking about them."""
        tracked = set()
        for job_id in request.job_ids:
            try:
                if self.store.track(Tracking(job_id, format_time(now), request.source)):
                    summary.tracked += 1
                tracked.add(job_id)
            except StoreError as exc:
                logger.error("cannot track job %s: %s", job_id, exc)
                summary.failed.append(job_id)
        return tracked

    def _check(self, job_ids: Sequence[str], upload_urls: Sequence[str], request: SyncRequest,
               now: datetime, summary: Summary, deadline: float, tracked: set) -> None:
        summary.checked += len(job_ids) + len(upload_urls)
        claimed = {hint.job_id: hint.status for hint in request.hints if hint.job_id and hint.status}
        for outcome in self.gateway.lookup(job_ids, upload_urls, deadline=deadline):
            summary.api_calls += outcome.api_calls
            if outcome.answer is None:
                self._lookup_failed(outcome, request, summary, tracked)
                continue
            answer = outcome.answer
            seen = set()
            for info in answer.infos:
                if not is_valid_job_id(info.job_id):
                    # it becomes a file name and a key: never trust it blindly, even from ICE
                    logger.warning("ICE answered an upload with JobId %r, not a job ID we can record "
                                   "(request %s)", info.job_id[:80], answer.request_id)
                    continue
                seen.add(info.job_id)
                record = normalize(info, source=request.source, request_id=answer.request_id,
                                   now=format_time(now))
                if info.job_id in claimed and map_status(claimed[info.job_id]) != record.state:
                    # a callback is a hint: ICE's answer is what we record, the difference is worth a line
                    logger.info("callback said %r for job %s, ICE answers %r (request %s): recorded ICE's",
                                claimed[info.job_id], info.job_id, info.status, answer.request_id)
                self._save(record, now, summary)
            if outcome.kind != "JobIds":
                # NonExists names URLs as ICE saw them: decoded, or as we encoded them
                missing = set(answer.non_exists)
                summary.not_found.extend(u for u in outcome.keys if u in missing or quote(u, safe="") in missing)
                continue
            # ICE lists unknown IDs in NonExists; an ID it leaves out entirely is unknown too.
            for job_id in outcome.keys:
                if job_id in seen:
                    continue
                try:
                    known = job_id in tracked or self._is_tracked(job_id)
                except StoreError as exc:
                    logger.error("cannot tell whether job %s is tracked: %s", job_id, exc)
                    summary.failed.append(job_id)
                    continue
                if known:
                    record = not_found_record(job_id, source=request.source,
                                              request_id=answer.request_id, now=format_time(now))
                    self._save(record, now, summary)
                else:
                    summary.not_found.append(job_id)  # nobody tracked it: reported, never written

    def _lookup_failed(self, outcome: BatchOutcome, request: SyncRequest, summary: Summary,
                       tracked: set) -> None:
        error = outcome.error
        transient = error is not None and error.retryable
        for key in outcome.keys:
            is_tracked = outcome.kind == "JobIds" and key in tracked
            # A tracked job is safe with the sweep after a transient failure (throttled,
            # 5xx, timeout, out of time), and on the callback path whatever ICE did:
            # ICE must get its answer in time.
            if is_tracked and (transient or request.source == "callback"):
                summary.deferred.append(key)
            else:
                summary.failed.append(key)
        logger.warning("GetUrlUploadInfos failed for %d %s: %s", len(outcome.keys), outcome.kind, error)

    def _save(self, record: JobRecord, now: datetime, summary: Summary) -> None:
        try:
            if not record.final:
                tracked_since = None
                if record.created_at is None:
                    marker = self.store.tracking(record.job_id)
                    tracked_since = marker.first_seen_at if marker else None
                record = expire_if_stale(record, tracked_since=tracked_since, now=now, max_age=self.max_age)
                if record.state == "expired":
                    summary.expired += 1
            result = self.store.save(record)
        except StoreError as exc:
            logger.error("cannot record job %s: %s", record.job_id, exc)
            summary.failed.append(record.job_id)
            return
        if result.changed:
            summary.written += 1
        else:
            summary.unchanged += 1

    def _is_tracked(self, job_id: str) -> bool:
        return self.store.tracking(job_id) is not None or self.store.load(job_id) is not None


def _chunks(items: Iterable[str], size: int) -> Iterator[Tuple[str, ...]]:
    iterator = iter(items)
    while True:
        chunk = tuple(itertools.islice(iterator, size))
        if not chunk:
            return
        yield chunk


def request_deadline(remaining_s: Optional[float], default_s: float = 60.0) -> float:
    """A monotonic deadline leaving a margin before FC's own timeout."""
    budget = default_s if remaining_s is None else max(0.5, remaining_s * 0.9 - 1.0)
    return time.monotonic() + budget
