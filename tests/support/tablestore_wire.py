"""Tablestore's wire format, from the server's side: PlainBuffer rows, conditions, signatures.

Pure functions, no sockets: the local server (``tablestore.py`` here) is built on them,
and they are tested on their own. The official SDK's modules are reused where they fit:
its protobuf messages, its CRC-8 and its PlainBuffer *writer* for the rows a server
sends back. The SDK has no reader for what a client sends (row changes with cell
operations, ``INF_MIN``/``INF_MAX`` keys; its own reader fails on UpdateRow rows), so
``decode_row`` below reads that, checking every checksum the way the server does.

PlainBuffer, as the SDK writes it (all integers little-endian)::

    row      := header(int32 0x75) TAG_ROW_PK cell* [TAG_ROW_DATA cell*] [TAG_DELETE_ROW_MARKER]
                TAG_ROW_CHECKSUM crc8
    cell     := TAG_CELL TAG_CELL_NAME len(int32) name [TAG_CELL_VALUE len(int32) type payload]
                [TAG_CELL_TYPE op] [TAG_CELL_TIMESTAMP int64] TAG_CELL_CHECKSUM crc8
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from tablestore.plainbuffer.plain_buffer_builder import PlainBufferBuilder
from tablestore.plainbuffer.plain_buffer_crc8 import PlainBufferCrc8 as Crc
from tablestore.protobuf import table_store_filter_pb2 as filter_pb2

HEADER = 0x75
TAG_ROW_PK, TAG_ROW_DATA, TAG_CELL, TAG_CELL_NAME, TAG_CELL_VALUE = 0x1, 0x2, 0x3, 0x4, 0x5
TAG_CELL_TYPE, TAG_CELL_TIMESTAMP, TAG_DELETE_ROW_MARKER, TAG_ROW_CHECKSUM, TAG_CELL_CHECKSUM = 0x6, 0x7, 0x8, 0x9, 0xA
VT_INTEGER, VT_DOUBLE, VT_BOOLEAN, VT_STRING, VT_NULL, VT_BLOB = 0x0, 0x1, 0x2, 0x3, 0x6, 0x7
VT_INF_MIN, VT_INF_MAX, VT_AUTO_INCREMENT = 0x9, 0xA, 0xB
OP_DELETE_ALL_VERSIONS, OP_DELETE_ONE_VERSION, OP_INCREMENT = 0x1, 0x3, 0x4


class WireError(ValueError):
    """A request the real service would refuse as malformed (OTSParameterInvalid)."""


class _Bound:
    def __init__(self, name: str, rank: int) -> None:
        self.name, self.rank = name, rank

    def __repr__(self) -> str:
        return self.name


INF_MIN = _Bound("INF_MIN", -1)
INF_MAX = _Bound("INF_MAX", 1)


def sort_key(value: Any) -> tuple:
    """Order of primary-key values: INF_MIN < integers < strings < binaries < INF_MAX."""
    if isinstance(value, _Bound):
        return (value.rank,)
    if isinstance(value, bool):
        raise WireError("a primary key cannot be boolean")
    if isinstance(value, int):
        return (0, 0, value)
    if isinstance(value, str):
        return (0, 1, value.encode("utf-8"))
    return (0, 2, bytes(value))


def pk_key(primary_key: Sequence[Tuple[str, Any]]) -> tuple:
    return tuple(sort_key(value) for _name, value in primary_key)


@dataclass
class Cell:
    name: str
    value: Any = None  # None: no value (a delete)
    op: Optional[int] = None  # None: put; else OP_*
    timestamp: Optional[int] = None


@dataclass
class RowChange:
    primary_key: List[Tuple[str, Any]]
    cells: List[Cell] = field(default_factory=list)
    delete_marker: bool = False


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise WireError("PlainBuffer ends early")
        self.pos += 1
        return self.data[self.pos - 1]

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise WireError("PlainBuffer ends early")
        self.pos += size
        return self.data[self.pos - size:self.pos]

    def int32(self) -> int:
        return struct.unpack("<i", self.take(4))[0]

    def int64(self) -> int:
        return struct.unpack("<q", self.take(8))[0]

    def peek(self) -> Optional[int]:
        return self.data[self.pos] if self.pos < len(self.data) else None


def _read_value(reader: _Reader, crc: int, *, primary_key: bool) -> Tuple[Any, int]:
    """TAG_CELL_VALUE has been read."""
    size = reader.int32()
    end = reader.pos + size
    kind = reader.byte()
    crc = Crc.crc_int8(crc, kind)
    if kind in (VT_INF_MIN, VT_INF_MAX, VT_AUTO_INCREMENT):
        if not primary_key:
            raise WireError("INF_MIN/INF_MAX/AUTO_INCREMENT are only for primary keys")
        value: Any = {VT_INF_MIN: INF_MIN, VT_INF_MAX: INF_MAX}.get(kind)
        if value is None:
            raise WireError("auto-increment primary keys are not supported by this server")
    elif kind == VT_INTEGER:
        value = reader.int64()
        crc = Crc.crc_int64(crc, value)
    elif kind in (VT_STRING, VT_BLOB):
        length = reader.int32()
        raw = reader.take(length)
        crc = Crc.crc_int32(crc, length)
        crc = Crc.crc_bytes(crc, raw)
        value = raw.decode("utf-8") if kind == VT_STRING else bytearray(raw)
    elif kind == VT_BOOLEAN and not primary_key:
        value = reader.byte() != 0
        crc = Crc.crc_int8(crc, 1 if value else 0)
    elif kind == VT_DOUBLE and not primary_key:
        bits = reader.int64()
        crc = Crc.crc_int64(crc, bits)
        value = struct.unpack("<d", struct.pack("<q", bits))[0]
    else:
        raise WireError(f"value type {kind:#x} is not allowed here")
    if reader.pos != end:
        raise WireError("a cell value's length prefix does not match its content")
    return value, crc


def _read_cell(reader: _Reader, *, primary_key: bool) -> Tuple[Cell, int]:
    """TAG_CELL has been read; returns the cell and the cell checksum."""
    if reader.byte() != TAG_CELL_NAME:
        raise WireError("a cell must start with its name")
    name = reader.take(reader.int32()).decode("utf-8")
    crc = Crc.crc_string(0, name)
    cell = Cell(name)
    tag = reader.byte()
    if tag == TAG_CELL_VALUE:
        cell.value, crc = _read_value(reader, crc, primary_key=primary_key)
        tag = reader.byte()
    elif primary_key:
        raise WireError(f"primary key column {name!r} has no value")
    if tag == TAG_CELL_TYPE and not primary_key:
        cell.op = reader.byte()
        if cell.op not in (OP_DELETE_ALL_VERSIONS, OP_DELETE_ONE_VERSION, OP_INCREMENT):
            raise WireError(f"unknown cell operation {cell.op:#x}")
        tag = reader.byte()
    if tag == TAG_CELL_TIMESTAMP and not primary_key:
        cell.timestamp = reader.int64()
        tag = reader.byte()
    # the writer's checksum order: name, value, timestamp, then the operation
    if cell.timestamp is not None:
        crc = Crc.crc_int64(crc, cell.timestamp)
    if cell.op is not None:
        crc = Crc.crc_int8(crc, cell.op)
    if tag != TAG_CELL_CHECKSUM:
        raise WireError(f"cell {name!r} has no checksum")
    if reader.byte() != crc:
        raise WireError(f"cell {name!r}: checksum mismatch")
    if cell.value is None and cell.op is None:
        raise WireError(f"column {name!r} has neither a value nor an operation")
    return cell, crc


def decode_row(data: bytes) -> RowChange:
    """A primary key or a row change as a client sends it; every checksum is verified."""
    reader = _Reader(data)
    if len(reader.data) < 4 or reader.int32() != HEADER:
        raise WireError("PlainBuffer header is missing")
    if reader.byte() != TAG_ROW_PK:
        raise WireError("a row must start with its primary key")
    row = RowChange([])
    row_crc = 0
    tag = reader.byte()
    while tag == TAG_CELL:
        cell, crc = _read_cell(reader, primary_key=True)
        row.primary_key.append((cell.name, cell.value))
        row_crc = Crc.crc_int8(row_crc, crc)
        tag = reader.byte()
    if tag == TAG_ROW_DATA:
        tag = reader.byte()
        while tag == TAG_CELL:
            cell, crc = _read_cell(reader, primary_key=False)
            row.cells.append(cell)
            row_crc = Crc.crc_int8(row_crc, crc)
            tag = reader.byte()
    if tag == TAG_DELETE_ROW_MARKER:
        row.delete_marker = True
        tag = reader.byte()
    row_crc = Crc.crc_int8(row_crc, 1 if row.delete_marker else 0)
    if tag != TAG_ROW_CHECKSUM:
        raise WireError("the row has no checksum")
    if reader.byte() != row_crc:
        raise WireError("row checksum mismatch")
    if reader.peek() is not None:
        raise WireError("bytes after the row checksum")
    if not row.primary_key:
        raise WireError("the row has no primary key")
    return row


def decode_column_value(data: bytes) -> Any:
    """A condition's value: type byte + payload, no length prefix (``serialize_column_value``)."""
    reader = _Reader(data)
    kind = reader.byte()
    if kind == VT_INTEGER:
        return reader.int64()
    if kind == VT_STRING:
        return reader.take(reader.int32()).decode("utf-8")
    if kind == VT_BLOB:
        return bytearray(reader.take(reader.int32()))
    if kind == VT_BOOLEAN:
        return reader.byte() != 0
    if kind == VT_DOUBLE:
        return struct.unpack("<d", reader.take(8))[0]
    raise WireError(f"condition value type {kind:#x} is unknown")


