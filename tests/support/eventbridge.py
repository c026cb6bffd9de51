"""A local stand-in for Alibaba Cloud EventBridge's OpenAPI (2020-04-01), ``PutEvents`` only.

The unmodified official SDK (``alibabacloud_eventbridge20200401``) talks to it over plain HTTP on
loopback: an RPC-style ``POST /`` whose form body holds ``EventBusName`` and ``EventList`` (the
event list as one JSON string), signed with ``ACS3-HMAC-SHA256``. Every request is authenticated
by :class:`tests.support.acs3.Acs3Verifier`, exactly like the ICE emulator's; accepted events are
kept per bus for the tests to read (:meth:`EventBridgeEmulator.events`), every answered request is
recorded (:meth:`EventBridgeEmulator.calls`), and faults and latency can be injected.

Where the answers come from (so that a test failing here means the same thing as in production):

* Limits, from https://www.alibabacloud.com/help/en/eventbridge/product-overview/limits (also
  https://www.alibabacloud.com/help/en/eventbridge/latest/limits): at most 16 events per request,
  256 KB per event, 1 MB per request; ``Id`` at most 128 characters, starting with a letter or digit,
  then letters, digits and hyphens; ``Source`` at most 128, ``Subject`` 512, ``Type`` 64 characters.
  An event's size is counted as Alibaba's "Calculate the size of events published by PutEvents"
  page counts it: the UTF-8 bytes of every attribute plus those of the data. (That page also says a
  whole request must stay under 256 KB; the limits page says 1 MB. The emulator follows the limits
  page; :attr:`EventBridgeEmulator.max_request_bytes` can be lowered.)
* Gateway errors, from https://www.alibabacloud.com/help/en/eventbridge/error-codes: HTTP 429
  ``TooManyRequests`` for throttling, and HTTP 403 ``InvalidAccessKeyId``, ``SecurityTokenInvalid``
  and ``SignatureDoesNotMatch`` (the other signature checks answer like the ICE emulator's).
* Service errors: ``EventBusNotExist`` ("The event bus [name] not existed!"), ``EventIdEmpty``,
  ``EventSourceInvalid``, ``EventTypeInvalid``, ``EventSubjectInvalid``, ``EventInvalid`` and
  ``EventSizeExceed`` are the codes of Apache RocketMQ EventBridge, the open-source core of the service
  (github.com/apache/rocketmq-eventbridge, ``EventBridgeErrorCode`` / ``EventErrorCode``). They are
  answered with HTTP 200 and ``"Success": false`` in the body, because that is how the real 2020-04-01
  API reports ``EventBusNotExist`` (github.com/aliyun/terraform-provider-alicloud reads it from
  ``response["Code"]`` of a successful ``GetEventBus`` call, then checks ``Success``).
* Invented (no public source found): ``MissingEventBusName`` / ``MissingEventList`` (HTTP 400, the
  OpenAPI gateway's ``Missing<Parameter>`` convention), ``EventIdInvalid``,
  ``EventCountExceedLimit`` and ``EventBatchSizeExceed``.

No bus exists until :meth:`EventBridgeEmulator.create_bus` (the real ``default`` bus included).
Standard library only. Run it on its own for local work::

    python -m tests.support.eventbridge --port 8081 --bus default
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Set, Tuple

from tests.support.acs3 import ApiError
from tests.support.openapi import Headers, OpenApiEmulator

API_VERSION = "2020-04-01"
ACTIONS = ("PutEvents",)
DEFAULT_HOST_ID = "eventbridge-console.cn-shanghai.aliyuncs.com"
MAX_EVENTS_PER_REQUEST = 16
MAX_EVENT_BYTES = 256 * 1024
MAX_REQUEST_BYTES = 1024 * 1024
MAX_FIELD_CHARS = {"Id": 128, "Source": 128, "Subject": 512, "Type": 64}
EVENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
THROTTLED_MESSAGE = "The request is denied by flow limiter for too many requests."

# The gateway answers EventBridge's error-code page lists with its own status and code (the ICE
# emulator answers these with the codes most OpenAPI products use).
DOCUMENTED_AUTH_ERRORS = {
    "InvalidAccessKeyId.NotFound": (403, "InvalidAccessKeyId", "The access Id you provided is not exist."),
    "InvalidSecurityToken.Mismatch": (403, "SecurityTokenInvalid",
                                      "The Security token that your provide is invalid."),
    "SignatureDoesNotMatch": (403, "SignatureDoesNotMatch",
                              "The request signature we calculated does not match the signature you provided. "
                              "Check your key and signing method."),
}


@dataclass(frozen=True)
class EventBridgeCall:
    """One request the emulator answered (authentication failures included).

    ``error_code`` is the code of an HTTP error, of a ``Success: false`` body, or the ``ErrorCode``
    the entries carried; ``event_ids`` are the IDs the request sent (empty when unreadable).
    """

    action: str
    access_key_id: Optional[str]
    security_token: Optional[str]
    bus: Optional[str]
    event_ids: Tuple[str, ...]
    status: int
    error_code: Optional[str]
    request_id: str


@dataclass(frozen=True)
class _Fault:
    kind: str  # "http": an HTTP error; "reject": HTTP 200, Success false; "entries": every entry failed
    code: str
    message: str
    status: int = 200
    retry_after_ms: Optional[int] = None


class Rejected(Exception):
    """A service error: answered with HTTP 200 and ``"Success": false`` in the body."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class InjectedError(ApiError):
    """An HTTP error from :meth:`EventBridgeEmulator.fail_next`, maybe with an ``x-acs-retry-after``."""

    def __init__(self, status: int, code: str, message: str, retry_after_ms: Optional[int] = None) -> None:
        super().__init__(status, code, message)
        self.retry_after_ms = retry_after_ms


