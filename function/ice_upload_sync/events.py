"""Raw FC event -> one plain request. Pure: no I/O, no SDK.

Every trigger kind of the contract (timer, HTTP callback, EventBridge / MNS, direct)
is recognized here by its shape. Anything we cannot read raises ``BadRequest`` with a
message naming what was wrong, before any API call or write.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union
from urllib.parse import urlsplit

from .errors import BadRequest

# ICE job IDs are 32 hex characters; we accept any short token that is safe as a
# batch item (no comma), a file name and a table key.
_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")
MAX_URL_LENGTH = 2048
MAX_KEYS_PER_REQUEST = 10_000  # an async payload is at most 128 KB anyway
URL_UPLOAD_EVENTS = frozenset({"UploadByURLComplete", "FileUploadComplete"})
_MNS_QUEUE_TYPE = "mns:Queue:SendMessage"


@dataclass(frozen=True)
class CallbackHint:
    """What a callback claimed; a hint for logs, never recorded as the truth."""

    event_type: Optional[str]
    job_id: Optional[str]
    media_id: Optional[str]
    status: Optional[str]


MAX_SHARDS = 1024


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: the jobs whose CRC-32 of ``job_id`` mod ``count`` is ``index``.

    CRC-32 and not ``hash()``: every FC instance, every Python must agree (``hash`` is salted).
    """

    index: int
    count: int

    def __contains__(self, job_id: str) -> bool:
        return shard_of(job_id, self.count) == self.index

    @property
    def cursor_name(self) -> str:
        return f"sweep-{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(job_id: str, count: int) -> int:
    return zlib.crc32(job_id.encode("utf-8")) % count


def parse_shard(value: Any) -> Shard:
    """``"i/K"`` with 0 <= i < K <= 1024."""
    match = re.fullmatch(r"\s*(\d{1,4})\s*/\s*(\d{1,4})\s*", value) if isinstance(value, str) else None
    if match is None:
        raise BadRequest(f"Shard must be a string \"i/K\" such as \"0/4\", got {str(value)[:40]!r}")
    index, count = int(match.group(1)), int(match.group(2))
    if not 1 <= count <= MAX_SHARDS or index >= count:
        raise BadRequest(f"Shard {index}/{count} is out of range: need 0 <= i < K <= {MAX_SHARDS}")
    return Shard(index, count)


@dataclass(frozen=True)
class SyncRequest:
    """What to check, whatever the trigger."""

    source: str  # "callback" | "timer" | "direct"
    job_ids: Tuple[str, ...] = ()
    upload_urls: Tuple[str, ...] = ()
    sweep: bool = False  # check every tracked job that is not final
    shard: Optional[Shard] = None  # a sweep of only this shard's jobs
    # ICE itself told us these jobs exist (a callback, a forwarded UploadMediaByURL
    # answer): record them as tracked before the lookup, so nothing is lost.
    track: bool = False
    hints: Tuple[CallbackHint, ...] = ()
    ignored: Tuple[str, ...] = ()  # well-formed messages that are not about URL uploads

    @property
    def empty(self) -> bool:
        return not (self.sweep or self.job_ids or self.upload_urls)


