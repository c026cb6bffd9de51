"""The outbox of completion events in every store (contract section 9): what ``save`` owes and when.

Each store writes a job's outbox entry before the record that owes it, keeps one entry per job
(a newer announced state replaces it), settles and reschedules only the event it was asked
about, lists entries of final jobs on their own, and does no outbox I/O at all when
notifications are off. An entry is claimed before it is sent: one claim wins, only its holder
settles or reschedules it, and a claim its holder never settles expires.
"""
from __future__ import annotations

import base64
import functools
import json
import logging
import os
import time
import uuid
from dataclasses import replace
from datetime import timedelta
from types import SimpleNamespace
from typing import Callable, List, Optional

import oss2
import pytest
import tablestore as ots
from ice_upload_sync import notify
from ice_upload_sync.config import Settings
from ice_upload_sync.errors import StoreError
from ice_upload_sync.ice import Credentials
from ice_upload_sync.notify import Owed
from ice_upload_sync.outbox import CLAIM_S, Outbox
from ice_upload_sync.records import format_time, parse_time
from ice_upload_sync.stores.file import FileStore
from ice_upload_sync.stores.oss import OssStore
from ice_upload_sync.stores.tablestore import OUTBOX_PREFIX, TablestoreStore

from tests.conftest import ACCESS_KEY_ID, ACCESS_KEY_SECRET, TABLESTORE_INSTANCE
from tests.store_records import LATER, NOW, at_once, final, record
from tests.support.webhook_receiver import WebhookReceiver

PLAIN = Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET)
ANNOUNCED = ("succeeded", "failed", "expired")
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()


class Outboxed:
    """A store of one kind, and what a test needs to look behind it."""

    def __init__(self, kind: str, store, *, entry: Callable[[str], Optional[bytes]],
                 put_entry: Callable[[str, bytes], None], fail_writes: Callable[[str], None],
                 outbox_io: Callable[[], List[str]], reset_io: Callable[[], None], twin: Callable[[], object]) -> None:
        self.kind = kind
        self.store = store
        self.twin = twin  # another store object on the same data: another FC instance's
        self.entry_bytes = entry  # the job's entry as stored (None: none)
        self.put_entry = put_entry  # write an entry by hand (a corrupt one)
        self.fail_writes = fail_writes  # every write to this path fragment fails from now on
        self.outbox_io = outbox_io  # what touched the outbox since reset_io
        self.reset_io = reset_io

    def entry(self, job_id: str) -> Optional[Owed]:
        raw = self.entry_bytes(job_id)
        return None if raw is None else Owed.from_json(raw)


def file_store(tmp_path, monkeypatch, page_size: int) -> Outboxed:
    store = FileStore(str(tmp_path / "records"))
    outbox = tmp_path / "records" / "outbox"
    failing: List[str] = []
    touched: List[str] = []
    write_atomic = store._write_atomic

    def guarded(path, data, **options):
        if any(fragment in path for fragment in failing):
            raise StoreError(f"file store {store.root}: cannot write {os.path.basename(path)}: injected")
        return write_atomic(path, data, **options)

    monkeypatch.setattr(store, "_write_atomic", guarded)
    real_open, real_scandir = os.open, os.scandir

    def watched_open(path, *args, **kwargs):
        if os.fspath(path).startswith(str(outbox)):
            touched.append(f"open {path}")
        return real_open(path, *args, **kwargs)

    def watched_scandir(path=".", *args, **kwargs):
        if os.fspath(path).startswith(str(outbox)):
            touched.append(f"scandir {path}")
        return real_scandir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", watched_open)
    monkeypatch.setattr(os, "scandir", watched_scandir)

    def entry(job_id):
        path = outbox / job_id
        return path.read_bytes() if path.is_file() else None

    def put_entry(job_id, data):
        outbox.mkdir(parents=True, exist_ok=True)
        (outbox / job_id).write_bytes(data)

    def fail_writes(fragment):
        failing.append(os.sep + fragment)

    def outbox_io():
        return touched + (["outbox/ exists"] if outbox.exists() else [])

    return Outboxed("file", store, entry=entry, put_entry=put_entry, fail_writes=fail_writes, outbox_io=outbox_io,
                    reset_io=touched.clear, twin=lambda: FileStore(store.root))


