"""The Tablestore store: table ``<table>`` holds the records, ``<table>_pending`` indexes the open jobs.

Built on the official ``tablestore`` SDK (FC's python3.10 runtime ships 5.4.1; 6.x has
the same API), imported only when this store is chosen.

- ``<table>``: primary key ``job_id`` (STRING), one attribute column per record field
  (``user_data`` as a JSON string, absent fields as absent columns) plus ``revision``, an
  integer that every write increments, ``info`` (``information_fingerprint``) and, on a
  non-final record made from an ICE answer, ``answer`` (its ``answer_digest``: what lets a
  sweep tell an unchanged answer from one column, see ``answer_digests``).
- ``<table>_pending``: primary key ``job_id``, columns ``first_seen_at`` and ``source``; a
  row exists exactly while the job is tracked and not final, so a sweep reads only open
  jobs with GetRange, page by page, never scanning the records. Sweep cursors live in the
  same table under ``~cursor~<name>``, after every job ID (``~`` is not allowed in one), and so
  do outbox entries (``notify.Owed``, with ``notify_states`` set) under ``~outbox~<job_id>``,
  columns ``entry`` (its JSON), ``event_id`` and, once claimed, ``claim`` (holder and expiry:
  what ``claim``, ``settle`` and ``reschedule`` put in their row condition); both sort after
  ``~cursor~``, where the pending listing stops, so neither is ever taken for an open job.

The merge rule is atomic through a compare-and-set: a record is written only if the row
is still at the ``revision`` that was read (``EXPECT_NOT_EXIST`` for a new row). When
another writer got there first the condition fails (``OTSConditionCheckFail``, the
expected outcome of a race, not an error) and the job is read and merged again, so a final
record is never replaced by a stale non-final one. Writes are batched with BatchWriteRow
(200 rows at most), in the order the other stores follow: markers of open jobs first,
then the records, then the markers of jobs that became final. An outbox entry a record owes
is written with the markers, before the record. Rows that fail on their own
are retried in the next round; the ones still failing are reported per job. One job never
fails its batch-mates: a record that is not strict JSON in UTF-8 fails before any request
(no marker is left for it), a corrupt stored row fails only its own job, and a request
refused whole for what one row may carry (the SDK cannot encode it, the service calls a
parameter invalid) is written in halves until that row fails alone.
"""
from __future__ import annotations

import functools
import json
import logging
import re
import threading
import time
import warnings
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple, Union, cast

import tablestore as ots
import urllib3
from tablestore.retry import DefaultRetryPolicy

from .. import jsontext
from ..clients import LazyClient, credential_identity
from ..config import Settings
from ..errors import ConfigError, StoreError
from ..notify import BadOutboxEntry, Owed
from ..records import (
    JobRecord,
    MergeResult,
    UnencodableRecord,
    format_time,
    information_fingerprint,
    settled_by_ice,
)
from ..saving import SavePlan, plan_save
from .base import RecordStore, Tracked, Tracking, Unreadable, endpoint_override, in_fc_region, read_or_skip

logger = logging.getLogger(__name__)

# The SDK logs every failed request at ERROR (a lost race among them) and request headers,
# the STS token included, at DEBUG: keep it quiet unless someone chose a level on purpose.
SDK_LOGGER = "ice_upload_sync.tablestore_sdk"
_sdk_logger = logging.getLogger(SDK_LOGGER)
if _sdk_logger.level == logging.NOTSET:
    _sdk_logger.setLevel(logging.CRITICAL)

# tablestore 5.x passes urllib3 1.x's ``strict``; urllib3 2.x only warns about it, on every pool
warnings.filterwarnings("ignore", message="The 'strict' parameter", category=FutureWarning)

PENDING_SUFFIX = "_pending"
CURSOR_PREFIX = "~cursor~"  # sorts after every job ID ([A-Za-z0-9_-]); listings stop before it
OUTBOX_PREFIX = "~outbox~"  # after CURSOR_PREFIX: the pending listing never reaches these rows either
OUTBOX_END = "~outbox\x7f"  # the first key after every "~outbox~..." (0x7f follows "~")
MAX_BATCH_WRITE = 200  # the service's limit per BatchWriteRow
MAX_BATCH_GET = 100  # per BatchGetRow; each job reads two rows (record and marker)
PAGE_SIZE = 1000
CAS_ROUNDS = 6  # read-merge-write attempts per job before giving up on a very busy row
SOCKET_TIMEOUT_S = 5.0
RECORD_FIELDS = ("schema_version", "upload_url", "media_id", "state", "ice_status", "file_size", "created_at",
                 "completed_at", "error_code", "error_message", "user_data", "source", "ice_request_id",
                 "first_seen_at", "updated_at")
_RETRYABLE_CODES = frozenset({"OTSServerBusy", "OTSQuotaExhausted", "OTSTimeout", "OTSInternalServerError",
                              "OTSServerUnavailable", "OTSPartitionUnavailable", "OTSTableNotReady",
                              "OTSRowOperationConflict", "OTSNotEnoughCapacityUnit", "OTSOperationThrottled"})
_ACCESS_CODES = frozenset({"OTSAuthFailed", "OTSNoPermissionAccess", "OTSTempUserUnauthorized"})
_INSTANCE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,14}[A-Za-z0-9]$")
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,246}$")
# a vouching read (``vouched``) stands in for the record rows of the save that follows it on the same
# thread, for this long: that save's writes are conditional on the revision read, so a row changed
# in between fails its condition and is read again (see ``_read_ahead``)
READ_AHEAD_S = 2.0
SEAL = "seal"  # "<cell timestamp>:<cells>" of the PutRow that wrote a record row: see row_sealed
RAM_ACTIONS = ("ots:GetRow", "ots:BatchGetRow", "ots:PutRow", "ots:DeleteRow", "ots:BatchWriteRow", "ots:GetRange")


