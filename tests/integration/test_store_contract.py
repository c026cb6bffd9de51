"""The RecordStore contract (``stores.base``), once, for every store: the same scenarios, each store behind them.

Every test here runs against each entry of ``STORES``: the file store on a temp dir, OSS (the
official oss2 SDK to moto's server speaking OSS's dialect), Tablestore (the official SDK to the
local Tablestore server) and the unit tests' memory store. A new store gets the whole contract
by adding one factory there. What only one store does (the file store's fsyncs, OSS's leases,
Tablestore's seal and row conditions, what a save costs each in requests, the answer digests
that only some vouch for) stays in that store's own test module.
"""
from __future__ import annotations

import contextlib
import functools
import os
import re
import time
import uuid
from dataclasses import dataclass, replace
from typing import Callable, Dict, List, Optional

import oss2
import pytest
import tablestore as ots
from ice_upload_sync import notify
from ice_upload_sync.errors import StoreError
from ice_upload_sync.ice import Credentials
from ice_upload_sync.records import JobRecord
from ice_upload_sync.stores import RecordStore, Tracked, Tracking
from ice_upload_sync.stores.file import FileStore
from ice_upload_sync.stores.oss import OssStore
from ice_upload_sync.stores.tablestore import OUTBOX_PREFIX, TablestoreStore

from tests.conftest import ACCESS_KEY_ID, ACCESS_KEY_SECRET, TABLESTORE_INSTANCE
from tests.store_records import LATER, NOW, final, race, record
from tests.support.fakes import MemoryStore

PLAIN = Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET)
JOB = "job00001"
EARLIER = "2026-11-20T00:00:00Z"
PAGE_SIZE = 3  # small, so that every listing below spans pages where a store lists by page


def ids(count: int) -> List[str]:
    return [f"job{n:05d}" for n in range(count)]


def expired(job_id: str = JOB) -> JobRecord:
    """What the sweep records for a job in flight past MAX_TRACK_AGE_HOURS: our verdict, final."""
    return record(job_id, "expired")


# ---------------------------------------------------------------- the stores


@dataclass
class Backend:
    """One store under test, and what a test needs to reach behind it."""

    kind: str
    store: RecordStore
    twin: Callable[[], RecordStore]  # another store object on the same data: another FC instance's
    corrupt: Callable[[str], None]  # the job's stored record (it exists) no longer parses
    put_marker: Callable[[str, Optional[Tracking]], None]  # a marker written by hand; None: one without a body
    fail_writes: Callable[[str], None]  # "jobs/<id>.json", "pending/<id>" or "outbox/<id>": refused from now on
    refusal: str  # what the StoreError of a refused write says
    leftovers: Callable[[], List[str]] = lambda: []  # what no finished save may leave behind (locks, temporary files)
    writers_met: Callable[[], Optional[bool]] = lambda: None  # racing writers contended since ``reset`` (None: untold)
    reset: Callable[[], None] = lambda: None
    race_rounds: int = 100  # the fewest rounds of a race (on until the writers met, where the store tells)
    marker_bodies: bool = True  # a marker is stored as bytes (or columns) that a hand edit can leave unreadable


def memory_backend(request) -> Backend:
    store = MemoryStore()

    def put_marker(job_id: str, tracking: Optional[Tracking]) -> None:
        assert tracking is not None, "the memory store keeps Tracking objects: there is no body to lose"
        store.markers[job_id] = tracking

    # one object holds the data: the twin is the store itself, its lock the only one
    return Backend("memory", store, twin=lambda: store, corrupt=store.corrupt.add, put_marker=put_marker,
                   fail_writes=store.refused.add, refusal="refused", marker_bodies=False)


def file_backend(request) -> Backend:
    root = request.getfixturevalue("tmp_path") / "records"
    store = FileStore(str(root))
    failing: List[str] = []
    write_atomic = store._write_atomic

    def guarded(path, data, **options):
        if any(path.endswith(fragment) for fragment in failing):
            raise StoreError(f"file store {store.root}: cannot write {os.path.basename(path)}: injected")
        return write_atomic(path, data, **options)

    store._write_atomic = guarded  # type: ignore[method-assign]

    def corrupt(job_id: str) -> None:
        (root / "jobs" / f"{job_id}.json").write_text("{half a rec")

    def put_marker(job_id: str, tracking: Optional[Tracking]) -> None:
        (root / "pending" / job_id).write_bytes(b"" if tracking is None else tracking.to_json())

    return Backend("file", store, twin=lambda: FileStore(str(root)), corrupt=corrupt, put_marker=put_marker,
                   fail_writes=lambda fragment: failing.append(os.sep + fragment.replace("/", os.sep)),
                   refusal="injected", leftovers=lambda: [str(path) for path in root.rglob("*.tmp")])


