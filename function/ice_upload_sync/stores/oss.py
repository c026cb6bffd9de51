"""The OSS store: ``<prefix>/jobs/<job_id>.json`` and ``<prefix>/pending/<job_id>`` in one bucket.

Built on the official ``oss2`` SDK (FC's python3.10 runtime ships it), imported only
when this store is chosen. Works with oss2 >= 2.16 (the runtime's version); it signs
requests with OSS's V4 signature where the installed oss2 can (2.18.4 and later) and
with V1 otherwise, which OSS no longer accepts on buckets created since September 2025.

Writes follow the file store's order: the pending marker is created *before* a non-final
record is written and removed *after* a final one. Markers are created with
``x-oss-forbid-overwrite: true`` (create-only), so the first ``first_seen_at`` stays.
The read-merge-write of one job is serialized by a short-lived lock object
``<prefix>/locks/<job_id>``, also created create-only; only writes that change something
take it. A lock older than ``lock_ttl_s`` is stale (its holder died) and is taken over.
Taking over is the one remaining race (two writers may both take the same stale lock);
``save`` then still leaves every non-final record with its marker, so the sweep heals
whatever the race got wrong (see docs/oss.md).

With ``notify_states`` set, a write that takes a record into one of those states first puts
the job's outbox entry ``<prefix>/outbox/<job_id>`` (``notify.Owed``), under the job's lock
and before the record (and its marker), so a crash never leaves a record that owes nothing.
``claim``, ``settle`` and ``reschedule`` compare the entry's event and claim
(``Owed.claim_key``) under the same lock.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import random
import re
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union
from urllib.parse import urlsplit

import oss2
import requests
from oss2.exceptions import OssError, RequestError

from ..clients import LazyClient
from ..config import Settings
from ..errors import ConfigError, StoreError
from ..notify import BadOutboxEntry, Owed
from ..records import JobRecord, MergeResult, UnencodableRecord, format_time, record_json, settled_by_ice
from ..saving import SavePlan, plan_save
from .base import RecordStore, Tracked, Tracking, Unreadable, endpoint_override, in_fc_region, read_or_skip

logger = logging.getLogger(__name__)

# oss2 logs every request's headers (the STS token among them) at DEBUG and error bodies
# (SignatureDoesNotMatch carries the string to sign) at INFO: keep it at WARNING unless
# someone chose a level on purpose.
_sdk_logger = logging.getLogger("oss2")
if _sdk_logger.level == logging.NOTSET:
    _sdk_logger.setLevel(logging.WARNING)

CONNECT_TIMEOUT_S = 2.0  # an unreachable endpoint fails fast, well within FC's timeout
READ_TIMEOUT_S = 5.0  # records are a few KB; a healthy OSS answers in milliseconds
LOCK_TTL_S = 30.0
LOCK_WAIT_S = 5.0
PAGE_SIZE = 1000  # OSS's maximum per ListObjectsV2 page

_OSS_HOST = re.compile(r"^oss-([a-z0-9-]+?)(?:-internal)?\.aliyuncs\.com$")
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_ACCESS_CODES = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "SecurityTokenExpired",
                           "InvalidSecurityToken", "UserDisable", "Forbidden"})
_T = TypeVar("_T")
_SIGNS_V4 = hasattr(oss2, "AuthV4")  # oss2 >= 2.18.4


# ---------------------------------------------------------------- configuration


def parse_location(location: str) -> Tuple[str, str]:
    """``<bucket>/<prefix>`` (what follows ``oss://``) -> (bucket, prefix without outer slashes)."""
    bucket, _, prefix = location.strip().partition("/")
    if not _BUCKET_NAME.match(bucket):
        raise ConfigError(f"RECORD_STORE oss://{location}: bucket name {bucket!r} must be 3-63 characters of "
                          "lowercase letters, digits and hyphens, starting and ending with a letter or digit")
    prefix = "/".join(part for part in prefix.split("/") if part)
    if any(part in (".", "..") for part in prefix.split("/")) or any(ord(c) < 32 for c in prefix):
        raise ConfigError(f"RECORD_STORE oss://{location}: the prefix must be plain folder names")
    return bucket, prefix


def resolve_endpoint(settings: Settings, environ: Optional[Mapping[str, str]] = None) -> str:
    """``OSS_ENDPOINT`` if set; else the region's internal endpoint inside FC, the public one outside.

    The region is ``ICE_REGION``. FC sets ``FC_FUNCTION_NAME`` and ``FC_REGION``; the
    internal endpoint is reachable only from the same region, so it is chosen only
    when FC runs in that region (or does not say where it runs).
    """
    if settings.oss_endpoint:
        return endpoint_override("OSS_ENDPOINT", settings.oss_endpoint)
    internal = in_fc_region(settings.ice_region, environ)
    return f"https://oss-{settings.ice_region}{'-internal' if internal else ''}.aliyuncs.com"


def endpoint_region(endpoint: str, default: str) -> str:
    """The region a V4 signature must name: from ``oss-<region>[-internal].aliyuncs.com``, else ``default``."""
    match = _OSS_HOST.match(urlsplit(endpoint).hostname or "")
    return match.group(1) if match else default


# ---------------------------------------------------------------- the store


class OssStore(RecordStore):

    def __init__(self, bucket: str, prefix: str, endpoint: str, region: str, credentials: Any = None, *,
                 page_size: int = PAGE_SIZE, lock_ttl_s: float = LOCK_TTL_S, lock_wait_s: float = LOCK_WAIT_S,
                 connect_timeout_s: float = CONNECT_TIMEOUT_S, read_timeout_s: float = READ_TIMEOUT_S,
                 create: bool = True) -> None:
        """``create=False`` (the operator's read commands): the first request checks that the store
        exists, i.e. that the bucket holds something under the prefix (a typo in ``RECORD_STORE``
        is an error naming it, not an empty store). Reads never create anything either way."""
        self.bucket_name = bucket
        self.prefix = prefix
        self.endpoint = endpoint
        self.region = region  # V4 signatures name the bucket's region
        self.page_size = page_size
        self.lock_ttl_s = lock_ttl_s
        self.lock_wait_s = lock_wait_s
        # oss2 hands this straight to requests: (connect, read) seconds
        self._timeout = (connect_timeout_s, read_timeout_s)
        self._base = f"{prefix}/" if prefix else ""
        self._session = oss2.Session()  # one connection pool across credential rotations
        self._buckets: LazyClient[oss2.Bucket] = LazyClient(
            self._make_bucket, lambda: StoreError(f"OSS store {self.describe()}: no credentials bound"))
        self._existence_unchecked = not create
        if credentials is not None:
            self.bind(credentials)

    def describe(self) -> str:
        return f"oss://{self.bucket_name}/{self.prefix}"

    def bind(self, credentials: Any) -> None:
        """``oss2.StsAuth`` with a security token, else ``oss2.Auth`` (V4 variants where oss2 has them).

        The SDK's bucket object is rebuilt only when the credentials change (FC's rotate).
        """
        self._buckets.bind(credentials)

    def _make_bucket(self, credentials: Any) -> oss2.Bucket:
        key_id, secret = credentials.access_key_id, credentials.access_key_secret
        token = getattr(credentials, "security_token", None) or None
        if _SIGNS_V4:
            auth = (oss2.StsAuth(key_id, secret, token, auth_version=oss2.AUTH_VERSION_4) if token
                    else oss2.AuthV4(key_id, secret))
            extra = {"region": self.region}
        else:
            auth = oss2.StsAuth(key_id, secret, token) if token else oss2.Auth(key_id, secret)
            extra = {}
        return oss2.Bucket(auth, self.endpoint, self.bucket_name, session=self._session,
                           connect_timeout=self._timeout, **extra)

    # -- keys ---------------------------------------------------------------------

    def _record_key(self, job_id: str) -> str:
        return f"{self._base}jobs/{job_id}.json"

    def _marker_key(self, job_id: str) -> str:
        return f"{self._base}pending/{job_id}"

    def _cursor_key(self, name: str) -> str:
        return f"{self._base}cursors/{name}"

    def _lock_key(self, job_id: str) -> str:
        return f"{self._base}locks/{job_id}"

    def _entry_key(self, job_id: str) -> str:
        return f"{self._base}outbox/{job_id}"

    # -- the interface ------------------------------------------------------------

    def load(self, job_id: str) -> Optional[JobRecord]:
        found = self._get(self._record_key(job_id), f"read the record of job {job_id}")
        if found is None:
            return None
        try:
            return JobRecord.from_dict(json.loads(found[0]))
        except (ValueError, TypeError, AttributeError) as exc:  # not JSON, not an object, fields missing
            raise StoreError(f"OSS store {self.describe()}: the record of job {job_id} is corrupt: "
                             f"{type(exc).__name__}") from None

    def tracking(self, job_id: str) -> Optional[Tracking]:
        found = self._get(self._marker_key(job_id), f"read the pending marker of job {job_id}")
        if found is None:
            return None
        raw, modified = found
        written = datetime.fromtimestamp(modified, tz=timezone.utc) if modified else datetime.now(timezone.utc)
        fallback = format_time(written)
        return Tracking.from_json(job_id, raw, fallback)

    def track(self, tracking: Tracking) -> Tracked:
        job_id = tracking.job_id
        if not self._create(self._marker_key(job_id), tracking.to_json(), f"track job {job_id}"):
            return Tracked.ALREADY  # the first first_seen_at stays
        if settled_by_ice(self.load(job_id)):  # never resurrect a job ICE finished
            self._delete(self._marker_key(job_id), f"untrack job {job_id}")
            return Tracked.SETTLED
        return Tracked.CREATED

    def save_many(self, records: Sequence[JobRecord]) -> List[Union[MergeResult, StoreError]]:
        """Each record saved in turn (``_save``): OSS has no batch write; the sweep runs several writers."""
        results: List[Union[MergeResult, StoreError]] = []
        for fresh in records:
            try:
                results.append(self._save(fresh))
            except StoreError as exc:
                results.append(exc)
        return results

    def _save(self, fresh: JobRecord) -> MergeResult:
        """``plan_save`` carried out under the job's lease lock; what writes nothing takes no lock."""
        job_id = fresh.job_id
        stored = self.load(job_id)
        # The marker matters to the plan only when there is no record yet (its first_seen_at);
        # a change to a record that exists is written without reading it (one request fewer).
        marker = self.tracking(job_id) if stored is None else None
        plan = plan_save(stored, marker, fresh, self.notify_states, marker_known=False)
        if not plan.result.changed:  # nothing to write: no lock, unless a marker must be made again
            marker = marker if stored is None else self.tracking(job_id)
            plan = plan_save(stored, marker, fresh, self.notify_states)
            if plan.open_marker is None:  # at most a final job's marker to remove
                self._carry_out_markers(plan)
                return plan.result
            # An open record without its marker (a crash left it so, or another instance made the
            # job final since we read it): only a fresh read under the lock may tell which.
        with self._job_lock(job_id) as lease:
            stored = self.load(job_id)
            # again, under the lock; ``track`` makes markers without it, so their existence stays unknown
            plan = plan_save(stored, marker, fresh, self.notify_states, marker_known=False)
            if not plan.result.changed:  # (so a record is stored)
                self._carry_out_markers(plan_save(stored, self.tracking(job_id), fresh, self.notify_states))
                return plan.result
            record = plan.result.record
            data = self._encode(record)  # before any write: a record that cannot be leaves no marker
            if plan.owe is not None:
                # the entry first, like the marker: a record that owes an event never exists without it
                lease.check()
                self._put_entry(plan.owe)
            if plan.open_marker is not None:  # marker first: a non-final record never exists without it
                self._create_marker(plan.open_marker)
            lease.check()
            self._put_record(record, data)
            if plan.remove_marker:
                self._delete(self._marker_key(job_id), f"untrack job {job_id}")
                # A writer whose lock was taken over may have regressed the record meanwhile:
                # then keep it swept, and the next sweep restores the final answer.
                now_stored = self.load(job_id)
                if now_stored is not None and not now_stored.final:
                    self._ensure_marker(now_stored, fresh.source)
            elif not self._exists(self._marker_key(job_id), f"check the pending marker of job {job_id}"):
                # ...or removed our marker after its final write: recreate it (same reason)
                self._ensure_marker(record, fresh.source)
            return plan.result

    def _names(self, prefix: str, start_after: str, doing: str) -> Iterator[str]:
        """The object names right under ``prefix`` (none in a deeper folder), in ascending order (OSS
        lists lexically) after the key ``start_after``; one page (up to ``page_size`` keys) in memory
        at a time. oss2 retries a failed page at once, without backoff."""
        bucket = self._current_bucket()
        try:
            for info in oss2.ObjectIteratorV2(bucket, prefix=prefix, start_after=start_after,
                                              max_keys=self.page_size):
                name = info.key[len(prefix):]
                if name and "/" not in name:
                    yield name
        except (OssError, requests.RequestException) as exc:
            raise self._error(exc, doing) from None

    def pending_job_ids(self, after: Optional[str] = None) -> Iterator[str]:
        """Ascending order; ``after`` becomes the listing's ``start-after``."""
        yield from self._names(self._marker_key(""), self._marker_key(after) if after else "", "list pending jobs")

    def records(self, after: Optional[str] = None, *,
                unreadable: Optional[Unreadable] = None) -> Iterator[JobRecord]:
        """Every record in ascending ``job_id`` order, a listing page (and one GET a record) at a time.

        For the operator's command line, not the function's path: nothing is loaded ahead. A
        record that cannot be read or parsed raises ``StoreError``; with ``unreadable``, it is
        handed to it (job ID, error) and skipped.
        """
        folder = self._record_key("")[:-len(".json")]
        for name in self._names(folder, self._record_key(after) if after else "", "list records"):
            if name.endswith(".json"):
                job_id = name[:-len(".json")]
                record = read_or_skip(functools.partial(self.load, job_id), job_id, unreadable)
                if record is not None:
                    yield record

    def load_cursor(self, name: str) -> Optional[str]:
        """Where the sweep ``name`` stopped: the object ``<prefix>/cursors/<name>``."""
        found = self._get(self._cursor_key(name), f"read the sweep cursor {name}")
        if found is None:
            return None
        value = found[0].decode("utf-8", errors="replace").strip()
        return value or None

    def save_cursor(self, name: str, value: Optional[str]) -> None:
        key = self._cursor_key(name)
        if value is None:
            self._delete(key, f"reset the sweep cursor {name}")
            return
        self._call(f"save the sweep cursor {name}",
                   lambda bucket: bucket.put_object(key, value.encode("utf-8"), headers={"Content-Type": "text/plain"}))

    # -- the outbox of completion events ----------------------------------------------

    def owe(self, entry: Owed) -> None:
        """Create or replace the job's entry (one PutObject; OSS writes it whole or not at all)."""
        with self._job_lock(entry.job_id) as lease:
            lease.check()
            self._put_entry(entry)

    def owed(self, after: Optional[str] = None) -> Iterator[Owed]:
        """Every entry in ascending ``job_id`` order: a listing page at a time, one GET an entry."""
        for job_id in self._names(self._entry_key(""), self._entry_key(after) if after else "", "list the outbox"):
            entry = self._read_entry(job_id)
            if entry is not None:
                yield entry

    def claim(self, entry: Owed, holder: str, now: datetime, until: datetime) -> Optional[Owed]:
        """Under the job's lock: the entry read again, compared, and put claimed (4 requests: lock,
        GET, PUT, unlock). OSS's PutObject has no compare-and-set this store relies on (docs/oss.md)."""
        if not entry.claimable(now):
            return None
        with self._job_lock(entry.job_id) as lease:
            current = self._read_entry(entry.job_id)
            if current is None or current.claim_key != entry.claim_key:
                return None
            claimed = current.claimed_for(holder, until)
            lease.check()
            self._put_entry(claimed)
            return claimed

    def settle(self, entry: Owed) -> bool:
        job_id = entry.job_id
        with self._job_lock(job_id) as lease:
            current = self._read_entry(job_id)
            if current is None or current.claim_key != entry.claim_key:
                return False
            lease.check()
            self._delete(self._entry_key(job_id), f"settle the outbox entry of job {job_id}")
            return True

    def reschedule(self, entry: Owed) -> bool:
        with self._job_lock(entry.job_id) as lease:
            current = self._read_entry(entry.job_id)
            if current is None or current.claim_key != entry.claim_key:
                return False
            lease.check()
            self._put_entry(entry.released())
            return True

    def _put_entry(self, entry: Owed) -> None:
        data = entry.to_json()
        self._call(f"write the outbox entry of job {entry.job_id}",
                   lambda bucket: bucket.put_object(self._entry_key(entry.job_id), data,
                                                    headers={"Content-Type": "application/json"}))

    def _read_entry(self, job_id: str) -> Optional[Owed]:
        """The job's entry; None when there is none, or it does not parse (logged)."""
        found = self._get(self._entry_key(job_id), f"read the outbox entry of job {job_id}")
        if found is None:
            return None
        try:
            entry = Owed.from_json(found[0])
        except BadOutboxEntry as exc:
            logger.warning("OSS store %s: skipping the outbox entry of job %s: %s", self.describe(), job_id, exc)
            return None
        if entry.job_id != job_id:
            logger.warning("OSS store %s: skipping the outbox entry of job %s: it names job %s", self.describe(),
                           job_id, entry.job_id)
            return None
        return entry

    # -- markers and records ------------------------------------------------------

    def _carry_out_markers(self, plan: SavePlan) -> None:
        """A plan's markers when its record stands: what a crash or a lost race may have left repaired
        (a final job still marked, an open one unmarked)."""
        if plan.remove_marker:
            self._delete(self._marker_key(plan.result.record.job_id), f"untrack job {plan.result.record.job_id}")
        elif plan.open_marker is not None:
            self._create_marker(plan.open_marker)

    def _ensure_marker(self, record: JobRecord, source: str) -> None:
        self._create_marker(Tracking(record.job_id, record.first_seen_at, source))

    def _create_marker(self, marker: Tracking) -> None:
        self._create(self._marker_key(marker.job_id), marker.to_json(), f"track job {marker.job_id}")

    def _encode(self, record: JobRecord) -> bytes:
        try:
            return record_json(record)
        except UnencodableRecord as exc:
            raise StoreError(f"OSS store {self.describe()}: {exc}") from None

    def _put_record(self, record: JobRecord, data: bytes) -> None:
        self._call(f"write the record of job {record.job_id}",
                   lambda bucket: bucket.put_object(self._record_key(record.job_id), data,
                                                    headers={"Content-Type": "application/json"}))

    # -- the per-job lock ---------------------------------------------------------

    @contextlib.contextmanager
    def _job_lock(self, job_id: str) -> Iterator[_Lease]:
        """Hold ``<prefix>/locks/<job_id>`` (create-only); wait with jitter while someone else does."""
        key = self._lock_key(job_id)
        holder = uuid.uuid4().hex
        give_up = time.monotonic() + self.lock_wait_s
        attempt = 0
        while True:
            taken_at = time.monotonic()
            body = json.dumps({"holder": holder, "expires_at": round(time.time() + self.lock_ttl_s, 3)}).encode()
            if self._create(key, body, f"lock job {job_id}"):
                break
            current = self._get(key, f"read the lock of job {job_id}")
            if current is not None:
                owner, expires_at = _lock_owner(current, self.lock_ttl_s)
                if owner == holder:  # our own create, whose answer was lost and retried
                    break
                if expires_at < time.time():
                    logger.warning("taking over the stale lock of job %s (OSS store %s)", job_id, self.describe())
                    self._delete(key, f"take over the stale lock of job {job_id}")
                    continue
            if time.monotonic() >= give_up:
                raise StoreError(f"OSS store {self.describe()}: job {job_id} stayed locked by another writer for "
                                 f"{self.lock_wait_s:g} s; try again later")
            attempt += 1
            time.sleep(random.uniform(0, min(0.2, 0.01 * 2 ** attempt)))  # full jitter
        lease = _Lease(taken_at, self.lock_ttl_s, f"OSS store {self.describe()}")
        try:
            yield lease
        finally:
            self._release(key, holder, lease, job_id)

    def _release(self, key: str, holder: str, lease: _Lease, job_id: str) -> None:
        try:
            if not lease.valid():  # held past its time: it may be someone else's now
                current = self._get(key, f"read the lock of job {job_id}")
                if current is None or _lock_owner(current, self.lock_ttl_s)[0] != holder:
                    return
            self._delete(key, f"unlock job {job_id}")
        except StoreError as exc:  # the lock goes stale and is taken over; do not hide the real outcome
            logger.warning("%s", exc)

    # -- oss2 calls, errors translated ------------------------------------------

    def _current_bucket(self) -> oss2.Bucket:
        bucket = self._buckets.get()
        if self._existence_unchecked:
            self._require_existing(bucket)
        return bucket

    def _require_existing(self, bucket: oss2.Bucket) -> None:
        """``create=False``: the store exists when the bucket holds at least one object under the prefix."""
        try:
            listing = bucket.list_objects_v2(prefix=self._base, max_keys=1)
        except (OssError, requests.RequestException) as exc:
            raise self._error(exc, "read the store") from None
        if not listing.object_list and not listing.prefix_list:
            where = f"under the prefix {self._base!r}" if self._base else "at all"
            raise StoreError(f"OSS store {self.describe()} does not exist: bucket {self.bucket_name!r} holds no "
                             f"object {where} at {self.endpoint}; check RECORD_STORE (the function writes "
                             "there when it first records a job)")
        self._existence_unchecked = False

    def _call(self, doing: str, action: Callable[[oss2.Bucket], _T], *,
              passthrough: Callable[[OssError], bool] = lambda exc: False) -> _T:
        """Run one SDK call; retry once on 5xx or a dropped connection; errors become StoreError."""
        bucket = self._current_bucket()
        for attempt in (1, 2):
            try:
                return action(bucket)
            except OssError as exc:
                if passthrough(exc):
                    raise
                if attempt == 1 and _retryable(exc):
                    time.sleep(random.uniform(0.02, 0.1))
                    continue
                raise self._error(exc, doing) from None
            except requests.RequestException as exc:  # while reading a streamed body
                if attempt == 1:
                    continue
                raise self._error(exc, doing) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _get(self, key: str, doing: str) -> Optional[Tuple[bytes, Optional[int]]]:
        """(body, last-modified epoch seconds), or None when the object does not exist."""
        def read(bucket: oss2.Bucket) -> Tuple[bytes, Optional[int]]:
            answer = bucket.get_object(key)
            return answer.read(), answer.last_modified

        try:
            return self._call(doing, read, passthrough=_is_missing)
        except OssError:
            return None

    def _exists(self, key: str, doing: str) -> bool:
        try:
            self._call(doing, lambda bucket: bucket.head_object(key), passthrough=_is_missing)
        except OssError:
            return False
        return True

    def _create(self, key: str, data: bytes, doing: str) -> bool:
        """Create-only put; False when the object already exists (OSS: 409 FileAlreadyExists)."""
        headers = {"Content-Type": "application/json", "x-oss-forbid-overwrite": "true"}
        try:
            self._call(doing, lambda bucket: bucket.put_object(key, data, headers=headers), passthrough=_exists_already)
        except OssError:
            return False
        return True

    def _delete(self, key: str, doing: str) -> None:
        self._call(doing, lambda bucket: bucket.delete_object(key))  # a missing object is no error

    def _error(self, exc: Exception, doing: str) -> StoreError:
        """A message naming the bucket and prefix and what to do; never keys or credentials."""
        where = f"OSS store {self.describe()}: cannot {doing}"
        if isinstance(exc, RequestError) or isinstance(exc, requests.RequestException):
            cause = getattr(exc, "exception", exc)
            return StoreError(f"{where}: endpoint {self.endpoint} unreachable ({type(cause).__name__})")
        assert isinstance(exc, OssError)
        code, status = exc.code or "", exc.status
        request = f" (request {exc.request_id})" if exc.request_id else ""
        if code == "NoSuchBucket":
            reason = f"bucket {self.bucket_name!r} does not exist at {self.endpoint}"
        elif status == 403 or code in _ACCESS_CODES:
            reason = (f"access denied ({code or status}); the function's role needs oss:GetObject, oss:PutObject, "
                      f"oss:DeleteObject and oss:ListObjects on bucket {self.bucket_name!r}, prefix "
                      f"{self.prefix or '(none)'!r}")
        elif status >= 500:
            reason = f"OSS failed with {status} {code} (try again later)".rstrip()
        elif status < 0:  # raised by the SDK itself, before or after the request
            reason = f"SDK error {type(exc).__name__}"
        else:
            reason = f"OSS answered {status} {code}".rstrip()
        return StoreError(f"{where}: {reason}{request}")


class _Lease:
    """How long our lock is ours: past ``ttl`` another writer may take it over."""

    def __init__(self, taken_at: float, ttl: float, store: str) -> None:
        self.taken_at = taken_at
        self.ttl = ttl
        self.store = store

    def valid(self) -> bool:
        return time.monotonic() - self.taken_at < self.ttl * 0.8  # margin for clock drift between writers

    def check(self) -> None:
        if not self.valid():
            raise StoreError(f"{self.store}: a job lock was held too long (OSS too slow?); nothing written, "
                             "try again")


def _lock_owner(found: Tuple[bytes, Optional[int]], ttl: float) -> Tuple[Optional[str], float]:
    """(holder, expiry in epoch seconds) of a lock object; an unreadable body expires ``ttl`` after its write."""
    raw, modified = found
    try:
        data = json.loads(raw)
        return str(data["holder"]), float(data["expires_at"])
    except (ValueError, TypeError, KeyError):
        return None, float(modified or 0) + ttl


def _is_missing(exc: OssError) -> bool:
    return exc.status == 404 and exc.code != "NoSuchBucket"


def _exists_already(exc: OssError) -> bool:
    return exc.status == 409 and exc.code in ("FileAlreadyExists", "")


def _retryable(exc: OssError) -> bool:
    if isinstance(exc, RequestError):  # a stale pooled connection, a reset; not a connect timeout
        return not isinstance(getattr(exc, "exception", None), requests.exceptions.ConnectTimeout)
    return exc.status >= 500