# ---------------------------------------------------------------- configuration


def parse_location(location: str) -> Tuple[str, str]:
    """``<instance>/<table>`` (what follows ``tablestore://``) -> (instance, table)."""
    instance, _, table = location.strip().partition("/")
    table = table.strip("/")
    if not _INSTANCE.match(instance):
        raise ConfigError(f"RECORD_STORE tablestore://{location}: instance name {instance!r} must be 3-16 letters, "
                          "digits or hyphens, starting with a letter and not ending with a hyphen")
    if not _TABLE.match(table):
        raise ConfigError(f"RECORD_STORE tablestore://{location}: table name {table!r} must be letters, digits and "
                          "underscores, not starting with a digit (the pending index adds '_pending')")
    return instance, table


def resolve_endpoint(settings: Settings, instance: str, environ: Optional[Mapping[str, str]] = None) -> str:
    """``TABLESTORE_ENDPOINT`` if set; else the instance's internal endpoint inside FC, the public one outside.

    FC functions outside a VPC reach ``<instance>.<region>.ots-internal.aliyuncs.com`` in
    their own region; in a VPC, set ``TABLESTORE_ENDPOINT`` to the VPC endpoint.
    """
    if settings.tablestore_endpoint:
        return endpoint_override("TABLESTORE_ENDPOINT", settings.tablestore_endpoint)
    internal = in_fc_region(settings.ice_region, environ)
    return f"https://{instance}.{settings.ice_region}.{'ots-internal' if internal else 'ots'}.aliyuncs.com"

class BoundedRetryPolicy(DefaultRetryPolicy):
    """The SDK's policy, bounded for FC, and retrying writes too.

    At most 3 retries of at most 1 s each (the default allows 20 of up to 3 s). Writes are
    safe to repeat here because every record write is conditional: a write that landed
    before its answer was lost fails its condition on the retry, and the store reads again.
    """

    max_retry_times = 3
    max_retry_delay = 1.0

    def is_repeatable_api(self, api_name: str) -> bool:
        return True  # the SDK's own write-retry list misspells UpdateRow

    def _can_retry(self, retry_times: int, exception: Any, api_name: str) -> bool:
        # the SDK retries OTSQuotaExhausted only for one message ("Too frequent table operations.")
        return exception.code == "OTSQuotaExhausted" or super()._can_retry(retry_times, exception, api_name)


# ---------------------------------------------------------------- rows <-> records


def record_columns(record: JobRecord, revision: int) -> List[Tuple[str, Any, int]]:
    """The row of a record, sealed (``row_sealed``): every cell carries one version, the time of
    writing in milliseconds. Raises ``UnencodableRecord`` for one that is not strict JSON in
    UTF-8, before any request: the SDK would fail the whole BatchWriteRow on it."""
    data = record.to_dict()
    columns: List[Tuple[str, Any]] = []
    for name in RECORD_FIELDS:
        value = data.get(name)
        if value is None:
            continue
        if name == "user_data":
            try:
                value = json.dumps(value, ensure_ascii=False, sort_keys=True, allow_nan=False)
            except (ValueError, TypeError, RecursionError) as exc:
                raise UnencodableRecord(f"the user_data of job {record.job_id} is not strict JSON "
                                        f"({type(exc).__name__})") from None
        if isinstance(value, str) and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise UnencodableRecord(f"the {name} of job {record.job_id} is not valid UTF-8 text") from None
        columns.append((name, value))
    columns.append(("final", record.final))
    columns.append(("info", information_fingerprint(record)))
    if record.answer_digest is not None and not record.final:
        columns.append(("answer", record.answer_digest))  # see TablestoreStore.answer_digests
    columns.append(("revision", revision))
    stamp = int(time.time() * 1000)
    columns.append((SEAL, f"{stamp}:{len(columns) + 1}"))
    return [(name, value, stamp) for name, value in columns]


def row_sealed(attributes: Sequence[Sequence[Any]]) -> bool:
    """The row is exactly as the PutRow of ``record_columns`` left it: no cell written since, none removed.

    That PutRow gives every cell one version (its ``seal`` names it) and says how many cells it
    wrote. A cell written by anyone since (the console's UpdateRow, a script, an older version
    of this code, which wrote no seal) carries another version; a removed one changes the count.
    Only a sealed row's ``info`` and ``answer`` may vouch for the record beside them.
    """
    seal = next((cell for cell in attributes if cell[0] == SEAL), None)
    if seal is None or not isinstance(seal[1], str):
        return False
    stamp, _, count = seal[1].partition(":")
    if not (stamp.isdigit() and count.isdigit()) or int(count) != len(attributes):
        return False
    version = int(stamp)
    return all(len(cell) > 2 and cell[2] == version for cell in attributes)


def record_from_row(job_id: str, columns: Iterable[Sequence[Any]]) -> Tuple[JobRecord, int]:
    data: Dict[str, Any] = {column[0]: column[1] for column in columns}
    revision = data.pop("revision", 0)
    data.pop("final", None)
    data.pop("info", None)
    data.pop("answer", None)
    data.pop(SEAL, None)
    if "user_data" in data:
        data["user_data"] = jsontext.loads(data["user_data"])
    data["job_id"] = job_id
    return JobRecord.from_dict(data), int(revision)


@dataclass
class _Stored:
    record: Optional[JobRecord]  # None: no row, or (``same``) not read because nothing changed
    revision: Optional[int]
    marker: Optional[Tracking]
    same: bool = False  # the row holds exactly this information already (sealed, and its fingerprint matched)
    first_seen_at: Optional[str] = None
    fingerprint: Optional[str] = None
    answer: Optional[str] = None  # the answer digest bound to the stored record
    error: Optional[StoreError] = None  # this job's rows could not be read (or are corrupt): it fails alone
    sealed: bool = False  # ``row_sealed``: nobody wrote the row since we did
    attributes: Any = None  # the row's cells, until the record is parsed from them (or need not be)
    marker_known: bool = True  # False: the marker was not read (its record row was read ahead and exists)