def oss_backend(request) -> Backend:
    server = request.getfixturevalue("oss_server")
    request.addfinalizer(server.clear_faults)
    bucket, prefix = f"sc-{uuid.uuid4().hex[:24]}", "ice/records"
    server.create_bucket(bucket)
    raw = oss2.Bucket(oss2.Auth("ak", "sk"), server.endpoint, bucket)
    new_store = functools.partial(OssStore, bucket, prefix, server.endpoint, "cn-shanghai", PLAIN,
                                  page_size=PAGE_SIZE)

    def put_marker(job_id: str, tracking: Optional[Tracking]) -> None:
        raw.put_object(f"{prefix}/pending/{job_id}", b"" if tracking is None else tracking.to_json())

    def fail_writes(fragment: str) -> None:
        server.inject_fault(403, "AccessDenied", "You have no right to access this object.", method="PUT",
                            path_contains=f"/{bucket}/{prefix}/{fragment}", count=None)

    def writers_met() -> bool:  # one writer found the job's lock taken by the other
        locks = f"/{bucket}/{prefix}/locks/"
        return any(r.path.startswith(locks) and r.method == "PUT" and r.status == 409 for r in server.requests)

    def leftovers() -> List[str]:
        """A job's lease, or a claim on the version of its record that is still in place (a claim on a
        version a save replaced stays by design: OssStore.tidy removes it an hour later)."""
        left = []
        for info in oss2.ObjectIteratorV2(raw, prefix=f"{prefix}/locks/"):
            job_id, _, version = info.key[len(f"{prefix}/locks/"):].partition("/")
            if not version:
                left.append(info.key)
                continue
            current = "none"
            with contextlib.suppress(oss2.exceptions.NoSuchKey):
                current = raw.head_object(f"{prefix}/jobs/{job_id}.json").etag.lower()
            if version == current:
                left.append(info.key)
        return left

    return Backend("oss", new_store(), twin=new_store,
                   corrupt=lambda job_id: raw.put_object(f"{prefix}/jobs/{job_id}.json", b"{half a rec"),
                   put_marker=put_marker, fail_writes=fail_writes, refusal="access denied",
                   leftovers=leftovers,
                   writers_met=writers_met, reset=server.reset_requests, race_rounds=20)


def tablestore_backend(request) -> Backend:
    server = request.getfixturevalue("tablestore_server")
    request.addfinalizer(server.clear_faults)
    table = f"sc_{uuid.uuid4().hex[:12]}"
    new_store = functools.partial(TablestoreStore, TABLESTORE_INSTANCE, table, server.endpoint, PLAIN,
                                  page_size=PAGE_SIZE)
    store = new_store()
    store.create_tables()

    def corrupt(job_id: str) -> None:  # the cell no longer parses, and the row's fingerprint says nothing
        server.set_columns(table, [("job_id", job_id)], user_data="{not json", info="stale")

    def put_marker(job_id: str, tracking: Optional[Tracking]) -> None:
        columns = [("other", 1)] if tracking is None else [("first_seen_at", tracking.first_seen_at),
                                                           ("source", tracking.source)]
        store.client.put_row(store.pending_table, ots.Row([("job_id", job_id)], columns),
                             ots.Condition(ots.RowExistenceExpectation.IGNORE))

    def fail_writes(fragment: str) -> None:
        kind, _, name = fragment.partition("/")
        if kind == "jobs":
            server.deny_writes(table, [("job_id", name[:-len(".json")])])
        else:  # markers and outbox entries share the pending table
            server.deny_writes(store.pending_table, [("job_id", (OUTBOX_PREFIX if kind == "outbox" else "") + name)])

    def writers_met() -> bool:  # one writer's row condition failed: the other had written first
        return any("OTSConditionCheckFail" in call.row_errors for call in server.calls)

    return Backend("tablestore", store, twin=new_store, corrupt=corrupt, put_marker=put_marker,
                   fail_writes=fail_writes, refusal="OTSNoPermissionAccess", writers_met=writers_met,
                   reset=server.reset_calls, race_rounds=40)


