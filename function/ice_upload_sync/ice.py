"""The ICE gateway: GetUrlUploadInfos through the official SDK, batched, rate-limited, retried.

Retries are bounded twice: at most ``MAX_ATTEMPTS`` calls per batch (the first and 3
retries), and never past the invocation's deadline. Throttling, 5xx answers, timeouts and
dropped connections are retried with full-jitter backoff; a name that does not resolve (a
misspelled region in ``ICE_ENDPOINT``) or a refused connection fails at once, since another
try a moment later meets the same wall; other 4xx answers are not retried either.

The SDK (``alibabacloud_ice20201109`` on ``alibabacloud_tea_openapi``) costs about 0.35 s
of CPU (compiled) and 55 MB to import, several seconds on FC's fractional vCPU, so it is
imported by the first lookup of an instance, never when this module is imported or by
``initialize``.
"""
from __future__ import annotations

import ast
import heapq
import logging
import os
import random
import re
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import quote

from .clients import LazyClient, unwrapped
from .config import Settings
from .errors import ConfigError, UpstreamError
from .logs import ContextThreadPool
from .records import UploadInfo
from .redact import first_line

logger = logging.getLogger(__name__)

BATCH_SIZE = 10  # GetUrlUploadInfos takes at most 10 JobIds or 10 UploadURLs
CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 10.0
MAX_ATTEMPTS = 4  # calls per batch: the first and at most 3 retries (each also bounded by the deadline)
_RETRY_BASE_S = 0.1
_RETRY_CAP_S = 2.0
_RETRYABLE_CODES = frozenset({
    "Throttling", "Throttling.User", "Throttling.Api", "Throttling.API", "ServiceUnavailable",
    "InternalError", "ServiceBusy",
})
# ICE's (the OpenAPI gateway's) refusals that no retry, however late, can turn into an answer,
# each with what to fix. Matched on the error code's start; a 401 or 403 with another code is
# taken for a missing permission.
_PERMANENT_CODES: Tuple[Tuple[str, str], ...] = (
    ("InvalidAccessKeyId", "the access key is unknown to Alibaba Cloud: check ALIBABA_CLOUD_ACCESS_KEY_ID "
                           "(on FC: the function's role)"),
    ("SignatureDoesNotMatch", "the access key secret does not match the key: check ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
    ("IncompleteSignature", "the request signature was refused: check ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
    ("InvalidSecurityToken", "the STS token was refused (expired, or not this key's): check "
                             "ALIBABA_CLOUD_SECURITY_TOKEN, or unset it for a RAM user's key"),
    ("MissingSecurityToken", "this key is an STS key and needs its token: set ALIBABA_CLOUD_SECURITY_TOKEN"),
    ("InvalidTimeStamp", "the request's time was refused: check this machine's clock"),
    ("Forbidden", "the caller may not look jobs up: grant ice:GetUrlUploadInfos to the function's role "
                  "(template.yml's policy) or to the RAM user of ALIBABA_CLOUD_ACCESS_KEY_ID"),
    ("NoPermission", "the caller may not look jobs up: grant ice:GetUrlUploadInfos to the function's role "
                     "(template.yml's policy) or to the RAM user of ALIBABA_CLOUD_ACCESS_KEY_ID"),
    ("InvalidApi.NotPurchase", "ICE is not activated for this account: activate Intelligent Media Services "
                               "in ICE_REGION"),
)


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    access_key_secret: str
    security_token: Optional[str] = None

    def __repr__(self) -> str:  # never print a secret, even by accident
        return f"Credentials(access_key_id={self.access_key_id[:4]}***, sts={bool(self.security_token)})"


def resolve_credentials(context: Any, environ: Optional[Mapping[str, str]] = None) -> Credentials:
    """The FC context's STS credentials (python3.9/3.10), else ``ALIBABA_CLOUD_*`` (python3.12, local)."""
    supplied = getattr(context, "credentials", None) if context is not None else None
    if supplied is not None:
        key_id = getattr(supplied, "access_key_id", None) or getattr(supplied, "accessKeyId", None)
        secret = getattr(supplied, "access_key_secret", None) or getattr(supplied, "accessKeySecret", None)
        if key_id and secret:
            token = getattr(supplied, "security_token", None) or getattr(supplied, "securityToken", None)
            return Credentials(key_id, secret, token or None)
    env = os.environ if environ is None else environ
    key_id = env.get("ALIBABA_CLOUD_ACCESS_KEY_ID", "").strip()
    secret = env.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "").strip()
    if not key_id or not secret:
        raise ConfigError(
            "no credentials: the FC context has none and ALIBABA_CLOUD_ACCESS_KEY_ID / "
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET are not set"
        )
    return Credentials(key_id, secret, env.get("ALIBABA_CLOUD_SECURITY_TOKEN", "").strip() or None)


@dataclass(frozen=True)
class IceAnswer:
    request_id: str
    infos: Tuple[UploadInfo, ...]
    non_exists: Tuple[str, ...]


@dataclass(frozen=True)
class BatchOutcome:
    """One batch of at most 10 keys: ICE's answer, or the error that ended its retries."""

    kind: str  # "JobIds" | "UploadURLs"
    keys: Tuple[str, ...]
    answer: Optional[IceAnswer]
    error: Optional[UpstreamError]
    api_calls: int


def batches(keys: Sequence[str], size: int = BATCH_SIZE) -> List[Tuple[str, ...]]:
    return [tuple(keys[start:start + size]) for start in range(0, len(keys), size)]


def parse_non_exists(value: Any) -> Tuple[str, ...]:
    """``NonExists`` comes as a list of IDs, or as strings that look like Python lists."""
    items = value if isinstance(value, list) else ([] if value in (None, "") else [value])
    found: List[str] = []
    for item in items:
        text = str(item).strip()
        if text.startswith("[") and text.endswith("]"):
            try:
                parsed = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                parsed = [part.strip(" '\"") for part in text[1:-1].split(",")]
            found.extend(str(part).strip() for part in parsed if str(part).strip())
        elif text:
            found.append(text)
    return tuple(dict.fromkeys(found))


def parse_answer(body: Mapping[str, Any]) -> IceAnswer:
    infos = body.get("URLUploadInfoList") or []
    return IceAnswer(
        request_id=str(body.get("RequestId") or ""),
        infos=tuple(UploadInfo.from_api(item) for item in infos if isinstance(item, dict)),
        non_exists=parse_non_exists(body.get("NonExists")),
    )


def parse_sdk_answer(body: Any) -> IceAnswer:
    """``parse_answer`` for the SDK's response body model (or None), read in place rather than
    through ``to_map``, which copies every item into a dict only for us to read it once."""
    if body is None:
        return parse_answer({})
    return IceAnswer(
        request_id=str(body.request_id or ""),
        infos=tuple(UploadInfo.from_model(item) for item in body.urlupload_info_list or () if item is not None),
        non_exists=parse_non_exists(body.non_exists),
    )


class RateLimiter:
    """A ceiling on calls, shared by every thread of an instance (ICE throttles per account).

    ICE never sees more than ``rate_per_s`` of our calls arrive in any one-second window,
    wherever the window is placed, the first second included (no burst on top of the rate),
    retries included. ``rate_per_s`` >= 1 allows ``floor(rate_per_s)`` calls per window
    (100.5 allows 100: there are no half calls); below 1, one call per ``1 / rate_per_s``
    seconds (0.5: one every 2 s).

    Calls hold slots: a call takes one with :meth:`acquire` before it starts and gives it back
    with :meth:`release` when it has ended (answered, failed or timed out), and the slot can be
    taken again one window after that end. Why the end and not the start: a request reaches
    ICE some time after we start it (a new connection, signing, the interpreter lock: up to
    80 ms for the first calls of a sweep on loopback here, 2 ms later on), but always before
    its answer comes back. A call granted at ``g`` arrives after ``g``; the call whose slot it
    reuses arrived before its own end, at least a window before ``g``. So no window ever holds
    more than ``calls_per_window`` arrivals, whatever the delays. The price is one call's
    latency per slot and window: at the ceiling, ``calls_per_window`` calls per (window + latency).

    Cheap under many threads: a heap of reopening times and a count of calls in flight, one
    lock; a waiter sleeps until the earliest reopening (or a whole window when every slot is
    in flight: none can reopen sooner) and tries again.
    """

    def __init__(self, rate_per_s: float, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not 0 < rate_per_s < float("inf"):
            raise ValueError(f"rate_per_s must be a positive finite number, got {rate_per_s!r}")
        self.rate = rate_per_s
        self.calls_per_window = max(1, int(rate_per_s))
        self.window_s = max(1.0, self.calls_per_window / rate_per_s)
        self._reopening: List[float] = []  # a heap: when each slot given back may be taken again
        self._in_flight = 0
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()

    def acquire(self, deadline: float) -> bool:
        """Wait for a slot and take it; False (taking nothing) when none can open by ``deadline``.

        A True answer must be followed by :meth:`release` once the call has ended (see :meth:`slot`).
        """
        reopening = self._reopening
        while True:
            with self._lock:
                now = self._clock()
                if self._in_flight + len(reopening) < self.calls_per_window:
                    self._in_flight += 1
                    return True
                if reopening and reopening[0] <= now:
                    heapq.heappop(reopening)
                    self._in_flight += 1
                    return True
                # every slot is taken: the earliest reopening, or a window from now if all are in flight
                opens_at = reopening[0] if reopening else now + self.window_s
            if opens_at > deadline:
                return False
            self._sleep(opens_at - now)

    def release(self) -> None:
        """The call that took a slot has ended: the slot reopens one window from now."""
        with self._lock:
            if self._in_flight <= 0:
                raise RuntimeError("RateLimiter.release without a slot taken")
            self._in_flight -= 1
            heapq.heappush(self._reopening, self._clock() + self.window_s)

    @contextmanager
    def slot(self, deadline: float) -> Iterator[bool]:
        """``with limiter.slot(deadline) as granted:`` the call goes inside; the slot is held until the block ends."""
        granted = self.acquire(deadline)
        try:
            yield granted
        finally:
            if granted:
                self.release()


class IceGateway:
    """Looks jobs up in ICE. One per instance; the SDK client is rebuilt when credentials rotate."""

    def __init__(self, settings: Settings, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.limiter = RateLimiter(settings.ice_max_qps)
        self._sleep = sleep
        self._sdk: Any = None
        self._clients: LazyClient[Any] = LazyClient(
            self._build_client, lambda: UpstreamError("the ICE client has no credentials (call bind first)"))

    # -- SDK client -------------------------------------------------------------

    def bind(self, credentials: Credentials) -> None:
        """Use these credentials from now on (FC's STS credentials rotate). Cheap: imports nothing.

        The SDK client is built by the first lookup that needs it, and rebuilt when the
        credentials it was built with are no longer the bound ones.
        """
        self._clients.bind(credentials)

    @property
    def ready(self) -> bool:
        """True once the SDK is imported: a lookup then costs a round trip, not a second of CPU."""
        return self._sdk is not None

    def prepare(self) -> None:
        """Import the SDK and build the client now, so later lookups (callbacks) pay only a round trip."""
        self.client()

    def client(self) -> Any:
        """The SDK client for the bound credentials, built (and the SDK imported) on first use."""
        return self._clients.get()

    def _build_client(self, credentials: Credentials) -> Any:
        sdk = self._load_sdk()
        endpoint = self.settings.ice_endpoint
        return sdk.Client(sdk.Config(
            access_key_id=credentials.access_key_id,
            access_key_secret=credentials.access_key_secret,
            security_token=credentials.security_token,
            endpoint=endpoint.host,
            protocol=endpoint.protocol,
            region_id=self.settings.ice_region,
            connect_timeout=int(CONNECT_TIMEOUT_S * 1000),
            read_timeout=int(READ_TIMEOUT_S * 1000),
            max_idle_conns=max(self.settings.ice_concurrency, 1),
        ))

    def _load_sdk(self) -> Any:
        if self._sdk is None:
            from alibabacloud_ice20201109 import models
            from alibabacloud_ice20201109.client import Client
            from alibabacloud_tea_openapi import exceptions
            from alibabacloud_tea_openapi.utils_models import Config
            from darabonba.runtime import RuntimeOptions

            self._sdk = _Sdk(Client, Config, models.GetUrlUploadInfosRequest, RuntimeOptions, exceptions)
        return self._sdk

    # -- lookups ----------------------------------------------------------------

    def lookup(self, job_ids: Sequence[str], upload_urls: Sequence[str], *, deadline: float,
               retry: bool = True) -> Iterator[BatchOutcome]:
        """Every key in batches of 10, ``ICE_CONCURRENCY`` in flight, outcomes as they finish.

        ``JobIds`` and ``UploadURLs`` never share a call: ICE ignores the URLs when both are sent.
        """
        work = [("JobIds", keys) for keys in batches(job_ids)]
        work += [("UploadURLs", keys) for keys in batches(upload_urls)]
        if not work:
            return
        if len(work) == 1 or self.settings.ice_concurrency == 1:
            for kind, keys in work:
                yield self.query(kind, keys, deadline=deadline, retry=retry)
            return
        workers = min(self.settings.ice_concurrency, len(work))
        with ContextThreadPool(max_workers=workers, thread_name_prefix="ice") as pool:
            futures = [pool.submit(self.query, kind, keys, deadline=deadline, retry=retry)
                       for kind, keys in work]
            for future in futures:
                yield future.result()

    def query(self, kind: str, keys: Tuple[str, ...], *, deadline: float, retry: bool = True) -> BatchOutcome:
        """One batch, retried on throttling, 5xx, timeouts and dropped connections with full-jitter
        backoff: at most ``MAX_ATTEMPTS`` calls, never past ``deadline`` (a ``time.monotonic()`` value)."""
        client = self.client()
        calls = 0
        while True:
            with self.limiter.slot(deadline) as granted:  # held until the call has ended: see RateLimiter
                remaining = deadline - time.monotonic()
                if not granted or remaining <= 0.05:
                    return BatchOutcome(kind, keys, None, _out_of_time(calls), calls)
                calls += 1
                try:
                    answer = self._call(client, kind, keys, remaining)
                    return BatchOutcome(kind, keys, answer, None, calls)
                except UpstreamError as error:
                    failure = error
            backoff = random.uniform(0, min(_RETRY_CAP_S, _RETRY_BASE_S * (2 ** calls)))
            if not (retry and failure.retryable) or calls >= MAX_ATTEMPTS \
                    or time.monotonic() + backoff >= deadline - 0.05:
                return BatchOutcome(kind, keys, None, failure, calls)
            logger.warning("GetUrlUploadInfos %s (attempt %d of %d); retrying in %.2fs",
                           failure, calls, MAX_ATTEMPTS, backoff)
            self._sleep(backoff)

    def _call(self, client: Any, kind: str, keys: Tuple[str, ...], remaining_s: float) -> IceAnswer:
        sdk = self._sdk
        if kind == "JobIds":
            request = sdk.Request(job_ids=",".join(keys))
        else:
            # Each URL is URL-encoded, so commas inside a URL never split the list.
            request = sdk.Request(upload_urls=",".join(quote(url, safe="") for url in keys))
        read_ms = max(50, int(min(READ_TIMEOUT_S, remaining_s) * 1000))
        runtime = sdk.RuntimeOptions(
            read_timeout=read_ms,
            connect_timeout=min(int(CONNECT_TIMEOUT_S * 1000), read_ms),
            autoretry=False,
        )
        try:
            response = client.get_url_upload_infos_with_options(request, runtime)
        except Exception as exc:  # the SDK's errors, translated at this boundary
            raise _translate(exc, sdk.exceptions, self.settings.ice_endpoint.host) from None
        return parse_sdk_answer(response.body)


@dataclass(frozen=True)
class _Sdk:
    Client: Any
    Config: Any
    Request: Any
    RuntimeOptions: Any
    exceptions: Any


def _out_of_time(calls: int) -> UpstreamError:
    return UpstreamError(f"no time left for GetUrlUploadInfos after {calls} call(s)", code="Deadline",
                         retryable=True)


@dataclass(frozen=True)
class Refusal:
    """What an ``AlibabaCloudException`` says of ICE's refusal: every ICE call of this package reads it so."""

    code: str
    status: int  # HTTP status, 0 when the SDK gave none
    said: str  # the first line of ICE's Message
    request_id: Optional[str]

    @classmethod
    def of(cls, exc: Exception) -> Refusal:
        data = getattr(exc, "data", None)
        said = (data.get("Message") or data.get("message") or "") if isinstance(data, dict) else ""
        return cls(str(getattr(exc, "code", "") or ""), getattr(exc, "status_code", None) or 0, first_line(said),
                   getattr(exc, "request_id", None))

    def described(self) -> str:
        """``HTTP 400 Code: message (request id)``."""
        return f"HTTP {self.status} {self.code}{': ' + self.said if self.said else ''} (request {self.request_id})"


def _translate(exc: Exception, exceptions: Any, endpoint: str) -> UpstreamError:
    """SDK exception -> UpstreamError; retryable for throttling, 5xx, timeouts and dropped connections.

    Every text taken from the SDK is redacted: its errors quote our request, presigned upload
    URLs included.
    """
    if isinstance(exc, exceptions.AlibabaCloudException):
        refusal = Refusal.of(exc)
        code, status = refusal.code, refusal.status
        retryable = (
            isinstance(exc, (exceptions.ThrottlingException, exceptions.ServerException))
            or code in _RETRYABLE_CODES or code.startswith("Throttling") or status >= 500
        )
        fix = None if retryable else permanent_fix(code, status)
        return UpstreamError(f"ICE answered {refusal.described()}" + (f"; {fix}" if fix else ""),
                             code=code or None, retryable=retryable, permanent=fix is not None)
    return _network_failure(exc, endpoint)


def permanent_fix(code: str, status: int) -> Optional[str]:
    """What to fix when ICE's refusal (``code``, HTTP ``status``) will not pass by itself; None otherwise."""
    for prefix, fix in _PERMANENT_CODES:
        if code.startswith(prefix):
            return fix
    if status in (401, 403):
        return dict(_PERMANENT_CODES)["Forbidden"]
    return None


# The SDK turns the HTTP library's exception into text (``RetryError(str(e))``); the original
# stays reachable through ``__context__``, and the text is the fallback when it is not.
_NAME_NOT_RESOLVED_TEXT = re.compile(
    r"NameResolutionError|Failed to resolve|Name or service not known|nodename nor servname|"
    r"No address associated with hostname|getaddrinfo failed", re.IGNORECASE)
_REFUSED_TEXT = re.compile(r"Connection refused|\[Errno 111\]|WinError 10061|ECONNREFUSED", re.IGNORECASE)


def _network_failure(exc: BaseException, endpoint: str) -> UpstreamError:
    """An error that got no answer from ICE. Fail fast when trying again cannot help:

    - the endpoint's name does not resolve (a misspelled region): a resolver answers that
      in milliseconds, and would answer it again;
    - the connection is refused: nothing listens there.
    Timeouts and dropped or reset connections are retried (within the count and the deadline).
    """
    chain = list(_causes(exc))
    inner, detail = unwrapped(exc)
    text = " ".join(first_line(link) for link in chain)
    unresolved = [link for link in chain if _is_name_not_resolved(link)]
    if unresolved or _NAME_NOT_RESOLVED_TEXT.search(text):
        cause = _described(unresolved[-1]) if unresolved else detail
        return UpstreamError(f"ICE endpoint {endpoint} does not resolve ({cause}): check ICE_REGION / ICE_ENDPOINT",
                             code="NameNotResolved", retryable=False, permanent=True)
    refused = [link for link in chain if isinstance(link, ConnectionRefusedError)]
    if refused or _REFUSED_TEXT.search(text):
        cause = _described(refused[-1]) if refused else detail
        return UpstreamError(f"ICE endpoint {endpoint} refused the connection ({cause}): check ICE_ENDPOINT",
                             code="ConnectionRefused", retryable=False, permanent=True)
    return UpstreamError(f"ICE unreachable: {type(inner).__name__}: {detail}", code="NetworkError", retryable=True)


def _described(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {first_line(exc)}"


def _is_name_not_resolved(exc: BaseException) -> bool:
    # urllib3's NameResolutionError (requests), aiohttp's ClientConnectorDNSError (the async SDK)
    return isinstance(exc, socket.gaierror) or type(exc).__name__ in ("NameResolutionError", "ClientConnectorDNSError")


def _causes(exc: BaseException, limit: int = 16) -> Iterable[BaseException]:
    """``exc`` and what it wraps: ``inner_exception`` (Tea), ``__cause__`` / ``__context__``,
    ``reason`` (urllib3's MaxRetryError) and an exception passed as the first argument (requests)."""
    seen: set = set()
    todo: List[BaseException] = [exc]
    while todo and len(seen) < limit:
        link = todo.pop(0)
        if id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        for nested in (getattr(link, "inner_exception", None), link.__cause__, link.__context__,
                       getattr(link, "reason", None), link.args[0] if link.args else None):
            if isinstance(nested, BaseException):
                todo.append(nested)


