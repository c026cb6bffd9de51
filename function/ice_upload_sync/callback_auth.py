"""ICE HTTP callback authentication. Pure: the caller passes the clock.

ICE signs each HTTP callback with ``X-ICE-TIMESTAMP`` (Unix seconds) and
``X-ICE-SIGNATURE`` = hex md5("{CallbackURL}|{timestamp}|{AuthKey}").
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Iterable, Optional, Sequence

from .errors import Unauthorized
from .events import HttpCallback


def sign(callback_url: str, timestamp: str, auth_key: str) -> str:
    return hashlib.md5(f"{callback_url}|{timestamp}|{auth_key}".encode()).hexdigest()


def callback_urls(request: HttpCallback, configured: Optional[str]) -> Sequence[str]:
    """The URL ICE signed: ``CALLBACK_URL`` when set, else derived from the trigger event.

    The event does not say which scheme ICE used, so both are accepted when derived;
    a configured URL with a query string must be set explicitly.
    """
    if configured:
        return (configured,)
    if not request.domain_name:
        raise Unauthorized("cannot derive the callback URL (no requestContext.domainName): set CALLBACK_URL")
    return tuple(f"{scheme}://{request.domain_name}{request.raw_path}" for scheme in ("https", "http"))


def verify(request: HttpCallback, *, keys: Iterable[str], configured_url: Optional[str],
           now: float, max_skew_s: int) -> None:
    """Raise ``Unauthorized`` unless some key signed this request within the time window."""
    signature = (request.header("x-ice-signature") or "").strip().lower()
    timestamp = (request.header("x-ice-timestamp") or "").strip()
    if not signature or not timestamp:
        raise Unauthorized("missing X-ICE-SIGNATURE or X-ICE-TIMESTAMP")
    if not timestamp.isdigit():
        raise Unauthorized("X-ICE-TIMESTAMP is not Unix seconds")
    if abs(now - int(timestamp)) > max_skew_s:
        raise Unauthorized("X-ICE-TIMESTAMP is outside the accepted window (replay or clock skew)")
    matched = False
    for url in callback_urls(request, configured_url):
        for key in keys:
            # compare every candidate so timing does not reveal which one matched
            matched |= hmac.compare_digest(sign(url, timestamp, key), signature)
    if not matched:
        raise Unauthorized("X-ICE-SIGNATURE does not match")