# A new store: one factory here (request -> Backend), and the whole contract runs against it.
STORES: Dict[str, Callable[[pytest.FixtureRequest], Backend]] = {
    "memory": memory_backend,
    "file": file_backend,
    "oss": oss_backend,
    "tablestore": tablestore_backend,
}


@pytest.fixture(params=list(STORES))
def backend(request) -> Backend:
    return STORES[request.param](request)


@pytest.fixture
def store(backend) -> RecordStore:
    return backend.store


# ---------------------------------------------------------------- save and load


def test_a_saved_record_loads_back_as_it_was(backend, store):
    rec = record(upload_url="https://x/a.mp4", media_id="m1", ice_status="UPLOADING", file_size=12,
                 created_at="2026-11-25T02:00:00Z", user_data={"biz": {"id": 7}, "title": "clip \u2713 \U0001f600"},
                 error_message="\u00e9")
    result = store.save(rec)
    assert result.changed and result.record == rec
    assert store.load(JOB) == rec and backend.twin().load(JOB) == rec  # in the store, not in the object
    store.save(final("job00002", user_data=None))
    assert store.load("job00002") == final("job00002", user_data=None)  # absent fields stay absent


def test_a_job_never_saved_has_no_record_and_no_marker(store):
    assert store.load("nobody01") is None and store.tracking("nobody01") is None
    assert list(store.pending_job_ids()) == [] and list(store.records()) == []


def test_a_corrupt_record_is_a_store_error(backend, store):
    store.save(record())
    backend.corrupt(JOB)
    with pytest.raises(StoreError, match="corrupt"):
        store.load(JOB)


# ---------------------------------------------------------------- the merge rule


def test_the_same_information_again_is_not_written(store):
    assert store.save(record()).changed
    result = store.save(replace(record(), updated_at=LATER, ice_request_id="r2"))
    assert not result.changed and result.record.same_information(record())
    # what stays stored is the first look (the file, OSS and memory stores also answer with it;
    # Tablestore, which tells "unchanged" from a fingerprint without decoding the row, answers
    # with the fresh record's bookkeeping: test_oss_store.py keeps the stricter assertion)
    assert store.load(JOB).updated_at == NOW and store.load(JOB).ice_request_id == "r"


def test_a_final_record_is_never_replaced_by_a_non_final_one(store):
    store.save(final())
    for stale in ("processing", "pending"):
        assert not store.save(record(state=stale)).changed
    assert store.load(JOB).state == "succeeded"
    assert store.tracking(JOB) is None and list(store.pending_job_ids()) == []


def test_between_final_records_the_later_completion_wins(store):
    store.save(final(completed_at=LATER))
    assert not store.save(record(JOB, "failed", completed_at=NOW, error_code="E")).changed
    assert not store.save(replace(final(), state="failed", error_code="E")).changed
    assert store.save(replace(final(completed_at="2026-11-25T05:00:00Z"), state="failed")).changed
    assert store.save(record(JOB, "failed", completed_at="2026-11-26T00:00:00Z", error_code="E")).changed
    assert store.load(JOB).state == "failed" and store.load(JOB).completed_at == "2026-11-26T00:00:00Z"


def test_expired_never_replaces_a_final_record(store):
    store.save(final())
    assert not store.save(expired()).changed
    assert store.load(JOB).state == "succeeded"


def test_a_real_outcome_replaces_expired(store):
    for job_id, outcome in (("job00001", final("job00001")),
                            ("job00002", record("job00002", "failed", error_code="E"))):  # no completion time
        store.save(record(job_id))
        assert store.save(expired(job_id)).changed
        assert store.tracking(job_id) is None  # expired is final: no longer swept
        assert store.save(outcome).changed
        assert store.load(job_id).state == outcome.state
    assert list(store.pending_job_ids()) == []


# ---------------------------------------------------------------- the pending marker


