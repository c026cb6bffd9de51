"""A local Tablestore (OTS) server that the unmodified official ``tablestore`` SDK accepts.

It speaks the SDK's wire protocol on loopback (``POST /<Api>``, protobuf bodies, rows in
PlainBuffer; see ``tablestore_wire.py``) for the operations the record store uses:
CreateTable, DescribeTable, ListTable, DeleteTable, PutRow, UpdateRow, DeleteRow, GetRow,
BatchGetRow, BatchWriteRow and GetRange. Like the service it

- checks every request's ``x-ots-signature`` (HMAC-SHA1 over the path and the sorted
  ``x-ots-*`` headers), the body's ``x-ots-contentmd5``, the date window, the instance
  name and, for STS keys, ``x-ots-ststoken``;
- signs every answer (``authorization: OTS <akid>:<signature>``) and sends the headers the
  SDK verifies (``x-ots-contentmd5``, ``x-ots-requestid``, ``x-ots-date``,
  ``x-ots-contenttype``); errors are protobuf ``Error{code, message}``;
- applies row-existence and column conditions (single and composite) atomically with the
  write they guard, answering 403 ``OTSConditionCheckFail`` as the service does;
- refuses batches of more than 200 rows (BatchWriteRow) or 100 rows (BatchGetRow), and
  duplicate primary keys in one batch; answers BatchWriteRow rows one by one (HTTP 200
  even when some fail);
- pages GetRange (``page_rows`` rows at most per answer, with ``next_start_primary_key``).

It keeps one version per column (tables are created with ``max_versions`` 1) and has no
secondary indexes, streams, search or transactions. Faults can be injected per API
(``fail_next``) and per batch row (``fail_rows_next``); every call is in ``calls``.

Run it alone for local work::

    python -m tests.support.tablestore --port 8090 --instance local
"""
from __future__ import annotations

import argparse
import bisect
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, List, Optional, Tuple

from tablestore.protobuf import table_store_pb2 as pb

from tests.support.loopback import KeepAliveHandler, LoopbackServer, TrackingHTTPServer
from tests.support.tablestore_wire import (
    INF_MAX,
    INF_MIN,
    OP_DELETE_ALL_VERSIONS,
    OP_DELETE_ONE_VERSION,
    OP_INCREMENT,
    RowChange,
    WireError,
    column_condition_holds,
    content_md5,
    decode_row,
    encode_primary_key,
    encode_row,
    encode_rows,
    lower_keys,
    pk_key,
    request_signature,
    response_signature,
)

API_VERSION = "2015-12-31"
DATE_WINDOW = timedelta(minutes=15)
MAX_BATCH_WRITE_ROWS = 200
MAX_BATCH_GET_ROWS = 100
APIS = ("CreateTable", "DescribeTable", "ListTable", "DeleteTable", "PutRow", "UpdateRow", "DeleteRow", "GetRow",
        "BatchGetRow", "BatchWriteRow", "GetRange")


class OtsError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def _condition_failed() -> OtsError:
    return OtsError(403, "OTSConditionCheckFail", "Condition check failed.")


@dataclass(frozen=True)
class OtsCall:
    api: str
    access_key_id: Optional[str]
    status: int
    error_code: Optional[str]
    rows: int  # rows a batch carried (1 for single-row APIs, 0 otherwise)
    row_errors: Tuple[str, ...] = ()  # BatchWriteRow: the codes of the rows refused one by one


@dataclass
class _Table:
    name: str
    pk_schema: List[Tuple[str, int]]  # (name, pb.PrimaryKeyType)
    rows: Dict[tuple, Tuple[list, Dict[str, Tuple[Any, int]]]]  # key -> (primary key, {column: (value, ts)})
    order: List[tuple]  # the keys, sorted

    def check_pk(self, primary_key: List[Tuple[str, Any]], *, bounds: bool = False) -> tuple:
        if [name for name, _ in primary_key] != [name for name, _ in self.pk_schema]:
            raise OtsError(400, "OTSParameterInvalid",
                           f"Validate PK name fail. Input: {[n for n, _ in primary_key]}, "
                           f"Meta: {[n for n, _ in self.pk_schema]}.")
        for (name, value), (_, kind) in zip(primary_key, self.pk_schema):
            if bounds and value in (INF_MIN, INF_MAX):
                continue
            expected = {pb.INTEGER: int, pb.STRING: str, pb.BINARY: bytearray}[kind]
            if not isinstance(value, expected) or isinstance(value, bool):
                raise OtsError(400, "OTSParameterInvalid", f"Validate PK type fail: column {name!r}.")
        return pk_key(primary_key)


