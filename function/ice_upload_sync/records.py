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
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping, Optional, Tuple

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
STATES = ("pending", "processing", "succeeded", "failed", "not_found", "expired")
FINAL_STATES = frozenset({"succeeded", "failed", "expired"})
SOURCES = ("callback", "timer", "direct")

_SUCCESS_WORDS = frozenset({"success", "upload_success", "normal", "uploadsucc"})
_KNOWN_IN_FLIGHT_WORDS = frozenset(
    {"processing", "downloading", "download_success", "uploading", "transcoding"}
)


@dataclass(frozen=True)
class UploadInfo:
    """One item of ``URLUploadInfoList``, as ICE sent it (all strings, any may be missing)."""

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
        def get(name: str) -> Optional[str]:
            value = item.get(name)
            return None if value is None else str(value)

        return cls(
            job_id=str(item.get("JobId") or ""),
            upload_url=get("UploadURL"),
            media_id=get("MediaId"),
            status=get("Status"),
            creation_time=get("CreationTime"),
            complete_time=get("CompleteTime"),
            error_code=get("ErrorCode"),
            error_message=get("ErrorMessage"),
            user_data=get("UserData"),
            file_size=get("FileSize"),
        )


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

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def to_dict(self) -> dict:
        data = asdict(self)
        return {
            "schema_version": data["schema_version"],
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
            "user_data": data["user_data"],
            "source": self.source,
            "ice_request_id": self.ice_request_id,
            "first_seen_at": self.first_seen_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobRecord:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in names})

    def same_information(self, other: JobRecord) -> bool:
        """True when only bookkeeping differs (when and why we looked, not what ICE said)."""
        return _information(self) == _information(other)


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
    try:
        normalized = _parse_ice_time(text)
    except (ValueError, OverflowError, OSError):  # out of range for datetime, or for the platform's clock
        normalized = None
    if normalized is None:
        logger.warning("job %s: %s %r is not a time we can read; recorded as null", job_id, field, text[:80])
    return normalized


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
    """Parse a time this module wrote; ``None`` for ``None``."""
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


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
        value = _parse_nested(_STRICT_JSON.decode(raw), odd, 1)
    except (ValueError, RecursionError) as exc:  # not JSON, not strict JSON, or nested too deep
        if isinstance(exc, (_NotStrictJson, RecursionError)):
            logger.warning("job %s: user_data is not strict JSON (%s); recorded as the raw string",
                           job_id, exc if isinstance(exc, _NotStrictJson) else "nested too deep")
        return normalize_text(raw, job_id=job_id, field="user_data")
    if odd.surrogates:
        logger.warning("job %s: user_data holds half a UTF-16 pair; recorded with U+FFFD in its place", job_id)
    return value


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
                return _parse_nested(_STRICT_JSON.decode(value), odd, depth + 1)
            except ValueError:
                return value
    return value


def normalize(info: UploadInfo, *, source: str, request_id: str, now: str) -> JobRecord:
    """One ICE answer item -> a record. ``first_seen_at`` is settled by the merge. Never raises
    for anything ICE sends: odd fields become null or are escaped (see ``JobRecord``)."""
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