def refused(code: str, message: str) -> Dict[str, Any]:
    """The body of a service error (HTTP 200)."""
    return {"Code": code, "Message": message, "Success": False}


def documented_auth_error(error: ApiError) -> ApiError:
    """The verifier's error as EventBridge documents it, where its error-code page lists one."""
    documented = DOCUMENTED_AUTH_ERRORS.get(error.code)
    if documented is None:
        return error
    status, code, message = documented
    if error.code == "SignatureDoesNotMatch":  # keep the server's string to sign: it is what debugging needs
        message = f"{message} {error.message}"
    return ApiError(status, code, message)


def event_size(event: Dict[str, Any]) -> int:
    """UTF-8 bytes of every attribute plus those of the data (JSON data counted as compact JSON)."""
    size = 0
    for name, value in event.items():
        if name == "Data" and not isinstance(value, str):
            value = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        size += len(str(value).encode("utf-8", "surrogatepass"))
    return size


# ------------------------------------------------------------------ the emulator


class EventBridgeEmulator(OpenApiEmulator):
    """EventBridge's OpenAPI on loopback. ``with EventBridgeEmulator() as eb: ...`` or ``start()`` / ``stop()``."""

    thread_name = "eventbridge-emulator"
    server_version = "EventBridgeEmulator/1.0"
    api_version = API_VERSION
    actions = ACTIONS
    default_host_id = DEFAULT_HOST_ID
    product = "eventbridge"
    error_fields = {"Success": False}
    call_type = EventBridgeCall

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.max_events_per_request = MAX_EVENTS_PER_REQUEST
        self.max_event_bytes = MAX_EVENT_BYTES
        self.max_request_bytes = MAX_REQUEST_BYTES
        self._buses: Set[str] = set()
        self._accepted: List[Tuple[str, Dict[str, Any]]] = []  # (bus, event), in the order they came
        self._calls: List[EventBridgeCall] = []
        self._faults: List[_Fault] = []

    # ---------------------------------------------------------------- state

    def create_bus(self, name: str) -> None:
        """Idempotent; a bus that was not created is answered ``EventBusNotExist``."""
        if not name:
            raise ValueError("an event bus needs a name")
        with self._lock:
            self._buses.add(name)

    def buses(self) -> List[str]:
        with self._lock:
            return sorted(self._buses)

    def events(self, bus: Optional[str] = None) -> List[Dict[str, Any]]:
        """Copies of the accepted events (of one bus, or all), as parsed from EventList, oldest first."""
        with self._lock:
            return [copy.deepcopy(event) for name, event in self._accepted if bus is None or name == bus]

    def calls(self) -> List[EventBridgeCall]:
        return self._recorded_calls()

    def reset(self) -> None:
        """Forgets accepted events and recorded calls; keys, buses and pending faults stay."""
        with self._lock:
            self._accepted.clear()
            self._calls.clear()

    # ---------------------------------------------------------------- faults

    def fail_next(self, count: int, *, status: int = 503, code: str = "InternalError",
                  message: str = "The request processing has failed due to some unknown error.",
                  retry_after_ms: Optional[int] = None) -> None:
        """The next ``count`` valid requests answer this HTTP error (and store nothing).

        ``retry_after_ms`` adds an ``x-acs-retry-after`` header, which makes the SDK raise
        ThrottlingException; whether the real service ever sends it is not documented.
        """
        self._add_faults(count, _Fault("http", code, message, status, retry_after_ms))

    def throttle_next(self, count: int, *, retry_after_ms: Optional[int] = None) -> None:
        """HTTP 429 ``TooManyRequests``, as EventBridge's error-code page documents throttling."""
        self.fail_next(count, status=429, code="TooManyRequests", message=THROTTLED_MESSAGE,
                       retry_after_ms=retry_after_ms)

    def reject_next(self, count: int, code: str, message: str) -> None:
        """HTTP 200 whose body says ``"Success": false`` with this ``Code`` (nothing is stored)."""
        self._add_faults(count, _Fault("reject", code, message))

    def fail_entries_next(self, count: int, code: str, message: str) -> None:
        """HTTP 200, ``Success`` true, but every entry carries this ErrorCode (nothing is stored)."""
        self._add_faults(count, _Fault("entries", code, message))

    # ---------------------------------------------------------------- request handling (OpenApiEmulator)

    def _call_fields(self, params: Dict[str, str]) -> Dict[str, Any]:
        return {"bus": params.get("EventBusName"), "event_ids": readable_ids(params.get("EventList"))}

    def _authenticate(self, method: str, path: str, query: Dict[str, str], headers: Headers, body: bytes) -> None:
        try:
            super()._authenticate(method, path, query, headers, body)
        except ApiError as error:
            raise documented_auth_error(error) from None

    def _call(self, action: str, params: Dict[str, str],
              fields: Dict[str, Any]) -> Tuple[Dict[str, Any], Optional[str]]:
        return self._put_events(fields["bus"], params.get("EventList"))

    def _error_headers(self, error: ApiError) -> Dict[str, str]:
        if isinstance(error, InjectedError) and error.retry_after_ms is not None:
            return {"x-acs-retry-after": str(error.retry_after_ms)}
        return {}

    def _put_events(self, bus: Optional[str], event_list: Optional[str]) -> Tuple[Dict[str, Any], Optional[str]]:
        """An authenticated PutEvents: (answer without its RequestId, error code or None)."""
        if not bus:
            raise ApiError(400, "MissingEventBusName", "EventBusName is mandatory for this action.")
        if event_list is None:
            raise ApiError(400, "MissingEventList", "EventList is mandatory for this action.")
        try:
            events = self._check(bus, event_list)
        except Rejected as refusal:
            return refused(refusal.code, refusal.message), refusal.code
        fault = self._next_fault()
        if fault is not None and fault.kind == "http":
            raise InjectedError(fault.status, fault.code, fault.message, fault.retry_after_ms)
        if fault is not None and fault.kind == "reject":
            return refused(fault.code, fault.message), fault.code
        entries = [{"EventId": event["Id"], "TraceId": uuid.uuid4().hex} for event in events]
        if fault is not None:  # "entries": the request went through, none of its events did
            for entry in entries:
                entry.update(ErrorCode=fault.code, ErrorMessage=fault.message)
            failed, error_code = len(entries), fault.code
        else:
            with self._lock:
                self._accepted.extend((bus, event) for event in events)
            failed, error_code = 0, None
        answer = {"Code": "200", "Success": True, "Message": "success",
                  "Data": {"FailedEntryCount": failed, "EntryList": entries}}
        return answer, error_code

    def _check(self, bus: str, event_list: str) -> List[Dict[str, Any]]:
        """The events of a request the service would take; Rejected (with the service's code) if not."""
        with self._lock:
            exists = bus in self._buses
        if not exists:
            raise Rejected("EventBusNotExist", f"The event bus [{bus}] not existed!")
        try:
            events = json.loads(event_list)
        except ValueError:
            events = None
        if not isinstance(events, list) or not all(isinstance(event, dict) for event in events):
            raise Rejected("EventInvalid", "The event is invalid in request! EventList must be a JSON array of "
                                           "event objects. View the spec detail on https://github.com/cloudevents/spec")
        if not events:
            raise Rejected("EventInvalid", "The event is invalid in request! EventList is empty.")
        if len(events) > self.max_events_per_request:
            raise Rejected("EventCountExceedLimit", f"The count of events [{len(events)}] exceeds the limit "
                                                    f"[{self.max_events_per_request}].")
        total = 0
        for event in events:
            check_event(event)
            size = event_size(event)
            if size > self.max_event_bytes:
                raise Rejected("EventSizeExceed",
                               f"The single event entry size[{size}] exceed the limit [{self.max_event_bytes}]!")
            total += size
        if total > self.max_request_bytes:
            raise Rejected("EventBatchSizeExceed",
                           f"The total size of the events [{total}] exceeds the limit [{self.max_request_bytes}].")
        return events


