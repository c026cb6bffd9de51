"""OSS: two instances saving one job, the second run whole at each step of the first.

Writer A is paused after each of its requests in turn (its k-th request to OSS), writer B saves
in full meanwhile, then A goes on. Whatever step B lands on: a final record is never replaced by
a non-final one, the later completion wins, no marker is left for a final job and none is lost
for an open one. A writer that finds the version it read claimed by the other reads again, and
may give up (a StoreError: the job stays tracked, and the next sweep saves it): then its save is
tried again, as the next sweep would.
"""
from __future__ import annotations

import threading
from dataclasses import replace
from typing import List, Optional

import pytest
from ice_upload_sync.errors import StoreError
from ice_upload_sync.ice import Credentials
from ice_upload_sync.records import JobRecord
from ice_upload_sync.stores.oss import OssStore

from tests.store_records import LATER, NOW, final, record

PREFIX = "ice/records"
OPEN = replace(record(), answer_digest="d-open")
STALE = replace(record(ice_status="UPLOADING", file_size=3), answer_digest="d-stale")
MOVED = replace(record(ice_status="PROCESSING", file_size=9), answer_digest="d-moved")
DONE = final(completed_at=NOW)
DONE_LATER = replace(final(completed_at=LATER), state="failed", error_code="E")


class Paused:
    """Runs ``store.save(fresh)`` on a thread that stops after its ``step``-th OSS request until resumed."""

    def __init__(self, store: OssStore, step: int) -> None:
        self.store, self.step = store, step
        self.calls = 0
        self.paused, self.resume = threading.Event(), threading.Event()
        self.error: Optional[BaseException] = None
        self.done = threading.Event()
        call = store._call

        def counted(doing, action, **options):
            try:
                return call(doing, action, **options)
            finally:
                if threading.current_thread().name == "writer-a":
                    self.calls += 1
                    if self.calls == self.step:
                        self.paused.set()
                        assert self.resume.wait(30), "never resumed"

        store._call = counted  # type: ignore[method-assign]

    def start(self, fresh: JobRecord) -> None:
        def run():
            try:
                self.store.save(fresh)
            except StoreError as exc:
                self.error = exc
            finally:
                self.done.set()
                self.paused.set()

        threading.Thread(target=run, name="writer-a", daemon=True).start()


def new_store(oss_server, bucket_name) -> OssStore:
    return OssStore(bucket_name, PREFIX, oss_server.endpoint, "cn-shanghai", Credentials("ak", "sk"))


def check(store: OssStore, job_id: str, finals: List[JobRecord]) -> None:
    stored = store.load(job_id)
    if finals:
        assert stored.final, "a final record was replaced by a non-final one"
        assert stored.completed_at == max(record.completed_at for record in finals), "the earlier completion won"
        assert store.tracking(job_id) is None, "a marker was left for a final job"
    elif not stored.final:
        assert store.tracking(job_id) is not None, "an open job lost its marker"


PAIRS = {
    "final, with a stale open answer in between": (DONE, STALE),
    "a stale open answer, with the final one in between": (STALE, DONE),
    "an earlier completion, with a later one in between": (DONE, DONE_LATER),
    "a later completion, with an earlier one in between": (DONE_LATER, DONE),
    "two open answers": (MOVED, STALE),
}


@pytest.mark.parametrize("first, second", PAIRS.values(), ids=list(PAIRS))
def test_the_other_writer_at_each_step(oss_server, bucket_name, first, second):
    for step in range(1, 12):
        job_id = f"race{step:04d}"
        a_store, b_store = new_store(oss_server, bucket_name), new_store(oss_server, bucket_name)
        a_store.save(replace(OPEN, job_id=job_id))  # an open job, recorded and bound
        a, b = replace(first, job_id=job_id), replace(second, job_id=job_id)
        paused = Paused(a_store, step)
        paused.start(a)
        assert paused.paused.wait(30)
        reached = not paused.done.is_set()
        b_error = None
        try:
            b_store.save(b)
        except StoreError as exc:  # the version it read stayed claimed by A: the next sweep saves it
            b_error = exc
        paused.resume.set()
        assert paused.done.wait(30)
        for store, fresh, error in ((a_store, a, paused.error), (b_store, b, b_error)):
            if error is not None:
                store.save(fresh)  # what the next sweep does
        check(new_store(oss_server, bucket_name), job_id, [r for r in (a, b) if r.final])
        if not reached:
            return  # A has fewer requests than this step: every step was covered
    raise AssertionError("A never finished within the steps tried")
