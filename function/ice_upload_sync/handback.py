"""The hand-back (contract section 2): a cold instance passes ICE's callback back to its own HTTP trigger.

ICE counts an HTTP callback as delivered only on a 200 within 3 seconds, a cold start
included; importing the ICE SDK alone takes longer than that at the template's 0.25 vCPU. So
an instance whose ICE client is not ready tracks the job (the pending marker, durably), then
sends the very request ICE signed (same body, same ``X-ICE-SIGNATURE`` and
``X-ICE-TIMESTAMP``) back to the function's HTTP trigger with ``X-Fc-Invocation-Type: Async``
and ``X-Ice-Upload-Sync-Handback: 1``. FC answers 202 at once, persists the request and runs
it at least once (the function's ``asyncInvokeConfig``: retries, failure destination); ICE
gets its 200. The asynchronous run authenticates the request again like any other, looks the
job up with the function's own timeout rather than the callback's deadline, and writes the
record; it never hands the request back again. A hand-back that gets no 202 in time leaves
the job tracked: the next sweep records it, as without the hand-back.

The header grants nothing by itself: it is honoured only on a request whose ICE signature
holds, and then it only lets that request wait for ICE as long as the function may (what a
warm instance does for the same request), and stops it from being handed back again.

Standard library only (``http.client``), imported when a hand-back is made: never the ICE
SDK, whose import is what the hand-back avoids.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

from .config import is_loopback
from .events import HttpCallback

HEADER = "x-ice-upload-sync-handback"  # "1" on a request this function handed back to itself
TIMEOUT_S = 1.0  # at most this long for FC's 202 (less when the callback's deadline is nearer)
_FORWARDED = ("content-type", "x-ice-signature", "x-ice-timestamp")  # what ICE sent that the run needs


def is_handed_back(request: HttpCallback) -> bool:
    """The request says it was handed back; believe it only once its signature has been checked."""
    return (request.header(HEADER) or "").strip() == "1"


def trigger_url(request: HttpCallback, configured: Optional[str]) -> Optional[str]:
    """Where to hand the request back: ``CALLBACK_URL``, else the URL the event names (https,
    or http for a loopback host); None when neither is usable (no domain, plain http elsewhere)."""
    if configured:
        url = configured
    elif request.domain_name:
        host = urlsplit(f"//{request.domain_name}").hostname or ""
        url = f"{'http' if is_loopback(host) else 'https'}://{request.domain_name}{request.raw_path}"
    else:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        return None  # the signed request would travel readable: plain http only to this machine
    return url


@dataclass(frozen=True)
class Outcome:
    accepted: bool  # FC answered 202: it has the request and will run it
    detail: str  # for the log: the status, or why not


def hand_back(request: HttpCallback, url: str, *, timeout_s: float) -> Outcome:
    """POST ``request`` to ``url`` as an asynchronous invocation; accepted only on a 202."""
    import http.client  # the cold path's only network client, loaded when a hand-back is made

    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {name: value for name in _FORWARDED if (value := request.header(name)) is not None}
    headers.update({"X-Fc-Invocation-Type": "Async", HEADER: "1"})
    connection_type = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    started = time.monotonic()
    connection = connection_type(parts.hostname, parts.port, timeout=max(0.05, timeout_s))
    try:
        connection.request(request.method, target, body=request.body_bytes(), headers=headers)
        response = connection.getresponse()
        response.read(4096)
        status = response.status
    except (OSError, http.client.HTTPException) as exc:
        return Outcome(False, f"{type(exc).__name__}: {str(exc)[:120]}")
    finally:
        connection.close()
    elapsed_ms = (time.monotonic() - started) * 1000
    return Outcome(status == 202, f"HTTP {status} in {elapsed_ms:.0f} ms")