def test_a_non_final_save_opens_the_marker_and_a_final_save_removes_it(store):
    store.save(record())
    assert store.tracking(JOB) == Tracking(JOB, NOW, "timer")
    assert list(store.pending_job_ids()) == [JOB]
    store.save(final())
    assert store.load(JOB).final
    assert store.tracking(JOB) is None and list(store.pending_job_ids()) == []


def test_tracking_keeps_the_first_time_and_never_resurrects_a_final_job(store):
    assert store.track(Tracking(JOB, EARLIER, "callback")) is Tracked.CREATED
    assert store.track(Tracking(JOB, NOW, "timer")) is Tracked.ALREADY
    assert store.tracking(JOB) == Tracking(JOB, EARLIER, "callback")
    store.save(record())
    assert store.load(JOB).first_seen_at == EARLIER  # a first record takes its time from the marker
    assert store.tracking(JOB) == Tracking(JOB, EARLIER, "callback")
    store.save(record(state="failed", completed_at=NOW))
    assert store.track(Tracking(JOB, NOW, "callback")) is Tracked.SETTLED
    assert store.tracking(JOB) is None and list(store.pending_job_ids()) == []
    store.save(final("job00003"))  # final at its first save: never tracked
    assert store.track(Tracking("job00003", NOW, "callback")) is Tracked.SETTLED
    assert store.tracking("job00003") is None


def test_an_expired_job_is_tracked_again(store):
    store.save(expired())
    assert store.tracking(JOB) is None
    # a callback or a check for it: ICE may have an outcome, and the next sweep must be able to record it
    assert store.track(Tracking(JOB, LATER, "callback")) is Tracked.CREATED
    assert store.track(Tracking(JOB, LATER, "callback")) is Tracked.ALREADY
    assert list(store.pending_job_ids()) == [JOB]
    assert not store.save(expired()).changed  # still in flight: stays expired, and no longer swept
    assert store.tracking(JOB) is None and list(store.pending_job_ids()) == []
    assert store.track(Tracking(JOB, LATER, "callback")) is Tracked.CREATED
    assert store.save(final()).changed  # the real outcome
    assert store.tracking(JOB) is None and store.track(Tracking(JOB, LATER, "callback")) is Tracked.SETTLED


def test_a_marker_left_behind_for_a_final_job_is_removed_by_the_next_save(backend, store):
    store.save(final())
    # a crash between writing the final record and removing the marker (track() refuses final jobs: by hand)
    backend.put_marker(JOB, Tracking(JOB, NOW, "timer"))
    assert list(store.pending_job_ids()) == [JOB]
    assert not store.save(final()).changed  # the same answer again
    assert list(store.pending_job_ids()) == []
    backend.put_marker(JOB, Tracking(JOB, NOW, "timer"))
    assert not store.save(record(state="pending")).changed  # what a sweep's stale answer does
    assert list(store.pending_job_ids()) == [] and store.tracking(JOB) is None


def test_a_marker_without_a_readable_body_falls_back_to_its_write_time(backend, store):
    if not backend.marker_bodies:
        pytest.skip(f"the {backend.kind} store keeps markers as Tracking objects: there is no body to lose")
    backend.put_marker("job00009", None)
    marker = store.tracking("job00009")
    assert marker.source == "timer" and marker.first_seen_at.endswith("Z")
    assert marker.first_seen_at.startswith(time.strftime("%Y-%m-%dT", time.gmtime()))


# ---------------------------------------------------------------- listing and cursors


def test_pending_jobs_are_listed_in_ascending_order_and_after_a_cursor(store):
    jobs = ids(10)
    for number, job_id in sorted(enumerate(jobs), key=lambda pair: pair[0] % 3):  # out of order
        if number % 2:
            store.save(record(job_id))
        else:
            assert store.track(Tracking(job_id, NOW, "callback"))
    store.save(final("job00003"))  # final: no longer pending
    store.save_cursor("sweep", "job00005")  # a cursor is not a job
    open_jobs = [job_id for job_id in jobs if job_id != "job00003"]
    assert list(store.pending_job_ids()) == open_jobs
    assert list(store.pending_job_ids(after="job00002")) == open_jobs[3:]  # strictly after, job00003 gone
    assert list(store.pending_job_ids(after="job00004x")) == open_jobs[4:]  # a cursor that names no job
    assert list(store.pending_job_ids(after="job0000")) == open_jobs
    assert list(store.pending_job_ids(after="job00009")) == []