@dataclass(frozen=True)
class HttpCallback:
    """An FC3 HTTP-trigger event; its body is parsed only after authentication."""

    method: str
    raw_path: str
    domain_name: Optional[str]
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: str = ""
    is_base64: bool = False

    def header(self, name: str) -> Optional[str]:
        return self.headers.get(name.lower())

    def body_bytes(self) -> bytes:
        if not self.is_base64:
            return self.body.encode("utf-8")
        try:
            return base64.b64decode(self.body, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("HTTP body is marked base64 but does not decode") from None


Parsed = Union[SyncRequest, HttpCallback]


# ---------------------------------------------------------------- entry point


def decode_event(event: Union[bytes, bytearray, str, dict, list]) -> Any:
    """FC passes bytes; local runs may pass str, dict or list."""
    if isinstance(event, (dict, list)):
        return event
    if isinstance(event, (bytes, bytearray)):
        try:
            event = bytes(event).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("event is not UTF-8 text") from None
    if not isinstance(event, str):
        raise BadRequest(f"event must be JSON bytes, str, dict or list, not {type(event).__name__}")
    if not event.strip():
        raise BadRequest("event is empty")
    try:
        return json.loads(event)
    except ValueError as exc:
        raise BadRequest(f"event is not JSON: {exc}") from None


def parse_event(event: Union[bytes, bytearray, str, dict, list]) -> Parsed:
    data = decode_event(event)
    if isinstance(data, list):
        return _merge([_parse_stream_item(item, index) for index, item in enumerate(data)], "callback")
    if not isinstance(data, dict):
        raise BadRequest(f"event must be a JSON object or array, not {type(data).__name__}")
    if "triggerTime" in data and "triggerName" in data:
        return _parse_timer(data)
    if "requestContext" in data and "headers" in data and ("rawPath" in data or "version" in data):
        return _parse_http(data)
    if "specversion" in data:
        return _merge([_parse_cloud_event(data, 0)], "callback")
    if "TopicName" in data and "Message" in data:  # an MNS topic trigger
        return _merge([parse_callback_message(_json_text(data["Message"], "MNS Message"))], "callback")
    if _looks_like_callback(data):
        return _merge([parse_callback_message(data)], "callback")
    return parse_direct(data, source="direct")


# ---------------------------------------------------------------- timer and direct


def _parse_timer(data: Mapping[str, Any]) -> SyncRequest:
    payload = data.get("payload")
    if payload is None or (isinstance(payload, str) and not payload.strip()):
        return SyncRequest(source="timer", sweep=True)
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            raise BadRequest("timer payload must be empty or a JSON object with JobIds / UploadURLs / Shard") from None
    if not isinstance(payload, dict):
        raise BadRequest("timer payload must be empty or a JSON object with JobIds / UploadURLs / Shard")
    if not payload:
        return SyncRequest(source="timer", sweep=True)
    return parse_direct(payload, source="timer")


def _parse_shard_sweep(data: Mapping[str, Any], source: str) -> SyncRequest:
    """``{"Shard": "i/K"}``: a sweep of one shard (K timers, or an async fan-out invocation)."""
    others = sorted(str(key) for key in data if key != "Shard")
    if others:
        raise BadRequest("Shard selects part of a sweep and takes no other keys; got also " + ", ".join(others[:10]))
    return SyncRequest(source=source, sweep=True, shard=parse_shard(data["Shard"]))


def parse_direct(data: Mapping[str, Any], *, source: str) -> SyncRequest:
    """``{"JobIds"}``, ``{"UploadURLs"}`` or a forwarded ``UploadMediaByURL`` answer."""
    if "Shard" in data:
        return _parse_shard_sweep(data, source)
    if isinstance(data.get("body"), dict) and "UploadJobs" in data["body"]:
        data = data["body"]  # the SDK's response.to_map() shape: {"headers", "statusCode", "body"}
    known = {"JobIds", "UploadURLs", "UploadJobs", "RequestId"}
    if not known.intersection(data):
        raise BadRequest(
            "unrecognized event: expected a timer, HTTP, EventBridge/MNS or ICE callback event, "
            "or a direct request with JobIds, UploadURLs or UploadJobs; got keys "
            + ", ".join(sorted(map(str, data))[:10])
        )
    job_ids = _split(data.get("JobIds"), "JobIds")
    upload_urls = _split(data.get("UploadURLs"), "UploadURLs")
    uploads = data.get("UploadJobs")
    tracked: List[str] = []
    if uploads is not None:
        if not isinstance(uploads, list):
            raise BadRequest("UploadJobs must be a list of {JobId, SourceURL, MediaId}")
        for index, job in enumerate(uploads):
            if not isinstance(job, dict) or not job.get("JobId"):
                raise BadRequest(f"UploadJobs[{index}] has no JobId")
            tracked.append(str(job["JobId"]))
    if tracked and (job_ids or upload_urls):
        raise BadRequest("send either UploadJobs or JobIds / UploadURLs, not both")
    request = SyncRequest(
        source=source,
        job_ids=validate_job_ids(tracked or job_ids),
        upload_urls=validate_upload_urls(upload_urls),
        track=bool(tracked),
    )
    if request.empty:
        raise BadRequest("the request names no job: JobIds, UploadURLs and UploadJobs are all empty")
    return request


def _split(value: Any, name: str) -> List[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [item.strip() for item in value if item.strip()]
    raise BadRequest(f"{name} must be a comma-separated string or a list of strings")


def is_valid_job_id(job_id: str) -> bool:
    return bool(_JOB_ID.match(job_id))


def validate_job_ids(job_ids: Iterable[str]) -> Tuple[str, ...]:
    unique = tuple(dict.fromkeys(job_ids))
    if len(unique) > MAX_KEYS_PER_REQUEST:
        raise BadRequest(f"too many job IDs: {len(unique)} (at most {MAX_KEYS_PER_REQUEST} per request)")
    for job_id in unique:
        if not _JOB_ID.match(job_id):
            shown = job_id if len(job_id) <= 80 else job_id[:77] + "..."
            raise BadRequest(f"malformed job ID {shown!r}: expected 1-64 letters, digits, '-' or '_'")
    return unique


def validate_upload_urls(urls: Iterable[str]) -> Tuple[str, ...]:
    unique = tuple(dict.fromkeys(urls))
    if len(unique) > MAX_KEYS_PER_REQUEST:
        raise BadRequest(f"too many upload URLs: {len(unique)} (at most {MAX_KEYS_PER_REQUEST} per request)")
    for url in unique:
        shown = url if len(url) <= 80 else url[:77] + "..."
        if len(url) > MAX_URL_LENGTH:
            raise BadRequest(f"upload URL longer than {MAX_URL_LENGTH} characters: {shown!r}")
        if any(ch.isspace() or ord(ch) < 32 for ch in url):
            raise BadRequest(f"upload URL contains whitespace or control characters: {shown!r}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise BadRequest(f"upload URL must be an http(s) URL with a host: {shown!r}")
    return unique


# ---------------------------------------------------------------- HTTP trigger


def _parse_http(data: Mapping[str, Any]) -> HttpCallback:
    headers = data.get("headers") or {}
    if not isinstance(headers, dict):
        raise BadRequest("HTTP event headers must be an object")
    context = data.get("requestContext") or {}
    http = context.get("http") or {} if isinstance(context, dict) else {}
    body = data.get("body") or ""
    return HttpCallback(
        method=str(http.get("method") or "POST").upper(),
        raw_path=str(data.get("rawPath") or http.get("path") or "/"),
        domain_name=context.get("domainName") if isinstance(context, dict) else None,
        headers={str(k).lower(): str(v) for k, v in headers.items()},
        body=body if isinstance(body, str) else json.dumps(body),
        is_base64=bool(data.get("isBase64Encoded")),
    )


def parse_http_body(request: HttpCallback) -> SyncRequest:
    """An authenticated HTTP callback body: one ICE callback message."""
    message = decode_event(request.body_bytes())
    if not isinstance(message, dict):
        raise BadRequest("callback body must be a JSON object (an ICE callback message)")
    return _merge([parse_callback_message(message)], "callback")


# ---------------------------------------------------------------- EventBridge / MNS


def _parse_stream_item(item: Any, index: int) -> SyncRequest:
    if isinstance(item, dict) and "specversion" in item:
        return _parse_cloud_event(item, index)
    if isinstance(item, dict) and _looks_like_callback(item):
        return _merge([parse_callback_message(item)], "callback")
    raise BadRequest(f"event[{index}] is neither a CloudEvent nor an ICE callback message")


def _parse_cloud_event(event: Mapping[str, Any], index: int) -> SyncRequest:
    where = f"event[{index}]"
    if "data" not in event:
        raise BadRequest(f"{where}: CloudEvent has no data")
    data = event["data"]
    if event.get("type") == _MNS_QUEUE_TYPE or (isinstance(data, dict) and "messageBody" in data):
        if not isinstance(data, dict) or "messageBody" not in data:
            raise BadRequest(f"{where}: MNS queue event data has no messageBody")
        message = _json_text(data["messageBody"], f"{where} messageBody")
    elif isinstance(data, (str, bytes)):
        message = _json_text(data, f"{where} data")
    else:
        message = data
    if not isinstance(message, dict):
        raise BadRequest(f"{where}: message is not a JSON object (an ICE callback message)")
    return _merge([parse_callback_message(message)], "callback")


def _json_text(value: Any, where: str) -> Any:
    """A JSON string, or base64 of one (MNS triggers that do not decode the body)."""
    if isinstance(value, (dict, list)):
        return value
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        raise BadRequest(f"{where} must be a JSON string")
    try:
        return json.loads(value)
    except ValueError:
        pass
    try:
        return json.loads(base64.b64decode(value, validate=True).decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadRequest(f"{where} is neither JSON nor base64-encoded JSON") from None


# ---------------------------------------------------------------- ICE callback message


def _strip_keys(data: Mapping[str, Any]) -> Dict[str, Any]:
    # VOD's own examples carry keys with a trailing space ("SourceURL ").
    return {str(key).strip(): value for key, value in data.items()}


def _looks_like_callback(data: Mapping[str, Any]) -> bool:
    keys = {str(key).strip() for key in data}
    return bool({"EventType", "MessageBody"} & keys) or ("JobId" in keys and "JobIds" not in keys)


def parse_callback_message(message: Mapping[str, Any]) -> SyncRequest:
    """ICE's ``{EventType, MessageBody: {JobId, ...}}`` or VOD's flat ``{EventType, JobId, ...}``."""
    if not isinstance(message, dict):
        raise BadRequest("callback message must be a JSON object")
    message = _strip_keys(message)
    event_type = message.get("EventType")
    body: Any = message.get("MessageBody", message)
    if isinstance(body, str):
        body = _json_text(body, "MessageBody")
    if not isinstance(body, dict):
        raise BadRequest("callback MessageBody must be an object")
    body = _strip_keys(body)
    job_id = body.get("JobId")
    source_url = body.get("SourceURL") or body.get("UploadURL")
    if event_type is not None and event_type not in URL_UPLOAD_EVENTS:
        return SyncRequest(source="callback", ignored=(str(event_type),))
    if not job_id and not source_url:
        if event_type == "FileUploadComplete":  # a file upload, not a URL upload job
            return SyncRequest(source="callback", ignored=(str(event_type),))
        raise BadRequest(f"callback message ({event_type or 'no EventType'}) has no JobId")
    hint = CallbackHint(
        event_type=event_type,
        job_id=str(job_id) if job_id else None,
        media_id=body.get("MediaId") or body.get("VideoId"),
        status=body.get("Status"),
    )
    return SyncRequest(
        source="callback",
        job_ids=validate_job_ids([str(job_id)] if job_id else []),
        upload_urls=validate_upload_urls([] if job_id else [str(source_url)]),
        track=bool(job_id),
        hints=(hint,),
    )


def _merge(requests: List[SyncRequest], source: str) -> SyncRequest:
    """A batch of messages is handled as one request."""
    if not requests:
        raise BadRequest("the event batch is empty")
    return SyncRequest(
        source=source,
        job_ids=validate_job_ids(j for r in requests for j in r.job_ids),
        upload_urls=validate_upload_urls(u for r in requests for u in r.upload_urls),
        track=any(r.track for r in requests),
        hints=tuple(h for r in requests for h in r.hints),
        ignored=tuple(i for r in requests for i in r.ignored),
    )