def oss_store(server, page_size: int) -> Outboxed:
    bucket = f"ob-{uuid.uuid4().hex[:24]}"
    server.create_bucket(bucket)
    prefix = "ice/records"
    store = OssStore(bucket, prefix, server.endpoint, "cn-shanghai", PLAIN, page_size=page_size)
    raw = oss2.Bucket(oss2.Auth("ak", "sk"), server.endpoint, bucket)

    def entry(job_id):
        try:
            return raw.get_object(f"{prefix}/outbox/{job_id}").read()
        except oss2.exceptions.NoSuchKey:
            return None

    def put_entry(job_id, data):
        raw.put_object(f"{prefix}/outbox/{job_id}", data)

    def fail_writes(fragment):
        server.inject_fault(403, "AccessDenied", "You have no right to access this object.", method="PUT",
                            path_contains=f"/{bucket}/{prefix}/{fragment}", count=None)

    def outbox_io():
        return [f"{request.method} {request.path}" for request in server.requests
                if "/outbox" in request.path or "outbox" in request.query]

    return Outboxed("oss", store, entry=entry, put_entry=put_entry, fail_writes=fail_writes, outbox_io=outbox_io,
                    reset_io=server.reset_requests,
                    twin=lambda: OssStore(bucket, prefix, server.endpoint, "cn-shanghai", PLAIN, page_size=page_size))


def tablestore_store(server, page_size: int) -> Outboxed:
    table = f"ob_{uuid.uuid4().hex[:12]}"
    store = TablestoreStore(TABLESTORE_INSTANCE, table, server.endpoint, PLAIN, page_size=page_size)
    store.create_tables()
    pending = f"{table}_pending"

    def entry(job_id):
        row = server.row(pending, [("job_id", OUTBOX_PREFIX + job_id)])
        return None if row is None else row["entry"].encode()

    def put_entry(job_id, data):
        store.client.put_row(pending, ots.Row([("job_id", OUTBOX_PREFIX + job_id)],
                                              [("entry", data.decode("utf-8", "replace")), ("event_id", "x")]),
                             ots.Condition(ots.RowExistenceExpectation.IGNORE))

    def fail_writes(fragment):
        kind, _, job_id = fragment.partition("/")
        if kind == "outbox":
            server.deny_writes(pending, [("job_id", OUTBOX_PREFIX + job_id)])
        else:  # jobs/<job_id>.json: the record's row
            server.deny_writes(table, [("job_id", job_id[:-len(".json")])])

    def outbox_io():
        # every call's rows are counted by the server; the outbox adds rows, or GetRange calls, of its own
        return [f"{call.api} x{call.rows}" for call in server.calls]

    return Outboxed("tablestore", store, entry=entry, put_entry=put_entry, fail_writes=fail_writes,
                    outbox_io=outbox_io, reset_io=server.reset_calls,
                    twin=lambda: TablestoreStore(TABLESTORE_INSTANCE, table, server.endpoint, PLAIN,
                                                 page_size=page_size))


@pytest.fixture(params=["file", "oss", "tablestore"])
def kind(request):
    return request.param


@pytest.fixture
def make(kind, request, tmp_path, monkeypatch):
    """``make(page_size=...)``: a fresh store of this test's kind, owing events for ANNOUNCED."""
    made = []

    def build(page_size: int = 1000, states=ANNOUNCED) -> Outboxed:
        if kind == "file":
            outboxed = file_store(tmp_path / uuid.uuid4().hex[:8], monkeypatch, page_size)
        elif kind == "oss":
            server = request.getfixturevalue("oss_server")
            made.append(server)
            outboxed = oss_store(server, page_size)
        else:
            server = request.getfixturevalue("tablestore_server")
            made.append(server)
            outboxed = tablestore_store(server, page_size)
        outboxed.store.notify_states = tuple(states)
        return outboxed

    yield build
    for server in made:
        server.clear_faults()


@pytest.fixture
def box(make) -> Outboxed:
    return make()


# ---------------------------------------------------------------- what save owes


def test_a_final_save_writes_its_entry_before_the_record(box):
    box.fail_writes("jobs/job00001.json")
    with pytest.raises(StoreError):
        box.store.save(final())
    entry = box.entry("job00001")  # the entry is durable; the record never came
    assert entry is not None and box.store.load("job00001") is None
    assert (entry.state, entry.event_id, entry.owed_since, entry.tries) == (
        "succeeded", notify.event_id("job00001", "succeeded"), NOW, 0)
    # what the outbox makes of it: wait while the record may still come, drop it once it never did
    assert notify.entry_status(entry, None, parse_time(NOW)) == notify.WAIT
    assert notify.entry_status(entry, None, parse_time(NOW) + timedelta(hours=1)) == notify.DROP