def test_sweep_cursors_are_kept_and_forgotten(backend, store):
    assert store.load_cursor("sweep-0-of-2") is None
    store.save_cursor("sweep-0-of-2", "job00042")
    assert store.load_cursor("sweep-0-of-2") == "job00042" and store.load_cursor("sweep") is None
    store.save_cursor("sweep", "job00007")
    assert backend.twin().load_cursor("sweep-0-of-2") == "job00042"
    assert store.load_cursor("sweep") == "job00007"
    store.save_cursor("sweep-0-of-2", None)
    assert store.load_cursor("sweep-0-of-2") is None and store.load_cursor("sweep") == "job00007"
    store.save_cursor("sweep-0-of-2", None)  # forgetting twice is fine
    assert list(store.pending_job_ids()) == []


def test_records_are_listed_in_ascending_order_after_after(store):
    jobs = ids(7)
    for job_id in reversed(jobs):
        store.save(final(job_id) if job_id in ("job00002", "job00005") else record(job_id))
    assert [rec.job_id for rec in store.records()] == jobs
    assert list(store.records()) == [store.load(job_id) for job_id in jobs]
    assert [rec.job_id for rec in store.records(after="job00002")] == jobs[3:]
    assert [rec.job_id for rec in store.records(after="job00003x")] == jobs[4:]
    assert list(store.records(after="job00006")) == []


def test_an_unreadable_record_raises_or_is_handed_over_and_skipped(backend, store):
    store.save_many([record(job_id) for job_id in ids(3)])
    backend.corrupt("job00001")
    with pytest.raises(StoreError):
        list(store.records())
    skipped = []
    listed = store.records(unreadable=lambda job_id, error: skipped.append((job_id, error)))
    assert [rec.job_id for rec in listed] == ["job00000", "job00002"]  # one bad record hides no other
    assert [job_id for job_id, _ in skipped] == ["job00001"]
    assert isinstance(skipped[0][1], StoreError) and "corrupt" in str(skipped[0][1])
    assert [rec.job_id for rec in store.records(after="job00001", unreadable=lambda *_: None)] == ["job00002"]


# ---------------------------------------------------------------- save_many


def test_save_many_answers_each_record_in_order_and_a_refused_one_fails_alone(backend, store):
    store.save(final("job00001"))
    backend.fail_writes("jobs/job00003.json")
    results = store.save_many([final(job_id) for job_id in ids(5)])
    assert isinstance(results[3], StoreError)
    assert "job00003" in str(results[3]) and backend.refusal in str(results[3])
    assert [(result.record.job_id, result.changed) for index, result in enumerate(results) if index != 3] == [
        ("job00000", True), ("job00001", False), ("job00002", True), ("job00004", True)]
    assert store.load("job00003") is None
    with pytest.raises(StoreError):
        store.save(final("job00003"))


def test_a_record_whose_marker_cannot_be_written_is_not_written(backend, store):
    backend.fail_writes(f"pending/{JOB}")
    with pytest.raises(StoreError, match=backend.refusal):
        store.save(record())
    assert store.load(JOB) is None  # a non-final record never exists without its marker
    assert store.save(final()).changed  # a final one needs none


def test_a_job_named_twice_in_one_save_many_is_saved_in_the_order_given(store):
    results = store.save_many([record(ice_status="UPLOADING"), final(), record(ice_status="DOWNLOADING"),
                               replace(final(completed_at=LATER), media_id="m2"),
                               record("job00002"), final("job00002"), record("job00002", state="pending")])
    assert [result.changed for result in results] == [True, True, False, True, True, True, False]
    assert store.load(JOB).media_id == "m2" and store.load("job00002").state == "succeeded"
    assert list(store.pending_job_ids()) == [] and store.tracking("job00002") is None


def test_a_record_that_is_not_strict_json_fails_alone_and_leaves_nothing_behind(backend, store):
    odd = [record("job00002", user_data={"a": float("nan")}), record("job00003", error_message="cut \ud83d"),
           record("job00004", user_data=[float("inf")]), record("job00005", media_id="m\udc00")]
    results = store.save_many([record("job00000"), record("job00001")] + odd + [final("job00006")])
    for result, rec in zip(results[2:6], odd):
        assert isinstance(result, StoreError), rec
        # named for what it is (Tablestore, which checks each column, names it without the codec's
        # error: test_tablestore_store.py keeps that assertion)
        assert re.search(f"{rec.job_id}.*(not strict JSON|not valid UTF-8)", str(result)), result
        assert store.load(rec.job_id) is None and store.tracking(rec.job_id) is None
    assert all(result.changed for result in results[:2] + results[6:])
    assert list(store.pending_job_ids()) == ["job00000", "job00001"]
    with pytest.raises(StoreError, match="job00002"):
        store.save(odd[0])
    assert backend.leftovers() == []


