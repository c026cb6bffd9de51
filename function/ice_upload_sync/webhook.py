"""Completion events to a ``NOTIFY_URL`` endpoint (contract section 9): the event POSTed, signed.

``Webhook`` is the endpoint as a delivery target (``delivery.Target``): ``send`` POSTs the
event's body with the Standard Webhooks headers (``cloudevent.webhook_headers``), signed with
every key of ``NOTIFY_SECRET`` and timestamped at the attempt, and classifies the answer:
``delivered`` (2xx), ``retry`` (timeout, connection error, 408, 429, 5xx, with the answer's
Retry-After), ``give_up_after_tries`` (any other answer). Redirects are not followed and count
as ``give_up_after_tries``: urllib would resend a 302's POST as a bodiless GET, and following
one sends the signed record to a host nobody configured; NOTIFY_URL must be the final URL
(Standard Webhooks: "3xx: failure"). A 401 / 403 (a receiver refusing our signature: the two
sides hold different secrets) is ``give_up_after_tries`` too: sending the same bytes for three
days cannot fix it.

Errors name the status or the kind of failure, never the secret, a signature, or the URL's query.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from .cloudevent import CloudEvent, webhook_headers
from .config import NotifyEndpoint, Settings, WebhookSecret
from .delivery import DELIVERED, RETRY, SendResult, classify_status
from .notify import MAX_RETRY_S


@dataclass(frozen=True)
class Webhook:
    """One ``NOTIFY_URL`` endpoint as a target; ``key`` and ``host`` are the endpoint's."""

    endpoint: NotifyEndpoint
    secrets: Tuple[WebhookSecret, ...] = field(default=(), repr=False)  # none: loopback endpoints only

    @property
    def key(self) -> str:
        return self.endpoint.key

    @property
    def host(self) -> str:
        return self.endpoint.host

    def send(self, event: CloudEvent, timeout_s: float) -> SendResult:
        """POST ``event``, each socket operation bounded by ``timeout_s``. Never raises for an answer
        or the lack of one; the headers (and so the signature) are made for this request."""
        headers = webhook_headers(event, self.secrets, int(time.time()))
        status, error, retry_after = _post(self.endpoint.url, event.body, headers, timeout_s)
        if status is None:
            return SendResult(RETRY, None, error)
        outcome = classify_status(status)
        if outcome != DELIVERED and error is None:
            error = f"HTTP {status}"
        return SendResult(outcome, status, error, retry_after)


def webhooks(settings: Settings) -> Tuple[Webhook, ...]:
    """A target for every ``NOTIFY_URL`` endpoint, each signing with every ``NOTIFY_SECRET`` key."""
    return tuple(Webhook(endpoint, settings.notify_secrets) for endpoint in settings.notify_endpoints)


def _post(url: str, body: bytes, headers: Mapping[str, str],
          timeout_s: float) -> Tuple[Optional[int], Optional[str], Optional[float]]:
    """(status, error, retry_after_s); status None when no HTTP answer came."""
    # Imported here, not with the module: urllib.request costs about 28 ms of CPU (python3.10,
    # measured on a bare interpreter; nothing once the ICE SDK is loaded), and every path
    # imports this module while few of them deliver.
    import http.client
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with _opener().open(request, timeout=timeout_s) as response:
            return response.status, None, None
    except urllib.error.HTTPError as answer:  # every status urllib does not call success, 3xx included
        with answer:
            status, error = answer.code, None
            if 300 <= status <= 399:
                location = urlsplit(answer.headers.get("Location") or "").netloc or "elsewhere"
                error = f"HTTP {status} redirect to {location} not followed: NOTIFY_URL must be the final URL"
            return status, error, _retry_after_s(answer.headers.get("Retry-After"))
    except urllib.error.URLError as exc:  # no answer: connecting failed (urllib wraps the reason)
        return None, _transport_error(exc.reason, timeout_s), None
    except (http.client.HTTPException, OSError) as exc:  # a timeout or reset while reading the answer
        return None, _transport_error(exc, timeout_s), None


def _transport_error(reason: Any, timeout_s: float) -> str:
    import socket
    import ssl

    if isinstance(reason, (socket.timeout, TimeoutError)):
        return f"timed out after {timeout_s:.1f} s"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return "host name not resolved"
    if isinstance(reason, ssl.SSLError):
        return f"TLS: {getattr(reason, 'reason', None) or type(reason).__name__}"
    if isinstance(reason, BaseException):
        return f"connection error: {type(reason).__name__}"
    return f"connection error: {str(reason)[:80]}"


_opener_lock = threading.Lock()
_opener_instance: Any = None


def _opener() -> Any:
    """urllib's opener without redirects (see the module's docstring) and without proxies from the
    environment (the function talks to the endpoints itself; a stray HTTPS_PROXY would otherwise
    carry every event, loopback ones included)."""
    global _opener_instance
    with _opener_lock:
        if _opener_instance is None:
            import urllib.request

            class RefuseRedirects(urllib.request.HTTPRedirectHandler):
                def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                    return None  # urllib then raises HTTPError with the 3xx status

            _opener_instance = urllib.request.build_opener(urllib.request.ProxyHandler({}), RefuseRedirects())
        return _opener_instance


def _retry_after_s(value: Optional[str]) -> Optional[float]:
    """Retry-After as seconds from now (delta-seconds or an HTTP date), at most ``MAX_RETRY_S``."""
    text = (value or "").strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return min(float(text), MAX_RETRY_S)
    from email.utils import parsedate_to_datetime  # about 6 ms to import; rarely needed

    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None or moment.tzinfo is None:
        return None
    return min(max(0.0, moment.timestamp() - time.time()), MAX_RETRY_S)