@dataclass
class _Job:
    """One record of a ``save_many`` round: its ``SavePlan``, and the row that carries it out."""

    index: int
    fresh: JobRecord
    stored: _Stored
    plan: SavePlan
    columns: Optional[List[Tuple[str, Any]]] = None  # the row to write: a change, a binding, or a seal


# (table, "put" | "delete" | "owe", job_id, columns, expected revision): one row of a BatchWriteRow;
# "owe" puts the job's outbox entry (key OUTBOX_PREFIX + job_id in the pending table)
_RowWrite = Tuple[str, str, str, Optional[List[Tuple[str, Any]]], Optional[int]]


class _RowFailure(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# ---------------------------------------------------------------- the store


class TablestoreStore(RecordStore):
    batches_writes = True  # save_many: one BatchGetRow and a few BatchWriteRow calls for up to 50 records

    def __init__(self, instance: str, table: str, endpoint: str, credentials: Any = None, *,
                 page_size: int = PAGE_SIZE, socket_timeout_s: float = SOCKET_TIMEOUT_S,
                 max_connection: int = 16) -> None:
        self.instance = instance
        self.table = table
        self.pending_table = table + PENDING_SUFFIX
        self.endpoint = endpoint
        self.page_size = page_size
        self._socket_timeout_s = socket_timeout_s
        self._max_connection = max_connection
        self._clients: LazyClient[ots.OTSClient] = LazyClient(
            self._make_client, lambda: StoreError(f"Tablestore store {self.describe()}: no credentials bound"))
        self._ahead = threading.local()  # per thread: (when, {job_id: record row cells, or None: no row})
        if credentials is not None:
            self.bind(credentials)

    def describe(self) -> str:
        return f"tablestore://{self.instance}/{self.table}"

    def bind(self, credentials: Any) -> None:
        """An ``OTSClient`` for these credentials (with ``sts_token`` when they carry one); rebuilt on change."""
        self._clients.bind(credentials)

    def _make_client(self, credentials: Any) -> ots.OTSClient:
        key_id, secret, token = credential_identity(credentials)
        return ots.OTSClient(self.endpoint, key_id, secret, self.instance, sts_token=token,
                             socket_timeout=self._socket_timeout_s, max_connection=self._max_connection,
                             retry_policy=BoundedRetryPolicy(), logger_name=SDK_LOGGER)

    # -- calls and errors ---------------------------------------------------------

    @property
    def client(self) -> ots.OTSClient:
        return self._clients.get()

    def _fail(self, action: str, error: BaseException) -> StoreError:
        where = f"Tablestore store {self.describe()} ({self.endpoint}): cannot {action}"
        if isinstance(error, ots.OTSServiceError):
            code = error.get_error_code()
            if code in _ACCESS_CODES:
                return StoreError(f"{where}: access denied ({code}); the function's role needs "
                                  f"{', '.join(RAM_ACTIONS)} on tables {self.table} and {self.pending_table}")
            if code == "OTSObjectNotExist":
                return StoreError(f"{where}: table {self.table} or {self.pending_table} does not exist; create both "
                                  "with `ice-upload-sync create-tables` (python -m ice_upload_sync create-tables)")
            return StoreError(f"{where}: {code} (HTTP {error.get_http_status()}, request "
                              f"{error.get_request_id()})")
        if isinstance(error, ots.OTSClientError):
            return StoreError(f"{where}: {error.get_error_message()}")
        return StoreError(f"{where}: {type(error).__name__}: {error}")  # network errors come from urllib3

    def _call(self, action: str, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(*args, **kwargs)
        except StoreError:
            raise
        except Exception as error:  # the SDK raises its own errors and urllib3's, nothing narrower
            raise self._fail(action, error) from None

    @staticmethod
    def _condition_failed(error: BaseException) -> bool:
        return isinstance(error, ots.OTSServiceError) and error.get_error_code() == "OTSConditionCheckFail"

    # -- single rows --------------------------------------------------------------

    def _get_row(self, table: str, key: str, action: str) -> Optional[Any]:
        _consumed, row, _token = self._call(action, "get_row", table, [("job_id", key)], max_version=1)
        return row

    def load(self, job_id: str) -> Optional[JobRecord]:
        row = self._get_row(self.table, job_id, f"read the record of job {job_id}")
        if row is None or not row.attribute_columns:
            return None
        return self._record(job_id, row.attribute_columns)

    def _record(self, job_id: str, columns: Any) -> JobRecord:
        return self._parse_record(job_id, columns)[0]

    def _parse_record(self, job_id: str, columns: Any) -> Tuple[JobRecord, int]:
        try:
            return record_from_row(job_id, columns)
        except (ValueError, TypeError) as exc:
            raise StoreError(f"Tablestore store {self.describe()}: the record of job {job_id} is corrupt: "
                             f"{type(exc).__name__}") from None

    def tracking(self, job_id: str) -> Optional[Tracking]:
        row = self._get_row(self.pending_table, job_id, f"read the pending marker of job {job_id}")
        return None if row is None else self._parse_marker(job_id, row.attribute_columns)

    @staticmethod
    def _parse_marker(job_id: str, columns: Any) -> Tracking:
        data = {column[0]: column for column in columns or ()}
        first_seen = data.get("first_seen_at")
        if first_seen and first_seen[1]:
            first_seen_at = str(first_seen[1])
        else:  # like a marker file without a body: when it was written
            stamp = next((column[2] for column in data.values() if len(column) > 2 and column[2]), None)
            when = datetime.fromtimestamp(stamp / 1000.0, tz=timezone.utc) if stamp else datetime.now(timezone.utc)
            first_seen_at = format_time(when)
        source = data.get("source")
        return Tracking(job_id, first_seen_at, str(source[1]) if source and source[1] else "timer")

    def track(self, tracking: Tracking) -> Tracked:
        job_id = tracking.job_id
        row = ots.Row([("job_id", job_id)], [("first_seen_at", tracking.first_seen_at), ("source", tracking.source)])
        try:
            self.client.put_row(self.pending_table, row, ots.Condition(ots.RowExistenceExpectation.EXPECT_NOT_EXIST))
        except Exception as error:  # the SDK's errors and urllib3's
            if self._condition_failed(error):
                return Tracked.ALREADY  # the first first_seen_at stays
            raise self._fail(f"track job {job_id}", error) from None
        if settled_by_ice(self.load(job_id)):  # never resurrect a job ICE finished
            self._call(f"untrack job {job_id}", "delete_row", self.pending_table, ots.Row([("job_id", job_id)]),
                       ots.Condition(ots.RowExistenceExpectation.IGNORE))
            return Tracked.SETTLED
        return Tracked.CREATED

    # -- many rows ----------------------------------------------------------------

    def save_many(self, records: Sequence[JobRecord]) -> List[Union[MergeResult, StoreError]]:
        """Merge and write many records with a few batched calls; one result per record, in order."""
        results: List[Union[MergeResult, StoreError, None]] = [None] * len(records)
        waiting = list(range(len(records)))
        ahead = self._read_ahead()  # the first round only: a retry reads again
        for attempt in range(CAS_ROUNDS):
            if not waiting:
                break
            # one job once per round: a batch may not carry the same key twice
            batch, seen, later = [], set(), []
            for index in waiting:
                (later if records[index].job_id in seen else batch).append(index)
                seen.add(records[index].job_id)
            retry = self._save_round([(index, records[index]) for index in batch], results,
                                     last=attempt == CAS_ROUNDS - 1, ahead=ahead if attempt == 0 else {})
            waiting = sorted(retry + later)
        for index in waiting:
            results[index] = StoreError(f"Tablestore store {self.describe()}: job {records[index].job_id} kept "
                                        f"changing under concurrent writers; not written after {CAS_ROUNDS} tries")
        return cast(List[Union[MergeResult, StoreError]], results)  # every round settles what it does not retry

    def _save_round(self, items: List[Tuple[int, JobRecord]], results: list, *, last: bool,
                    ahead: Mapping[str, Any]) -> List[int]:
        """One read-merge-write pass; returns the indexes to try again (lost races, transient row failures).
        ``ahead``: record rows read already (``_read_ahead``)."""
        retry: List[int] = []
        fingerprints: Dict[str, str] = {}
        for index, fresh in items:
            try:
                fingerprints[fresh.job_id] = information_fingerprint(fresh)
            except Exception as error:  # noqa: BLE001 - a record no code path should make: it fails alone
                results[index] = self._unwritable(fresh, error)
        items = [(index, fresh) for index, fresh in items if fresh.job_id in fingerprints]
        try:
            stored = self._read_many(fingerprints, ahead)
        except StoreError as error:
            for index, _ in items:
                results[index] = error
            return []
        jobs = []
        for index, fresh in items:
            state = stored[fresh.job_id]
            if state.error is not None:
                results[index] = state.error
                continue
            try:
                jobs.append(self._plan(index, fresh, state))
            except Exception as error:  # noqa: BLE001 - unencodable (or a bug): this job fails, before any write
                results[index] = self._unwritable(fresh, error)

        # 1. markers and outbox entries first: a non-final record must never exist without its marker,
        # nor a record that owes an event without its entry
        opening = [p for p in jobs if p.plan.open_marker is not None]
        owing = [p for p in jobs if p.plan.owe is not None]
        rows: List[_RowWrite] = [(self.pending_table, "put", p.fresh.job_id, self._marker_columns(p), None)
                                 for p in opening]
        rows += [(self.pending_table, "owe", p.fresh.job_id, _entry_columns(p.plan.owe), None)
                 for p in owing if p.plan.owe is not None]
        failures = self._write_rows(rows, f"track {len(opening)} job(s)" if not owing else
                                    f"track {len(opening)} and owe events of {len(owing)} job(s)")
        jobs = self._settle(jobs, {p.index: failures.get(p.fresh.job_id) for p in opening + owing}, results,
                             retry, last)

        # 2. the records, each on the condition that nobody wrote it since we read it (a rebinding
        # that loses that race, or fails, is only a binding not made: the record stands as it is)
        writing = [p for p in jobs if p.columns is not None]
        failures = self._write_rows([(self.table, "put", p.fresh.job_id, p.columns, p.stored.revision)
                                     for p in writing], f"record {len(writing)} job(s)")
        jobs = self._settle(jobs, {p.index: failures.get(p.fresh.job_id) for p in writing if p.plan.result.changed},
                             results, retry, last)

        # 3. markers of final jobs last; one left behind is cleaned up by the next sweep
        closing = [p for p in jobs if p.plan.remove_marker]
        failures = self._write_rows([(self.pending_table, "delete", p.fresh.job_id, None, None) for p in closing],
                                    f"untrack {len(closing)} job(s)")
        for job in jobs:
            failure = failures.get(job.fresh.job_id)
            if failure is not None and job in closing:
                logger.warning("job %s is final but its pending marker stays until the next sweep: %s",
                               job.fresh.job_id, failure)
            results[job.index] = job.plan.result
        return retry

    def _plan(self, index: int, fresh: JobRecord, state: _Stored) -> _Job:
        """``plan_save`` against what is stored; the row is built here, before anything is written."""
        stored = state.record
        if state.same:  # the row holds fresh's information (not decoded): what plan_save would find
            stored = replace(fresh, first_seen_at=state.first_seen_at or fresh.first_seen_at)
        # only a sealed row's binding is ours to vouch for (``row_sealed``)
        plan = plan_save(stored, state.marker, fresh, self.notify_states, marker_known=state.marker_known,
                         bound=state.answer if state.sealed else None)
        row = None
        if plan.result.changed:
            row = plan.result.record
        elif plan.bind is not None:  # the binding lives in the row: rewritten whole, only bookkeeping changes
            row = replace(fresh, first_seen_at=plan.result.record.first_seen_at)
        elif stored is not None and not state.sealed:
            # the same information in a row we cannot vouch for (written by an older version, or
            # edited by hand back to what it was): sealed, so that the next look can
            row = plan.result.record
        columns = record_columns(row, (state.revision or 0) + 1) if row is not None else None
        return _Job(index, fresh, state, plan, columns)

    def _unwritable(self, fresh: JobRecord, error: Exception) -> StoreError:
        if isinstance(error, StoreError):
            return error
        if isinstance(error, UnencodableRecord):
            return StoreError(f"Tablestore store {self.describe()}: {error}")
        logger.error("cannot prepare the row of job %s", fresh.job_id, exc_info=error)
        return StoreError(f"Tablestore store {self.describe()}: cannot write job {fresh.job_id}: "
                          f"{type(error).__name__}: {str(error)[:200]}")

    def _settle(self, jobs: List[_Job], failures: Dict[int, Optional[Exception]], results: list,
                retry: List[int], last: bool) -> List[_Job]:
        """Drop the jobs whose step failed: lost races and transient failures retry, others are reported."""
        going = []
        for job in jobs:
            failure = failures.get(job.index)
            if failure is None:
                going.append(job)
            elif isinstance(failure, _RowFailure) and (failure.code == "OTSConditionCheckFail"
                                                       or failure.code in _RETRYABLE_CODES) and not last:
                retry.append(job.index)
            else:
                results[job.index] = failure if isinstance(failure, StoreError) else StoreError(
                    f"Tablestore store {self.describe()}: cannot write job {job.fresh.job_id}: {failure}")
        return going

    @staticmethod
    def _marker_columns(job: _Job) -> List[Tuple[str, Any]]:
        marker = job.plan.open_marker
        assert marker is not None
        return [("first_seen_at", marker.first_seen_at), ("source", marker.source)]

    def _read_many(self, fingerprints: Mapping[str, str], ahead: Mapping[str, Any]) -> Dict[str, _Stored]:
        """Records and markers of these jobs, two rows a job in one BatchGetRow per 50 jobs.

        A job whose record row ``ahead`` holds (``_read_ahead``) reads neither: a record exists,
        so its marker would only tell ``plan_save`` whether to create it (create-only) or remove
        it, and both are safe unasked (``marker_known=False``, as on OSS).

        A sealed row whose fingerprint matches the fresh record holds its information already:
        its record is not decoded (the sweep's usual case); the others are parsed from the same
        answer. Only the seal makes the fingerprint trustworthy: a cell edited in place leaves
        ``info`` as it was (``row_sealed``).
        """
        found = self._batch_get(list(fingerprints), ahead)
        for job_id, state in found.items():
            state.same = state.sealed and state.fingerprint is not None and state.fingerprint == fingerprints[job_id]
            if not state.same and state.attributes and state.error is None:
                try:
                    state.record, state.revision = self._parse_record(job_id, state.attributes)
                except StoreError as error:
                    state.error = error
            state.attributes = None
        return found

    def _batch_get(self, job_ids: List[str], ahead: Mapping[str, Any]) -> Dict[str, _Stored]:
        """The record and marker rows of these jobs, whole (``_take_row`` keeps what a save needs).
        A record row ``ahead`` holds is taken from there, and its marker is not read; one ``ahead``
        says is absent (None) is not read again, but its marker is (``first_seen_at``)."""
        found: Dict[str, _Stored] = {job_id: _Stored(None, None, None) for job_id in job_ids}
        unread = []
        for job_id in job_ids:
            if ahead.get(job_id) is not None:
                self._take(found[job_id], job_id, self.table, ahead[job_id])
                found[job_id].marker_known = False
            else:
                unread.append(job_id)
        step = MAX_BATCH_GET // 2  # two rows a job
        for start in range(0, len(unread), step):
            chunk = unread[start:start + step]
            reading = {self.table: [job_id for job_id in chunk if job_id not in ahead], self.pending_table: chunk}
            request = ots.BatchGetRowRequest()
            for name, keys in reading.items():
                if keys:
                    request.add(ots.TableInBatchGetRowItem(name, [[("job_id", job_id)] for job_id in keys],
                                                           max_version=1))
            response = self._call(f"read {len(chunk)} job(s)", "batch_get_row", request)
            for name, keys in reading.items():
                for job_id, item in zip(keys, response.get_result_by_table(name) if keys else ()):
                    state = found[job_id]
                    if not item.is_ok:
                        state.error = StoreError(f"Tablestore store {self.describe()}: cannot read job {job_id}: "
                                                 f"{item.error_code}")
                    elif item.row is not None:
                        self._take(state, job_id, name, item.row.attribute_columns)
        return found

    def _take(self, state: _Stored, job_id: str, table: str, attributes: Any) -> None:
        try:
            self._take_row(state, job_id, table, attributes)
        except StoreError as error:
            state.error = error
        except (ValueError, TypeError, ArithmeticError) as error:  # a row edited by hand
            state.error = StoreError(f"Tablestore store {self.describe()}: the row of job {job_id} "
                                     f"in {table} is corrupt: {type(error).__name__}")

    def _take_row(self, state: _Stored, job_id: str, table: str, attributes: Any) -> None:
        if table == self.pending_table:
            state.marker = self._parse_marker(job_id, attributes)
            return
        # the bookkeeping only (a bare key, put there by hand, is a row with no record: revision 0);
        # ``_read_many`` decodes the record from ``attributes`` when it needs it
        attributes = attributes or ()
        values = {column[0]: column[1] for column in attributes}
        state.revision = int(values.get("revision", 0))
        state.first_seen_at = values.get("first_seen_at")
        state.fingerprint = values.get("info")
        state.answer = values.get("answer")
        state.sealed = row_sealed(attributes)
        state.attributes = attributes or None

    def _write_rows(self, rows: List[_RowWrite], action: str) -> Dict[str, Exception]:
        """BatchWriteRow in chunks: (table, "put"|"delete", job_id, columns, expected revision).

        Record puts carry their compare-and-set condition; marker puts are create-only
        (an existing marker is as good) and deletes unconditional. Returns the failures
        per job ID: ``_RowFailure`` for a row the service refused, ``StoreError`` when a
        whole request failed.
        """
        failures: Dict[str, Exception] = {}
        for start in range(0, len(rows), MAX_BATCH_WRITE):
            self._write_chunk(rows[start:start + MAX_BATCH_WRITE], action, failures)
        return failures

    def _write_chunk(self, chunk: List[_RowWrite], action: str, failures: Dict[str, Exception]) -> None:
        """One BatchWriteRow. A request refused as a whole for what one row may carry (the SDK
        cannot encode it, the service calls a parameter invalid) is split in halves, and so on,
        until the row to blame fails alone and its batch-mates are written. Splitting is safe:
        every write is conditional or idempotent, so a half that had landed fails its
        condition and is read again."""
        client = self.client
        per_table: Dict[str, List[Tuple[Any, str, bool]]] = {}
        try:
            for table, kind, job_id, columns, revision in chunk:
                primary_key = [("job_id", job_id)]
                if kind == "owe":  # created or replaced, whatever is there
                    item = ots.PutRowItem(ots.Row([("job_id", OUTBOX_PREFIX + job_id)], columns),
                                          ots.Condition(ots.RowExistenceExpectation.IGNORE))
                    tolerate = False
                elif kind == "delete":
                    item = ots.DeleteRowItem(ots.Row(primary_key), ots.Condition(ots.RowExistenceExpectation.IGNORE))
                    tolerate = False
                elif table == self.table:
                    item = ots.PutRowItem(ots.Row(primary_key, columns), _revision_condition(revision))
                    tolerate = False
                else:
                    item = ots.PutRowItem(ots.Row(primary_key, columns),
                                          ots.Condition(ots.RowExistenceExpectation.EXPECT_NOT_EXIST))
                    tolerate = True  # already tracked
                per_table.setdefault(table, []).append((item, job_id, tolerate))
            request = ots.BatchWriteRowRequest()
            for table, items in per_table.items():
                request.add(ots.TableInBatchWriteRowItem(table, [item for item, _, _ in items]))
            response = client.batch_write_row(request)
        except Exception as error:  # the SDK's errors, urllib3's, and whatever encoding a row raised
            if len(chunk) > 1 and _one_row_may_be_to_blame(error):
                middle = len(chunk) // 2
                logger.warning("Tablestore store %s: a request to %s was refused whole (%s); writing it in halves",
                               self.describe(), action, type(error).__name__)
                self._write_chunk(chunk[:middle], action, failures)
                self._write_chunk(chunk[middle:], action, failures)
                return
            failure = self._fail(f"write job {chunk[0][2]}" if len(chunk) == 1 else action, error)
            for _table, _kind, job_id, _columns, _revision in chunk:
                failures[job_id] = failure
            return
        for table, items in per_table.items():
            outcomes = _row_outcomes(response, table, [item for item, _, _ in items])
            for (_item, job_id, tolerate), outcome in zip(items, outcomes):
                if outcome.is_ok or (tolerate and outcome.error_code == "OTSConditionCheckFail"):
                    continue
                failures[job_id] = _RowFailure(outcome.error_code or "unknown", outcome.error_message or "")

    def answer_digests(self, job_ids: Sequence[str]) -> Dict[str, str]:
        """The ``answer`` column of these jobs' sealed rows, one BatchGetRow per 100 jobs.

        The column is written in the same PutRow as the record it describes, and only for a
        non-final record; every record write of ours replaces the whole row, so a row written by
        anything that did not bind a digest (an older version, a record that became final) has
        none. A cell written in place since (UpdateRow by hand or by a script) unseals the row
        (``row_sealed``): it is not vouched for, and the sweep checks it the ordinary way.
        """
        return {job_id: answer for job_id, answer in
                ((job_id, _bound_answer(cells)) for job_id, cells in self._record_rows(job_ids).items())
                if answer is not None}

    def vouched(self, digests: Mapping[str, str]) -> Set[str]:
        """``answer_digests``' rule, and the rows it read of the jobs it does not vouch for are kept
        for the save that follows on this thread (``_read_ahead``): an answer that changed costs
        one read of its record row, not two."""
        rows = self._record_rows(list(digests))
        vouched = {job_id for job_id, cells in rows.items() if _bound_answer(cells) == digests[job_id]}
        self._ahead.rows = (time.monotonic(), {job_id: cells for job_id, cells in rows.items()
                                               if job_id not in vouched})
        return vouched

    def _read_ahead(self) -> Dict[str, Any]:
        """The record rows this thread's last ``vouched`` read (None: no row), taken once, if that was
        within ``READ_AHEAD_S``; else none. The save that uses them writes each record on the
        condition that its revision is still the one read (a row never seen is created only if
        still absent), so a row changed since fails that condition and its next round reads it anew."""
        taken = getattr(self._ahead, "rows", None)
        self._ahead.rows = None
        if taken is None or time.monotonic() - taken[0] > READ_AHEAD_S:
            return {}
        return taken[1]

    def _record_rows(self, job_ids: Sequence[str]) -> Dict[str, Any]:
        """These jobs' record rows, whole (None: no row), one BatchGetRow per 100 jobs; a job whose row
        could not be read is left out."""
        unique = list(dict.fromkeys(job_ids))
        rows: Dict[str, Any] = {}
        for start in range(0, len(unique), MAX_BATCH_GET):
            chunk = unique[start:start + MAX_BATCH_GET]
            request = ots.BatchGetRowRequest()
            request.add(ots.TableInBatchGetRowItem(self.table, [[("job_id", job_id)] for job_id in chunk],
                                                   max_version=1))
            response = self._call(f"read the answer digests of {len(chunk)} job(s)", "batch_get_row", request)
            for job_id, item in zip(chunk, response.get_result_by_table(self.table)):
                if item.is_ok:
                    rows[job_id] = item.row.attribute_columns if item.row is not None else None
        return rows

    # -- the outbox of completion events ----------------------------------------------

    def owe(self, entry: Owed) -> None:
        """Create or replace the job's entry: one PutRow."""
        self._call(f"write the outbox entry of job {entry.job_id}", "put_row", self.pending_table,
                   ots.Row([("job_id", OUTBOX_PREFIX + entry.job_id)], _entry_columns(entry)),
                   ots.Condition(ots.RowExistenceExpectation.IGNORE))

    def owed(self, after: Optional[str] = None) -> Iterator[Owed]:
        """Every entry in ascending ``job_id`` order, one GetRange page at a time."""
        start = OUTBOX_PREFIX + (after + "\x00" if after is not None else "")
        while start is not None:
            _consumed, next_start, rows, _token = self._call(
                "list the outbox", "get_range", self.pending_table, "FORWARD", [("job_id", start)],
                [("job_id", OUTBOX_END)], ["entry"], self.page_size, max_version=1)
            for row in rows:
                entry = self._parse_entry(row.primary_key[0][1][len(OUTBOX_PREFIX):], row.attribute_columns)
                if entry is not None:
                    yield entry
            start = next_start[0][1] if next_start else None

    def claim(self, entry: Owed, holder: str, now: datetime, until: datetime) -> Optional[Owed]:
        """One PutRow of the entry claimed, on the condition that the row still has ``entry``'s
        event and claim (no read: ``entry`` is what the listing or the save just read or wrote)."""
        if not entry.claimable(now):
            return None
        claimed = entry.claimed_for(holder, until)
        written = self._if_unchanged(f"claim the outbox entry of job {entry.job_id}", "put_row",
                                     ots.Row([("job_id", OUTBOX_PREFIX + entry.job_id)], _entry_columns(claimed)),
                                     entry)
        return claimed if written else None

    def settle(self, entry: Owed) -> bool:
        """DeleteRow on the condition that the row still has ``entry``'s event and claim."""
        return self._if_unchanged(f"settle the outbox entry of job {entry.job_id}", "delete_row",
                                  ots.Row([("job_id", OUTBOX_PREFIX + entry.job_id)]), entry)

    def reschedule(self, entry: Owed) -> bool:
        """PutRow of ``entry.released()`` on the condition that the row still has ``entry``'s event and claim."""
        return self._if_unchanged(f"reschedule the outbox entry of job {entry.job_id}", "put_row",
                                  ots.Row([("job_id", OUTBOX_PREFIX + entry.job_id)],
                                          _entry_columns(entry.released())), entry)

    def _if_unchanged(self, action: str, method: str, row: Any, entry: Owed) -> bool:
        """``method`` on ``row`` if the stored entry still has ``entry.claim_key``: its ``event_id``
        column, and its ``claim`` column (absent on an entry never claimed)."""
        claim = _claim_column(entry)
        unchanged = ots.CompositeColumnCondition(ots.LogicalOperator.AND)
        unchanged.add_sub_condition(ots.SingleColumnCondition("event_id", entry.event_id, ots.ComparatorType.EQUAL,
                                                              pass_if_missing=False))
        # "" is never written (an entry never claimed has no claim column): EQUAL "" passes only if missing
        unchanged.add_sub_condition(ots.SingleColumnCondition("claim", claim or "", ots.ComparatorType.EQUAL,
                                                              pass_if_missing=claim is None))
        condition = ots.Condition(ots.RowExistenceExpectation.EXPECT_EXIST, unchanged)
        try:
            getattr(self.client, method)(self.pending_table, row, condition)
        except StoreError:
            raise
        except Exception as error:  # the SDK's errors and urllib3's
            if self._condition_failed(error):
                return False  # gone, claimed or changed since, or a newer state's entry: left as it is
            raise self._fail(action, error) from None
        return True

    def _parse_entry(self, job_id: str, columns: Any) -> Optional[Owed]:
        """An outbox row's entry; None (logged) when it does not parse or names another job."""
        text = next((column[1] for column in columns or () if column[0] == "entry"), None)
        try:
            if not isinstance(text, str):
                raise BadOutboxEntry("outbox row has no entry column")
            entry = Owed.from_json(text.encode("utf-8", "surrogatepass"))
        except BadOutboxEntry as exc:
            logger.warning("Tablestore store %s: skipping the outbox entry of job %s: %s", self.describe(), job_id,
                           exc)
            return None
        if entry.job_id != job_id:
            logger.warning("Tablestore store %s: skipping the outbox entry of job %s: it names job %s",
                           self.describe(), job_id, entry.job_id)
            return None
        return entry

    # -- the sweep's listing and cursors -------------------------------------------

    def pending_job_ids(self, after: Optional[str] = None) -> Iterator[str]:
        start: Any = ots.INF_MIN if after is None else after + "\x00"  # strictly after the cursor
        while start is not None:
            _consumed, next_start, rows, _token = self._call(
                "list pending jobs", "get_range", self.pending_table, "FORWARD", [("job_id", start)],
                [("job_id", CURSOR_PREFIX)], ["job_id"], self.page_size, max_version=1)
            for row in rows:
                yield row.primary_key[0][1]
            start = next_start[0][1] if next_start else None

    def records(self, after: Optional[str] = None, *,
                unreadable: Optional[Unreadable] = None) -> Iterator[JobRecord]:
        """Every record in ascending ``job_id`` order, one GetRange page at a time (the operator's command line).

        A row that does not parse as a record raises ``StoreError``; with ``unreadable``, it is
        handed to it (job ID, error) and skipped."""
        start: Any = ots.INF_MIN if after is None else after + "\x00"
        while start is not None:
            _consumed, next_start, rows, _token = self._call(
                "list records", "get_range", self.table, "FORWARD", [("job_id", start)], [("job_id", ots.INF_MAX)],
                None, self.page_size, max_version=1)
            for row in rows:
                if row.attribute_columns:
                    job_id = row.primary_key[0][1]
                    record = read_or_skip(functools.partial(self._record, job_id, row.attribute_columns), job_id,
                                          unreadable)
                    if record is not None:
                        yield record
            start = next_start[0][1] if next_start else None

    def load_cursor(self, name: str) -> Optional[str]:
        row = self._get_row(self.pending_table, CURSOR_PREFIX + name, f"read sweep cursor {name}")
        if row is None:
            return None
        value = dict((column[0], column[1]) for column in row.attribute_columns).get("value")
        return value or None

    def save_cursor(self, name: str, value: Optional[str]) -> None:
        key = [("job_id", CURSOR_PREFIX + name)]
        if value is None:
            self._call(f"reset sweep cursor {name}", "delete_row", self.pending_table, ots.Row(key),
                       ots.Condition(ots.RowExistenceExpectation.IGNORE))
        else:
            self._call(f"save sweep cursor {name}", "put_row", self.pending_table, ots.Row(key, [("value", value)]),
                       ots.Condition(ots.RowExistenceExpectation.IGNORE))

    # -- set-up (not on the function's path) ------------------------------------------

    def create_tables(self) -> List[str]:
        """Create the record table and its pending index if missing; says what it did for each."""
        done = []
        for table in (self.table, self.pending_table):
            meta = ots.TableMeta(table, [("job_id", "STRING")])
            try:
                self.client.create_table(meta, ots.TableOptions(-1, 1), ots.ReservedThroughput(ots.CapacityUnit(0, 0)))
                done.append(f"created {table}")
            except Exception as error:  # the SDK's errors and urllib3's
                if isinstance(error, ots.OTSServiceError) and error.get_error_code() == "OTSObjectAlreadyExist":
                    done.append(f"{table} exists")
                    continue
                raise self._fail(f"create table {table}", error) from None
        return done


def _one_row_may_be_to_blame(error: BaseException) -> bool:
    """A whole request failed for what one of its rows may carry, not for the connection or the service.

    Network errors (urllib3's, sockets') and service errors other than an invalid
    parameter (throttling, 5xx, access, a missing table) fail every row alike.
    """
    if isinstance(error, ots.OTSServiceError):
        return error.get_error_code() == "OTSParameterInvalid" or error.get_http_status() == 413
    return not isinstance(error, (OSError, urllib3.exceptions.HTTPError, StoreError))


def _entry_columns(entry: Owed) -> List[Tuple[str, Any]]:
    columns: List[Tuple[str, Any]] = [("entry", entry.to_json().decode("ascii")), ("event_id", entry.event_id)]
    claim = _claim_column(entry)
    if claim is not None:
        columns.append(("claim", claim))
    return columns


def _claim_column(entry: Owed) -> Optional[str]:
    """The ``claim`` column: ``<claimed_by> <claimed_until>`` (the latter "" once released); None (no
    column) for an entry never claimed, as every entry ``save`` owes is."""
    return f"{entry.claimed_by} {entry.claimed_until}" if entry.claimed_by else None


def _bound_answer(cells: Any) -> Optional[str]:
    """The answer digest a record row binds, if the row is sealed (``row_sealed``) and binds one."""
    if not cells or not row_sealed(cells):
        return None
    answer = next((cell[1] for cell in cells if cell[0] == "answer"), None)
    return answer if isinstance(answer, str) else None


def _revision_condition(revision: Optional[int]) -> Any:
    if revision is None:
        return ots.Condition(ots.RowExistenceExpectation.EXPECT_NOT_EXIST)
    return ots.Condition(ots.RowExistenceExpectation.EXPECT_EXIST,
                         ots.SingleColumnCondition("revision", revision, ots.ComparatorType.EQUAL,
                                                   pass_if_missing=revision == 0))


def _row_outcomes(response: Any, table: str, items: List[Any]) -> List[Any]:
    """The SDK groups a batch's answers by operation; put them back in request order."""
    queues = {
        ots.BatchWriteRowType.PUT: list(response.get_put_by_table(table)),
        ots.BatchWriteRowType.UPDATE: list(response.get_update_by_table(table)),
        ots.BatchWriteRowType.DELETE: list(response.get_delete_by_table(table)),
    }
    return [queues[item.type].pop(0) for item in items]


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m ice_upload_sync.stores.tablestore create-tables``: one-off set-up from the environment."""
    import argparse

    from ..ice import resolve_credentials

    parser = argparse.ArgumentParser(prog="python -m ice_upload_sync.stores.tablestore",
                                     description="Create the Tablestore tables RECORD_STORE names.")
    parser.add_argument("command", choices=["create-tables"])
    parser.parse_args(argv)
    settings = Settings.from_env()
    scheme, _, rest = settings.record_store.partition("://")
    if scheme != "tablestore":
        parser.error(f"RECORD_STORE must be tablestore://<instance>/<table>, not {settings.record_store!r}")
    instance, table = parse_location(rest)
    store = TablestoreStore(instance, table, resolve_endpoint(settings, instance), resolve_credentials(None))
    for line in store.create_tables():
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
