"""ICE's answer -> the normalized job record, and the merge rule. Pure: no I/O.

Everything ICE sends is a string and its public reference mixes formats, so each
normalizer accepts what ICE has been seen to send and turns anything else into
``None`` (with a warning naming the job and the field) rather than guessing. The
normalizers never raise: one odd job never costs another its record.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping, NamedTuple, Optional, Tuple

from . import jsontext

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
STATES = ("pending", "processing", "succeeded", "failed", "not_found", "expired")
FINAL_STATES = frozenset({"succeeded", "failed", "expired"})
SOURCES = ("callback", "timer", "direct")

# Bump when ``normalize`` makes something else of the same answer (this status mapping above all):
# every stored answer digest then stops matching, and each job is normalized (and rewritten if it
# changed) once more. Without the bump, a sweep's fast path keeps the old states on stored open
# records. tests/unit/test_records.py pins what this version makes and fails when that changes.
NORMALIZATION_VERSION = 1

_SUCCESS_WORDS = frozenset({"success", "upload_success", "normal", "uploadsucc"})
_KNOWN_IN_FLIGHT_WORDS = frozenset(
    {"processing", "downloading", "download_success", "uploading", "transcoding"}
)


class UploadInfo(NamedTuple):
    """One item of ``URLUploadInfoList``, as ICE sent it (all strings, any may be missing).

    A named tuple rather than a frozen dataclass: one is built for every job of every
    sweep, and a tuple is built in a fraction of the time (and digested as it is).
    """

    job_id: str
    upload_url: Optional[str] = None
    media_id: Optional[str] = None
    status: Optional[str] = None
    creation_time: Optional[str] = None
    complete_time: Optional[str] = None
    error_code: Optional[str] = None
    error_message: Optional[str] = None
    user_data: Optional[str] = None
    file_size: Optional[str] = None

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> UploadInfo:
        get = item.get
        return cls(str(get("JobId") or ""), *[_api_text(get(name)) for name in _API_FIELDS])

    @classmethod
    def from_model(cls, item: Any) -> UploadInfo:
        """``from_api`` for the SDK's item model, read in place: its attributes hold what ICE sent,
        None for a field it left out, exactly what its ``to_map`` would copy into a dict first."""
        values = (item.job_id, item.upload_url, item.media_id, item.status, item.creation_time, item.complete_time,
                  item.error_code, item.error_message, item.user_data, item.file_size)
        for value in values:
            if value is not None and type(value) is not str:  # not what ICE sends: made text, as from_api does
                return cls(str(values[0] or ""), *[_api_text(value) for value in values[1:]])
        return cls._make(values) if values[0] else cls("", *values[1:])


# ICE's names of UploadInfo's fields after job_id, in their order
_API_FIELDS = ("UploadURL", "MediaId", "Status", "CreationTime", "CompleteTime", "ErrorCode", "ErrorMessage",
               "UserData", "FileSize")


def _api_text(value: Any) -> Optional[str]:
    return value if value is None or type(value) is str else str(value)



def answer_digest(info: UploadInfo) -> str:
    """A digest of one answer item exactly as ICE sent it (and of how we normalize it).

    Equal digests mean ``normalize`` makes records with the same information of both (they
    differ only in bookkeeping: when and why we looked), so a store that holds the digest
    of the answer its record was made from can tell "unchanged" without normalizing.
    """
    # The fields joined by NUL, None written as SOH: one text per answer as long as no field
    # holds either character (what ICE sends never does); when one does, JSON of the fields
    # (which escapes both, so the two kinds of text never meet). surrogatepass: a lone
    # surrogate is one more character to digest, not an encoding error.
    text = _DIGEST_PREFIX + "\x00".join(["\x01" if value is None else value for value in info])
    if text.count("\x00") != len(info) or text.count("\x01") != info.count(None):
        text = json.dumps((NORMALIZATION_VERSION, *info))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


_DIGEST_PREFIX = f"{NORMALIZATION_VERSION}\x00"


@dataclass(frozen=True)
class JobRecord:
    """The normalized record; field names and order are the public schema.

    Always strict JSON in valid UTF-8, whatever ICE sent (contract section 4):
    ``file_size`` is an int in [0, 2**63) or null; times are ``YYYY-MM-DDTHH:MM:SSZ`` or
    null; ``user_data`` is parsed only when it parses, strictly (no ``NaN``, no number a
    double cannot hold), to an object or an array. Text is kept as ICE sent it except
    for lone surrogates (half of a UTF-16 pair, as JavaScript leaves a string cut inside
    an emoji), which no UTF-8 encoder writes: each becomes U+FFFD, the replacement
    character, so "clip \\ud83d" is recorded as "clip \\ufffd". A normalizer that meets
    such a field logs a warning naming the job and the field.
    """

    job_id: str
    state: str
    source: str
    ice_request_id: str
    first_seen_at: str
    updated_at: str
    upload_url: Optional[str] = None
    media_id: Optional[str] = None
    ice_status: Optional[str] = None
    file_size: Optional[int] = None
    created_at: Optional[str] = None
    completed_at: Optional[str] = None
    error_code: Optional[str] = None
    error_message: Optional[str] = None
    user_data: Any = None
    schema_version: int = field(default=SCHEMA_VERSION)
    # Not part of the record (never in ``to_dict``): ``answer_digest`` of the ICE answer this
    # record was normalized from, for stores that keep it beside the record (see
    # ``RecordStore.answer_digests``); None for records not made from an answer item.
    answer_digest: Optional[str] = field(default=None, compare=False, repr=False)

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def to_dict(self) -> dict:
        """The record as JSON values, in the schema's order. ``user_data`` is the record's own
        object, not a copy (no deep copy on the hot path): read it, do not change it."""
        return {
            "schema_version": self.schema_version,
            "job_id": self.job_id,
            "upload_url": self.upload_url,
            "media_id": self.media_id,
            "state": self.state,
            "ice_status": self.ice_status,
            "final": self.final,
            "file_size": self.file_size,
            "created_at": self.created_at,
            "completed_at": self.completed_at,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "user_data": self.user_data,
            "source": self.source,
            "ice_request_id": self.ice_request_id,
            "first_seen_at": self.first_seen_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobRecord:
        """A stored record; ``ValueError`` (stores: "corrupt", naming the job) when a field is not
        what the schema allows: a record edited by hand must not fail later, somewhere else."""
        fields = {k: v for k, v in data.items() if k in _RECORD_FIELDS}
        if fields.get("state") not in STATES:
            raise ValueError(f"state {str(fields.get('state'))[:40]!r} is not one of {', '.join(STATES)}")
        for name in _TEXT_FIELDS:
            value = fields.get(name)
            if not isinstance(value, str) and (value is not None or name in _REQUIRED_TEXT):
                raise ValueError(f"{name} is {type(value).__name__}, not text")
        size = fields.get("file_size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
            raise ValueError(f"file_size is {type(size).__name__}, not a whole number")
        return cls(**fields)

    def same_information(self, other: JobRecord) -> bool:
        """True when only bookkeeping differs (when and why we looked, not what ICE said)."""
        return (
            self.job_id == other.job_id and self.state == other.state and self.upload_url == other.upload_url
            and self.media_id == other.media_id and self.ice_status == other.ice_status
            and self.file_size == other.file_size and self.created_at == other.created_at
            and self.completed_at == other.completed_at and self.error_code == other.error_code
            and self.error_message == other.error_message and _same_json(self.user_data, other.user_data)
        )


# what a stored record may set (``answer_digest`` is the store's to give, not the record's)
_RECORD_FIELDS = frozenset(JobRecord.__dataclass_fields__) - {"answer_digest"}
_REQUIRED_TEXT = ("job_id", "source", "ice_request_id", "first_seen_at", "updated_at")
_TEXT_FIELDS = _REQUIRED_TEXT + ("upload_url", "media_id", "ice_status", "created_at", "completed_at",
                                 "error_code", "error_message")


def _same_json(first: Any, second: Any) -> bool:
    """``json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)``, without writing either.

    Python's ``==`` is not enough: ``1 == 1.0 == True`` and ``0.0 == -0.0``, which JSON tells apart.
    """
    kind = type(first)
    if kind is not type(second):
        return False
    if kind is dict:
        return first.keys() == second.keys() and all(_same_json(value, second[key]) for key, value in first.items())
    if kind is list:
        return len(first) == len(second) and all(map(_same_json, first, second))
    if kind is float:
        return repr(first) == repr(second)
    return first == second


def information_fingerprint(record: JobRecord) -> str:
    """A digest of what ICE said (not of our bookkeeping): equal digests, ``same_information``.

    Lets a store decide "unchanged" from one short stored column instead of the whole record.
    """
    text = json.dumps(_information(record), ensure_ascii=False, separators=(",", ":"))
    # surrogatepass: a record that escaped normalization still gets a digest (and fails
    # alone, where it is written) instead of failing every record of its batch here
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class UnencodableRecord(ValueError):
    """A record that is not strict JSON in UTF-8 (normalization makes this a bug, never ICE's doing)."""


def record_json(record: JobRecord, *, indent: Optional[int] = 1) -> bytes:
    """The record as the file and OSS stores hold it: strict JSON (no ``NaN``), UTF-8.

    Encoded once per write; raises ``UnencodableRecord`` naming the job rather than
    ``UnicodeEncodeError`` or ``ValueError`` from deep inside a writer.
    """
    try:
        return json.dumps(record.to_dict(), ensure_ascii=False, allow_nan=False, indent=indent).encode("utf-8")
    except (ValueError, TypeError, RecursionError) as exc:
        raise UnencodableRecord(f"the record of job {record.job_id} is not strict JSON in UTF-8 "
                                f"({type(exc).__name__}: {str(exc)[:120]})") from None


def _information(record: JobRecord) -> tuple:
    return (
        record.job_id, record.state, record.upload_url, record.media_id, record.ice_status,
        record.file_size, record.created_at, record.completed_at, record.error_code,
        record.error_message, json.dumps(record.user_data, sort_keys=True),
    )


# ---------------------------------------------------------------- normalizers
#
# Every normalizer is total: whatever string ICE sends, it returns a value the record
# can hold as strict JSON in UTF-8, and an odd value becomes null (or is escaped) with a
# warning naming the job and the field. ``job_id`` is only for that warning.

# Half of a UTF-16 pair (JavaScript's ``JSON.stringify`` on a string cut inside an emoji
# answers "\ud83d"): valid JSON, but no UTF-8 encoder will write it.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_SIZE = 2 ** 63 - 1  # Tablestore's INTEGER; anything larger is not a file size
_MAX_USER_DATA_DEPTH = 32  # nesting kept parsed; deeper UserData stays the raw string


def well_formed_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD (pairs split in two are joined)."""
    if text.isascii() or _LONE_SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def normalize_text(raw: Optional[str], *, job_id: str = "?", field: str = "text") -> Optional[str]:
    """ICE's text verbatim; blank -> ``None``; lone surrogates -> U+FFFD, with a warning."""
    if raw is None or not raw.strip():
        return None
    if raw.isascii():  # the usual case, decided in constant time
        return raw
    text = well_formed_text(raw)
    if text is not raw:
        logger.warning("job %s: %s %r holds half a UTF-16 pair; recorded with U+FFFD in its place",
                       job_id, field, raw[:80])
    return text


def is_known_status(raw: Optional[str]) -> bool:
    """``map_status`` maps this word without a warning."""
    word = (raw or "").strip().lower()
    return word in _SUCCESS_WORDS or "fail" in word or word == "pending" or word in _KNOWN_IN_FLIGHT_WORDS


def map_status(raw: Optional[str]) -> str:
    """ICE's Status word -> our state. Unknown words count as in flight, never as final."""
    word = (raw or "").strip().lower()
    if word in _SUCCESS_WORDS:
        return "succeeded"
    if "fail" in word:
        return "failed"
    if word == "pending":
        return "pending"
    if word not in _KNOWN_IN_FLIGHT_WORDS:
        logger.warning("unknown ICE upload status %r recorded as processing", raw)
    return "processing"


_TIME_FORMATS = ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S")
_FRACTION = re.compile(r"\.\d+")
_OFFSET = re.compile(r"([+-])(\d{2}):?(\d{2})$")


def normalize_time(raw: Optional[str], *, job_id: str = "?", field: str = "time") -> Optional[str]:
    """Any time ICE sends -> ``YYYY-MM-DDTHH:MM:SSZ`` (UTC). Offset-less times are UTC.

    A time that does not parse, an offset no clock has (``+24:00``), or a moment that
    cannot be told in UTC (year 1 east of Greenwich) -> ``None``, with a warning.
    """
    text = (raw or "").strip()
    if not text:
        return None
    normalized = _utc_time_as_ice_sends_it(text)
    if normalized is not None:
        return normalized
    try:
        normalized = _parse_ice_time(text)
    except (ValueError, OverflowError, OSError):  # out of range for datetime, or for the platform's clock
        normalized = None
    if normalized is None:
        logger.warning("job %s: %s %r is not a time we can read; recorded as null", job_id, field, text[:80])
    return normalized


def plain_ice_time(raw: Optional[str]) -> Optional[str]:
    """``normalize_time`` for the two shapes ICE sends; None, and no warning, for anything else."""
    return _utc_time_as_ice_sends_it(raw.strip()) if raw else None


def _utc_time_as_ice_sends_it(text: str) -> Optional[str]:
    """The two shapes ICE sends, ``YYYY-MM-DDTHH:MM:SSZ`` and ``YYYY-MM-DD HH:MM:SS`` (UTC), read
    without ``strptime`` (a tenth of its cost); None for anything else, which ``_parse_ice_time``
    reads. Equal to what that one answers wherever this answers (a property test holds it so).
    """
    match = _ICE_TIME.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second = map(int, match.groups())
    if not (year and 1 <= month <= 12 and 1 <= day <= 28 and hour < 24 and minute < 60 and second < 60):
        try:  # the 29th to the 31st, or no time at all (February 30, month 13, second 60, year 0)
            datetime(year, month, day, hour, minute, second)
        except ValueError:
            return None
    return text if len(text) == 20 and text[10] == "T" and text[19] == "Z" else f"{text[:10]}T{text[11:19]}Z"


_ICE_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([0-9]{2}):([0-9]{2}):([0-9]{2})[Zz]?")


def _parse_ice_time(text: str) -> Optional[str]:
    if text.isascii() and text.isdigit() and len(text) in (10, 13):  # epoch seconds or milliseconds
        seconds = int(text) / (1000 if len(text) == 13 else 1)
        return format_time(datetime.fromtimestamp(seconds, tz=timezone.utc))
    candidate = _FRACTION.sub("", text, count=1)
    offset = timezone.utc
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1]
    else:
        tail = _OFFSET.search(candidate)
        if tail and len(candidate) > 19:
            hours, minutes = int(tail.group(2)), int(tail.group(3))
            if hours > 23 or minutes > 59:  # timezone() refuses +24:00; +05:99 is no offset either
                return None
            sign = 1 if tail.group(1) == "+" else -1
            offset = timezone(sign * timedelta(hours=hours, minutes=minutes))
            candidate = candidate[: tail.start()]
    for fmt in _TIME_FORMATS:
        try:
            parsed = datetime.strptime(candidate, fmt).replace(tzinfo=offset)
        except ValueError:
            continue
        return format_time(parsed)
    return None


