"""ICE HTTP callback authentication. Pure: the caller passes the clock.

ICE signs each HTTP callback with ``X-ICE-TIMESTAMP`` (Unix seconds) and
``X-ICE-SIGNATURE`` = hex md5("{CallbackURL}|{timestamp}|{AuthKey}").

The HTTP trigger is anonymous, so these headers are whatever a stranger sent: ``verify``
turns any content (any text, any length, a value that is not a string, a header given
twice) into ``Unauthorized``, never another exception.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from typing import Iterable, Optional, Sequence

from .errors import Unauthorized
from .events import HttpCallback, is_text

# ASCII only (``str.isdigit`` accepts "²", which ``int`` refuses) and bounded (``int`` of
# thousands of digits is slow, then refused): 12 digits reach the year 33658.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"[0-9a-fA-F]{32}")  # hex md5
_SIGNED_HEADERS = ("x-ice-signature", "x-ice-timestamp")


def sign(callback_url: str, timestamp: str, auth_key: str) -> str:
    return hashlib.md5(f"{callback_url}|{timestamp}|{auth_key}".encode()).hexdigest()


def callback_urls(request: HttpCallback, configured: Optional[str]) -> Sequence[str]:
    """The URL ICE signed: ``CALLBACK_URL`` when set, else derived from the trigger event.

    The event does not say which scheme ICE used, so both are accepted when derived;
    a configured URL with a query string must be set explicitly.
    """
    if configured:
        urls: Sequence[str] = (configured,)
    elif request.domain_name:
        urls = tuple(f"{scheme}://{request.domain_name}{request.raw_path}" for scheme in ("https", "http"))
    else:
        raise Unauthorized("cannot derive the callback URL (no requestContext.domainName): set CALLBACK_URL")
    if not all(is_text(url) for url in urls):  # a lone surrogate: nothing ICE could have signed
        raise Unauthorized("the callback URL is not valid text")
    return urls


def verify(request: HttpCallback, *, keys: Iterable[str], configured_url: Optional[str],
           now: float, max_skew_s: int) -> None:
    """Raise ``Unauthorized`` unless some key signed this request within the time window."""
    for name in _SIGNED_HEADERS:
        if name in request.malformed_headers:
            raise Unauthorized(f"{name.upper()} is not a single text value")
    signature = (request.header("x-ice-signature") or "").strip()
    timestamp = (request.header("x-ice-timestamp") or "").strip()
    if not signature or not timestamp:
        raise Unauthorized("missing X-ICE-SIGNATURE or X-ICE-TIMESTAMP")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise Unauthorized("X-ICE-TIMESTAMP is not Unix seconds")
    if not _SIGNATURE.fullmatch(signature):
        raise Unauthorized("X-ICE-SIGNATURE is not 32 hexadecimal digits")
    if abs(now - int(timestamp)) > max_skew_s:
        raise Unauthorized("X-ICE-TIMESTAMP is outside the accepted window (replay or clock skew)")
    presented = signature.lower().encode("ascii")
    matched = False
    for url in callback_urls(request, configured_url):
        for key in keys:
            # compare every candidate so timing does not reveal which one matched
            matched |= hmac.compare_digest(sign(url, timestamp, key).encode("ascii"), presented)
    if not matched:
        raise Unauthorized("X-ICE-SIGNATURE does not match")

