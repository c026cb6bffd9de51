"""An unchanged answer costs one cheap read, and the store stays right when another instance writes.

Two SyncService instances (A and B, as two FC instances would be) share one store: the same
file store folder, or the same Tablestore table. Each asks its own stand-in for ICE, so the
test decides what each one is told: the current answer, an older one (a stale read), a final
one. A sweep settles a job without normalizing or saving it only when the store vouches that
the record in place was made from an answer with the same digest
(``RecordStore.answer_digests``); these scenarios are the ways that vouching could go wrong.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List

import pytest
from ice_upload_sync.config import Settings
from ice_upload_sync.events import SyncRequest
from ice_upload_sync.ice import Credentials
from ice_upload_sync.stores.base import Tracking
from ice_upload_sync.stores.file import FileStore
from ice_upload_sync.stores.tablestore import TablestoreStore
from ice_upload_sync.sync import SyncService

from tests.conftest import ACCESS_KEY_ID, ACCESS_KEY_SECRET, TABLESTORE_INSTANCE
from tests.support.fakes import ScriptedIce

START = datetime(2026, 11, 25, 3, tzinfo=timezone.utc)
CREATED = "2026-11-25T02:00:00Z"
JOB = "job00001"
SWEEP = SyncRequest(source="timer", sweep=True)
PROCESSING = {"Status": "PROCESSING", "CreationTime": CREATED, "MediaId": "m1", "UploadURL": "https://x/1.mp4",
              "UserData": '{"Extend": {"batch": "b1"}}'}
UPLOADING = {**PROCESSING, "Status": "UPLOADING"}  # what ICE said earlier: a stale read still says it
SUCCEEDED = {**PROCESSING, "Status": "SUCCESS", "CompleteTime": "2026-11-25 02:30:00", "FileSize": "123"}


class Instance:
    """A SyncService on its own store object (its own process, as far as the store knows).

    ``knows_digests=False`` is a writer that binds no digest: an older version of this code,
    or a save that crashed between writing the record and binding its digest.
    """

    def __init__(self, new_store: Callable[[], Any], jobs: Dict[str, dict], *, knows_digests: bool = True) -> None:
        self.ice = ScriptedIce(jobs)
        self.store = new_store()
        self.now = START
        self.saved: List[str] = []
        save_many = self.store.save_many

        def counting_save_many(records):
            self.saved += [record.job_id for record in records]
            if not knows_digests:
                records = [replace(record, answer_digest=None) for record in records]
            return save_many(records)

        self.store.save_many = counting_save_many  # type: ignore[method-assign]
        self.service = SyncService(self.ice, self.store, Settings(max_track_age_hours=72), clock=lambda: self.now)

    def sweep(self):
        self.saved.clear()
        return self.service.run(SWEEP, deadline=time.monotonic() + 30)

    def check(self, job_id: str = JOB):
        self.saved.clear()
        return self.service.run(SyncRequest(source="direct", job_ids=(job_id,)), deadline=time.monotonic() + 30)

    def record(self, job_id: str = JOB) -> dict:
        return self.store.load(job_id).to_dict()

    def tracked(self, job_id: str = JOB) -> bool:
        return self.store.tracking(job_id) is not None


@pytest.fixture(params=["file", "tablestore"])
def new_store(request, tmp_path: Path) -> Callable[[], Any]:
    """A factory of store objects over one shared store, where JOB is tracked."""
    if request.param == "file":
        folder = str(tmp_path / "records")

        def make() -> Any:
            return FileStore(folder)
    else:
        server = request.getfixturevalue("tablestore_server")
        table = f"d_{uuid.uuid4().hex[:12]}"

        def make() -> Any:
            return TablestoreStore(TABLESTORE_INSTANCE, table, server.endpoint,
                                   Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET))
        make().create_tables()
    make().track(Tracking(JOB, "2026-11-25T02:05:00Z", "direct"))
    return make


def test_an_unchanged_answer_is_settled_without_normalizing_or_saving(new_store):
    a = Instance(new_store, {JOB: PROCESSING})
    first = a.sweep()
    assert first.written == 1 and a.saved == [JOB]
    assert a.store.answer_digests([JOB])  # the store vouches for the record it holds
    written = a.record()
    second = a.sweep()
    assert second.checked == 1 and second.unchanged == 1 and second.written == 0
    assert a.saved == []  # settled by the digest: never normalized, merged or saved
    assert a.record() == written


def test_a_stale_record_written_by_another_instance_is_corrected_by_the_next_sweep(new_store):
    a = Instance(new_store, {JOB: PROCESSING})
    a.sweep()
    b = Instance(new_store, {JOB: UPLOADING})  # B reads ICE from a replica that lags behind
    assert b.check().written == 1
    assert a.record()["ice_status"] == "UPLOADING"
    again = a.sweep()  # ICE still tells A exactly what A saw before: the digest A bound
    assert again.written == 1 and a.saved == [JOB]
    assert a.record()["ice_status"] == "PROCESSING" and a.record()["state"] == "processing"
    assert a.sweep().written == 0 and a.saved == []  # and from then on, the cheap way again


def test_a_record_rewritten_by_a_writer_that_binds_no_digest_is_not_vouched_for(new_store):
    """An older version of the code, a save that crashed before its binding: the binding lives
    with the record it describes (the row's column, the identity of the file), so it goes
    when the record is replaced."""
    a = Instance(new_store, {JOB: PROCESSING})
    a.sweep()
    old_code = Instance(new_store, {JOB: UPLOADING}, knows_digests=False)
    assert old_code.check().written == 1
    assert a.store.answer_digests([JOB]) == {}
    assert a.sweep().written == 1
    assert a.record()["ice_status"] == "PROCESSING"


def test_a_final_record_written_by_another_instance_stays_final(new_store):
    a = Instance(new_store, {JOB: PROCESSING})
    a.sweep()
    b = Instance(new_store, {JOB: SUCCEEDED})
    assert b.check().written == 1
    assert not a.tracked() and a.record()["state"] == "succeeded"
    assert a.store.answer_digests([JOB]) == {}
    assert a.sweep().checked == 0  # no longer pending: not swept at all
    assert a.check().written == 0  # and a stale non-final answer never replaces it
    assert a.record()["state"] == "succeeded" and not a.tracked()


def test_a_job_whose_answer_never_changes_still_expires(new_store):
    a = Instance(new_store, {JOB: PROCESSING})
    a.sweep()
    a.now = START + timedelta(hours=70, minutes=59)  # 71 hours after ICE created it
    assert a.sweep().unchanged == 1 and a.saved == []
    a.now = START + timedelta(hours=71)  # 72 hours after: MAX_TRACK_AGE_HOURS
    swept = a.sweep()
    assert swept.expired == 1 and swept.written == 1
    assert a.record()["state"] == "expired" and not a.tracked()
    assert a.sweep().checked == 0


def test_another_instance_sees_the_same_binding_and_settles_cheaply_too(new_store):
    a = Instance(new_store, {JOB: PROCESSING})
    a.sweep()
    b = Instance(new_store, {JOB: PROCESSING})
    assert b.sweep().unchanged == 1 and b.saved == []


def test_a_record_saved_unchanged_without_a_digest_is_bound_by_the_next_sweep(new_store):
    """Records written before digests existed: the first sweep binds them, the next is cheap."""
    old_code = Instance(new_store, {JOB: PROCESSING}, knows_digests=False)
    old_code.sweep()
    assert old_code.store.answer_digests([JOB]) == {}
    a = Instance(new_store, {JOB: PROCESSING})
    assert a.sweep().unchanged == 1 and a.saved == [JOB]
    assert a.sweep().unchanged == 1 and a.saved == []


def test_a_job_ice_answers_differently_is_normalized_and_written(new_store):
    a = Instance(new_store, {JOB: PROCESSING})
    a.sweep()
    a.ice.jobs[JOB] = SUCCEEDED
    swept = a.sweep()
    assert swept.written == 1 and a.saved == [JOB]
    assert a.record()["state"] == "succeeded" and not a.tracked()