def test_a_failed_entry_write_fails_its_job_and_writes_no_record(box):
    box.fail_writes("outbox/job00001")
    with pytest.raises(StoreError):
        box.store.save(final())
    assert box.store.load("job00001") is None and box.entry("job00001") is None
    result = box.store.save(final("job00002"))  # other jobs are not affected
    assert result.owed and box.entry("job00002") is not None


def test_save_many_owes_each_job_that_reaches_an_announced_state(box):
    box.store.save(record("job00003"))
    if hasattr(box.store, "save_many"):
        box.fail_writes("jobs/job00002.json")
        results = box.store.save_many([final("job00001"), final("job00002"), final("job00003"),
                                       record("job00004")])
        assert isinstance(results[1], StoreError)
        assert [getattr(result, "owed", None) for result in results] == [True, None, True, False]
        assert box.entry("job00002") is not None and box.store.load("job00002") is None
    else:
        assert all(box.store.save(final(job_id)).owed for job_id in ("job00001", "job00003"))
        assert not box.store.save(record("job00004")).owed
    assert box.entry("job00001").state == box.entry("job00003").state == "succeeded"
    assert box.entry("job00004") is None
    assert list(box.store.pending_job_ids()) == ["job00004"]  # final jobs' markers are gone, entries stay


def test_the_same_final_record_again_owes_nothing(box):
    first = box.store.save(final())
    assert first.changed and first.owed
    stored = box.entry_bytes("job00001")
    again = box.store.save(replace(final(), updated_at=LATER, ice_request_id="r2"))
    assert not again.changed and not again.owed
    newer = box.store.save(replace(final(completed_at=LATER), updated_at=LATER))  # a rewrite in the same state
    assert newer.changed and not newer.owed
    assert box.entry_bytes("job00001") == stored


def test_a_non_final_state_owes_nothing_unless_it_is_announced(make):
    box = make()
    result = box.store.save(record())
    assert result.changed and not result.owed and box.entry("job00001") is None
    box = make(states=("processing", "succeeded"))
    assert box.store.save(record()).owed
    assert box.entry("job00001").state == "processing"
    assert not box.store.save(replace(record(), updated_at=LATER, file_size=5)).owed  # still processing
    assert box.store.save(replace(final(), updated_at=LATER)).owed
    entry = box.entry("job00001")  # the newer state replaced the entry
    assert (entry.state, entry.event_id, entry.owed_since) == (
        "succeeded", notify.event_id("job00001", "succeeded"), LATER)


# ---------------------------------------------------------------- settle and reschedule


def test_settle_with_a_stale_event_leaves_the_newer_entry(make):
    box = make(states=("processing", "succeeded"))
    box.store.save(record())
    older = box.entry("job00001")
    box.store.save(final())
    assert box.store.settle(older) is False
    newer = box.entry("job00001")
    assert newer.state == "succeeded"
    assert box.store.settle(newer) is True
    assert box.entry("job00001") is None
    assert box.store.settle(newer) is False


def test_reschedule_replaces_a_live_entry_and_never_recreates_a_settled_one(box):
    box.store.save(final())
    entry = box.entry("job00001")
    later = replace(entry, tries=1, next_attempt_at=LATER, last_error="example.com: HTTP 503")
    assert box.store.reschedule(later) is True
    assert box.entry("job00001") == later
    stale = replace(later, event_id=notify.event_id("job00001", "failed"))
    assert box.store.reschedule(stale) is False and box.entry("job00001") == later
    assert box.store.settle(entry) is True
    assert box.store.reschedule(replace(later, tries=2)) is False
    assert box.entry("job00001") is None


def test_owe_creates_or_replaces_an_entry(box):
    entry = Owed.for_record(final(), NOW)
    box.store.owe(entry)
    assert box.entry("job00001") == entry
    replaced = Owed.for_record(record(state="failed", completed_at=LATER), LATER)
    box.store.owe(replaced)
    assert box.entry("job00001") == replaced


# ---------------------------------------------------------------- claims: one sender per event


T0 = parse_time(NOW) + timedelta(minutes=1)  # the entries of ``final()`` are due from NOW
CLAIMED_FOR = timedelta(seconds=CLAIM_S)


