"""The OSS store: ``<prefix>/jobs/<job_id>.json`` and ``<prefix>/pending/<job_id>`` in one bucket.

Built on the official ``oss2`` SDK (FC's python3.10 runtime ships it), imported only
when this store is chosen. Works with oss2 >= 2.16 (the runtime's version); it signs
requests with OSS's V4 signature where the installed oss2 can (2.18.4 and later) and
with V1 otherwise, which OSS no longer accepts on buckets created since September 2025.

A save carries out ``saving.plan_save`` against the record as read (one GET, which also gives
its ETag: the version), under a claim on that version: ``<prefix>/locks/<job_id>/<ETag>``
(``none`` before the first record), created create-only (``x-oss-forbid-overwrite``), so of two
writers that read one version only one replaces it; the other reads again. No unlock follows a
replacing write (the claim on a dead version stays until ``tidy`` deletes it an hour on), so a
change costs four requests: GET, claim, then for an open job the marker and the record, for a
final one the record and the marker's removal (docs/oss.md). A claim whose holder died is taken
over through the next link (``<ETag>.1``), create-only as well. What writes nothing takes no claim.

The marker of an open job binds ICE's answer to the record it precedes (``bound_marker``: the
answer's digest and the record's ETag, in canonical bytes; ``first_seen_at`` and ``source`` as
metadata). A sweep lists ``pending/`` and pages of ``jobs/``, and an answer whose bound marker's
ETag matches the record's ETag in place is settled without a request (``vouched``); any other
hand on either object breaks the match. Markers the version before wrote (``{job_id,
first_seen_at, source}``) are read as they are and rebound by the next save.

With ``notify_states`` set, a write that takes a record into one of those states first puts
the job's outbox entry ``<prefix>/outbox/<job_id>`` (``notify.Owed``), under the job's lease
``<prefix>/locks/<job_id>`` and before the record, so a crash never leaves a record that owes
nothing. ``claim``, ``settle`` and ``reschedule`` compare the entry's event and claim
(``Owed.claim_key``) under the same lease.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import random
import re
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import (
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Set,
    Tuple,
    TypeVar,
    Union,
)
from urllib.parse import urlsplit

import oss2
import requests
from oss2.exceptions import OssError, RequestError

from .. import jsontext
from ..clients import LazyClient, credential_identity
from ..config import Settings
from ..errors import ConfigError, StoreError
from ..notify import BadOutboxEntry, Owed
from ..records import JobRecord, MergeResult, UnencodableRecord, format_time, record_json, settled_by_ice
from ..saving import plan_save
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
SAVE_ROUNDS = 8  # reads of one job's record while other writers keep claiming it first
LISTING_TRUSTED_S = 60.0  # a marker listed longer ago than this is read again, not taken from the listing
MARKERS_KEPT = 5000  # marker ETags kept from the pending listing: a sweep reads a page (1,000) and a window ahead
RECORD_PAGES_KEPT = 2  # pages of the jobs/ listing kept for vouched
SPARSE_PROBE_EVERY = 100  # pages of one key between two full pages that measure again how dense open jobs are
CLAIM_LINKS = 8  # stale claims on one version taken over in a row before giving up
CLAIMS_KEPT_S = 3600.0  # a claim on a replaced version is deleted (tidy) only this long after it was made
_META = "x-oss-meta-"

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
        self._listing_lock = threading.Lock()
        self._page_fetching = threading.Lock()
        # job ID -> (marker ETag, when listed), from the pending listing: the last MARKERS_KEPT
        self._markers_listed: OrderedDict[str, Tuple[str, float]] = OrderedDict()
        self._record_pages: List[_Page] = []  # the last pages of jobs/ listed for vouched
        self._page_keys = page_size  # keys a jobs/ page asks for: page_size, or 1 where open jobs lie far apart
        self._single_key_pages = 0  # pages of one key since the last full one
        self._tidied_after = ""  # where tidy stopped
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
        key_id, secret, token = credential_identity(credentials)
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
        return self._load(job_id)[0]

    def _load(self, job_id: str) -> Tuple[Optional[JobRecord], Optional[str]]:
        """The record and its ETag (the version a write claims), or (None, None)."""
        found = self._get(self._record_key(job_id), f"read the record of job {job_id}")
        if found is None:
            return None, None
        try:
            return JobRecord.from_dict(jsontext.loads(found.body)), found.etag
        except (ValueError, TypeError, AttributeError) as exc:  # not JSON, not an object, fields missing
            raise StoreError(f"OSS store {self.describe()}: the record of job {job_id} is corrupt: "
                             f"{type(exc).__name__}") from None

    def tracking(self, job_id: str) -> Optional[Tracking]:
        found = self._get(self._marker_key(job_id), f"read the pending marker of job {job_id}")
        if found is None:
            return None
        written = datetime.fromtimestamp(found.modified, tz=timezone.utc) if found.modified \
            else datetime.now(timezone.utc)
        # the version before kept first_seen_at and source in the body; a bound marker keeps them as metadata
        return Tracking.from_json(job_id, found.body, found.meta.get("first-seen-at") or format_time(written),
                                  found.meta.get("source") or "timer")

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
        """``_save_once``, again from a fresh read while another writer claims the same version first."""
        for attempt in range(SAVE_ROUNDS):
            try:
                return self._save_once(fresh)
            except _Superseded:
                time.sleep(random.uniform(0, min(0.2, 0.01 * 2 ** attempt)))  # full jitter
        raise StoreError(f"OSS store {self.describe()}: job {fresh.job_id} kept changing under concurrent writers; "
                         f"not written after {SAVE_ROUNDS} tries")

    def _save_once(self, fresh: JobRecord) -> MergeResult:
        """``plan_save`` against the record as read, carried out under a claim on that version.

        What writes nothing takes no claim; nor does removing a final job's marker (always right).
        The claim (``_claim``) is create-only, on ``locks/<job_id>/<record ETag>``: of two writers
        that read the same version, one replaces it and the other reads again. Requests: one GET,
        the claim, then the plan's writes: the marker (bound to the record it precedes) and the
        record for an open job, the record and the marker's removal for a final one.
        """
        job_id = fresh.job_id
        read_at = time.monotonic()
        stored, version = self._load(job_id)
        listed = bool(self._listed_markers([job_id]))  # the sweep listed its marker a moment ago
        source = fresh.source  # what a marker rewritten now says it was tracked by
        if stored is None:  # the marker's first_seen_at is the record's
            tracked = self.tracking(job_id)
            source = tracked.source if tracked is not None else source
            plan = plan_save(None, tracked, fresh, self.notify_states)
        else:
            marker = Tracking(job_id, stored.first_seen_at, fresh.source) if listed else None
            plan = plan_save(stored, marker, fresh, self.notify_states, marker_known=listed)
            if not plan.result.changed and not listed:  # whether an open job's marker is there: one read
                plan = plan_save(stored, self.tracking(job_id), fresh, self.notify_states)
        if plan.idle:
            return plan.result
        if not plan.result.changed and plan.open_marker is None and plan.bind is None:
            self._delete(self._marker_key(job_id), f"untrack job {job_id}")  # a final job's marker left behind
            return plan.result
        record = plan.result.record
        data = self._encode(record) if plan.result.changed else None  # before any write: unencodable writes nothing
        with self._claim(job_id, version, read_at) as claim:
            if plan.owe is not None:
                # the entry first, like the marker, under the job's lease (the outbox's settle compares under it)
                with self._job_lock(job_id) as lease:
                    claim.check()
                    lease.check()
                    self._put_entry(plan.owe)
            if not record.final:  # marker first: a non-final record never exists without it
                claim.check()
                self._put_marker(job_id, plan.bind, _md5(data) if data is not None else version or "",
                                 record.first_seen_at, source)
            if data is not None:
                claim.check()
                self._put_record(record, data)
                claim.replaced = True
            if record.final:
                self._delete(self._marker_key(job_id), f"untrack job {job_id}")
        return plan.result

    def _put_marker(self, job_id: str, digest: Optional[str], record_etag: str, first_seen_at: str,
                    source: str) -> None:
        """The job's marker, bound to the answer ``digest`` and the record ``record_etag`` (``bound_marker``)."""
        data = bound_marker(job_id, digest, record_etag)
        headers = {"Content-Type": "application/json", "x-oss-meta-first-seen-at": first_seen_at,
                   "x-oss-meta-source": source}
        self._call(f"track job {job_id}",
                   lambda bucket: bucket.put_object(self._marker_key(job_id), data, headers=headers))

    # -- answers vouched for by the listings -------------------------------------------

    def vouched(self, digests: Mapping[str, str]) -> Set[str]:
        """The jobs whose marker, as the sweep listed it, binds this very answer to the record in place.

        No request beyond the listings: the marker's ETag is the MD5 of ``bound_marker(job_id,
        digest, record ETag)`` exactly when the marker binds ``digest`` to that record, and the
        record's ETag comes from a listing of ``jobs/`` (``_record_etags``). A write by anyone
        else (a hand edit of either object, an older version of this code rewriting the record,
        a restore of an older record) changes one ETag or the other, and the job is checked the
        ordinary way. A job whose marker this instance has not listed is never vouched for.
        """
        markers = self._listed_markers(digests)
        if not markers:
            return set()
        records = self._record_etags(markers)
        return {job_id for job_id, (etag, _listed_at) in markers.items() if records.get(job_id)
                and etag == _md5(bound_marker(job_id, digests[job_id], records[job_id] or ""))}

    def _listed_markers(self, job_ids: Iterable[str]) -> Dict[str, Tuple[str, float]]:
        """(ETag, when listed) of each of these jobs' markers that this instance listed in the last
        ``LISTING_TRUSTED_S``; older listings are not trusted (the marker is read instead)."""
        trusted_since = time.monotonic() - LISTING_TRUSTED_S
        with self._listing_lock:
            listed = ((job_id, self._markers_listed.get(job_id)) for job_id in job_ids)
            return {job_id: entry for job_id, entry in listed if entry is not None and entry[1] >= trusted_since}

    def _record_etags(self, markers: Mapping[str, Tuple[str, float]]) -> Dict[str, Optional[str]]:
        """Each job's record ETag (None: no record), from pages of the ``jobs/`` listing listed no
        earlier than the job's marker (``markers``: job ID -> (ETag, when listed)), so that what a
        page says is never older than what the marker says.

        A page starts at the first job not yet covered and covers every record up to its last key,
        so a sweep over open jobs whose records lie close together (a backlog) lists ``jobs/``
        about once per thousand jobs. Where they lie far apart (few open jobs among many final
        ones), a page of one key a job asks no more than a HEAD would. The last few pages are kept.
        """
        found: Dict[str, Optional[str]] = {}
        for job_id in sorted(markers):
            key = self._record_key(job_id)
            page = self._page_covering(key, since=markers[job_id][1])
            if page is None:
                with self._page_fetching:  # one writer thread lists; the others use its page
                    page = self._page_covering(key, since=markers[job_id][1]) or self._list_records_from(key)
            found[job_id] = page.etags.get(key)
        return found

    def _page_covering(self, key: str, *, since: float) -> Optional[_Page]:
        with self._listing_lock:
            return next((page for page in self._record_pages if page.listed_at >= since and page.covers(key)), None)

    def _list_records_from(self, key: str) -> _Page:
        folder = self._record_key("")[:-len(".json")]
        with self._listing_lock:
            max_keys = self._page_keys
        start_after = key[:-len(".json")]  # sorts just before the record's key
        listed_at = time.monotonic()
        listing = self._call("list records", functools.partial(_list_page, prefix=folder, start_after=start_after,
                                                                max_keys=max_keys))
        etags = {info.key: _etag(info.etag) for info in listing.object_list}
        last = listing.object_list[-1].key if listing.object_list else None
        page = _Page(start_after, last if listing.is_truncated else None, etags, listed_at)
        with self._listing_lock:
            if max_keys > 1:
                # how many of the page's records are of jobs listed open: few, and pages of one key do as well
                open_share = sum(1 for name in etags if name[len(folder):-len(".json")] in self._markers_listed)
                if open_share * 100 < len(etags):
                    self._page_keys, self._single_key_pages = 1, 0
            else:  # a page of one key says nothing of how dense open jobs are: a full page, now and then
                self._single_key_pages += 1
                if self._single_key_pages >= SPARSE_PROBE_EVERY:
                    self._page_keys = self.page_size
            self._record_pages.append(page)
            del self._record_pages[:-RECORD_PAGES_KEPT]
        return page

    def _names(self, prefix: str, start_after: str, doing: str) -> Iterator[str]:
        """The object names right under ``prefix`` (none in a deeper folder), in ascending order (OSS
        lists lexically) after the key ``start_after``; one page (up to ``page_size`` keys) in memory
        at a time. oss2 retries a failed page at once, without backoff."""
        for name, _etag_hex, _asked_at in self._listing(prefix, start_after, doing):
            yield name

    def _listing(self, prefix: str, start_after: str, doing: str) -> Iterator[Tuple[str, str, float]]:
        """``_names`` with each object's ETag and when its page was asked for (``time.monotonic()``)."""
        token = ""
        while True:
            asked_at = time.monotonic()
            page = self._call(doing, functools.partial(_list_page, prefix=prefix, start_after=start_after,
                                                       continuation_token=token, max_keys=self.page_size))
            for info in page.object_list:
                name = info.key[len(prefix):]
                if name and "/" not in name:
                    yield name, _etag(info.etag), asked_at
            if not page.is_truncated:
                return
            token = page.next_continuation_token

    def pending_job_ids(self, after: Optional[str] = None) -> Iterator[str]:
        """Ascending order; ``after`` becomes the listing's ``start-after``. Each marker's ETag is kept
        (the last ``MARKERS_KEPT``) for ``vouched``."""
        for name, etag, asked_at in self._listing(self._marker_key(""), self._marker_key(after) if after else "",
                                                  "list pending jobs"):
            with self._listing_lock:
                self._markers_listed[name] = (etag, asked_at)
                self._markers_listed.move_to_end(name)
                if len(self._markers_listed) > MARKERS_KEPT:
                    self._markers_listed.popitem(last=False)
            yield name

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

    @contextlib.contextmanager
    def _claim(self, job_id: str, version: Optional[str], read_at: float) -> Iterator[_Claim]:
        """Claim the version of the job's record this save read: ``locks/<job_id>/<ETag>`` (``none``: no
        record yet), created create-only, so that of two writers that read one version only one writes.

        Taken by another writer and live: ``_Superseded`` (the caller reads again). Left by a writer
        that died (expired): taken over, and the record read again to be sure it is still that
        version. A claim on a version the save replaced stays, so that a writer still holding that
        version finds it taken (``tidy`` deletes it ``CLAIMS_KEPT_S`` later); one whose version
        stands (a marker written, a binding, a failed write) is deleted at the end. A claim whose
        holder died is taken over by creating the next link (``<ETag>.1``, ``.2``...), create-only
        as well, so of two writers taking it over only one does.
        """
        if time.monotonic() - read_at > self.lock_ttl_s / 2:
            raise _Superseded  # read too long ago to claim on (and tidy keeps claims only so long)
        first = f"{self._base}locks/{job_id}/{version or 'none'}"
        holder = uuid.uuid4().hex
        taken_at = time.monotonic()
        body = json.dumps({"holder": holder, "expires_at": round(time.time() + self.lock_ttl_s, 3)}).encode()
        for link in range(CLAIM_LINKS):
            key = first if link == 0 else f"{first}.{link}"
            if self._create(key, body, f"claim job {job_id}"):
                break
            current = self._get(key, f"read the claim on job {job_id}")
            if current is None:
                raise _Superseded  # released (or tidied) meanwhile: read again
            owner, expires_at = _lock_owner(current, self.lock_ttl_s)
            if owner == holder:  # our own create, retried after its answer was lost
                break
            if expires_at >= time.time():
                raise _Superseded  # someone is writing that version: read again
            # its holder died: the next link, create-only too, so only one writer takes it over
            logger.warning("taking over the stale claim on job %s (OSS store %s)", job_id, self.describe())
        else:
            raise StoreError(f"OSS store {self.describe()}: job {job_id} has {CLAIM_LINKS} stale claims in a row; "
                             "try again later")
        if link and self._load(job_id)[1] != version:
            self._release(key, holder, _Lease(taken_at, self.lock_ttl_s, ""), job_id)
            raise _Superseded  # a writer before us replaced it after all
        claim = _Claim(taken_at, self.lock_ttl_s, f"OSS store {self.describe()}")
        try:
            yield claim
        finally:
            if not claim.replaced:
                self._release(key, holder, claim, job_id)

    def tidy(self, budget_s: float = 2.0) -> int:  # type: ignore[override]
        """Delete claims on replaced versions older than ``CLAIMS_KEPT_S``, a few listing pages of
        ``locks/`` at a time (resuming where the last call stopped); one batch delete per page.
        Returns how many were deleted."""
        folder = f"{self._base}locks/"
        stop_at, deleted, old = time.monotonic() + budget_s, 0, []
        cutoff = time.time() - CLAIMS_KEPT_S
        bucket = self._current_bucket()
        last = self._tidied_after
        try:
            for info in oss2.ObjectIteratorV2(bucket, prefix=folder, start_after=self._tidied_after,
                                              max_keys=self.page_size):
                last = info.key
                if "/" in info.key[len(folder):] and (info.last_modified or 0) < cutoff:
                    old.append(info.key)
                if len(old) >= self.page_size:
                    deleted += self._delete_all(bucket, old)
                    old = []
                if time.monotonic() >= stop_at:
                    break
            else:
                last = ""  # the whole folder: start over next time
            deleted += self._delete_all(bucket, old)
        except (OssError, requests.RequestException) as exc:
            raise self._error(exc, "tidy the claims") from None
        self._tidied_after = last
        return deleted

    @staticmethod
    def _delete_all(bucket: oss2.Bucket, keys: List[str]) -> int:
        if keys:
            bucket.batch_delete_objects(keys)
        return len(keys)

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

    def _get(self, key: str, doing: str) -> Optional[_Object]:
        """The object (body, last-modified epoch seconds, ETag, user metadata), or None when it does not exist."""
        def read(bucket: oss2.Bucket) -> _Object:
            answer = bucket.get_object(key)
            meta = {name.lower()[len(_META):]: value for name, value in answer.headers.items()
                    if name.lower().startswith(_META)}
            return _Object(answer.read(), answer.last_modified, _etag(answer.etag), meta)

        try:
            return self._call(doing, read, passthrough=_is_missing)
        except OssError:
            return None

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


