"""The file store's durable writes: the order of the steps, a crash at any of them, races between writers.

What must hold whatever happens (docs/durability.md): every file under ``jobs/`` and
``pending/`` is whole JSON (temporary files aside: dot-named, never read); a job whose
record is not final has its marker, so the sweep finds it and repairs what a crash cut
short; the merge rule holds between writers of any thread or process. (What every store keeps,
this one included, is tests/integration/test_store_contract.py's.)
"""
from __future__ import annotations

import fnmatch
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import List, Optional, Tuple

import pytest
from ice_upload_sync.errors import StoreError
from ice_upload_sync.records import JobRecord, MergeResult
from ice_upload_sync.stores import Tracking
from ice_upload_sync.stores import file as file_module
from ice_upload_sync.stores.file import FileStore

from tests.store_records import LATER, NOW, final, record

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd") or file_module.fcntl is None,
                                reason="POSIX with /proc: fsync calls are told apart by the path of their descriptor")


@pytest.fixture
def root(tmp_path) -> Path:
    return tmp_path / "records"


@pytest.fixture
def store(root) -> FileStore:
    return FileStore(str(root))


def job(number: int) -> str:
    return f"job{number:05d}"


def digested(rec: JobRecord) -> JobRecord:
    """The record as the sweep makes it: with the digest of the answer it came from (here: its information)."""
    return replace(rec, answer_digest=f"{rec.state}:{rec.ice_status}:{rec.completed_at}")


def check_whole_and_findable(root: Path) -> dict:
    """The invariants a crash must never break; returns the records by job ID.

    Every file whole; every open job findable by the sweep; every answer digest the store
    vouches for is the digest of the record in place (or the sweep would keep a stale one).
    """
    records = {}
    for path in (root / "jobs").iterdir():
        if path.name.startswith("."):
            continue  # a temporary file a crash left: never read, never listed
        data = json.loads(path.read_bytes())  # whole JSON, or this raises
        assert JobRecord.from_dict(data).job_id == path.stem
        records[path.stem] = data
    for path in (root / "pending").iterdir():
        if not path.name.startswith("."):
            assert json.loads(path.read_bytes())["job_id"] == path.name
    for job_id, data in records.items():
        if not data["final"]:
            assert (root / "pending" / job_id).exists(), f"{job_id} is not final and the sweep cannot find it"
    for job_id, digest in FileStore(str(root)).answer_digests(sorted(records)).items():
        data = records[job_id]
        assert not data["final"] and digest == f"{data['state']}:{data['ice_status']}:{data['completed_at']}"
    return records


class Syscalls:
    """Records what the store asks of the disk, in order, from every thread; can 'crash' at the n-th step."""

    def __init__(self, monkeypatch, crash_at: Optional[int] = None) -> None:
        self.events: List[Tuple[str, str]] = []
        self.crash_at = crash_at
        self.crashed = False
        self._lock = threading.Lock()
        real_fsync, real_replace, real_unlink = os.fsync, os.replace, os.unlink

        def fsync(handle):
            self._step("fsync", os.readlink(f"/proc/self/fd/{handle}"))
            real_fsync(handle)

        def rename(source, target):
            self._step("rename", str(target))
            real_replace(source, target)

        def unlink(path):
            if not str(path).endswith(".tmp"):  # cleaning up a temporary file is not a step
                self._step("unlink", str(path))
            real_unlink(path)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", rename)
        monkeypatch.setattr(os, "unlink", unlink)

    def _step(self, kind: str, path: str) -> None:
        with self._lock:
            if self.crashed or (self.crash_at is not None and len(self.events) >= self.crash_at):
                self.crashed = True  # the process is gone: nothing after this happens either
                raise Crash(f"crash before {kind} {path}")
            self.events.append((kind, path))

    def index(self, kind: str, path: str) -> int:
        return self.events.index((kind, path))


class Crash(BaseException):
    """Not an OSError: no handler of the store catches it, as no handler runs when a process dies."""


def ordered_changes(count: int) -> List[JobRecord]:
    """A group of every kind of write: new non-final (marker to create), non-final to final, new final."""
    return [digested(rec) for rec in [record(job(n), ice_status="UPLOADING") for n in range(0, count)]
            + [final(job(n)) for n in range(count, 2 * count)]
            + [final(f"new{n:05d}") for n in range(count)]]


def seed(store: FileStore, count: int) -> None:
    """Jobs count..2count-1 tracked with a non-final record; jobs 0..count-1 not even tracked."""
    store.save_many([digested(record(job(n))) for n in range(count, 2 * count)])


