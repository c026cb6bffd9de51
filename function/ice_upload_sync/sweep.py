"""The sweep: every pending job (of one shard) looked up in ICE, from after its cursor round to it.

A pipeline with bounded memory: the store lists pending jobs in ascending order, page by
page; batches of 10 go to ICE with ``ICE_CONCURRENCY`` calls in flight (the gateway's token
bucket paces them), and the listing is read only while fewer than twice that many batches
wait, so a backlog of any size is held a window at a time. A sweep resumes after the store's
cursor, wraps around to the start, and stops taking new batches at its time budget; the
cursor is then left at the last job before the first gap, so a backlog larger than one
invocation is worked through over several runs and no job is skipped.

The sweep only looks jobs up: what each outcome means for a job is the use case's (``sync.py``).
"""
from __future__ import annotations

import itertools
import logging
import queue
import time
from concurrent.futures import Future
from typing import Dict, Iterator, List, Optional, Protocol, Sequence, Tuple

from .config import Settings
from .errors import StoreError
from .events import Shard
from .ice import BATCH_SIZE, BatchOutcome
from .logs import ContextThreadPool
from .stores.base import RecordStore

logger = logging.getLogger(__name__)

SWEEP_CURSOR = "sweep"  # the cursor's name for a sweep of every shard; a shard has its own


class Gateway(Protocol):
    """What the use case needs of ICE (``ice.IceGateway``): batched lookups within a deadline."""

    def lookup(self, job_ids: Sequence[str], upload_urls: Sequence[str], *, deadline: float,
               retry: bool = True) -> Iterator[BatchOutcome]: ...


class Sweep:
    """One sweep over the pending jobs of ``shard`` (None: all of them).

    ``lookups`` yields ICE's outcomes; once the caller has recorded them, ``complete`` says
    whether the sweep went all the way round, and ``save_cursor`` leaves the cursor for the next.
    """

    def __init__(self, gateway: Gateway, store: RecordStore, settings: Settings, shard: Optional[Shard]) -> None:
        self.gateway = gateway
        self.store = store
        self.shard = shard
        self.concurrency = max(1, settings.ice_concurrency)
        self.budget_s = settings.sweep_budget_s
        self.cursor_name = shard.cursor_name if shard else SWEEP_CURSOR
        self.cursor: Optional[str] = None  # where this sweep started (None: at the first job)
        self._listing: Optional[_Listing] = None
        self._progress = _Progress()

    def lookups(self, *, started: float, deadline: float) -> Iterator[BatchOutcome]:
        """ICE's outcome for every batch of pending jobs, in the order the batches finish.

        None starts after the budget (``SWEEP_BUDGET_S`` from ``started``, and a margin before
        ``deadline``, both ``time.monotonic()`` values), nor once ICE refused us for good
        (credentials, permission, endpoint): that refuses every batch alike, so the sweep stops
        asking, the rest stay tracked, and the invocation fails loudly (index.py).
        """
        try:
            self.cursor = self.store.load_cursor(self.cursor_name)
        except StoreError as exc:  # start from the beginning: slower to be fair, never wrong
            logger.warning("cannot read the sweep cursor %s: %s", self.cursor_name, exc)
        self._listing = _Listing(_wrapped(self.store, self.cursor), self.shard)
        stop_at = self._stop_submitting_at(started, deadline)
        for number, outcome in self._pipelined(self._listing, deadline=deadline, stop_at=stop_at):
            out_of_time = outcome.answer is None and outcome.error is not None and outcome.error.code == "Deadline"
            self._progress.finished(number, outcome.keys[-1], checked=not out_of_time)
            yield outcome

    @property
    def complete(self) -> bool:
        """Every pending job was looked up: the listing ran out, and no batch ran out of time."""
        return self._listing is not None and self._listing.exhausted and self._progress.unbroken

    def save_cursor(self) -> Optional[str]:
        """Leave the cursor for the next sweep, and return it.

        Complete: None, forgotten (the next sweep starts at the top). Stopped: the last job
        of the unbroken run of looked-up batches, so nothing before it is skipped.
        """
        new_cursor = None if self.complete else (self._progress.last_key or self.cursor)
        if new_cursor == self.cursor:
            return new_cursor
        try:
            self.store.save_cursor(self.cursor_name, new_cursor)
        except StoreError as exc:  # the next sweep repeats some jobs: costly, not wrong
            logger.warning("cannot save the sweep cursor %s: %s", self.cursor_name, exc)
        return new_cursor

    def _stop_submitting_at(self, started: float, deadline: float) -> float:
        """Stop taking new batches a little before the deadline, so the calls in flight finish."""
        margin = min(2.0, 0.2 * max(0.0, deadline - started))
        stop_at = deadline - margin
        if self.budget_s is not None:
            stop_at = min(stop_at, started + self.budget_s)
        return stop_at

    def _pipelined(self, keys: Iterator[str], *, deadline: float, stop_at: float) -> Iterator[Tuple[int, BatchOutcome]]:
        """(batch number, outcome) in the order the batches finish, ``ICE_CONCURRENCY`` in flight.

        Batches are read from ``keys`` only while fewer than twice that many are waiting,
        so a listing of any length is held a window at a time; none starts after ``stop_at``,
        nor after an outcome refused for good (those in flight still finish).
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
                    halted = halted or any(_refused_for_good(outcome) for _number, future in ready
                                           for outcome in future.result())
            finally:
                for future in in_flight:
                    future.cancel()


def _refused_for_good(outcome: BatchOutcome) -> bool:
    return outcome.error is not None and outcome.error.permanent


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
    yield from store.pending_job_ids(after=cursor)
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
