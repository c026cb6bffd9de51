"""The use case's answer: what an invocation checked, wrote and could not (contract section 6).

Built by ``SyncService.run`` and its record writer, turned into the handler's answer by
``Summary.to_dict``. Lists are capped at ``LIST_CAP`` job IDs; the ``*_count`` fields hold the totals.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence

from .errors import UpstreamError
from .events import RefusedMessage
from .records import JobRecord
from .redact import redact_urls

LIST_CAP = 100  # job IDs listed per kind in the answer; the *_count fields give the totals
OWED_NOW_CAP = 1000  # events a non-sweep invocation tries at once; the rest wait for the sweep


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