# ---------------------------------------------------------------- the order of the steps


def test_every_step_of_a_group_write_happens_in_the_order_that_keeps_it_whole(store, root, monkeypatch):
    seed(store, 6)
    calls = Syscalls(monkeypatch)
    results = store.save_many(ordered_changes(6))
    assert all(isinstance(result, MergeResult) and result.changed for result in results)
    jobs_dir, pending_dir = str(root / "jobs"), str(root / "pending")
    last_rename = max(calls.index("rename", str(root / "jobs" / f"{job_id}.json"))
                      for job_id in [job(n) for n in range(12)] + [f"new{n:05d}" for n in range(6)])
    jobs_synced = calls.index("fsync", jobs_dir)
    assert last_rename < jobs_synced  # one folder sync for the whole group, after every rename
    assert [event for event in calls.events if event == ("fsync", jobs_dir)] == [("fsync", jobs_dir)]
    for n in range(12):
        record_path = str(root / "jobs" / f"{job(n)}.json")
        renamed = calls.index("rename", record_path)
        # the data is on disk before the name points at it
        temp_synced = [i for i, (kind, path) in enumerate(calls.events)
                       if kind == "fsync" and path.startswith(str(root / "jobs" / f".{job(n)}.json."))]
        assert temp_synced and temp_synced[0] < renamed
    for n in range(6):  # new and not final: the marker, durable, before the record
        marker_renamed = calls.index("rename", str(root / "pending" / job(n)))
        assert marker_renamed < calls.index("fsync", pending_dir) < calls.index(
            "rename", str(root / "jobs" / f"{job(n)}.json"))
    for n in range(6, 12):  # now final: the marker goes only once the record is durable
        assert calls.index("unlink", str(root / "pending" / job(n))) > jobs_synced
    check_whole_and_findable(root)
    assert sorted(store.pending_job_ids()) == [job(n) for n in range(6)]


def test_tracking_is_durable_before_it_returns(store, root, monkeypatch):
    calls = Syscalls(monkeypatch)
    assert store.track(Tracking("job00001", NOW, "callback"))
    assert calls.events[-1] == ("fsync", str(root / "pending"))
    assert calls.index("rename", str(root / "pending" / "job00001")) < len(calls.events) - 1


def test_an_unchanged_answer_costs_one_read_and_no_write(store, root, monkeypatch):
    store.save_many([record(job(n)) for n in range(20)])
    reads = []
    real_read = FileStore._read
    monkeypatch.setattr(FileStore, "_read", staticmethod(lambda path: reads.append(path) or real_read(path)))
    calls = Syscalls(monkeypatch)
    results = store.save_many([replace(record(job(n)), updated_at=LATER) for n in range(20)])
    assert not any(result.changed for result in results)
    assert sorted(reads) == sorted(str(root / "jobs" / f"{job(n)}.json") for n in range(20))  # no marker read
    assert calls.events == []


# ---------------------------------------------------------------- answer digests


def test_an_answer_digest_holds_while_the_record_it_was_bound_to_is_in_place(store, root):
    store.save(digested(record()))
    assert store.answer_digests(["job00001", "job00002"]) == {"job00001": "processing:None:None"}
    written_at = (root / "jobs" / "job00001.json").stat().st_mtime_ns
    # the same information from an answer with another digest: the record stays, the binding moves
    assert not store.save(replace(record(), answer_digest="another")).changed
    assert store.answer_digests(["job00001"]) == {"job00001": "another"}
    assert (root / "jobs" / "job00001.json").stat().st_mtime_ns == written_at
    # a writer that binds nothing (an older version, a hand edit): the binding names a file that is gone
    assert store.save(record(ice_status="UPLOADING")).changed
    assert store.answer_digests(["job00001"]) == {}
    store.save(digested(record(ice_status="UPLOADING")))
    assert store.answer_digests(["job00001"]) == {"job00001": "processing:UPLOADING:None"}
    store.save(digested(final()))  # final: no marker, nothing to vouch for
    assert store.answer_digests(["job00001"]) == {}


def test_vouching_reads_the_markers_and_no_record(store, root, monkeypatch):
    store.save_many([digested(record(job(n))) for n in range(20)])
    reads = []
    real_read = FileStore._read
    monkeypatch.setattr(FileStore, "_read", staticmethod(lambda path: reads.append(path) or real_read(path)))
    assert len(store.answer_digests([job(n) for n in range(20)])) == 20
    assert sorted(reads) == sorted(str(root / "pending" / job(n)) for n in range(20))


