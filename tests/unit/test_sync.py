"""The use case against in-memory stand-ins: here there is no wire, only the store interface."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Dict, Iterator, Optional

from ice_upload_sync.config import Settings
from ice_upload_sync.errors import StoreError
from ice_upload_sync.events import SyncRequest
from ice_upload_sync.ice import BatchOutcome, IceAnswer
from ice_upload_sync.records import JobRecord, MergeResult, UploadInfo, merge
from ice_upload_sync.stores import Tracked, Tracking
from ice_upload_sync.sync import SyncService

NOW = datetime(2026, 11, 25, 3, tzinfo=timezone.utc)


class AnsweringGateway:
    def __init__(self, known: Dict[str, str]) -> None:
        self.known = known

    def lookup(self, job_ids, upload_urls, *, deadline, retry=True) -> Iterator[BatchOutcome]:
        infos = tuple(UploadInfo(j, status=self.known[j]) for j in job_ids if j in self.known)
        missing = tuple(j for j in job_ids if j not in self.known)
        yield BatchOutcome("JobIds", tuple(job_ids), IceAnswer("req-1", infos, missing), None, 1)


class FlakyStore:
    """Keeps records in a dict; reading one job's marker or record fails."""

    def __init__(self, broken: str) -> None:
        self.broken = broken
        self.records: Dict[str, JobRecord] = {}

    def describe(self) -> str:
        return "memory"

    def bind(self, credentials) -> None:
        pass

    def load(self, job_id: str) -> Optional[JobRecord]:
        if job_id == self.broken:
            raise StoreError("memory store: cannot read")
        return self.records.get(job_id)

    def tracking(self, job_id: str) -> Optional[Tracking]:
        if job_id == self.broken:
            raise StoreError("memory store: cannot read")
        return None

    def track(self, tracking: Tracking) -> Tracked:
        return Tracked.CREATED

    def save(self, fresh: JobRecord) -> MergeResult:
        result = merge(self.load(fresh.job_id), fresh)
        self.records[fresh.job_id] = result.record
        return result

    def pending_job_ids(self) -> Iterator[str]:
        return iter(())


def run(store, gateway, request):
    service = SyncService(gateway, store, Settings(), clock=lambda: NOW)
    return service.run(request, deadline=float("inf"))


def test_a_store_read_failure_fails_that_job_only():
    """Regression: reading the marker or record before a save escaped the run as an exception."""
    store = FlakyStore(broken="bad00001")
    gateway = AnsweringGateway({"good0001": "UPLOADING", "bad00001": "UPLOADING"})
    summary = run(store, gateway, SyncRequest(source="direct", job_ids=("good0001", "bad00001")))
    assert summary.failed == ["bad00001"] and summary.written == 1 and "good0001" in store.records


def test_a_store_read_failure_while_deciding_not_found_fails_that_job_only():
    store = FlakyStore(broken="gone0001")
    summary = run(store, AnsweringGateway({}), SyncRequest(source="direct", job_ids=("gone0001", "gone0002")))
    assert summary.failed == ["gone0001"] and summary.not_found == ["gone0002"]