class TablestoreServer(LoopbackServer):
    thread_name = "tablestore-server"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, instance: str = "local",
                 page_rows: int = 5000) -> None:
        super().__init__(host, port)
        self.instance = instance
        self.page_rows = page_rows
        self.latency_s = 0.0
        self._keys: Dict[str, Tuple[str, Optional[str]]] = {}
        self._tables: Dict[str, _Table] = {}
        self._lock = threading.RLock()
        self._faults: List[Tuple[Optional[str], int, str, str]] = []  # (api, status, code, message)
        self._row_faults: List[Tuple[str, str]] = []
        self._denied: set = set()  # (table, key) whose writes are refused
        self._calls: List[OtsCall] = []
        self._clock_ms = 0
        self._local = threading.local()

    # -- set-up and inspection ---------------------------------------------------------

    def _make_server(self) -> _Server:
        server = _Server((self.host, self._port), _Handler)
        server.ots = self
        return server

    def _stopping_server(self, server: _Server) -> None:
        server.close_connections()

    def add_access_key(self, access_key_id: str, secret: str, security_token: Optional[str] = None) -> None:
        self._keys[access_key_id] = (secret, security_token)

    def fail_next(self, count: int, *, api: Optional[str] = None, status: int = 503, code: str = "OTSServerBusy",
                  message: str = "Server is busy.") -> None:
        """The next ``count`` calls (of ``api``, or of any API) fail as a whole."""
        with self._lock:
            self._faults.extend([(api, status, code, message)] * count)

    def fail_rows_next(self, count: int, *, code: str = "OTSServerBusy", message: str = "Server is busy.") -> None:
        """The next ``count`` rows written by BatchWriteRow fail one by one (the batch answers 200)."""
        with self._lock:
            self._row_faults.extend([(code, message)] * count)

    @property
    def calls(self) -> List[OtsCall]:
        with self._lock:
            return list(self._calls)

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()

    def row(self, table: str, primary_key: List[Tuple[str, Any]]) -> Optional[Dict[str, Any]]:
        """A stored row's latest column values (test inspection), None when absent."""
        with self._lock:
            stored = self._table(table).rows.get(pk_key(primary_key))
            return None if stored is None else {name: value for name, (value, _ts) in stored[1].items()}

    def primary_keys(self, table: str) -> List[list]:
        """Every stored row's primary key, in key order (test inspection)."""
        with self._lock:
            stored = self._table(table)
            return [stored.rows[key][0] for key in stored.order]

    def drop_columns(self, table: str, primary_key: List[Tuple[str, Any]], *names: str) -> None:
        """Remove columns of a stored row by hand (test set-up)."""
        with self._lock:
            columns = self._table(table).rows[pk_key(primary_key)][1]
            for name in names:
                columns.pop(name, None)

    def set_columns(self, table: str, primary_key: List[Tuple[str, Any]], **columns: Any) -> None:
        """Overwrite some columns of a stored row by hand (test set-up)."""
        with self._lock:
            stored = self._table(table).rows[pk_key(primary_key)]
            for name, value in columns.items():
                stored[1][name] = (value, self._now_ms())

    def deny_writes(self, table: str, primary_key: List[Tuple[str, Any]]) -> None:
        """Every write of this row is refused from now on, as without the RAM permission."""
        with self._lock:
            self._denied.add((table, pk_key(primary_key)))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._row_faults.clear()
            self._denied.clear()

    def table_names(self) -> List[str]:
        with self._lock:
            return sorted(self._tables)

    # -- dispatch ------------------------------------------------------------------------

    def _handle(self, path: str, headers: Dict[str, str], body: bytes) -> Tuple[int, Dict[str, str], bytes]:
        api = path.split("?", 1)[0].lstrip("/")
        headers = lower_keys(headers)
        access_key_id = headers.get("x-ots-accesskeyid")
        secret: Optional[str] = None
        rows = 0
        self._local.row_errors = []
        try:
            secret = self._authenticate(path, headers, body)
            if api not in APIS:
                raise OtsError(400, "OTSUnsupportOperation", f"Unsupported operation: '{api}'.")
            if self.latency_s:
                time.sleep(self.latency_s)
            with self._lock:
                fault = next((f for f in self._faults if f[0] in (None, api)), None)
                if fault is not None:
                    self._faults.remove(fault)
            if fault is not None:
                raise OtsError(fault[1], fault[2], fault[3])
            message, rows = getattr(self, f"_api_{api}")(body)
            status, payload, code = 200, message.SerializeToString(), None
        except OtsError as error:
            status, code = error.status, error.code
            payload = pb.Error(code=error.code, message=error.message).SerializeToString()
        except WireError as error:
            status, code = 400, "OTSParameterInvalid"
            payload = pb.Error(code=code, message=str(error)).SerializeToString()
        with self._lock:
            self._calls.append(OtsCall(api, access_key_id, status, code, rows, tuple(self._local.row_errors)))
        return status, self._answer_headers(path, payload, access_key_id, secret), payload

    def _answer_headers(self, path: str, payload: bytes, access_key_id: Optional[str],
                        secret: Optional[str]) -> Dict[str, str]:
        now = datetime.now(timezone.utc)
        headers = {
            "x-ots-contentmd5": content_md5(payload),
            "x-ots-requestid": str(uuid.uuid4()),
            "x-ots-date": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
            "x-ots-contenttype": "protocol buffer",
        }
        if secret is not None and access_key_id is not None:
            headers["authorization"] = f"OTS {access_key_id}:{response_signature(secret, path, headers)}"
        return headers

    def _authenticate(self, path: str, headers: Dict[str, str], body: bytes) -> str:
        def refuse(message: str) -> OtsError:
            return OtsError(403, "OTSAuthFailed", message)

        for name in ("x-ots-date", "x-ots-apiversion", "x-ots-accesskeyid", "x-ots-instancename",
                     "x-ots-contentmd5", "x-ots-signature"):
            if not headers.get(name):
                raise OtsError(400, "OTSMissingHeader", f"Missing header: '{name}'.")
        if headers["x-ots-apiversion"] != API_VERSION:
            raise OtsError(400, "OTSUnsupportOperation", f"Unsupported API version: {headers['x-ots-apiversion']}.")
        key = self._keys.get(headers["x-ots-accesskeyid"])
        if key is None:
            raise refuse("The AccessKeyID does not exist.")
        secret, token = key
        if token is not None and headers.get("x-ots-ststoken") != token:
            raise refuse("The security token you provided is invalid.")
        if headers["x-ots-contentmd5"] != content_md5(body):
            raise refuse("Mismatch between MD5 value in request header and body.")
        if request_signature(secret, path.split("?", 1)[0], headers) != headers["x-ots-signature"]:
            raise refuse("Signature mismatch.")
        try:
            sent = datetime.strptime(headers["x-ots-date"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        except ValueError:
            raise OtsError(400, "OTSParameterInvalid", "Invalid date format: x-ots-date.") from None
        if abs(datetime.now(timezone.utc) - sent) > DATE_WINDOW:
            raise refuse("Mismatch between system time and x-ots-date.")
        if headers["x-ots-instancename"] != self.instance:
            raise refuse(f"Instance '{headers['x-ots-instancename']}' does not exist on this server.")
        return secret

    def _table(self, name: str) -> _Table:
        table = self._tables.get(name)
        if table is None:
            raise OtsError(404, "OTSObjectNotExist", "Requested table does not exist.")
        return table

    def _now_ms(self) -> int:
        """Strictly increasing cell timestamps, as versions are."""
        self._clock_ms = max(self._clock_ms + 1, int(time.time() * 1000))
        return self._clock_ms

    # -- table APIs ----------------------------------------------------------------------

    def _api_CreateTable(self, body: bytes):  # noqa: N802 - named after the API
        request = pb.CreateTableRequest()
        request.ParseFromString(body)
        meta = request.table_meta
        if not meta.primary_key:
            raise OtsError(400, "OTSParameterInvalid", "The number of primary key columns must be in range: [1, 4].")
        if list(request.index_metas):
            raise OtsError(400, "OTSParameterInvalid", "Secondary indexes are not supported by this local server.")
        if request.table_options.HasField("max_versions") and request.table_options.max_versions != 1:
            raise OtsError(400, "OTSParameterInvalid", "This local server keeps one version: max_versions must be 1.")
        with self._lock:
            if meta.table_name in self._tables:
                raise OtsError(409, "OTSObjectAlreadyExist", "Requested table already exists.")
            schema = [(column.name, column.type) for column in meta.primary_key]
            self._tables[meta.table_name] = _Table(meta.table_name, schema, {}, [])
        return pb.CreateTableResponse(), 0

    def _api_DescribeTable(self, body: bytes):  # noqa: N802
        request = pb.DescribeTableRequest()
        request.ParseFromString(body)
        with self._lock:
            table = self._table(request.table_name)
            answer = pb.DescribeTableResponse()
            answer.table_meta.table_name = table.name
            for name, kind in table.pk_schema:
                answer.table_meta.primary_key.add(name=name, type=kind)
            details = answer.reserved_throughput_details
            details.capacity_unit.read = 0
            details.capacity_unit.write = 0
            details.last_increase_time = 0
            answer.table_options.time_to_live = -1
            answer.table_options.max_versions = 1
            answer.table_options.deviation_cell_version_in_sec = 86400
        return answer, 0

    def _api_ListTable(self, body: bytes):  # noqa: N802
        with self._lock:
            return pb.ListTableResponse(table_names=sorted(self._tables)), 0

    def _api_DeleteTable(self, body: bytes):  # noqa: N802
        request = pb.DeleteTableRequest()
        request.ParseFromString(body)
        with self._lock:
            self._table(request.table_name)
            del self._tables[request.table_name]
        return pb.DeleteTableResponse(), 0

    # -- row APIs ------------------------------------------------------------------------

    def _check_condition(self, table: _Table, key: tuple, condition: Any) -> None:
        stored = table.rows.get(key)
        if condition.row_existence == pb.EXPECT_EXIST and stored is None:
            raise _condition_failed()
        if condition.row_existence == pb.EXPECT_NOT_EXIST and stored is not None:
            raise _condition_failed()
        if condition.HasField("column_condition") and condition.column_condition:
            columns = {} if stored is None else {name: value for name, (value, _ts) in stored[1].items()}
            if not column_condition_holds(condition.column_condition, columns):
                raise _condition_failed()

    def _write(self, table: _Table, kind: int, row: RowChange, condition: Any) -> None:
        """One row write, its condition checked under the same lock (callers hold it)."""
        key = table.check_pk(row.primary_key)
        if (table.name, key) in self._denied:
            raise OtsError(403, "OTSNoPermissionAccess", "You have no permission to access the requested resource.")
        self._check_condition(table, key, condition)
        stored = table.rows.get(key)
        if kind == pb.DELETE:
            if stored is not None:
                del table.rows[key]
                table.order.pop(bisect.bisect_left(table.order, key))
            return
        if kind == pb.PUT:
            columns: Dict[str, Tuple[Any, int]] = {}
            for cell in row.cells:
                if cell.op is not None:
                    raise OtsError(400, "OTSParameterInvalid", "PutRow columns cannot carry operations.")
                columns[cell.name] = (cell.value, cell.timestamp if cell.timestamp is not None else self._now_ms())
        else:
            columns = dict(stored[1]) if stored is not None else {}
            for cell in row.cells:
                if cell.op == OP_DELETE_ALL_VERSIONS:
                    columns.pop(cell.name, None)
                elif cell.op == OP_DELETE_ONE_VERSION:
                    if cell.name in columns and columns[cell.name][1] == cell.timestamp:
                        del columns[cell.name]
                elif cell.op == OP_INCREMENT:
                    current = columns.get(cell.name, (0, 0))[0]
                    if not isinstance(cell.value, int) or not isinstance(current, int):
                        raise OtsError(400, "OTSParameterInvalid", "Increment needs integer columns.")
                    columns[cell.name] = (current + cell.value, self._now_ms())
                else:
                    columns[cell.name] = (cell.value,
                                          cell.timestamp if cell.timestamp is not None else self._now_ms())
        if stored is None:
            bisect.insort(table.order, key)
        table.rows[key] = (row.primary_key, columns)

    def _single_write(self, body: bytes, request: Any, kind: int, response: Callable[[], Any]):
        request.ParseFromString(body)
        data = request.primary_key if kind == pb.DELETE else (request.row if kind == pb.PUT else request.row_change)
        row = decode_row(data)
        with self._lock:
            self._write(self._table(request.table_name), kind, row, request.condition)
        answer = response()
        answer.consumed.capacity_unit.write = 1
        return answer, 1

    def _api_PutRow(self, body: bytes):  # noqa: N802
        return self._single_write(body, pb.PutRowRequest(), pb.PUT, pb.PutRowResponse)

    def _api_UpdateRow(self, body: bytes):  # noqa: N802
        return self._single_write(body, pb.UpdateRowRequest(), pb.UPDATE, pb.UpdateRowResponse)

    def _api_DeleteRow(self, body: bytes):  # noqa: N802
        return self._single_write(body, pb.DeleteRowRequest(), pb.DELETE, pb.DeleteRowResponse)

    @staticmethod
    def _attributes(columns: Dict[str, Tuple[Any, int]], wanted: set) -> List[Tuple[str, Any, int]]:
        """A row's columns as the SDK reads them, (name, value, timestamp), limited to ``columns_to_get``."""
        return [(name, value, ts) for name, (value, ts) in sorted(columns.items()) if not wanted or name in wanted]

    def _visible(self, stored: Tuple[list, Dict[str, Tuple[Any, int]]], columns_to_get: List[str]) -> bytes:
        primary_key, columns = stored
        wanted = set(columns_to_get)
        attributes = self._attributes(columns, wanted)
        if wanted and not attributes and not wanted & {name for name, _ in primary_key}:
            return b""  # none of the wanted columns: the service answers no row
        return encode_row(primary_key, attributes)

    @staticmethod
    def _check_batch(total: int, limit: int) -> None:
        if total > limit:
            raise OtsError(400, "OTSParameterInvalid", f"Rows count exceeds the upper limit: {limit}.")

    @staticmethod
    def _claim(seen: set, key: tuple) -> None:
        """One key once per table in a batch, as the service insists."""
        if key in seen:
            raise OtsError(400, "OTSParameterInvalid", "The input parameter is invalid: duplicate rows.")
        seen.add(key)

    def _api_GetRow(self, body: bytes):  # noqa: N802
        request = pb.GetRowRequest()
        request.ParseFromString(body)
        primary_key = decode_row(request.primary_key).primary_key
        with self._lock:
            table = self._table(request.table_name)
            stored = table.rows.get(table.check_pk(primary_key))
            row = b"" if stored is None else self._visible(stored, list(request.columns_to_get))
        answer = pb.GetRowResponse(row=row)
        answer.consumed.capacity_unit.read = 1
        return answer, 1

    def _api_BatchGetRow(self, body: bytes):  # noqa: N802
        request = pb.BatchGetRowRequest()
        request.ParseFromString(body)
        total = sum(len(table.primary_key) for table in request.tables)
        self._check_batch(total, MAX_BATCH_GET_ROWS)
        answer = pb.BatchGetRowResponse()
        with self._lock:
            for wanted in request.tables:
                table = self._table(wanted.table_name)
                out = answer.tables.add(table_name=wanted.table_name)
                seen = set()
                for raw in wanted.primary_key:
                    key = table.check_pk(decode_row(raw).primary_key)
                    self._claim(seen, key)
                    stored = table.rows.get(key)
                    item = out.rows.add(is_ok=True)
                    item.consumed.capacity_unit.read = 1
                    item.row = b"" if stored is None else self._visible(stored, list(wanted.columns_to_get))
        return answer, total

    def _api_BatchWriteRow(self, body: bytes):  # noqa: N802
        request = pb.BatchWriteRowRequest()
        request.ParseFromString(body)
        total = sum(len(table.rows) for table in request.tables)
        self._check_batch(total, MAX_BATCH_WRITE_ROWS)
        answer = pb.BatchWriteRowResponse()
        with self._lock:
            decoded = []
            for wanted in request.tables:
                table = self._table(wanted.table_name)
                seen = set()
                for item in wanted.rows:
                    row = decode_row(item.row_change)
                    self._claim(seen, table.check_pk(row.primary_key))
                    decoded.append((table, item, row))
            outs: Dict[str, Any] = {}
            for table, item, row in decoded:
                out = outs.get(table.name)
                if out is None:
                    out = outs[table.name] = answer.tables.add(table_name=table.name)
                result = out.rows.add(is_ok=True)
                try:
                    if self._row_faults:
                        code, message = self._row_faults.pop(0)
                        raise OtsError(503, code, message)
                    self._write(table, item.type, row, item.condition)
                    result.consumed.capacity_unit.write = 1
                except OtsError as error:
                    result.is_ok = False
                    self._local.row_errors.append(error.code)
                    result.error.code = error.code
                    result.error.message = error.message
        return answer, total

    def _api_GetRange(self, body: bytes):  # noqa: N802
        request = pb.GetRangeRequest()
        request.ParseFromString(body)
        start = decode_row(request.inclusive_start_primary_key).primary_key
        end = decode_row(request.exclusive_end_primary_key).primary_key
        limit = min(request.limit, self.page_rows) if request.HasField("limit") and request.limit > 0 \
            else self.page_rows
        with self._lock:
            table = self._table(request.table_name)
            low, high = table.check_pk(start, bounds=True), table.check_pk(end, bounds=True)
            if request.direction == pb.FORWARD:
                first, stop = bisect.bisect_left(table.order, low), bisect.bisect_left(table.order, high)
                keys = table.order[first:stop]
            else:  # BACKWARD: from the start (inclusive) down to the end (exclusive)
                first, stop = bisect.bisect_right(table.order, high), bisect.bisect_right(table.order, low)
                keys = list(reversed(table.order[first:stop]))
            page, rest = keys[:limit], keys[limit:]
            wanted = set(request.columns_to_get)
            rows = [(table.rows[key][0], self._attributes(table.rows[key][1], wanted)) for key in page]
            answer = pb.GetRangeResponse(rows=encode_rows(rows))
            if rest:
                answer.next_start_primary_key = encode_primary_key(table.rows[rest[0]][0])
        answer.consumed.capacity_unit.read = max(1, len(page))
        return answer, len(page)


class _Server(TrackingHTTPServer):
    ots: TablestoreServer


class _Handler(KeepAliveHandler):
    server_version = "TablestoreLocal/1.0"
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        try:
            status, headers, payload = self.server.ots._handle(self.path, dict(self.headers.items()), body)
        except Exception as error:  # a server bug still answers like the service would
            payload = pb.Error(code="OTSInternalServerError",
                               message=f"local server error: {type(error).__name__}: {error}").SerializeToString()
            status, headers = 500, {"x-ots-requestid": str(uuid.uuid4())}
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.tablestore", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--instance", default="local")
    parser.add_argument("--access-key-id", default="local-ak")
    parser.add_argument("--access-key-secret", default="local-secret")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every call")
    args = parser.parse_args(argv)
    server = TablestoreServer(args.host, args.port, instance=args.instance)
    server.latency_s = args.latency_ms / 1000.0
    server.add_access_key(args.access_key_id, args.access_key_secret)
    server.serve_until_interrupted(f"Tablestore server listening on {{endpoint}} (instance {args.instance}, "
                                   f"access key {args.access_key_id}); Ctrl-C stops")

if __name__ == "__main__":
    main()