def test_a_binding_is_not_fsynced_and_one_that_cannot_be_written_costs_only_the_shortcut(store, root, monkeypatch):
    store.save(record())
    calls = Syscalls(monkeypatch)
    assert not store.save(digested(record())).changed  # the same information: only the binding is written
    assert calls.events == [("rename", str(root / "pending" / "job00001"))]
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda source, target: (_ for _ in ()).throw(OSError(28, "No space left"))
                        if str(target).startswith(str(root / "pending")) else real_replace(source, target))
    result = store.save(digested(record(ice_status="UPLOADING")))
    assert isinstance(result, MergeResult) and result.changed
    assert store.answer_digests(["job00001"]) == {}
    check_whole_and_findable(root)


def test_an_answer_already_bound_writes_nothing(store, monkeypatch):
    store.save(digested(record()))
    calls = Syscalls(monkeypatch)
    assert not store.save(replace(digested(record()), updated_at=LATER)).changed
    assert calls.events == []


# ---------------------------------------------------------------- a crash at any step


def count_steps(tmp_path, monkeypatch) -> int:
    with monkeypatch.context() as patch:
        probe = FileStore(str(tmp_path / "probe"))
        seed(probe, 4)
        calls = Syscalls(patch)
        probe.save_many(ordered_changes(4))
        return len(calls.events)


def test_a_crash_at_any_step_leaves_every_record_whole_and_every_open_job_findable(tmp_path, monkeypatch):
    steps = count_steps(tmp_path, monkeypatch)
    assert steps > 25  # 12 temporary fsyncs and renames, 4 markers, 2 folder syncs, 4 removals
    for crash_at in range(steps + 1):
        root = tmp_path / f"crash{crash_at:03d}"
        store = FileStore(str(root))
        seed(store, 4)
        with monkeypatch.context() as patch:
            calls = Syscalls(patch, crash_at=crash_at)
            try:
                store.save_many(ordered_changes(4))
            except Crash:
                pass
            assert calls.crashed == (crash_at < steps)
        check_whole_and_findable(root)
        # a new process (the next sweep, or the retry) finishes the job, the merge rule intact
        again = FileStore(str(root))
        results = again.save_many(ordered_changes(4))
        assert not any(isinstance(result, StoreError) for result in results)
        records = check_whole_and_findable(root)
        assert {job_id: data["state"] for job_id, data in records.items()} == {
            **{job(n): "processing" for n in range(4)}, **{job(n): "succeeded" for n in range(4, 8)},
            **{f"new{n:05d}": "succeeded" for n in range(4)}}
        assert sorted(again.pending_job_ids()) == [job(n) for n in range(4)]


ALL_JOBS = [r.job_id for r in ordered_changes(4)]


@pytest.mark.parametrize("step, pattern, failed_jobs", [
    ("fsync", "jobs/.job00005.json.*", {"job00005"}),  # a record's data could not be made durable
    ("rename", "jobs/job00005.json", {"job00005"}),  # its rename failed
    ("fsync", "pending/.job00001.*", {"job00001"}),  # a marker could not be written: nor is its record
    ("fsync", "jobs", set(ALL_JOBS)),  # the folder sync: every rename of the group is in doubt
    ("unlink", "pending/job00006", {"job00006"}),  # a final job's marker could not be removed
])
def test_a_failed_step_fails_its_jobs_alone_and_a_retry_finishes(store, root, monkeypatch, step, pattern, failed_jobs):
    seed(store, 4)
    name = {"rename": "replace"}.get(step, step)
    real = getattr(os, name)

    def path_of(args) -> str:
        if step == "fsync":
            return os.readlink(f"/proc/self/fd/{args[0]}")
        return str(args[1] if step == "rename" else args[0])

    def refuse(*args):
        if fnmatch.fnmatchcase(path_of(args), str(root / pattern)):
            raise OSError(5, "Input/output error")
        return real(*args)

    with monkeypatch.context() as patch:
        patch.setattr(os, name, refuse)
        results = store.save_many(ordered_changes(4))
    assert {job_id for job_id, result in zip(ALL_JOBS, results) if isinstance(result, StoreError)} == failed_jobs
    assert all("Input/output error" in str(result) for result in results if isinstance(result, StoreError))
    check_whole_and_findable(root)
    assert not list(root.rglob("*.tmp"))  # a step that fails cleans up after itself
    assert not any(isinstance(result, StoreError) for result in store.save_many(ordered_changes(4)))
    assert sorted(store.pending_job_ids()) == [job(n) for n in range(4)]