def test_a_corrupt_record_fails_its_own_save_and_not_the_others_saved_with_it(backend, store):
    store.save_many([record(job_id) for job_id in ids(3)])
    backend.corrupt("job00001")
    results = store.save_many([record(job_id, state="pending") for job_id in ids(3)])
    assert isinstance(results[1], StoreError) and "job00001" in str(results[1])
    assert results[0].changed and results[2].changed


# ---------------------------------------------------------------- the outbox entry a save owes


def test_a_save_that_owes_an_event_writes_its_entry_before_the_record(backend, store):
    store.notify_states = ("succeeded", "failed", "expired")
    backend.fail_writes(f"jobs/{JOB}.json")
    with pytest.raises(StoreError):
        store.save(final())
    assert store.load(JOB) is None  # the record never came; the entry is there
    assert [(entry.job_id, entry.state, entry.event_id) for entry in store.owed()] == [
        (JOB, "succeeded", notify.event_id(JOB, "succeeded"))]
    assert store.save(final("job00002")).owed
    assert not store.save(record("job00003")).owed  # not an announced state
    assert [entry.job_id for entry in store.owed()] == [JOB, "job00002"]


def test_no_state_announced_owes_nothing(store):
    result = store.save(final())
    assert result.changed and not result.owed
    assert list(store.owed()) == []


# ---------------------------------------------------------------- racing writers


def race_rounds(backend: Backend, play: Callable[[int, str], None]) -> None:
    """``play(round_number, job_id)`` on a fresh job each round: at least ``backend.race_rounds``, and on
    until the writers have met where the store can tell (a loaded machine may run the two threads
    one after the other for a while); then nothing a save holds only while it runs is left."""
    backend.reset()
    for round_number in range(backend.race_rounds * 10):
        play(round_number, f"race{round_number:04d}")
        if round_number + 1 >= backend.race_rounds and backend.writers_met() is not False:
            break
    assert backend.writers_met() is not False, "the writers never met: the test proves nothing"
    assert backend.leftovers() == []


def test_racing_final_and_stale_writers_never_end_non_final(backend):
    stores = [backend.twin(), backend.twin()]  # two FC instances

    def play(round_number: int, job_id: str) -> None:
        if round_number % 2:  # the job open, as it is when ICE finishes it; else a first record each
            stores[0].save(record(job_id))
        race(stores, [record(job_id, "pending"), final(job_id)], vouch_first=round_number % 4 >= 2)
        assert stores[0].load(job_id).state == "succeeded"
        assert stores[0].tracking(job_id) is None  # no marker left for a final job

    race_rounds(backend, play)


def test_racing_completions_the_later_one_wins(backend):
    stores = [backend.twin(), backend.twin()]
    later = replace(final(completed_at=LATER), state="failed", error_code="E")

    def play(round_number: int, job_id: str) -> None:
        if round_number % 2:
            stores[0].save(record(job_id))
        race(stores, [replace(later, job_id=job_id), final(job_id)], vouch_first=round_number % 4 >= 2)
        stored = stores[0].load(job_id)
        assert (stored.state, stored.completed_at) == ("failed", LATER)
        assert stores[0].tracking(job_id) is None

    race_rounds(backend, play)


def test_racing_open_writers_never_lose_the_marker(backend):
    stores = [backend.twin(), backend.twin()]

    def play(round_number: int, job_id: str) -> None:
        if round_number % 2:
            stores[0].save(record(job_id, "pending"))
        race(stores, [record(job_id), record(job_id, ice_status="UPLOADING")], vouch_first=round_number % 4 >= 2)
        assert not stores[0].load(job_id).final
        assert stores[0].tracking(job_id) is not None and job_id in set(stores[0].pending_job_ids())

    race_rounds(backend, play)