# -- what the server sends back ------------------------------------------------------


def encode_row(primary_key: Sequence[Tuple[str, Any]], columns: Sequence[Tuple[str, Any, int]]) -> bytes:
    """A stored row (latest versions with their timestamps), with the SDK's own writer."""
    return bytes(PlainBufferBuilder.serialize_for_put_row(list(primary_key), [tuple(c) for c in columns]))


def encode_rows(rows: Sequence[Tuple[Sequence[Tuple[str, Any]], Sequence[Tuple[str, Any, int]]]]) -> bytes:
    """GetRange's ``rows``: one header, then the rows without theirs."""
    if not rows:
        return b""
    return struct.pack("<i", HEADER) + b"".join(encode_row(pk, cols)[4:] for pk, cols in rows)


def encode_primary_key(primary_key: Sequence[Tuple[str, Any]]) -> bytes:
    return bytes(PlainBufferBuilder.serialize_primary_key(list(primary_key)))


# -- conditions ---------------------------------------------------------------------

_COMPARE = {
    filter_pb2.CT_EQUAL: lambda a, b: a == b,
    filter_pb2.CT_NOT_EQUAL: lambda a, b: a != b,
    filter_pb2.CT_GREATER_THAN: lambda a, b: a > b,
    filter_pb2.CT_GREATER_EQUAL: lambda a, b: a >= b,
    filter_pb2.CT_LESS_THAN: lambda a, b: a < b,
    filter_pb2.CT_LESS_EQUAL: lambda a, b: a <= b,
}


