"""Completion events to an EventBridge bus (``NOTIFY_EVENTBRIDGE``, contract section 9).

The same CloudEvent as the webhooks get (same ``id``, ``source``, ``type``, ``subject``,
``time``, ``data``), put on the bus with ``PutEvents`` (2020-04-01) through the official SDK,
``alibabacloud_eventbridge20200401``. The bus is one more target of the outbox
(``delivery.Target``, like ``webhook.Webhook``): it is delivered, retried and given up exactly
like a webhook endpoint, and ``delivery.deliver`` sends to it in parallel with them, under the
same deadline.

Outcomes (``delivery.Outcome``; what ``notify.advance`` does with them):

- delivered: HTTP 200, ``Success`` true and no failed entry;
- retry: no answer (timeouts, connection errors), HTTP 408 / 429 / 5xx, or a throttling or
  internal error code (in the HTTP error, in a ``Success: false`` body, or in the entry);
- given up after 3 tries: any other refusal (the bus does not exist, the role may not put
  events on it, the event is refused). A misconfigured bus costs three tries, not three days.

The SDK costs about 50 ms of CPU to import once the ICE SDK is loaded (0.3 s alone), so it is
imported by the first event put on the bus, never by ``initialize`` or a cold callback, and
the client is rebuilt when FC's STS credentials rotate. Nothing here logs a secret: errors
name the bus, the status and the service's code and first line of message.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Optional

from .clients import LazyClient, unwrapped
from .cloudevent import CloudEvent
from .config import Settings
from .delivery import DELIVERED, GIVE_UP_AFTER_TRIES, RETRY, Outcome, SendResult, classify_status
from .redact import first_line

CONNECT_TIMEOUT_S = 2.0
_RETRYABLE_CODES = frozenset({
    "Throttling", "TooManyRequests", "ServiceUnavailable", "InternalError", "InternalFailure", "ServiceBusy",
    "SystemBusy", "Timeout",
})
_ERROR_TEXT_MAX = 160


class EventBridgeBus:
    """The bus as an outbox target (``delivery.Target``): ``key``, ``host`` and ``send``.

    One per instance, shared by the delivery threads: the SDK client is built once per set of
    credentials, under a lock; the SDK's client is safe to call from several threads (each
    call builds its own request).
    """

    def __init__(self, settings: Settings) -> None:
        if not settings.notify_eventbridge_bus:
            raise ValueError("EventBridgeBus needs NOTIFY_EVENTBRIDGE")
        self.name = settings.notify_eventbridge_bus
        self.region = settings.ice_region
        self.endpoint = settings.eventbridge_endpoint
        # What the outbox knows of a target: ``key``, recorded once the bus needs nothing more (a
        # webhook's is a digest of its URL; this one of the region and bus, so the two never
        # collide), and ``host``, its name in logs.
        self.key = hashlib.sha256(f"eventbridge:{self.region}/{self.name}".encode("ascii")).hexdigest()[:16]
        self.host = f"EventBridge bus {self.name}"
        self._sdk: Optional[_Sdk] = None
        self._clients: LazyClient[Any] = LazyClient(
            self._build_client, lambda: RuntimeError("the EventBridge client has no credentials (call bind first)"))

    def __repr__(self) -> str:
        return f"EventBridgeBus({self.name!r}, {self.endpoint.host!r})"

    # -- the SDK client -------------------------------------------------------------------

    def bind(self, credentials: Any) -> None:
        """Use these credentials from now on (``ice.Credentials``; FC's STS credentials rotate). Cheap."""
        self._clients.bind(credentials)

    @property
    def ready(self) -> bool:
        return self._sdk is not None

    def prepare(self) -> None:
        """Import the SDK and build the client now (an instance that swept is then ready)."""
        self._clients.get()

    def _build_client(self, credentials: Any) -> Any:
        sdk = self._load_sdk()
        return sdk.Client(sdk.Config(
            access_key_id=credentials.access_key_id,
            access_key_secret=credentials.access_key_secret,
            security_token=credentials.security_token,
            endpoint=self.endpoint.host,
            protocol=self.endpoint.protocol,
            region_id=self.region,
            connect_timeout=int(CONNECT_TIMEOUT_S * 1000),
        ))

    def _load_sdk(self) -> _Sdk:
        if self._sdk is None:
            from alibabacloud_eventbridge20200401 import models
            from alibabacloud_eventbridge20200401.client import Client
            from alibabacloud_tea_openapi import exceptions
            from alibabacloud_tea_openapi.utils_models import Config
            from darabonba.runtime import RuntimeOptions

            self._sdk = _Sdk(Client, Config, models.PutEventsRequest, models.PutEventsRequestEventList,
                             RuntimeOptions, exceptions.AlibabaCloudException)
        return self._sdk

    # -- putting an event -----------------------------------------------------------------

    def send(self, event: CloudEvent, timeout_s: float) -> SendResult:
        """Put ``event`` on the bus within ``timeout_s`` per socket operation, no SDK retries (the
        outbox retries, across invocations). Never raises. ``retry_after_s``: the gateway's
        ``x-acs-retry-after``, when it throttled the call."""
        try:
            client = self._clients.get()
            sdk = self._sdk
            assert sdk is not None
            entry = sdk.Entry(id=event.id, source=event.source, type=event.type, subject=event.subject,
                              time=event.time, data_content_type=event.datacontenttype,
                              spec_version=event.specversion, data=event.data)
            request = sdk.Request(event_bus_name=self.name, event_list=[entry])
            timeout_ms = max(50, int(timeout_s * 1000))
            runtime = sdk.RuntimeOptions(read_timeout=timeout_ms, connect_timeout=min(int(CONNECT_TIMEOUT_S * 1000),
                                                                                      timeout_ms),
                                         autoretry=False)
        except Exception as exc:  # noqa: BLE001 - an SDK that cannot be loaded or configured: try again later
            return SendResult(RETRY, None, f"EventBridge client not available: {type(exc).__name__}: "
                                           f"{first_line(exc, _ERROR_TEXT_MAX)}")
        try:
            response = client.put_events_with_options(request, runtime)
        except sdk.AlibabaCloudException as exc:
            return error_outcome(exc)
        except Exception as exc:  # noqa: BLE001 - no answer: timeouts, resets, refused connections
            return SendResult(RETRY, None, f"no answer from EventBridge: {_network_error(exc)}")
        return answer_outcome(getattr(response, "status_code", None) or 200, response.body, event.id)


@dataclass(frozen=True)
class _Sdk:
    Client: Any
    Config: Any
    Request: Any
    Entry: Any
    RuntimeOptions: Any
    AlibabaCloudException: Any


def answer_outcome(status: int, body: Any, event_id: Optional[str] = None) -> SendResult:
    """An HTTP 2xx answer's outcome: the body may still say ``Success: false`` or fail the entry.

    Delivered only when the answer says so: ``Success`` true, or an entry naming ``event_id``,
    and no failed entry. Anything else (no body, a proxy's page, fields of the wrong type) is
    retried: a repeat costs the receiver a duplicate it deduplicates, a false "delivered"
    loses the event.
    """
    if body is None:
        return SendResult(RETRY, status, "EventBridge answered without a body")
    request_id = getattr(body, "request_id", None)
    success = getattr(body, "success", None)
    if success is False:
        code = str(getattr(body, "code", "") or "")
        return SendResult(_classify_code(code, status), status,
                          _text(f"EventBridge refused the event: {code}", getattr(body, "message", None), request_id))
    data = getattr(body, "data", None)
    entries = getattr(data, "entry_list", None)
    entries = list(entries) if isinstance(entries, (list, tuple)) else []
    failed = [entry for entry in entries if getattr(entry, "error_code", None)]
    count = getattr(data, "failed_entry_count", None)
    if failed or (isinstance(count, int) and count > 0):
        code = str(getattr(failed[0], "error_code", "") or "") if failed else ""
        said = getattr(failed[0], "error_message", None) if failed else None
        return SendResult(_classify_code(code, status), status,
                          _text(f"EventBridge failed the event: {code or 'FailedEntryCount > 0'}", said, request_id))
    named = event_id is not None and any(getattr(entry, "event_id", None) == event_id for entry in entries)
    if success is True or named:
        return SendResult(DELIVERED, status)
    return SendResult(RETRY, status, _text("EventBridge's answer does not say the event was taken", None, request_id))


def error_outcome(exc: Any) -> SendResult:
    """An error answer (the SDK raises for HTTP 4xx and 5xx)."""
    status = getattr(exc, "status_code", None)
    code = str(getattr(exc, "code", "") or "")
    data = getattr(exc, "data", None)
    said = (data.get("Message") or data.get("message")) if isinstance(data, dict) else None
    if status is None:  # the SDK's own ClientException before any request (a bad parameter)
        return SendResult(GIVE_UP_AFTER_TRIES, None, _text(f"EventBridge request refused by the SDK: {code}",
                                                           getattr(exc, "message", None), None))
    wait_ms = getattr(exc, "retry_after", None)  # ThrottlingException, from x-acs-retry-after
    wait_s = wait_ms / 1000.0 if isinstance(wait_ms, (int, float)) and wait_ms > 0 else None
    return SendResult(_classify_code(code, status), status,
                      _text(f"EventBridge answered HTTP {status} {code}", said, getattr(exc, "request_id", None)),
                      wait_s)


def _classify_code(code: str, status: Optional[int]) -> Outcome:
    """Retried when the HTTP status is one a webhook's would be retried for, or the code says so."""
    if status is not None and classify_status(status) == RETRY:
        return RETRY
    if code in _RETRYABLE_CODES or code.startswith(("Throttling", "Internal", "ServiceUnavailable")):
        return RETRY
    return GIVE_UP_AFTER_TRIES


def _text(head: str, said: Any, request_id: Any) -> str:
    text = head + (f": {first_line(said, _ERROR_TEXT_MAX)}" if said else "") + \
        (f" (request {request_id})" if request_id else "")
    return text[:_ERROR_TEXT_MAX * 2]


def _network_error(exc: BaseException) -> str:
    inner, detail = unwrapped(exc)
    return f"{type(inner).__name__}: {detail[:_ERROR_TEXT_MAX]}"