def test_a_claim_holds_the_entry_for_its_holder_alone_until_it_expires(box):
    box.store.save(final())
    listed = next(box.store.owed())
    claimed = box.store.claim(listed, "holder-a", T0, T0 + CLAIMED_FOR)
    assert claimed is not None and (claimed.claimed_by, claimed.claimed_until) == ("holder-a", format_time(
        T0 + CLAIMED_FOR))
    assert box.entry("job00001") == claimed  # in the store, so every other invocation sees it
    # another invocation: from the same listing (it read the entry before the claim), or a fresh one
    assert box.store.claim(listed, "holder-b", T0, T0 + CLAIMED_FOR) is None
    assert box.store.claim(claimed, "holder-b", T0 + timedelta(seconds=30), T0 + CLAIMED_FOR) is None
    assert box.store.settle(listed) is False and box.store.reschedule(replace(listed, tries=1)) is False
    # the holder crashed: once the claim expires, the next deliverer takes it
    expired = T0 + CLAIMED_FOR
    taken = box.store.claim(next(box.store.owed()), "holder-b", expired, expired + CLAIMED_FOR)
    assert taken is not None and taken.claimed_by == "holder-b"
    # the first holder comes back late: it can neither settle nor reschedule what is no longer its own
    assert box.store.settle(claimed) is False and box.store.reschedule(replace(claimed, tries=1)) is False
    assert box.store.reschedule(replace(taken, tries=1, next_attempt_at=LATER)) is True
    released = box.entry("job00001")  # the holder's next attempt, claimable again
    assert (released.tries, released.claimed_by, released.claimed_until) == (1, "holder-b", "")
    assert released.claimable(expired) and box.store.claim(taken, "holder-c", expired, expired + CLAIMED_FOR) is None
    again = box.store.claim(released, "holder-c", expired, expired + CLAIMED_FOR)
    assert again is not None and box.store.settle(again) is True and box.entry("job00001") is None


def test_of_many_claims_on_the_same_entry_at_once_exactly_one_wins(box):
    box.store.save(final())
    listed = next(box.store.owed())
    stores = [box.store] + [box.twin() for _ in range(5)]
    won = at_once(*(functools.partial(store.claim, listed, f"holder-{index}", T0, T0 + CLAIMED_FOR)
                    for index, store in enumerate(stores)), timeout_s=30)
    winners = [claimed for claimed in won if claimed is not None]
    assert len(winners) == 1 and box.entry("job00001") == winners[0]


def test_a_claim_never_hides_a_newer_states_entry(make):
    box = make(states=("processing", "succeeded"))
    box.store.save(record())
    claimed = box.store.claim(next(box.store.owed()), "holder-a", T0, T0 + CLAIMED_FOR)
    assert claimed is not None and claimed.state == "processing"
    assert box.store.save(replace(final(), updated_at=LATER)).owed  # while the claim is held
    newer = box.entry("job00001")
    assert (newer.state, newer.claimed_until) == ("succeeded", "") and newer.claimable(T0)
    # the holder of the older event settles or reschedules: the newer one stays, for anyone to send at once
    assert box.store.settle(claimed) is False and box.store.reschedule(replace(claimed, tries=1)) is False
    assert box.entry("job00001") == newer
    assert box.store.claim(newer, "holder-b", T0, T0 + CLAIMED_FOR) is not None


def notify_settings(url: str) -> Settings:
    return Settings.from_env({"NOTIFY_URL": url, "NOTIFY_SECRET": WEBHOOK_SECRET})


def counts() -> SimpleNamespace:
    return SimpleNamespace(notified=0, notify_failed=0)


def test_two_sweeps_racing_over_a_due_entry_deliver_it_once(box):
    with WebhookReceiver(WEBHOOK_SECRET) as receiver:
        settings = notify_settings(receiver.url)
        box.store.save(final())
        receiver.delay(1.0, times=2)  # slow to answer: the other sweep is listing while one sends
        sweeps = [Outbox(store, settings, lambda: T0) for store in (box.store, box.twin())]
        answers = [counts() for _ in sweeps]
        at_once(*(functools.partial(outbox.deliver_due, deadline=time.monotonic() + 20, counts=answer)
                  for outbox, answer in zip(sweeps, answers)), timeout_s=30)
        assert receiver.deliveries == {notify.event_id("job00001", "succeeded"): 1}
        # each answer counts what that invocation delivered: one of them, once; the other skipped it
        assert sorted((answer.notified, answer.notify_failed) for answer in answers) == [(0, 0), (1, 0)]
        assert box.entry("job00001") is None