def _comparable(value: Any) -> tuple:
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value.encode("utf-8"))
    return ("binary", bytes(value))


def column_condition_holds(raw_filter: bytes, columns: Mapping[str, Any]) -> bool:
    """Evaluate a serialized ``Filter`` against a row's latest column values."""
    flt = filter_pb2.Filter()
    flt.ParseFromString(raw_filter)
    if flt.type == filter_pb2.FT_SINGLE_COLUMN_VALUE:
        single = filter_pb2.SingleColumnValueFilter()
        single.ParseFromString(flt.filter)
        if single.column_name not in columns:
            return not single.filter_if_missing
        expected = _comparable(decode_column_value(single.column_value))
        actual = _comparable(columns[single.column_name])
        if expected[0] != actual[0]:
            return single.comparator == filter_pb2.CT_NOT_EQUAL  # values of different types are never equal
        compare = _COMPARE.get(single.comparator)
        if compare is None:
            raise WireError(f"comparator {single.comparator} is not supported in a condition")
        return bool(compare(actual[1], expected[1]))
    if flt.type == filter_pb2.FT_COMPOSITE_COLUMN_VALUE:
        composite = filter_pb2.CompositeColumnValueFilter()
        composite.ParseFromString(flt.filter)
        results = [column_condition_holds(sub.SerializeToString(), columns) for sub in composite.sub_filters]
        if composite.combinator == filter_pb2.LO_NOT:
            if len(results) != 1:
                raise WireError("NOT takes exactly one sub-condition")
            return not results[0]
        if len(results) < 2:
            raise WireError("AND/OR take at least two sub-conditions")
        return all(results) if composite.combinator == filter_pb2.LO_AND else any(results)
    raise WireError(f"filter type {flt.type} is not supported in a condition")


# -- signatures (the SDK's V2 scheme, HMAC-SHA1) -------------------------------------


def _ots_header_lines(headers: Mapping[str, str]) -> str:
    lines = [f"{k.lower()}:{v.strip()}" for k, v in headers.items()
             if k.lower().startswith("x-ots-") and k.lower() != "x-ots-signature"]
    return "\n".join(sorted(lines))


def _hmac_sha1(secret: str, text: str) -> str:
    return base64.b64encode(hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()).decode()


def request_signature(secret: str, path: str, headers: Mapping[str, str]) -> str:
    """What the client puts in ``x-ots-signature`` (no API takes query parameters)."""
    return _hmac_sha1(secret, f"{path}\nPOST\n\n{_ots_header_lines(headers)}\n")


def response_signature(secret: str, path: str, headers: Mapping[str, str]) -> str:
    """What the client expects in ``authorization: OTS <akid>:<signature>``."""
    return _hmac_sha1(secret, f"{_ots_header_lines(headers)}\n{path}")


def content_md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def lower_keys(headers: Mapping[str, str]) -> Dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}
