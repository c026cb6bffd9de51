"""Raw FC event -> one plain request. Pure: no I/O, no SDK.

Every trigger kind of the contract (timer, HTTP callback, EventBridge / MNS, direct)
is recognized here by its shape. Anything we cannot read raises ``BadRequest`` with a
message naming what was wrong, before any API call or write.

Bad input is refused, never coerced (contract section 2): a ``JobId``, ``Status``,
``EventType``, ``SourceURL`` or ``MediaId`` that is not a string; a job ID with any character
outside letters, digits, ``-`` and ``_``; a key given twice in one object; ``NaN`` /
``Infinity``; more than ``MAX_DEPTH`` levels of nesting; a callback body or queue message
larger than ``MAX_MESSAGE_SIZE``. Every JSON text goes through ``_load_json``: its size is
bounded and its nesting measured without recursion (``jsontext``) before ``json.loads`` runs,
so the parser never recurses near the interpreter's limit; an event given as a value is
walked level by level against ``MAX_DEPTH``. In an MNS / EventBridge batch a malformed
message is refused alone (``SyncRequest.refused``); the HTTP trigger's event is never refused
before authentication.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from dataclasses import dataclass, field, replace
from typing import Any, Dict, FrozenSet, Iterable, List, Mapping, Optional, Tuple, Union
from urllib.parse import urlsplit

from . import jsontext
from .errors import BadRequest, PayloadTooLarge
from .redact import redact_urls

# ICE job IDs are 32 hex characters; we accept any short token that is safe as a
# batch item (no comma), a file name and a table key. Always ``fullmatch``: ``$`` also
# matches before a trailing newline.
_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,63}")
# ICE's event names are CamelCase words (UploadByURLComplete, ProduceMediaComplete, ...).
_EVENT_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9_.:\-]{0,63}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_PRINTABLE_ID = re.compile(r"[!-~]{1,128}")  # a message ID worth showing in a log line
# Our deepest legitimate shape is 5 levels (a batch of CloudEvents whose data is a callback
# with an object MessageBody holding an object UserData); 10 leaves room for user data.
MAX_DEPTH = 10
# The event as a whole is measured against this before it is parsed (``jsontext``): an HTTP
# trigger's event, however odd, must reach authentication to be answered, and 500 levels is
# still far from the recursion limit (1,000) that ``json`` must never reach.
EVENT_DEPTH = 500
# An ICE callback is a few hundred bytes and an MNS message at most 64 KB (88 KB in base64).
# Bounds each callback body and queue message; the event as a whole is bounded by FC
# (32 MB synchronous, 128 KB asynchronous).
MAX_MESSAGE_SIZE = 256 * 1024
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
        raise BadRequest(f"Shard must be a string \"i/K\" such as \"0/4\", got {_show(value)}")
    index, count = int(match.group(1)), int(match.group(2))
    if not 1 <= count <= MAX_SHARDS or index >= count:
        raise BadRequest(f"Shard {index}/{count} is out of range: need 0 <= i < K <= {MAX_SHARDS}")
    return Shard(index, count)


@dataclass(frozen=True)
class RefusedMessage:
    """A malformed message of an MNS / EventBridge batch, refused alone."""

    index: int  # its position in the batch
    message_id: Optional[str]  # the MNS messageId (``data.messageId``), else the CloudEvent's ``id``
    error: str

    def to_dict(self) -> Dict[str, Any]:
        return {"index": self.index, "message_id": self.message_id, "error": self.error}


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
    refused: Tuple[RefusedMessage, ...] = ()  # malformed messages of a batch; the caller raises after the rest

    @property
    def empty(self) -> bool:
        return not (self.sweep or self.job_ids or self.upload_urls)


@dataclass(frozen=True)
class HttpCallback:
    """An FC3 HTTP-trigger event; its body is parsed only after authentication.

    Built from any event of the HTTP trigger's shape without raising: what is wrong with the
    event itself is kept in ``problems`` (refused with 400 once the caller is authenticated),
    and a header whose value is not one string (a list, a number, null, the same name twice
    in different case) is left out of ``headers`` and named in ``malformed_headers``.
    """

    method: str
    raw_path: str
    domain_name: Optional[str]
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    body: str = ""
    is_base64: bool = False
    malformed_headers: FrozenSet[str] = frozenset()  # lower-case names
    problems: Tuple[str, ...] = ()

    def header(self, name: str) -> Optional[str]:
        return self.headers.get(name.lower())

    def body_bytes(self) -> bytes:
        if not self.is_base64:
            if len(self.body) > MAX_MESSAGE_SIZE:  # checked here too: encoding it would cost first
                raise PayloadTooLarge(f"HTTP body is larger than {MAX_MESSAGE_SIZE} bytes")
            if not is_text(self.body):
                raise BadRequest("HTTP body is not valid text (it holds a lone surrogate)")
            return self.body.encode("utf-8")
        if len(self.body) > _base64_length(MAX_MESSAGE_SIZE):
            raise PayloadTooLarge(f"HTTP body is larger than {MAX_MESSAGE_SIZE} bytes")
        try:
            return base64.b64decode(self.body, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("HTTP body is marked base64 but does not decode") from None


Parsed = Union[SyncRequest, HttpCallback]


# ---------------------------------------------------------------- entry point


def decode_event(event: Union[bytes, bytearray, str, dict, list]) -> Any:
    """FC passes bytes; local runs may pass str, dict or list.

    Not bounded in size here: FC delivers at most 32 MB, and the HTTP trigger's event (a
    callback body of any size a stranger sends, inside FC's own JSON) must reach
    authentication rather than be refused unanswered. Its depth is measured against
    ``EVENT_DEPTH`` before it is parsed, and checked per message against ``MAX_DEPTH`` after.
    """
    if isinstance(event, (dict, list)):
        return event
    if not isinstance(event, (bytes, bytearray, str)):
        raise BadRequest(f"event must be JSON bytes, str, dict or list, not {type(event).__name__}")
    return _load_json(event, "event", max_depth=EVENT_DEPTH)


def parse_event(event: Union[bytes, bytearray, str, dict, list]) -> Parsed:
    try:
        data = decode_event(event)
    except _NotStrictJson as exc:
        # Refused as it is, unless it is the HTTP trigger's event: a stranger's request is
        # answered (401, or 400 once authenticated), never raised.
        lenient = _load_leniently(event)
        if not _is_http_event(lenient):
            raise
        request = _parse_http(lenient, problems=[str(exc)])
        # which of two values was meant cannot be told: no header of this event is believed
        return replace(request, headers={}, malformed_headers=request.malformed_headers | set(request.headers))
    if isinstance(data, list):
        return _parse_batch(data)
    if not isinstance(data, dict):
        raise BadRequest(f"event must be a JSON object or array, not {_json_type(data)}")
    if _is_http_event(data):
        return _parse_http(data)  # never raises: its faults are answered after authentication
    _refuse_deep(data, "event")
    if "triggerTime" in data and "triggerName" in data:
        return _parse_timer(data)
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
        payload = _load_json(payload, "timer payload", max_size=MAX_MESSAGE_SIZE, max_depth=MAX_DEPTH)
    if not isinstance(payload, dict):
        raise BadRequest("timer payload must be empty or a JSON object with JobIds / UploadURLs / Shard")
    if not payload:
        return SyncRequest(source="timer", sweep=True)
    return parse_direct(payload, source="timer")


def _parse_shard_sweep(data: Mapping[str, Any], source: str) -> SyncRequest:
    """``{"Shard": "i/K"}``: a sweep of one shard (K timers, or an async fan-out invocation)."""
    others = sorted(_show(key) for key in data if key != "Shard")
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
            + ", ".join(sorted(map(_show, data))[:10])
        )
    job_ids = _split(data.get("JobIds"), "JobIds")
    upload_urls = _split(data.get("UploadURLs"), "UploadURLs")
    uploads = data.get("UploadJobs")
    tracked: List[str] = []
    if uploads is not None:
        if not isinstance(uploads, list):
            raise BadRequest("UploadJobs must be a list of {JobId, SourceURL, MediaId}")
        for index, job in enumerate(uploads):
            job_id = _text(job, "JobId", f"UploadJobs[{index}].JobId") if isinstance(job, dict) else None
            if not job_id:
                raise BadRequest(f"UploadJobs[{index}] has no JobId")
            tracked.append(job_id)
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
    if isinstance(value, str):  # "a,b" or "a, b": spaces around commas are the list's layout
        return [item.strip(" ") for item in value.split(",") if item.strip(" ")]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)  # items are taken as they are: " a1" is not a job ID
    raise BadRequest(f"{name} must be a comma-separated string or a list of strings")


def is_valid_job_id(job_id: Any) -> bool:
    return isinstance(job_id, str) and _JOB_ID.fullmatch(job_id) is not None


def validate_job_ids(job_ids: Iterable[str]) -> Tuple[str, ...]:
    unique = tuple(dict.fromkeys(job_ids))
    if len(unique) > MAX_KEYS_PER_REQUEST:
        raise BadRequest(f"too many job IDs: {len(unique)} (at most {MAX_KEYS_PER_REQUEST} per request)")
    for job_id in unique:
        if not isinstance(job_id, str):
            raise BadRequest(f"a job ID must be a string, not {_json_type(job_id)}")
        if not _JOB_ID.fullmatch(job_id):
            shown = redact_urls(job_id)  # a URL sent as a job ID
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise BadRequest(f"malformed job ID {shown!r}: expected 1-64 letters, digits, '-' or '_'")
    return unique


def validate_upload_urls(urls: Iterable[str]) -> Tuple[str, ...]:
    unique = tuple(dict.fromkeys(urls))
    if len(unique) > MAX_KEYS_PER_REQUEST:
        raise BadRequest(f"too many upload URLs: {len(unique)} (at most {MAX_KEYS_PER_REQUEST} per request)")
    for url in unique:
        if not isinstance(url, str):
            raise BadRequest(f"an upload URL must be a string, not {_json_type(url)}")
        shown = redact_urls(url)  # a presigned URL's query carries credentials: never in an error
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        if len(url) > MAX_URL_LENGTH:
            raise BadRequest(f"upload URL longer than {MAX_URL_LENGTH} characters: {shown!r}")
        if any(ch.isspace() or ord(ch) < 32 for ch in url):
            raise BadRequest(f"upload URL contains whitespace or control characters: {shown!r}")
        if not is_text(url):
            raise BadRequest(f"upload URL is not valid text (it holds a lone surrogate): {shown!r}")
        try:
            parts = urlsplit(url)
        except ValueError:  # e.g. "http://[::1": an IPv6 host without its bracket
            raise BadRequest(f"upload URL does not parse: {shown!r}") from None
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise BadRequest(f"upload URL must be an http(s) URL with a host: {shown!r}")
    return unique


# ---------------------------------------------------------------- HTTP trigger


def _is_http_event(data: Any) -> bool:
    return (isinstance(data, dict) and "requestContext" in data and "headers" in data
            and ("rawPath" in data or "version" in data))


def _parse_http(data: Mapping[str, Any], problems: Optional[List[str]] = None) -> HttpCallback:
    """The HTTP trigger's event, whatever it holds; see ``HttpCallback`` for where faults go."""
    problems = [] if problems is None else problems

    def member(container: Mapping[str, Any], name: str, kind: type, default: Any, where: str) -> Any:
        value = container.get(name)
        if value is None:
            return default
        if isinstance(value, kind):
            return value
        problems.append(f"{where} must be {_KIND_NAMES[kind]}, not {_json_type(value)}")
        return default

    context = member(data, "requestContext", dict, {}, "requestContext")
    http = member(context, "http", dict, {}, "requestContext.http")
    headers: Dict[str, str] = {}
    malformed = set()
    for name, value in member(data, "headers", dict, {}, "headers").items():
        if not isinstance(name, str):
            problems.append("header names must be strings")
            continue
        name = name.lower()
        if isinstance(value, str) and name not in headers and name not in malformed:
            headers[name] = value
        else:
            headers.pop(name, None)
            malformed.add(name)
    return HttpCallback(
        method=member(http, "method", str, "POST", "requestContext.http.method").upper(),
        raw_path=(member(data, "rawPath", str, "", "rawPath")
                  or member(http, "path", str, "", "requestContext.http.path") or "/"),
        domain_name=member(context, "domainName", str, None, "requestContext.domainName"),
        headers=headers,
        body=member(data, "body", str, "", "body"),
        is_base64=member(data, "isBase64Encoded", bool, False, "isBase64Encoded"),
        malformed_headers=frozenset(malformed),
        problems=tuple(problems),
    )