def test_an_event_whose_holder_crashed_is_sent_again_once_its_claim_expires(box):
    with WebhookReceiver(WEBHOOK_SECRET) as receiver:
        settings = notify_settings(receiver.url)
        box.store.save(final())
        crashed = box.store.claim(next(box.store.owed()), "crashed", T0, T0 + CLAIMED_FOR)  # and never settled
        assert crashed is not None
        answer = counts()
        Outbox(box.twin(), settings, lambda: T0 + CLAIMED_FOR - timedelta(seconds=1)).deliver_due(
            deadline=time.monotonic() + 10, counts=answer)
        assert receiver.requests == [] and (answer.notified, answer.notify_failed) == (0, 0)
        assert box.entry("job00001") == crashed
        Outbox(box.twin(), settings, lambda: T0 + CLAIMED_FOR).deliver_due(deadline=time.monotonic() + 10,
                                                                            counts=answer)
        assert receiver.deliveries == {notify.event_id("job00001", "succeeded"): 1}
        assert (answer.notified, answer.notify_failed) == (1, 0) and box.entry("job00001") is None


def test_the_writer_delivering_at_once_leaves_an_entry_a_sweep_holds_alone(box):
    with WebhookReceiver(WEBHOOK_SECRET) as receiver:
        settings = notify_settings(receiver.url)
        written = box.store.save(final())
        assert written.owed
        sweep_claim = box.store.claim(next(box.store.owed()), "sweep", T0, T0 + CLAIMED_FOR)  # a sweep found it first
        assert sweep_claim is not None
        answer = counts()
        Outbox(box.twin(), settings, lambda: T0).deliver_now([written.record], deadline=time.monotonic() + 10,
                                                              counts=answer)
        assert receiver.requests == [] and (answer.notified, answer.notify_failed) == (0, 0)
        assert box.entry("job00001") == sweep_claim
        # and with no one else on it, the writer claims and delivers its own event
        box.store.save(final("job00002"))
        Outbox(box.twin(), settings, lambda: T0).deliver_now([final("job00002")], deadline=time.monotonic() + 10,
                                                              counts=answer)
        assert receiver.deliveries == {notify.event_id("job00002", "succeeded"): 1}
        assert (answer.notified, answer.notify_failed) == (1, 0) and box.entry("job00002") is None


# ---------------------------------------------------------------- the listing


def test_owed_lists_entries_of_final_jobs_in_job_id_order_and_skips_a_corrupt_one(make, caplog):
    box = make(page_size=2)
    for job_id in ("job00005", "job00001", "job00004", "job00002", "job00003"):
        assert box.store.save(final(job_id)).owed
    assert list(box.store.pending_job_ids()) == []
    box.put_entry("job00003", b"{not json")
    box.put_entry("job00004", Owed.for_record(final("job00009"), NOW).to_json())  # names another job
    with caplog.at_level(logging.WARNING):
        listed = [entry.job_id for entry in box.store.owed()]
    assert listed == ["job00001", "job00002", "job00005"]
    assert "job00003" in caplog.text and "job00004" in caplog.text
    assert [entry.job_id for entry in box.store.owed(after="job00002")] == ["job00005"]
    assert list(box.store.owed(after="job00005")) == []


def test_an_empty_outbox_lists_nothing(box):
    assert list(box.store.owed()) == []
    assert box.store.settle(Owed.for_record(final(), NOW)) is False


# ---------------------------------------------------------------- notifications off


def test_no_outbox_io_when_notifications_are_off(make, kind):
    box = make(states=())
    box.reset_io()
    box.store.save(record())
    result = box.store.save(final())
    assert result.changed and not result.owed
    assert not box.store.save(replace(final(), updated_at=LATER)).changed
    io = box.outbox_io()
    if kind == "tablestore":  # the calls of saves without an outbox: no extra call, no extra row
        assert io == ["BatchGetRow x2", "BatchWriteRow x1", "BatchWriteRow x1",  # marker, then record
                      "BatchGetRow x2",  # one read of the rows, the changed record decoded from it
                      "BatchWriteRow x1", "BatchWriteRow x1",  # record, then marker removal
                      "BatchGetRow x2"]  # unchanged: one read
    else:
        assert io == []
    assert box.entry("job00001") is None
    if kind == "tablestore":  # with notifications on, the final save adds one write (the entry) before the record
        box = make()
        box.store.save(record())
        box.reset_io()
        assert box.store.save(final()).owed
        assert box.outbox_io() == ["BatchGetRow x2", "BatchWriteRow x1", "BatchWriteRow x1", "BatchWriteRow x1"]