def format_time(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` in UTC (four-digit years even before 1000, unlike ``strftime``)."""
    utc = moment.astimezone(timezone.utc)
    return (f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T"
            f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}Z")


def parse_time(text: Optional[str]) -> Optional[datetime]:
    """Parse a time this module wrote; ``None`` for ``None``. Raises ``ValueError`` for anything else."""
    if not text:
        return None
    if len(text) == 20 and _OURS.fullmatch(text):  # what format_time writes: no strptime needed
        return datetime(int(text[:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]),
                        int(text[17:19]), tzinfo=timezone.utc)
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


_OURS = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def normalize_size(raw: Optional[str], *, job_id: str = "?") -> Optional[int]:
    """FileSize -> bytes as an int; ``None`` (with a warning) for anything that is not a size.

    Whole numbers only, written plainly ("64610") or as a float ("6.461e4"); negative,
    fractional, non-finite ("inf", "nan") or above 2**63-1 -> ``None``.
    """
    text = (raw or "").strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():  # the usual case
        # past 19 digits it is beyond the cap (and int() refuses thousands of digits)
        size = int(text) if len(text) <= 19 else None
    else:
        size = _whole_number(text)
    if size is None or not 0 <= size <= _MAX_SIZE:
        logger.warning("job %s: FileSize %r is not a size in bytes; recorded as null", job_id, text[:80])
        return None
    return size


def _whole_number(text: str) -> Optional[int]:
    """``6.461e4`` -> 64610; None for fractions, ``inf``, ``nan`` and what ``float()`` takes
    beyond JSON numbers (``1_000``, non-ASCII digits)."""
    if not text.isascii() or "_" in text:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return int(number) if math.isfinite(number) and number.is_integer() else None


class _NotStrictJson(ValueError):
    """Text Python's parser takes but strict JSON readers do not (``NaN``), or cannot hold (``1e999``)."""


def _reject_constant(name: str) -> Any:
    raise _NotStrictJson(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):  # 1e999: valid JSON, but no double holds it
        raise _NotStrictJson(f"{text[:40]} overflows a double")
    return value


# Built once: ``json.loads`` with hooks builds a decoder per call.
_STRICT_JSON = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def _decode_strictly(text: str) -> Any:
    """Strict JSON of at most ``jsontext.PARSE_DEPTH`` levels, else ``RecursionError`` (as
    ``_parse_nested`` raises beyond 32): measured first, never left to ``json``'s recursion."""
    if jsontext.nested_deeper_than(text, jsontext.PARSE_DEPTH):
        raise RecursionError
    return _STRICT_JSON.decode(text)


class _Odd:
    """What parsing one UserData met that is worth a warning."""

    __slots__ = ("surrogates",)

    def __init__(self) -> None:
        self.surrogates = False

    def text(self, value: str) -> str:
        fixed = well_formed_text(value)
        if fixed is not value:
            self.surrogates = True
        return fixed


def normalize_user_data(raw: Optional[str], *, job_id: str = "?") -> Any:
    """Parsed JSON when it parses to an object or an array (JSON strings nested inside parsed
    too); else the raw string, so "123", "NaN" or "1e999" stay strings.

    Parsing is strict: ``NaN``/``Infinity`` or a number no double holds keep the whole value
    a string, and so does nesting deeper than 32 levels. ICE's own example carries nested
    JSON that is not escaped, so the whole value does not parse: it is then kept verbatim
    rather than half-repaired. Lone surrogates become U+FFFD, as in every text field.
    """
    if raw is None or not raw.strip():
        return None
    if raw.lstrip()[:1] not in ("{", "["):  # only objects and arrays are parsed
        return normalize_text(raw, job_id=job_id, field="user_data")
    odd = _Odd()
    try:
        value = _decode_strictly(raw)
        if not _plain_json(raw):
            value = _parse_nested(value, odd, 1)
    except (ValueError, RecursionError) as exc:  # not JSON, not strict JSON, or nested too deep
        if isinstance(exc, (_NotStrictJson, RecursionError)):
            logger.warning("job %s: user_data is not strict JSON (%s); recorded as the raw string",
                           job_id, exc if isinstance(exc, _NotStrictJson) else "nested too deep")
        return normalize_text(raw, job_id=job_id, field="user_data")
    if odd.surrogates:
        logger.warning("job %s: user_data holds half a UTF-16 pair; recorded with U+FFFD in its place", job_id)
    return value


# a string value that starts like JSON: '"', then whitespace JSON allows between tokens, then '{' or '['
_NESTED_JSON_STRING = re.compile(r'"[ \t\n\r]*[{\[]')


def _plain_json(raw: str) -> bool:
    """True when ``_parse_nested`` would give back exactly what ``raw`` decodes to, so it can be skipped.

    That is: ASCII without a single escape (so no text can hold half a UTF-16 pair, nor start
    with an escaped blank), no string value starting like JSON (only a string's opening quote
    can be followed by ``{`` or ``[`` in text that decodes), and fewer brackets than the
    nesting ``_parse_nested`` refuses (however many of them sit inside strings).
    """
    return (raw.isascii() and "\\" not in raw and raw.count("{") + raw.count("[") < _MAX_USER_DATA_DEPTH - 1
            and _NESTED_JSON_STRING.search(raw) is None)


def _parse_nested(value: Any, odd: _Odd, depth: int) -> Any:
    if depth > _MAX_USER_DATA_DEPTH:
        raise RecursionError
    if isinstance(value, dict):
        return {(key if key.isascii() else odd.text(key)): _parse_nested(item, odd, depth + 1)
                for key, item in value.items()}
    if isinstance(value, list):
        return [_parse_nested(item, odd, depth + 1) for item in value]
    if isinstance(value, str):
        if not value.isascii():
            value = odd.text(value)
        if value.lstrip()[:1] in ("{", "["):
            try:
                return _parse_nested(_decode_strictly(value), odd, depth + 1)
            except ValueError:
                return value
    return value


def normalize(info: UploadInfo, *, source: str, request_id: str, now: str,
              digest: Optional[str] = None) -> JobRecord:
    """One ICE answer item -> a record. ``first_seen_at`` is settled by the merge. Never raises
    for anything ICE sends: odd fields become null or are escaped (see ``JobRecord``).
    ``digest``, when the caller has it, is ``answer_digest(info)``: the record carries it to the store."""
    job_id = info.job_id
    state = map_status(info.status)
    failed = state == "failed"
    return JobRecord(
        job_id=job_id,
        state=state,
        source=source,
        ice_request_id=well_formed_text(request_id),
        first_seen_at=now,
        updated_at=now,
        upload_url=normalize_text(info.upload_url, job_id=job_id, field="upload_url"),
        media_id=normalize_text(info.media_id, job_id=job_id, field="media_id"),
        ice_status=normalize_text(info.status, job_id=job_id, field="ice_status"),
        file_size=normalize_size(info.file_size, job_id=job_id),
        created_at=normalize_time(info.creation_time, job_id=job_id, field="created_at"),
        completed_at=normalize_time(info.complete_time, job_id=job_id, field="completed_at"),
        error_code=normalize_text(info.error_code, job_id=job_id, field="error_code") if failed else None,
        error_message=normalize_text(info.error_message, job_id=job_id, field="error_message") if failed else None,
        user_data=normalize_user_data(info.user_data, job_id=job_id),
        answer_digest=digest,
    )


def _readable_time(text: Optional[str]) -> Optional[datetime]:
    """``parse_time``, or None for a time we did not write (a marker edited by hand)."""
    try:
        return parse_time(text)
    except ValueError:
        return None


def not_found_record(job_id: str, *, source: str, request_id: str, now: str) -> JobRecord:
    """A tracked job that ICE does not know (yet): jobs can appear late, so not final."""
    return JobRecord(
        job_id=job_id, state="not_found", source=source, ice_request_id=request_id,
        first_seen_at=now, updated_at=now,
    )


def settled_by_ice(record: Optional[JobRecord]) -> bool:
    """The record is final by ICE's own answer (``succeeded`` / ``failed``): nothing left to track.

    ``expired`` is final too, but it is our verdict on a job ICE had not finished, not ICE's:
    a callback or check for such a job opens tracking again, so the sweep can record the
    real outcome when it comes (``merge`` lets any real final answer replace ``expired``).
    """
    return record is not None and record.final and record.state != "expired"


def expire_if_stale(record: JobRecord, *, tracked_since: Optional[str], now: datetime,
                    max_age: timedelta) -> JobRecord:
    """A job still not final after ``max_age`` becomes ``expired`` (final, no longer swept).

    Age counts from ICE's creation time, else from when we started tracking it.
    """
    if record.final:
        return record
    started = _readable_time(record.created_at) or _readable_time(tracked_since)
    if started is None or now - started < max_age:
        return record
    return replace(record, state="expired")


# ---------------------------------------------------------------- merge rule


@dataclass(frozen=True)
class MergeResult:
    record: JobRecord  # what the store holds afterwards
    changed: bool  # whether it must be written
    owed: bool = False  # the write took the record into a NOTIFY_STATES state: the store wrote an outbox entry


def merge(stored: Optional[JobRecord], fresh: JobRecord, *,
          tracked_since: Optional[str] = None) -> MergeResult:
    """Decide what the store keeps when ``fresh`` arrives.

    - a final record is never replaced by a non-final one (stale answers lose);
    - ``expired`` is our verdict on a non-final answer, so it never replaces a final one;
    - between two final records the later ``completed_at`` wins (no time counts as
      earliest, so a real outcome replaces ``expired``); a tie goes to the newer look;
    - the same information again changes nothing, so it is not written at all;
    - ``first_seen_at`` always survives from the stored record, or from when tracking began.
    """
    if stored is None:
        return MergeResult(replace(fresh, first_seen_at=tracked_since or fresh.first_seen_at), True)
    if stored.final and (not fresh.final or fresh.state == "expired"):
        return MergeResult(stored, False)
    if stored.final and fresh.final and _completed_key(fresh) < _completed_key(stored):
        return MergeResult(stored, False)
    if stored.same_information(fresh):
        return MergeResult(stored, False)
    return MergeResult(replace(fresh, first_seen_at=stored.first_seen_at), True)


def _completed_key(record: JobRecord) -> Tuple[int, str]:
    return (0, "") if record.completed_at is None else (1, record.completed_at)
