"""The use case: request -> look up in ICE -> normalize -> merge -> write -> summary.

``SyncService.run`` says what happens to a job. Jobs ICE told us exist are tracked first;
then the request's jobs are looked up (a sweep looks up every pending job: ``sweep.Sweep``),
and each answer is handed to the record writer (``writer.RecordWriter``), which writes on a
pool of its own while ICE is asked about the next batches. A job that should have been
written and was not is ``deferred`` when it is still tracked (the next sweep tries again) and
``failed`` otherwise: the failure policy, for which the handler raises. Last, the completion
events this invocation owes are delivered (``outbox.Outbox``).

The outbox is given, not built from a bus: where events go (a ``NOTIFY_EVENTBRIDGE`` bus is an
SDK adapter bound to the instance's credentials) is the edge's to set up, and index.py passes
its own. Left out, it is ``Outbox(store, settings, clock)``, the ``NOTIFY_URL`` endpoints and no
bus: what a service built without a bus has always delivered, so the tests and tools that build
a service keep their deliveries without spelling an outbox out. Settings that name a bus with no
outbox given fail at once (``Outbox`` refuses to drop the bus's events).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, List, Optional, Sequence, Set, Tuple, Union
from urllib.parse import quote

from .config import Settings
from .errors import StoreError
from .events import SyncRequest, is_valid_job_id
from .ice import BatchOutcome
from .outbox import Outbox
from .records import format_time
from .stores.base import RecordStore, Tracked, Tracking
from .summary import LIST_CAP, Summary  # re-exported: the handler and the tests read them here
from .sweep import Gateway, Sweep
from .writer import Answer, RecordWriter

logger = logging.getLogger(__name__)

TIDY_MARGIN_S = 5.0  # the store's housekeeping (RecordStore.tidy) runs only with this much time left


def utc_now() -> datetime:
    """The service's clock (tests pass their own)."""
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class _Invocation:
    """What every step of one ``run`` works with."""

    request: SyncRequest
    now: datetime  # one reading of the clock for the whole invocation
    deadline: float  # a ``time.monotonic()`` value
    summary: Summary
    writer: RecordWriter