def parse_http_body(request: HttpCallback) -> SyncRequest:
    """An authenticated HTTP callback body: one ICE callback message."""
    if request.problems:
        raise BadRequest("malformed HTTP event: " + "; ".join(request.problems))
    message = _load_json(request.body_bytes(), "callback body", max_size=MAX_MESSAGE_SIZE, max_depth=MAX_DEPTH)
    if not isinstance(message, dict):
        raise BadRequest("callback body must be a JSON object (an ICE callback message)")
    return _merge([parse_callback_message(message)], "callback")


# ---------------------------------------------------------------- EventBridge / MNS


def _parse_batch(items: List[Any]) -> SyncRequest:
    """An event-streaming batch: each malformed message is refused alone, the others are kept.

    Every message refused: ``BadRequest`` (nothing to do). Some: a request for the others
    that carries the refused ones, so the caller records the rest and then raises.
    """
    if not items:
        raise BadRequest("the event batch is empty")
    requests: List[SyncRequest] = []
    refused: List[RefusedMessage] = []
    for index, item in enumerate(items):
        try:
            _refuse_deep(item, f"event[{index}]")
            requests.append(_parse_stream_item(item, index))
        except BadRequest as exc:
            refused.append(RefusedMessage(index, _message_id(item), _shorten(str(exc), 300)))
    if not requests:
        shown = "; ".join(f"#{m.index} ({m.message_id or 'no messageId'}): {m.error}" for m in refused[:5])
        raise BadRequest(f"every message of the batch was refused ({len(refused)}): {shown}"
                         + (" ..." if len(refused) > 5 else ""))
    return _merge(requests, "callback", refused=tuple(refused))


