"""The file store: ``<root>/jobs/<job_id>.json``, ``<root>/pending/<job_id>`` and ``<root>/outbox/<job_id>``.

For laptops and single-instance runs. Every file is written whole under a temporary name
in its folder, fsynced, renamed into place, and the folder is fsynced after the rename, so
a crash at any step leaves the old file or the new one, never half of one, and a record
is on disk when its write returns (docs/durability.md: what is durable when). The
read-merge-write of one job is serialized by a lock file (``flock``) shared by threads
and processes; 64 striped lock files keep their number bounded.

``save_many`` (what a sweep uses) settles a record whose answer changes nothing with one
read and no lock. It writes the others as a group: under their locks, the records are read
and merged on the caller's thread, then each is written to a temporary file, fsynced and
renamed into place on a small pool (system calls only: an fsync waits on the disk with the
interpreter lock released, and a disk commits concurrent fsyncs together), and ``jobs/`` is
fsynced once for the group, before any result is returned.

A job's marker also holds the digest of the ICE answer its record was made from, bound to
that record file (``answer_digests``), so that a sweep can tell an unchanged answer from one
small read.

With ``notify_states`` set, a write that takes a record into one of those states first writes
the job's outbox entry (``<root>/outbox/<job_id>``, ``notify.Owed``), durably, in the same
step as the pending markers: before the record, so a crash never leaves a record that owes
nothing. ``claim``, ``settle`` and ``reschedule`` compare the entry's event and claim
(``Owed.claim_key``) under the job's lock.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import ContextManager, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from .. import jsontext
from ..errors import StoreError
from ..notify import BadOutboxEntry, Owed
from ..records import JobRecord, MergeResult, UnencodableRecord, format_time, record_json, settled_by_ice
from ..saving import SavePlan, plan_save
from .base import RecordStore, Tracked, Tracking, Unreadable, read_or_skip

try:  # POSIX (FC, Linux, macOS); elsewhere the thread locks still hold within one process
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

_STRIPES = 64
# Durable writes in flight at once. Measured here (ext4): one fsync alone 0.4-3.9 ms (quiet or
# busy disk), about 0.4-0.8 ms each with 8 concurrent; 16 or 32 gained nothing (docs/durability.md).
FSYNC_THREADS = 8
_READ_SIZE = 1 << 16  # a record is about 1 KB: one read returns it whole
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_SYNC_FOLDERS = os.name == "posix"  # a folder cannot be opened (so not fsynced) elsewhere

_pool_lock = threading.Lock()
_pool: Optional[ThreadPoolExecutor] = None


def _writer_pool() -> ThreadPoolExecutor:
    """One pool per process, started on the first group write: the disk is shared, so is the pool."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=FSYNC_THREADS, thread_name_prefix="file-store")
        return _pool


# A file's identity: (inode, size, mtime in ns). Every write replaces a record by rename, so a
# record rewritten by anyone (this code, an older version, a restore, an editor) has a new one.
Identity = Tuple[int, int, int]


def _identity(status: os.stat_result) -> Identity:
    return status.st_ino, status.st_size, status.st_mtime_ns


def _stripe(job_id: str) -> int:
    return zlib.crc32(job_id.encode("utf-8")) % _STRIPES


@dataclass(frozen=True)
class _Job:
    """One record of a group write: its ``SavePlan``, made under the job's lock, and what carrying it out needs."""

    index: int  # in the records given to save_many
    fresh: JobRecord
    plan: SavePlan
    data: Optional[bytes]  # the record to write (encoded), or None when the stored one stands
    stored_identity: Optional[Identity]  # of the record file read under the lock
    marker: Optional[dict]  # the marker as stored, or as opened now (None: none, or not a JSON object)