class SyncService:
    """The use case, over one ICE gateway, one record store and one outbox."""

    def __init__(self, gateway: Gateway, store: RecordStore, settings: Settings, *,
                 outbox: Optional[Outbox] = None,
                 clock: Callable[[], datetime] = utc_now) -> None:
        """``outbox``: where completion events go; None builds ``Outbox(store, settings, clock)`` (no bus)."""
        self.gateway = gateway
        self.store = store
        self.settings = settings
        self.clock = clock
        self.outbox = outbox if outbox is not None else Outbox(store, settings, clock)

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
        with RecordWriter(self.store, self.settings, summary) as writer:
            invocation = _Invocation(request, now, deadline, summary, writer)
            tracked_ids: Set[str] = set()
            untracked: Set[str] = set()
            if request.track:
                tracked_ids, untracked = self._track(invocation)
            if request.sweep:
                self._sweep(invocation, started)
            elif defer_lookups and request.track and not request.upload_urls:
                # deferred only where a marker makes the next sweep look: a job ICE already
                # finished has none, and its record stands as ICE last described it
                for job_id in request.job_ids:
                    if job_id in tracked_ids:
                        summary.add_deferred(job_id)
                    elif job_id not in untracked:
                        logger.info("job %s is final by ICE's answer already: its record stands", job_id)
            else:
                self._check(invocation, [j for j in request.job_ids if j not in untracked], tracked_ids)
        self._defer_still_tracked(summary, deadline)
        # completion events: what this invocation's writes owe, at once; a sweep, all that is due
        if request.sweep:
            self.outbox.deliver_due(deadline=deadline, counts=summary, shard=request.shard)
        else:
            self.outbox.deliver_now(summary.owed_now, deadline=deadline, counts=summary)
        return summary

    # -- steps --------------------------------------------------------------------

    def _track(self, invocation: _Invocation) -> Tuple[Set[str], Set[str]]:
        """ICE told us these jobs exist: record them as tracked before asking about them.

        Returns the jobs now tracked, and those that could not be (failed already)."""
        request, summary = invocation.request, invocation.summary
        first_seen_at = format_time(invocation.now)

        def track(job_id: str) -> Union[Tracked, StoreError]:
            try:
                return self.store.track(Tracking(job_id, first_seen_at, request.source))
            except StoreError as exc:
                return exc

        tracked, failed = set(), set()
        for job_id, outcome in zip(request.job_ids, invocation.writer.map(track, request.job_ids)):
            if isinstance(outcome, StoreError):
                logger.error("cannot track job %s: %s", job_id, outcome)
                summary.add_failed(job_id)
                failed.add(job_id)
                continue
            summary.tracked += bool(outcome)
            if outcome is not Tracked.SETTLED:  # ICE finished it: no marker, nothing will retry it
                tracked.add(job_id)
        return tracked, failed

    def _sweep(self, invocation: _Invocation, started: float) -> None:
        """Every pending job (of the shard), from after the cursor round to it, until the budget."""
        summary = invocation.summary
        sweep = Sweep(self.gateway, self.store, self.settings, invocation.request.shard)
        for outcome in sweep.lookups(started=started, deadline=invocation.deadline):
            summary.checked += len(outcome.keys)
            self._settle(invocation, outcome, set(outcome.keys))  # a listed job is a tracked job
        invocation.writer.drain()  # the cursor moves past a job once its record is written
        summary.complete = sweep.complete
        summary.cursor = sweep.save_cursor()
        if time.monotonic() < invocation.deadline - TIDY_MARGIN_S:
            try:
                self.store.tidy()
            except StoreError as exc:  # housekeeping: the next sweep tries again
                logger.warning("cannot tidy the store: %s", exc)

    def _check(self, invocation: _Invocation, job_ids: Sequence[str], tracked: Set[str]) -> None:
        """The jobs and upload URLs a request names."""
        upload_urls = invocation.request.upload_urls
        invocation.summary.checked += len(job_ids) + len(upload_urls)
        for outcome in self.gateway.lookup(job_ids, upload_urls, deadline=invocation.deadline):
            self._settle(invocation, outcome, tracked)

    def _settle(self, invocation: _Invocation, outcome: BatchOutcome, tracked: Set[str]) -> None:
        """One batch's outcome: an answer goes to the writer, a failure to the failure policy."""
        summary = invocation.summary
        summary.api_calls += outcome.api_calls
        if outcome.answer is None:
            self._lookup_failed(outcome, summary, tracked)
            return
        if outcome.kind != "JobIds":
            # NonExists names URLs as ICE saw them: decoded, or as we encoded them
            missing = set(outcome.answer.non_exists)
            for url in outcome.keys:
                if url in missing or quote(url, safe="") in missing:
                    summary.add_not_found(url)
        invocation.writer.write(Answer(outcome, invocation.request, invocation.now, tracked))

    # -- the failure policy -------------------------------------------------------

    def _lookup_failed(self, outcome: BatchOutcome, summary: Summary, tracked: Set[str]) -> None:
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
                # a store's failure in one line; anything else (a bug) with its stack trace
                logger.error("cannot tell whether the jobs not recorded are still tracked: %s", exc,
                             exc_info=None if isinstance(exc, StoreError) else exc)
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


def invocation_deadline(started: float, timeout_s: Optional[float], default_s: float = 60.0) -> float:
    """A monotonic deadline leaving a margin before FC's own timeout.

    FC's context has no remaining-time method: the deadline is counted from ``started``
    (the invocation's ``time.monotonic()``) and the function's timeout (None: ``default_s``).
    """
    budget = default_s if timeout_s is None else max(0.5, timeout_s * 0.9 - 1.0)
    return started + budget
