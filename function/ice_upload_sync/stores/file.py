"""The file store: ``<root>/jobs/<job_id>.json`` and ``<root>/pending/<job_id>``.

For laptops and single-instance runs. Every write goes to a temporary file in the
same folder and is renamed into place, so a crash never leaves half a record. The
read-merge-write of one job is serialized by a lock file (``flock``) shared by
threads and processes; 64 striped lock files keep their number bounded.
"""
from __future__ import annotations

import contextlib
import os
import threading
import zlib
from datetime import datetime, timezone
from typing import Iterator, Optional

from ..errors import StoreError
from ..records import JobRecord, MergeResult, UnencodableRecord, format_time, merge, record_json
from .base import Tracking

try:  # POSIX (FC, Linux, macOS); elsewhere the thread locks still hold within one process
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

import json

_STRIPES = 64


class FileStore:
    # Local syscalls: more writer threads only contend for the interpreter lock (see sync.py).
    write_concurrency = 1

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        self.jobs_dir = os.path.join(self.root, "jobs")
        self.pending_dir = os.path.join(self.root, "pending")
        self.locks_dir = os.path.join(self.root, ".locks")
        self.cursors_dir = os.path.join(self.root, "cursors")
        self._thread_locks = [threading.Lock() for _ in range(_STRIPES)]
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

    @contextlib.contextmanager
    def _locked(self, job_id: str) -> Iterator[None]:
        stripe = zlib.crc32(job_id.encode("utf-8")) % _STRIPES
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

    def _write_atomic(self, path: str, data: bytes) -> None:
        folder, name = os.path.split(path)
        temp = os.path.join(folder, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with open(temp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise StoreError(f"file store {self.root}: cannot write {name}: {exc.strerror}") from None

    @staticmethod
    def _read(path: str) -> Optional[bytes]:
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except FileNotFoundError:
            return None

    # -- the interface ------------------------------------------------------------

    def load(self, job_id: str) -> Optional[JobRecord]:
        try:
            raw = self._read(self._record_path(job_id))
        except OSError as exc:
            raise StoreError(f"file store {self.root}: cannot read {job_id}: {exc.strerror}") from None
        if raw is None:
            return None
        try:
            return JobRecord.from_dict(json.loads(raw))
        except (ValueError, TypeError, AttributeError) as exc:  # not JSON, not an object, fields missing
            raise StoreError(f"file store {self.root}: record {job_id} is corrupt: {exc}") from None

    def tracking(self, job_id: str) -> Optional[Tracking]:
        path = self._marker_path(job_id)
        try:
            raw = self._read(path)
            if raw is None:
                return None
            try:
                data = json.loads(raw)
            except ValueError:
                data = None
            if isinstance(data, dict) and data.get("first_seen_at"):  # the usual case: no stat
                return Tracking(job_id, str(data["first_seen_at"]), str(data.get("source") or "timer"))
            fallback = format_time(datetime.fromtimestamp(os.stat(path).st_mtime, tz=timezone.utc))
        except OSError:
            return None
        return Tracking.from_json(job_id, raw, fallback)

    def track(self, tracking: Tracking) -> bool:
        with self._locked(tracking.job_id):
            if os.path.exists(self._marker_path(tracking.job_id)):
                return False
            stored = self.load(tracking.job_id)
            if stored is not None and stored.final:
                return False
            self._write_atomic(self._marker_path(tracking.job_id), tracking.to_json())
            return True

    def save(self, fresh: JobRecord) -> MergeResult:
        job_id = fresh.job_id
        # The sweep's usual case, an answer that changes nothing, needs no lock: records and
        # markers are replaced by rename, so what we read is whole, and doing nothing is right.
        stored = self.load(job_id)
        marker = self.tracking(job_id)
        result = merge(stored, fresh, tracked_since=marker.first_seen_at if marker else None)
        if not result.changed and result.record.final == (marker is None):
            return result
        with self._locked(job_id):
            stored = self.load(job_id)
            marker = self.tracking(job_id)
            result = merge(stored, fresh, tracked_since=marker.first_seen_at if marker else None)
            # encoded before anything is written: a record that cannot be leaves no marker behind
            data = self._encode(result.record) if result.changed else None
            if not result.record.final and marker is None:
                # marker first: a non-final record must never exist without it
                marker = Tracking(job_id, result.record.first_seen_at, fresh.source)
                self._write_atomic(self._marker_path(job_id), marker.to_json())
            if data is not None:
                self._write_atomic(self._record_path(job_id), data)
            if result.record.final and marker is not None:
                try:
                    os.unlink(self._marker_path(job_id))
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    raise StoreError(f"file store {self.root}: cannot untrack {job_id}: {exc.strerror}") from None
            return result

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

    def records(self, after: Optional[str] = None) -> Iterator[JobRecord]:
        """Every record in ascending ``job_id`` order, read one at a time (the operator's command line)."""
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
                record = self.load(job_id)
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