def check_event(event: Dict[str, Any]) -> None:
    """The per-field rules of the limits page; Rejected with the open-source service's codes."""
    event_id = event.get("Id")
    if event_id is None or event_id == "":
        raise Rejected("EventIdEmpty", "The event id is empty.")
    if not isinstance(event_id, str) or len(event_id) > MAX_FIELD_CHARS["Id"] or not EVENT_ID.fullmatch(event_id):
        raise Rejected("EventIdInvalid", f"The event id [{event_id}] is invalid! It must be at most "
                                         f"{MAX_FIELD_CHARS['Id']} letters, digits and hyphens, starting with "
                                         "a letter or digit.")
    for name, code, required in (("Source", "EventSourceInvalid", True), ("Type", "EventTypeInvalid", True),
                                 ("Subject", "EventSubjectInvalid", False)):
        value = event.get(name)
        if value is None and not required:
            continue
        if not isinstance(value, str) or not value or len(value) > MAX_FIELD_CHARS[name]:
            raise Rejected(code, f"The event {name.lower()} [{value}] is invalid! It must be a string of 1 to "
                                 f"{MAX_FIELD_CHARS[name]} characters.")


def readable_ids(event_list: Optional[str]) -> Tuple[str, ...]:
    """The event IDs a request sent, for the call record; empty when EventList cannot be read."""
    try:
        events = json.loads(event_list or "")
    except ValueError:
        return ()
    if not isinstance(events, list):
        return ()
    return tuple(str(event["Id"]) for event in events if isinstance(event, dict) and "Id" in event)


# ------------------------------------------------------------------ command line


def build(argv: Optional[List[str]] = None) -> EventBridgeEmulator:
    """The emulator the command line describes, keyed and with its buses, not yet started."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.eventbridge",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--access-key-id", default="local-ak")
    parser.add_argument("--access-key-secret", default="local-secret")
    parser.add_argument("--security-token", default=None, help="makes the key an STS key")
    parser.add_argument("--bus", action="append", default=None, help="an event bus to create (repeatable; "
                                                                      "default: default)")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    emulator = EventBridgeEmulator(args.host, args.port)
    emulator.add_access_key(args.access_key_id, args.access_key_secret, args.security_token)
    emulator.latency_s = args.latency_ms / 1000.0
    for bus in args.bus or ["default"]:
        emulator.create_bus(bus)
    return emulator


def main(argv: Optional[List[str]] = None) -> None:
    emulator = build(argv).start()
    keys = ", ".join(emulator.auth.access_key_ids())
    buses = ", ".join(emulator.buses())
    emulator.serve_until_interrupted(f"EventBridge emulator listening on {{endpoint}} (access keys: {keys}; "
                                     f"buses: {buses})")


if __name__ == "__main__":
    main()