def _message_id(item: Any) -> Optional[str]:
    """What identifies a message in the logs: MNS's ``data.messageId``, else the CloudEvent ``id``."""
    if not isinstance(item, dict):
        return None
    data = item.get("data")
    for candidate in (data.get("messageId") if isinstance(data, dict) else None, item.get("id")):
        if isinstance(candidate, str) and _PRINTABLE_ID.fullmatch(candidate):
            return candidate
    return None


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
        return value  # already decoded (its depth was checked with the event's)
    if isinstance(value, (bytes, bytearray)):
        return _load_json(value, where, max_size=MAX_MESSAGE_SIZE, max_depth=MAX_DEPTH)
    if not isinstance(value, str):
        raise BadRequest(f"{where} must be a JSON string, not {_json_type(value)}")
    if len(value) > _base64_length(MAX_MESSAGE_SIZE):
        raise PayloadTooLarge(f"{where} is larger than {MAX_MESSAGE_SIZE} bytes")
    # A JSON message starts with "{", which base64 never holds: no guessing which one it is.
    if not _BASE64.fullmatch(value.strip()):
        return _load_json(value, where, max_size=MAX_MESSAGE_SIZE, max_depth=MAX_DEPTH)
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(f"{where} is neither JSON nor base64-encoded JSON") from None
    return _load_json(decoded, f"{where} (base64)", max_size=MAX_MESSAGE_SIZE, max_depth=MAX_DEPTH)