# ---------------------------------------------------------------- Tablestore: entries share the pending table


def test_tablestore_outbox_rows_never_show_up_as_pending_jobs(tablestore_server):
    box = tablestore_store(tablestore_server, page_size=2)
    box.store.notify_states = ("processing",) + ANNOUNCED
    for job_id in ("job00001", "job00002", "job00003"):
        box.store.save(record(job_id))
    box.store.save(final("job00002"))
    box.store.save_cursor("sweep", "job00001")
    keys = [key[0][1] for key in tablestore_server.primary_keys(box.store.pending_table)]
    assert keys == ["job00001", "job00003", "~cursor~sweep",
                    "~outbox~job00001", "~outbox~job00002", "~outbox~job00003"]
    assert list(box.store.pending_job_ids()) == ["job00001", "job00003"]
    assert list(box.store.pending_job_ids(after="job00001")) == ["job00003"]
    assert list(box.store.pending_job_ids(after="job00003")) == []
    assert [entry.job_id for entry in box.store.owed()] == ["job00001", "job00002", "job00003"]
    assert [record.job_id for record in box.store.records()] == ["job00001", "job00002", "job00003"]


# ---------------------------------------------------------------- the file store: the order of the syscalls


def announced_records_have_entries(root) -> None:
    """What a crash must never break: a record in an announced state has its event's entry."""
    for path in (root / "jobs").iterdir():
        if path.name.startswith("."):
            continue
        data = json.loads(path.read_bytes())
        if data["state"] in ANNOUNCED:
            entry = Owed.from_json((root / "outbox" / path.stem).read_bytes())
            assert entry.event_id == notify.event_id(path.stem, data["state"])


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="fsync calls are told apart by /proc/self/fd")
def test_file_entries_are_durable_before_any_record_of_the_group_is_renamed(tmp_path, monkeypatch):
    from tests.integration.test_file_store_durability import Syscalls

    root = tmp_path / "records"
    store = FileStore(str(root))
    store.notify_states = ANNOUNCED
    store.save_many([record(f"job{n:05d}") for n in range(3)])
    calls = Syscalls(monkeypatch)
    results = store.save_many([final(f"job{n:05d}") for n in range(3)] + [final("new00001")])
    assert all(result.owed for result in results)
    outbox_synced = calls.index("fsync", str(root / "outbox"))
    assert calls.index("fsync", str(root)) < outbox_synced  # the new folder's name, durable first
    for job_id in ("job00000", "job00001", "job00002", "new00001"):
        entry_renamed = calls.index("rename", str(root / "outbox" / job_id))
        temp_synced = [i for i, (kind, path) in enumerate(calls.events)
                       if kind == "fsync" and path.startswith(str(root / "outbox" / f".{job_id}."))]
        assert temp_synced and temp_synced[0] < entry_renamed < outbox_synced
        assert outbox_synced < calls.index("rename", str(root / "jobs" / f"{job_id}.json"))
    announced_records_have_entries(root)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="fsync calls are told apart by /proc/self/fd")
def test_file_a_crash_at_any_step_never_leaves_a_record_that_owes_without_its_entry(tmp_path, monkeypatch):
    from tests.integration.test_file_store_durability import Crash, Syscalls

    group = [final("job00001"), record("job00002"), final("new00001")]
    counting = FileStore(str(tmp_path / "count"))
    counting.notify_states = ANNOUNCED
    counting.save(record("job00001"))
    with monkeypatch.context() as patch:
        calls = Syscalls(patch)
        counting.save_many(group)
        steps = len(calls.events)
    for crash_at in range(steps + 1):
        root = tmp_path / f"crash{crash_at}"
        store = FileStore(str(root))
        store.notify_states = ANNOUNCED
        store.save(record("job00001"))
        with monkeypatch.context() as patch:
            Syscalls(patch, crash_at=crash_at)
            try:
                store.save_many(group)
            except Crash:
                pass
        announced_records_have_entries(root)
