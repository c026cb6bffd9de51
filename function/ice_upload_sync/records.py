"""ICE's answer -> the normalized job record, and the merge rule. Pure: no I/O.

Everything ICE sends is a string and its public reference mixes formats, so each
normalizer accepts what ICE has been seen to send and turns anything else into
``None`` (with a warning) rather than guessing.
"""
from __future__ import annotations

import hashlib
import json
import logging
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
    """The normalized record; field names and order are the public schema."""

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
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _information(record: JobRecord) -> tuple:
    return (
        record.job_id, record.state, record.upload_url, record.media_id, record.ice_status,
        record.file_size, record.created_at, record.completed_at, record.error_code,
        record.error_message, json.dumps(record.user_data, sort_keys=True),
    )


# ---------------------------------------------------------------- normalizers


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


def normalize_time(raw: Optional[str]) -> Optional[str]:
    """Any time ICE sends -> ``YYYY-MM-DDTHH:MM:SSZ`` (UTC). Offset-less times are UTC."""
    text = (raw or "").strip()
    if not text:
        return None
    if text.isdigit() and len(text) in (10, 13):  # epoch seconds or milliseconds
        seconds = int(text) / (1000 if len(text) == 13 else 1)
        return format_time(datetime.fromtimestamp(seconds, tz=timezone.utc))
    candidate = _FRACTION.sub("", text, count=1)
    offset = timezone.utc
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1]
    else:
        tail = re.search(r"([+-])(\d{2}):?(\d{2})$", candidate)
        if tail and len(candidate) > 19:
            sign = 1 if tail.group(1) == "+" else -1
            offset = timezone(sign * timedelta(hours=int(tail.group(2)), minutes=int(tail.group(3))))
            candidate = candidate[: tail.start()]
    for fmt in _TIME_FORMATS:
        try:
            parsed = datetime.strptime(candidate, fmt).replace(tzinfo=offset)
        except ValueError:
            continue
        return format_time(parsed)
    logger.warning("unparseable ICE time %r recorded as null", raw)
    return None


def format_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: Optional[str]) -> Optional[datetime]:
    """Parse a time this module wrote; ``None`` for ``None``."""
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


def normalize_size(raw: Optional[str]) -> Optional[int]:
    text = (raw or "").strip()
    if not text:
        return None
    try:
        size = int(text)
    except ValueError:
        try:
            size = int(float(text))
        except ValueError:
            logger.warning("unparseable FileSize %r recorded as null", raw)
            return None
    return size if size >= 0 else None


def normalize_user_data(raw: Optional[str]) -> Any:
    """Parsed JSON when it parses, with JSON strings nested inside parsed too; else the raw string.

    ICE's own example carries nested JSON that is not escaped, so the whole value
    does not parse: it is then kept verbatim rather than half-repaired.
    """
    if raw is None or not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return raw
    return _parse_nested(value)


def _parse_nested(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _parse_nested(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_parse_nested(item) for item in value]
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            return _parse_nested(json.loads(value))
        except ValueError:
            return value
    return value


def _blank_to_none(value: Optional[str]) -> Optional[str]:
    return value if value is not None and value.strip() else None


def normalize(info: UploadInfo, *, source: str, request_id: str, now: str) -> JobRecord:
    """One ICE answer item -> a record. ``first_seen_at`` is settled by the merge."""
    state = map_status(info.status)
    failed = state == "failed"
    return JobRecord(
        job_id=info.job_id,
        state=state,
        source=source,
        ice_request_id=request_id,
        first_seen_at=now,
        updated_at=now,
        upload_url=_blank_to_none(info.upload_url),
        media_id=_blank_to_none(info.media_id),
        ice_status=_blank_to_none(info.status),
        file_size=normalize_size(info.file_size),
        created_at=normalize_time(info.creation_time),
        completed_at=normalize_time(info.complete_time),
        error_code=_blank_to_none(info.error_code) if failed else None,
        error_message=_blank_to_none(info.error_message) if failed else None,
        user_data=normalize_user_data(info.user_data),
    )


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
    started = parse_time(record.created_at) or parse_time(tracked_since)
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