# ---------------------------------------------------------------- ICE callback message


def _strip_keys(data: Mapping[str, Any], where: str) -> Dict[str, Any]:
    """Keys without surrounding spaces: VOD's own examples carry keys such as "SourceURL "."""
    stripped: Dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise BadRequest(f"{where} has a key that is not a string")
        name = key.strip()
        if name in stripped:
            raise BadRequest(f"{where} has the key {_show(name)} twice")
        stripped[name] = value
    return stripped


def _looks_like_callback(data: Mapping[str, Any]) -> bool:
    keys = {key.strip() for key in data if isinstance(key, str)}
    return bool({"EventType", "MessageBody"} & keys) or ("JobId" in keys and "JobIds" not in keys)


def parse_callback_message(message: Mapping[str, Any]) -> SyncRequest:
    """ICE's ``{EventType, MessageBody: {JobId, ...}}`` or VOD's flat ``{EventType, JobId, ...}``."""
    if not isinstance(message, dict):
        raise BadRequest("callback message must be a JSON object")
    message = _strip_keys(message, "callback message")
    event_type = _text(message, "EventType")
    if event_type is not None:
        if not _EVENT_TYPE.fullmatch(event_type):
            raise BadRequest(f"EventType {_show(event_type)} is not an event name")
        if event_type not in URL_UPLOAD_EVENTS:  # acknowledged, its body unread: not ours to judge
            return SyncRequest(source="callback", ignored=(event_type,))
    body: Any = message.get("MessageBody", message)
    if isinstance(body, str):
        body = _json_text(body, "MessageBody")
    if not isinstance(body, dict):
        raise BadRequest("callback MessageBody must be an object")
    body = _strip_keys(body, "MessageBody")
    job_id = _text(body, "JobId")
    source_url = _text(body, "SourceURL") or _text(body, "UploadURL")
    hint = CallbackHint(
        event_type=event_type,
        job_id=job_id or None,
        media_id=_text(body, "MediaId") or _text(body, "VideoId"),
        status=_text(body, "Status"),
    )
    if not job_id and not source_url:
        if event_type == "FileUploadComplete":  # a file upload, not a URL upload job
            return SyncRequest(source="callback", ignored=(event_type,))
        raise BadRequest(f"callback message ({event_type or 'no EventType'}) has no JobId")
    return SyncRequest(
        source="callback",
        job_ids=validate_job_ids([job_id] if job_id else []),
        upload_urls=validate_upload_urls([] if job_id else [source_url]),
        track=bool(job_id),
        hints=(hint,),
    )