WRITER = r"""
import sys
from dataclasses import replace
sys.path.insert(0, sys.argv[2])
from ice_upload_sync.stores.file import FileStore
from tests.store_records import final, record
store = FileStore(sys.argv[1])
print("ready", flush=True)
round_number = 0
while True:  # until killed: every group changes every record, some jobs end final, new ones appear
    round_number += 1
    status = f"UPLOADING-{round_number}"
    group = [record(f"job{n:05d}", ice_status=status) for n in range(40)]
    group += [final(f"job{n:05d}", completed_at=f"2026-11-25T03:{round_number % 60:02d}:00Z")
              for n in range(round_number % 40, round_number % 40 + 3)]
    group += [record(f"new{round_number:05d}{n}") for n in range(5)]
    store.save_many(group)
"""


def test_a_writer_killed_at_random_moments_leaves_every_record_whole_and_every_open_job_findable(root):
    FileStore(str(root))
    rng = random.Random(12)
    for _ in range(12):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(root), str(ROOT / "function")],
                                  cwd=ROOT, stdout=subprocess.PIPE, text=True,
                                  env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'function'}"})
        try:
            assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.01, 0.25))
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait(timeout=10)
        records = check_whole_and_findable(root)
        open_jobs = {job_id for job_id, data in records.items() if not data["final"]}
        assert open_jobs <= set(FileStore(str(root)).pending_job_ids())  # the next sweep finds every one
    assert len(records) > 40, "the writer never got to write: the test proves nothing"


# ---------------------------------------------------------------- races


def test_group_writers_racing_final_and_stale_answers_never_end_non_final(root):
    stores = [FileStore(str(root)), FileStore(str(root))]  # two instances, two sets of thread locks
    start = threading.Barrier(2)
    errors: List[BaseException] = []
    jobs = [job(n) for n in range(60)]

    def write(store: FileStore, group: List[JobRecord]) -> None:
        start.wait()
        try:
            results = store.save_many(group)
            errors.extend(result for result in results if isinstance(result, StoreError))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    for round_number in range(15):
        ids = [f"{job_id}r{round_number}" for job_id in jobs]
        finals = [final(job_id) for job_id in ids]
        stales = [record(job_id, ice_status="UPLOADING") for job_id in reversed(ids)]  # the other lock order
        threads = [threading.Thread(target=write, args=pair) for pair in zip(stores, (stales, finals))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in threads), "the writers deadlocked"
        assert not errors
        assert all(stores[0].load(job_id).state == "succeeded" for job_id in ids)
        assert not set(ids) & set(stores[0].pending_job_ids())
    check_whole_and_findable(root)


RACER = r"""
import sys
sys.path.insert(0, sys.argv[2])
from ice_upload_sync.stores.file import FileStore
from tests.store_records import final, record
store, kind, rounds = FileStore(sys.argv[1]), sys.argv[3], int(sys.argv[4])
ids = [f"job{n:05d}" for n in range(50)]
for round_number in range(rounds):
    group = [f"{job_id}r{round_number}" for job_id in ids]
    if kind == "final":
        results = store.save_many([final(job_id) for job_id in group])
    else:
        results = store.save_many([record(job_id, ice_status="UPLOADING") for job_id in reversed(group)])
    assert not [r for r in results if isinstance(r, Exception)], results
print("done")
"""


def test_group_writers_in_two_processes_keep_the_merge_rule_and_never_deadlock(root):
    FileStore(str(root))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'function'}"}
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(root), str(ROOT / "function"), kind, "10"],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for kind in ("stale", "final")]
    for racer in racers:
        out, err = racer.communicate(timeout=60)
        assert racer.returncode == 0 and out.strip() == "done", err
    store = FileStore(str(root))
    for round_number in range(10):
        assert all(store.load(f"job{n:05d}r{round_number}").state == "succeeded" for n in range(50))
    assert list(store.pending_job_ids()) == []
    check_whole_and_findable(root)


def test_writes_of_many_records_use_a_few_threads_and_the_unchanged_ones_none(store, monkeypatch):
    threads = set()
    real_write = FileStore._write_atomic

    def spy(self, path, data, **options):
        threads.add(threading.current_thread().name)
        return real_write(self, path, data, **options)

    monkeypatch.setattr(FileStore, "_write_atomic", spy)
    store.save_many([record(job(n), ice_status="UPLOADING") for n in range(50)])
    assert 1 < len(threads) <= file_module.FSYNC_THREADS
    assert all(name.startswith("file-store") for name in threads)
    threads.clear()
    store.save_many([replace(record(job(n)), ice_status="UPLOADING", updated_at=LATER) for n in range(50)])
    assert threads == set()