class FileStore(RecordStore):
    # One writer thread: an answer that changes nothing costs a read, and more threads would
    # only contend for the interpreter lock; ``save_many`` spreads the durable writes of the
    # records that did change over its own pool (FSYNC_THREADS). Measured with two writers:
    # 2,000 changed jobs 2.6x the ideal instead of 2.8x, 5,000 unchanged 1.24x instead of 1.17x.
    write_concurrency = 1
    batches_writes = True  # save_many: the group's records fsynced together, ``jobs/`` synced once

    def __init__(self, root: str, *, create: bool = True) -> None:
        """``create=False`` (the operator's read commands): create nothing, and refuse a folder that
        holds no store (a typo in ``RECORD_STORE`` is an error naming it, not an empty store)."""
        self.root = os.path.abspath(os.path.expanduser(root))
        self.jobs_dir = os.path.join(self.root, "jobs")
        self.pending_dir = os.path.join(self.root, "pending")
        self.locks_dir = os.path.join(self.root, ".locks")
        self.cursors_dir = os.path.join(self.root, "cursors")
        self.outbox_dir = os.path.join(self.root, "outbox")  # created on the first entry
        self._outbox_ready = False
        self._thread_locks = [threading.Lock() for _ in range(_STRIPES)]
        if not create:
            if not os.path.isdir(self.root):
                raise StoreError(f"file store {self.root} does not exist: check RECORD_STORE (the function "
                                 "creates it when it first records a job)")
            if not os.path.isdir(self.jobs_dir):
                raise StoreError(f"file store {self.root} has no jobs/ folder: it is no record store, or nothing "
                                 "was recorded there yet; check RECORD_STORE")
            return
        try:
            for folder in (self.jobs_dir, self.pending_dir, self.locks_dir):
                os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"file store {self.root}: cannot create folders: {exc.strerror}") from None

    def describe(self) -> str:
        return f"file://{self.root}"

    def bind(self, credentials: object) -> None:
        """Files need no credentials."""

    # -- paths and locking --------------------------------------------------------

    def _record_path(self, job_id: str) -> str:
        return os.path.join(self.jobs_dir, f"{job_id}.json")

    def _marker_path(self, job_id: str) -> str:
        return os.path.join(self.pending_dir, job_id)

    def _entry_path(self, job_id: str) -> str:
        return os.path.join(self.outbox_dir, job_id)

    def _locked(self, job_id: str) -> ContextManager[None]:
        return self._locked_stripe(_stripe(job_id), job_id)

    @contextlib.contextmanager
    def _locked_stripe(self, stripe: int, job_id: str) -> Iterator[None]:
        """The lock shared by the jobs of ``stripe`` (``job_id``: one of them, named in errors)."""
        with self._thread_locks[stripe]:
            if fcntl is None:
                yield
                return
            try:
                handle = open(os.path.join(self.locks_dir, f"{stripe:02d}.lock"), "a+b")
            except OSError as exc:
                raise StoreError(f"file store {self.root}: cannot open the lock file of job {job_id}: "
                                 f"{exc.strerror or exc}") from None
            with handle:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                except OSError as exc:
                    raise StoreError(f"file store {self.root}: cannot lock job {job_id}: "
                                     f"{exc.strerror or exc}") from None
                try:
                    yield
                finally:
                    with contextlib.suppress(OSError):  # closing the file releases it anyway
                        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _write_atomic(self, path: str, data: bytes, *, durable: bool = True) -> Identity:
        """``path`` holds ``data`` whole, on disk: a temporary file, fsynced, renamed onto ``path``.

        The rename itself is durable once the folder is synced (``_sync_folder``). Only
        system calls: on the writer pool, it waits on the disk, not on the interpreter lock.
        Not ``durable``: no fsync (what a crash may lose is only worth a little time).
        Returns the identity of the file now at ``path``.
        """
        folder, name = os.path.split(path)
        temp = os.path.join(folder, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_CLOEXEC, 0o666)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(handle, view):]
                if durable:
                    os.fsync(handle)
                identity = _identity(os.fstat(handle))  # a rename keeps inode, size and mtime
            finally:
                os.close(handle)
            os.replace(temp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise StoreError(f"file store {self.root}: cannot write {name}: {exc.strerror}") from None
        return identity

    def _sync_folder(self, folder: str) -> None:
        """Make the renames (and removals) in ``folder`` so far durable."""
        if not _SYNC_FOLDERS:  # pragma: no cover
            return
        try:
            handle = os.open(folder, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
            try:
                os.fsync(handle)
            finally:
                os.close(handle)
        except OSError as exc:
            raise StoreError(f"file store {self.root}: cannot sync the folder {os.path.basename(folder)}: "
                             f"{exc.strerror}") from None

    @staticmethod
    def _read(path: str) -> Optional[bytes]:
        try:
            handle = os.open(path, os.O_RDONLY | _O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            chunks = []
            while True:
                chunk = os.read(handle, _READ_SIZE)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        finally:
            os.close(handle)

    # -- the interface ------------------------------------------------------------

    def load(self, job_id: str) -> Optional[JobRecord]:
        try:
            raw = self._read(self._record_path(job_id))
        except OSError as exc:
            raise StoreError(f"file store {self.root}: cannot read {job_id}: {exc.strerror}") from None
        return None if raw is None else self._parse_record(job_id, raw)

    def tracking(self, job_id: str) -> Optional[Tracking]:
        return self._marker(job_id)[0]

    def _marker(self, job_id: str) -> Tuple[Optional[Tracking], Optional[dict]]:
        """The job's marker: as ``Tracking`` (None: no marker), and as the JSON object it holds (None: not one)."""
        path = self._marker_path(job_id)
        try:
            raw = self._read(path)
            if raw is None:
                return None, None
            try:
                data = jsontext.loads(raw)
            except ValueError:
                data = None
            if not isinstance(data, dict):
                data = None
            elif data.get("first_seen_at"):  # the usual case: no stat
                return Tracking(job_id, str(data["first_seen_at"]), str(data.get("source") or "timer")), data
            fallback = format_time(datetime.fromtimestamp(os.stat(path).st_mtime, tz=timezone.utc))
        except OSError:
            return None, None
        return Tracking.from_json(job_id, raw, fallback), data

    def _load_with_identity(self, job_id: str) -> Tuple[Optional[JobRecord], Optional[Identity]]:
        """``load``, and the identity of the file read (taken before reading: a file changed in place
        while it is read is never taken for the one it was)."""
        try:
            handle = os.open(self._record_path(job_id), os.O_RDONLY | _O_CLOEXEC)
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            raise StoreError(f"file store {self.root}: cannot read {job_id}: {exc.strerror}") from None
        try:
            identity = _identity(os.fstat(handle))
            chunks = []
            while True:
                chunk = os.read(handle, _READ_SIZE)
                if not chunk:
                    break
                chunks.append(chunk)
        except OSError as exc:
            raise StoreError(f"file store {self.root}: cannot read {job_id}: {exc.strerror}") from None
        finally:
            os.close(handle)
        return self._parse_record(job_id, b"".join(chunks)), identity

    def _parse_record(self, job_id: str, raw: bytes) -> JobRecord:
        try:
            return JobRecord.from_dict(jsontext.loads(raw))
        except (ValueError, TypeError, AttributeError) as exc:  # not JSON, not an object, fields missing
            raise StoreError(f"file store {self.root}: record {job_id} is corrupt: {exc}") from None

    def track(self, tracking: Tracking) -> Tracked:
        job_id = tracking.job_id
        with self._locked(job_id):
            if os.path.lexists(self._marker_path(job_id)):
                return Tracked.ALREADY
            if settled_by_ice(self.load(job_id)):
                return Tracked.SETTLED
            self._write_atomic(self._marker_path(job_id), tracking.to_json())
            # durable before we answer: an HTTP callback is answered 200 after this, and ICE never sends it again
            self._sync_folder(self.pending_dir)
            return Tracked.CREATED

    def answer_digests(self, job_ids: Sequence[str]) -> Dict[str, str]:
        """The answer digest bound to each job's record, for the jobs whose binding still holds.

        A binding lives in the job's marker (``"answer": {"digest", "record": <identity>}``)
        and holds while the record file in place is the one it names. Reading it costs one
        small read and one ``stat`` per job; no record is read or parsed. A final job has no
        marker, so none is vouched for; a job that cannot be read is left out (checked the
        ordinary way).
        """
        vouched: Dict[str, str] = {}
        markers, records = self.pending_dir + os.sep, self.jobs_dir + os.sep  # joined by hand: the hot path
        for job_id in job_ids:
            try:
                raw = self._read(markers + job_id)
                if raw is None:
                    continue
                binding = jsontext.loads(raw).get("answer")
                if not isinstance(binding, dict) or not isinstance(binding.get("digest"), str):
                    continue
                status = os.stat(records + job_id + ".json")
            except (OSError, ValueError, AttributeError):  # unreadable, gone, or not ours: the ordinary way
                continue
            if binding.get("record") == [status.st_ino, status.st_size, status.st_mtime_ns]:
                vouched[job_id] = binding["digest"]
        return vouched

    def save_many(self, records: Sequence[JobRecord]) -> List[Union[MergeResult, StoreError]]:
        """``save`` for each record; one result per record, in order, each durable when returned.

        A record whose answer changes nothing is settled with one read and no lock. The
        others are written together (``_write_group``). A job named twice is written in
        the order given: its second record goes to a second group.
        """
        results: List[Union[MergeResult, StoreError, None]] = [None] * len(records)
        waiting = list(range(len(records)))
        while waiting:
            group: Dict[str, int] = {}  # job_id -> index: one record per job in a group
            later: List[int] = []
            for index in waiting:
                job_id = records[index].job_id
                if job_id in group:
                    later.append(index)
                    continue
                try:
                    results[index] = self._settled_without_writing(records[index])
                except StoreError as exc:
                    results[index] = exc
                    continue
                if results[index] is None:
                    group[job_id] = index
            if group:
                self._write_group(records, list(group.values()), results)
            waiting = later
        return results  # type: ignore[return-value]  # every index is settled above

    def _settled_without_writing(self, fresh: JobRecord) -> Optional[MergeResult]:
        """The save's result when its plan writes nothing (read without the lock), else None.

        Records and markers are replaced by rename, so what is read is whole, and doing
        nothing is right whatever a concurrent writer does. A non-final record always has
        its marker (created first, durably), so the record alone says enough; only a final
        one can have a marker left behind (a crash before its removal) to clean up. The
        binding is not read here: an answer with a digest (one the store did not vouch for,
        or it would not be saved) is planned under the lock.
        """
        stored = self.load(fresh.job_id)
        if stored is None:
            return None  # new: written under the lock, from the marker's first_seen_at
        marked = not stored.final or os.path.lexists(self._marker_path(fresh.job_id))
        marker = Tracking(fresh.job_id, stored.first_seen_at, fresh.source) if marked else None
        plan = plan_save(stored, marker, fresh, self.notify_states)
        return plan.result if plan.idle else None

    def _write_group(self, records: Sequence[JobRecord], indexes: List[int],
                     results: List[Union[MergeResult, StoreError, None]]) -> None:
        """Read, merge and write these records (one per job) under their jobs' locks, in steps.

        1. each job is read and merged again under its lock, and its record encoded (here: the
           Python work stays on one thread, it would only contend for the interpreter lock);
        2. markers of non-final jobs that have none: written, then ``pending/`` synced;
        3. records: each written to a temporary file, fsynced and renamed, on the writer pool
           (system calls only: they wait on the disk, and a disk commits concurrent fsyncs
           together); then ``jobs/`` synced once for the whole group;
        4. answer digests bound in the markers of the records left non-final (``answer_digests``);
        5. markers of jobs now final: removed (a removal lost in a crash is redone by the sweep).
        """
        with contextlib.ExitStack() as held:
            jobs: List[_Job] = []
            for index, lock_error in self._lock_all(held, records, indexes):
                if lock_error is not None:
                    results[index] = lock_error
                    continue
                try:
                    jobs.append(self._plan(index, records[index]))
                except StoreError as exc:
                    results[index] = exc
            jobs = self._open_markers(jobs, results)
            jobs, written = self._write_records(jobs, results)
            self._bind_answers([job for job in jobs if job.plan.bind is not None], written)
            for job in jobs:
                if job.plan.remove_marker:
                    try:
                        self._untrack(job.fresh.job_id)
                    except StoreError as exc:
                        results[job.index] = exc
                        continue
                results[job.index] = job.plan.result

    def _lock_all(self, held: contextlib.ExitStack, records: Sequence[JobRecord],
                  indexes: List[int]) -> List[Tuple[int, Optional[StoreError]]]:
        """Take the lock stripes of these records' jobs in ascending order, so that writers never deadlock.

        (index, None) for a record whose lock is held, (index, error) when it could not be taken.
        """
        by_stripe: Dict[int, List[int]] = {}
        for index in indexes:
            by_stripe.setdefault(_stripe(records[index].job_id), []).append(index)
        taken: List[Tuple[int, Optional[StoreError]]] = []
        for stripe in sorted(by_stripe):
            members = by_stripe[stripe]
            try:
                held.enter_context(self._locked_stripe(stripe, records[members[0]].job_id))
                error = None
            except StoreError as exc:
                error = exc
            taken += [(index, error) for index in members]
        return taken

    def _plan(self, index: int, fresh: JobRecord) -> _Job:
        """Under the job's lock: what is stored, planned with ``fresh``, encoded before anything is written."""
        job_id = fresh.job_id
        stored, identity = self._load_with_identity(job_id)
        marker, marker_data = self._marker(job_id)
        binding = (marker_data or {}).get("answer")
        bound = binding.get("digest") if isinstance(binding, dict) and identity is not None \
            and binding.get("record") == list(identity) else None
        plan = plan_save(stored, marker, fresh, self.notify_states, bound=bound)
        # encoded first: a record that cannot be leaves no marker behind
        data = self._encode(plan.result.record) if plan.result.changed else None
        if plan.open_marker is not None:
            marker_data = json.loads(plan.open_marker.to_json())
        return _Job(index, fresh, plan, data, stored_identity=identity, marker=marker_data)

    def _open_markers(self, jobs: List[_Job], results: list) -> List[_Job]:
        """Markers and outbox entries first, durably: a non-final record must never exist without its
        marker, nor a record that owes an event without its entry, even after a crash."""
        opening = [job for job in jobs if job.plan.open_marker is not None or job.plan.owe is not None]
        if not opening:
            return jobs
        files = [(job.index, self._marker_path(job.fresh.job_id), job.plan.open_marker.to_json())
                 for job in opening if job.plan.open_marker is not None]
        owing = [job for job in opening if job.plan.owe is not None]
        failed: Dict[int, StoreError] = {}
        if owing:
            try:
                self._prepare_outbox()
            except StoreError as exc:
                failed.update({job.index: exc for job in owing})
            else:
                files += [(job.index, self._entry_path(job.fresh.job_id), job.plan.owe.to_json())
                          for job in owing if job.plan.owe is not None]
        _, write_failed = self._write_files(files)
        failed.update(write_failed)
        folders = ([self.pending_dir] if any(job.plan.open_marker is not None for job in opening) else []) + \
                  ([self.outbox_dir] if owing else [])
        if len(failed) < len(opening):
            for folder in folders:
                try:
                    self._sync_folder(folder)
                except StoreError as exc:  # their records are not written; a marker or an entry alone is harmless
                    failed.update({job.index: exc for job in opening if job.index not in failed})
                    break
        for index, error in failed.items():
            results[index] = error
        return [job for job in jobs if job.index not in failed]

    def _write_records(self, jobs: List[_Job], results: list) -> Tuple[List[_Job], Dict[int, Identity]]:
        """The changed records written, then ``jobs/`` synced once: every rename of the group is durable,
        and a final record is before its marker goes. Returns the jobs still going, and the identity
        of each record written (by index)."""
        written, failed = self._write_files([(job.index, self._record_path(job.fresh.job_id), job.data)
                                             for job in jobs if job.data is not None])
        jobs = [job for job in jobs if job.index not in failed]
        if any(job.data is not None or job.plan.remove_marker for job in jobs):
            try:
                self._sync_folder(self.jobs_dir)
            except StoreError as exc:  # renamed, perhaps not durable: failed, and the markers stay for the sweep
                failed.update({job.index: exc for job in jobs if job.data is not None or job.plan.remove_marker})
                jobs = [job for job in jobs if job.index not in failed]
        for index, error in failed.items():
            results[index] = error
        return jobs, written

    def _bind_answers(self, jobs: List[_Job], written: Dict[int, Identity]) -> None:
        """Bind each job's answer digest to the record now in place, in the job's marker (``answer_digests``).

        Under the job's lock, after the record is durable; the marker is rewritten, never
        created, and not fsynced: a binding lost in a crash costs one ordinary check, and a
        marker rewritten by rename exists throughout, whatever a crash keeps of its content.
        """
        files = []
        for job in jobs:
            identity = written.get(job.index, job.stored_identity if job.data is None else None)
            if identity is None or job.marker is None:
                continue  # nothing to vouch for, or a marker we cannot read: never made up here
            marker = {**job.marker, "answer": {"digest": job.plan.bind, "record": list(identity)}}
            files.append((job.index, self._marker_path(job.fresh.job_id), json.dumps(marker).encode("utf-8")))
        self._write_files(files, durable=False)  # a binding that fails to be written is only a lost shortcut

    def _write_files(self, files: List[Tuple[int, str, bytes]], *,
                     durable: bool = True) -> Tuple[Dict[int, Identity], Dict[int, StoreError]]:
        """``_write_atomic`` for each (index, path, data), several at once on the pool.

        Returns the identity of each file written and the failures, by index.
        """
        written: Dict[int, Identity] = {}
        failed: Dict[int, StoreError] = {}
        if len(files) <= 1:
            for index, path, data in files:
                try:
                    written[index] = self._write_atomic(path, data, durable=durable)
                except StoreError as exc:
                    failed[index] = exc
            return written, failed
        pool = _writer_pool()
        started = [(index, pool.submit(self._write_atomic, path, data, durable=durable))
                   for index, path, data in files]
        wait([future for _, future in started])  # every file settled while the caller holds the locks, even after a bug
        for index, future in started:
            try:
                written[index] = future.result()
            except StoreError as exc:
                failed[index] = exc
        return written, failed

    def _untrack(self, job_id: str) -> None:
        """Remove the marker of a job whose final record is durable (not synced: see ``_write_group``)."""
        try:
            os.unlink(self._marker_path(job_id))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StoreError(f"file store {self.root}: cannot untrack {job_id}: {exc.strerror}") from None

    def _encode(self, record: JobRecord) -> bytes:
        try:
            return record_json(record)
        except UnencodableRecord as exc:
            raise StoreError(f"file store {self.root}: {exc}") from None

    def pending_job_ids(self, after: Optional[str] = None) -> Iterator[str]:
        """Ascending order, like OSS. A folder lists unordered, so its names are sorted in
        memory (about 70 bytes a job: 7 MB for 100,000 pending jobs)."""
        try:
            with os.scandir(self.pending_dir) as entries:
                names = [entry.name for entry in entries
                         if not entry.name.startswith(".") and (after is None or entry.name > after)]
        except OSError as exc:
            raise StoreError(f"file store {self.root}: cannot list pending jobs: {exc.strerror}") from None
        names.sort()
        yield from names

    def records(self, after: Optional[str] = None, *,
                unreadable: Optional[Unreadable] = None) -> Iterator[JobRecord]:
        """Every record in ascending ``job_id`` order, read one at a time (the operator's command line).

        A record that cannot be read or parsed raises ``StoreError``; with ``unreadable``, it is
        handed to it (job ID, error) and skipped."""
        try:
            with os.scandir(self.jobs_dir) as entries:
                names = sorted(entry.name[:-len(".json")] for entry in entries if entry.name.endswith(".json")
                               and not entry.name.startswith("."))
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(f"file store {self.root}: cannot list records: {exc.strerror}") from None
        for job_id in names:
            if after is None or job_id > after:
                record = read_or_skip(functools.partial(self.load, job_id), job_id, unreadable)
                if record is not None:
                    yield record

    def load_cursor(self, name: str) -> Optional[str]:
        """Where the sweep ``name`` stopped: the file ``<root>/cursors/<name>``."""
        try:
            raw = self._read(self._cursor_path(name))
        except OSError as exc:
            raise StoreError(f"file store {self.root}: cannot read the sweep cursor {name}: {exc.strerror}") from None
        value = (raw or b"").decode("utf-8", errors="replace").strip()
        return value or None

    def save_cursor(self, name: str, value: Optional[str]) -> None:
        path = self._cursor_path(name)
        if value is None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StoreError(f"file store {self.root}: cannot reset the sweep cursor {name}: "
                                 f"{exc.strerror}") from None
            return
        try:
            os.makedirs(self.cursors_dir, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"file store {self.root}: cannot create folders: {exc.strerror}") from None
        self._write_atomic(path, value.encode("utf-8"))

    def _cursor_path(self, name: str) -> str:
        if not name or "/" in name or name.startswith("."):
            raise StoreError(f"file store {self.root}: {name!r} is not a cursor name")
        return os.path.join(self.cursors_dir, name)

    # -- the outbox of completion events ----------------------------------------------

    def _prepare_outbox(self) -> None:
        """``outbox/`` exists, and durably so (its name in the root folder synced), before the first entry."""
        if self._outbox_ready:
            return
        try:
            existed = os.path.isdir(self.outbox_dir)
            os.makedirs(self.outbox_dir, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"file store {self.root}: cannot create folders: {exc.strerror}") from None
        if not existed:
            self._sync_folder(self.root)
        self._outbox_ready = True

    def _write_entry(self, entry: Owed) -> None:
        self._prepare_outbox()
        self._write_atomic(self._entry_path(entry.job_id), entry.to_json())
        self._sync_folder(self.outbox_dir)

    def _read_entry(self, job_id: str) -> Optional[Owed]:
        """The job's entry; None when there is none, or it does not parse (logged)."""
        try:
            raw = self._read(self._entry_path(job_id))
        except OSError as exc:
            raise StoreError(f"file store {self.root}: cannot read the outbox entry of job {job_id}: "
                             f"{exc.strerror}") from None
        if raw is None:
            return None
        try:
            entry = Owed.from_json(raw)
        except BadOutboxEntry as exc:
            logger.warning("file store %s: skipping the outbox entry of job %s: %s", self.root, job_id, exc)
            return None
        if entry.job_id != job_id:
            logger.warning("file store %s: skipping the outbox entry of job %s: it names job %s", self.root,
                           job_id, entry.job_id)
            return None
        return entry

    def owe(self, entry: Owed) -> None:
        """Create or replace the job's entry, durably (temporary file, fsync, rename, folder fsync)."""
        with self._locked(entry.job_id):
            self._write_entry(entry)

    def owed(self, after: Optional[str] = None) -> Iterator[Owed]:
        """Every entry in ascending ``job_id`` order (names sorted in memory, entries read one at a time)."""
        try:
            with os.scandir(self.outbox_dir) as entries:
                names = [entry.name for entry in entries
                         if not entry.name.startswith(".") and (after is None or entry.name > after)]
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreError(f"file store {self.root}: cannot list the outbox: {exc.strerror}") from None
        names.sort()
        for job_id in names:
            entry = self._read_entry(job_id)
            if entry is not None:
                yield entry

    def claim(self, entry: Owed, holder: str, now: datetime, until: datetime) -> Optional[Owed]:
        """Under the job's lock: the entry read again, compared, and written claimed (durably: a
        claim that a crash turned into a torn file would lose the event)."""
        if not entry.claimable(now):
            return None
        with self._locked(entry.job_id):
            current = self._read_entry(entry.job_id)
            if current is None or current.claim_key != entry.claim_key:
                return None
            claimed = current.claimed_for(holder, until)
            self._write_entry(claimed)
            return claimed

    def settle(self, entry: Owed) -> bool:
        job_id = entry.job_id
        with self._locked(job_id):
            current = self._read_entry(job_id)
            if current is None or current.claim_key != entry.claim_key:
                return False
            try:
                os.unlink(self._entry_path(job_id))
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise StoreError(f"file store {self.root}: cannot settle the outbox entry of job {job_id}: "
                                 f"{exc.strerror}") from None
            self._sync_folder(self.outbox_dir)
            return True

    def reschedule(self, entry: Owed) -> bool:
        with self._locked(entry.job_id):
            current = self._read_entry(entry.job_id)
            if current is None or current.claim_key != entry.claim_key:
                return False
            self._write_entry(entry.released())
            return True