def _merge(requests: List[SyncRequest], source: str, *, refused: Tuple[RefusedMessage, ...] = ()) -> SyncRequest:
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
        refused=refused,
    )


# ---------------------------------------------------------------- reading JSON


def _load_json(raw: Union[bytes, bytearray, str], what: str, *, max_size: Optional[int] = None,
               max_depth: int = jsontext.PARSE_DEPTH) -> Any:
    """JSON text -> value, or ``BadRequest``: the only place this module parses JSON.

    ``max_size`` (bytes, or characters of a str) is checked before anything is decoded, and
    ``max_depth`` before ``json`` parses: text nested deeper is refused unparsed, since ``json``
    recursing to the interpreter's limit breaks whatever else runs on the stack meanwhile. A
    key given twice in one object and ``NaN`` / ``Infinity`` are refused: strict JSON only.
    """
    if max_size is not None and len(raw) > max_size:
        raise PayloadTooLarge(f"{what} is larger than {max_size} bytes")
    if isinstance(raw, (bytes, bytearray)):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"{what} is not UTF-8 text") from None
    else:
        text = raw
    if not text.strip():
        raise BadRequest(f"{what} is empty")
    if jsontext.nested_deeper_than(text, max_depth):  # exact for JSON: no walk of the value after
        raise BadRequest(f"{what} is nested deeper than {max_depth} levels")
    try:
        return json.loads(text, object_pairs_hook=_object_of_unique_keys, parse_constant=_refuse_constant)
    except BadRequest:
        raise
    except ValueError as exc:  # JSONDecodeError, and integers of more digits than Python converts
        raise BadRequest(f"{what} is not JSON: {_shorten(str(exc), 200)}") from None


class _NotStrictJson(BadRequest):
    """JSON that ``json`` reads but we refuse: ``NaN`` / ``Infinity``, a key given twice."""


def _object_of_unique_keys(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise _NotStrictJson(f"the key {_show(twice)} appears twice in one object")
    return value


def _refuse_constant(name: str) -> Any:
    raise _NotStrictJson(f"{name} is not JSON")


def _load_leniently(event: Union[bytes, bytearray, str]) -> Any:
    """What ``json`` alone makes of an event refused as not strict JSON; None if even that fails."""
    try:
        text = bytes(event).decode("utf-8") if isinstance(event, (bytes, bytearray)) else event
        return jsontext.loads(text, max_depth=EVENT_DEPTH)
    except ValueError:
        return None


def _refuse_deep(value: Any, what: str, max_depth: int = MAX_DEPTH) -> None:
    """Refuse more than ``max_depth`` levels of objects and arrays, walked a level at a time."""
    level = [value] if isinstance(value, (dict, list)) else []
    depth = 0
    while level:
        depth += 1
        if depth > max_depth:
            raise BadRequest(f"{what} is nested deeper than {max_depth} levels")
        level = [child for node in level for child in (node.values() if isinstance(node, dict) else node)
                 if isinstance(child, (dict, list))]


def _text(fields: Mapping[str, Any], name: str, where: Optional[str] = None) -> Optional[str]:
    """A string field, None when absent or null; any other type is refused, never converted."""
    value = fields.get(name)
    if value is None or isinstance(value, str):
        return value
    raise BadRequest(f"{where or name} must be a string, not {_json_type(value)}")


def is_text(value: str) -> bool:
    """Whether ``value`` encodes as UTF-8 (JSON's "\\ud800" decodes to a lone surrogate, which does not)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_KIND_NAMES = {str: "a string", dict: "an object", list: "an array", bool: "true or false"}


def _json_type(value: Any) -> str:
    """How a value is named in an error: its JSON kind, never its content."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    return _KIND_NAMES.get(type(value)) or type(value).__name__


def _show(value: Any, limit: int = 40) -> str:
    """A value for an error message: short, quoted, and never a surprise (no str() of any object)."""
    if not isinstance(value, str):
        return _json_type(value)
    return repr(_shorten(redact_urls(value), limit))


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _base64_length(size: int) -> int:
    return 4 * ((size + 2) // 3)
