"""An in-memory record store for unit tests; the test modules subclass it for what they need to differ."""
from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime
from typing import Dict, Iterator, Optional, Sequence, Set, Tuple

from ice_upload_sync.errors import StoreError
from ice_upload_sync.notify import Owed, owes_notification
from ice_upload_sync.records import JobRecord, MergeResult, merge, settled_by_ice
from ice_upload_sync.stores import Tracked, Tracking

CREATED = "2026-11-25T02:00:00Z"


class MemoryStore:
    """Records, markers, cursors and the outbox in dicts; lists pending jobs in ascending order like file and OSS."""

    notify_states: Tuple[str, ...] = ()  # as open_store sets it: the states whose saves owe an event

    def __init__(self, pending: Sequence[str] = ()) -> None:
        self.records: Dict[str, JobRecord] = {}
        self.outbox: Dict[str, Owed] = {}
        self.markers: Dict[str, Tracking] = {j: Tracking(j, CREATED, "direct") for j in pending}
        self.cursors: Dict[str, str] = {}
        self.saved_by: set = set()
        self.unwritable: Set[str] = set()
        self._lock = threading.Lock()

    def describe(self) -> str:
        return "memory"

    def bind(self, credentials) -> None:
        pass

    def load(self, job_id: str) -> Optional[JobRecord]:
        return self.records.get(job_id)

    def tracking(self, job_id: str) -> Optional[Tracking]:
        return self.markers.get(job_id)

    def track(self, tracking: Tracking) -> Tracked:
        with self._lock:
            if tracking.job_id in self.markers:
                return Tracked.ALREADY
            if settled_by_ice(self.records.get(tracking.job_id)):
                return Tracked.SETTLED
            self.markers[tracking.job_id] = tracking
            return Tracked.CREATED

    def save(self, fresh: JobRecord) -> MergeResult:
        if fresh.job_id in self.unwritable:
            raise StoreError(f"memory store: cannot write {fresh.job_id}")
        with self._lock:
            self.saved_by.add(threading.current_thread().name)
            result = self._merge(fresh)
            if result.changed and owes_notification(self.records.get(fresh.job_id), result.record,
                                                    self.notify_states):
                self.outbox[fresh.job_id] = Owed.for_record(result.record, result.record.updated_at)
                result = replace(result, owed=True)
            self.records[fresh.job_id] = result.record
            self._saved(fresh, result)
            return result

    def _merge(self, fresh: JobRecord) -> MergeResult:
        """What ``save`` keeps for ``fresh`` (under the lock)."""
        return merge(self.records.get(fresh.job_id), fresh)

    def _saved(self, fresh: JobRecord, result: MergeResult) -> None:
        """The markers after ``save`` (under the lock): a final record is no longer pending."""
        if result.record.final:
            self.markers.pop(fresh.job_id, None)

    def pending_job_ids(self, after: Optional[str] = None) -> Iterator[str]:
        return iter(sorted(j for j in list(self.markers) if after is None or j > after))

    def load_cursor(self, name: str) -> Optional[str]:
        return self.cursors.get(name)

    def save_cursor(self, name: str, value: Optional[str]) -> None:
        if value is None:
            self.cursors.pop(name, None)
        else:
            self.cursors[name] = value

    # the outbox (RecordStore's compare-and-sets, under the one lock)

    def owe(self, entry: Owed) -> None:
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
        with self._lock:
            if not entry.claimable(now) or not self._unchanged(entry):
                return None
            claimed = self.outbox[entry.job_id].claimed_for(holder, until)
            self.outbox[entry.job_id] = claimed
            return claimed

    def settle(self, entry: Owed) -> bool:
        with self._lock:
            if not self._unchanged(entry):
                return False
            del self.outbox[entry.job_id]
            return True

    def reschedule(self, entry: Owed) -> bool:
        with self._lock:
            if not self._unchanged(entry):
                return False
            self.outbox[entry.job_id] = entry.released()
            return True