class _Superseded(Exception):
    """Another writer claimed the version this save read: read again."""


@dataclass(frozen=True)
class _Page:
    """A page of the ``jobs/`` listing: every record key after ``start_after`` up to ``last`` (None: to the end)."""

    start_after: str
    last: Optional[str]
    etags: Dict[str, str]
    listed_at: float  # time.monotonic() when it was asked for

    def covers(self, key: str) -> bool:
        return key > self.start_after and (self.last is None or key <= self.last)


class _Object(NamedTuple):
    body: bytes
    modified: Optional[int]  # epoch seconds
    etag: str  # lowercase hex, no quotes
    meta: Dict[str, str]  # user metadata (x-oss-meta-*), by lowercase name without the prefix


def _etag(value: Optional[str]) -> str:
    """An ETag as we compare it: OSS sends uppercase hex in quotes, moto lowercase; oss2 strips the quotes."""
    return (value or "").strip().strip('"').lower()


def bound_marker(job_id: str, digest: Optional[str], record_etag: str) -> bytes:
    """The marker of an open job whose record (``record_etag``) was made from the answer ``digest``.

    Canonical bytes: a listing's ETag of the marker (its MD5, for a simple PutObject) then tells
    whether it binds this very answer to the record in place, without reading either object.
    ``first_seen_at`` and ``source`` travel as the marker's metadata (not in the ETag).
    """
    return json.dumps({"answer": digest, "job_id": job_id, "record": record_etag, "v": 1},
                      sort_keys=True, separators=(",", ":")).encode("utf-8")


def _list_page(bucket: oss2.Bucket, **query: Any) -> Any:
    return bucket.list_objects_v2(**query)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # noqa: S324 - what OSS's ETag is, not a safeguard


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


class _Claim(_Lease):
    """A claim on one version of a job's record; ``replaced`` once the save wrote over that version."""

    def __init__(self, taken_at: float, ttl: float, store: str) -> None:
        super().__init__(taken_at, ttl, store)
        self.replaced = False


def _lock_owner(found: _Object, ttl: float) -> Tuple[Optional[str], float]:
    """(holder, expiry in epoch seconds) of a lock object; an unreadable body expires ``ttl`` after its write."""
    raw, modified = found.body, found.modified
    try:
        data = jsontext.loads(raw)
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

