"""What every SDK client here shares: built on first use and rebuilt when the credentials rotate
(``LazyClient``: ICE, EventBridge, OSS, Tablestore), and how the OpenAPI SDKs' errors without an
answer read (``unwrapped``).

The ICE and EventBridge SDKs cost a noticeable share of a cold start to import, so ``bind``
(every invocation: FC's STS credentials rotate) only remembers the credentials, and the
client is built, importing its SDK, by the first call that needs one. A client built with
other credentials than the bound ones (another key, secret or token) is rebuilt; otherwise it
is kept with its connection pool. Safe to share between threads.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Generic, Optional, Tuple, TypeVar

from .redact import first_line

_Client = TypeVar("_Client")


class LazyClient(Generic[_Client]):
    """``build(credentials)`` makes the client; ``missing()`` is what ``get`` raises before any ``bind``."""

    def __init__(self, build: Callable[[Any], _Client], missing: Callable[[], Exception]) -> None:
        self._build = build
        self._missing = missing
        self._lock = threading.Lock()
        self._credentials: Any = None
        self._client: Optional[_Client] = None
        self._client_identity: Optional[Tuple[str, str, Optional[str]]] = None

    def bind(self, credentials: Any) -> None:
        """Use these credentials from now on. Cheap: builds and imports nothing."""
        self._credentials = credentials

    @property
    def built(self) -> bool:
        return self._client is not None

    def get(self) -> _Client:
        with self._lock:
            credentials = self._credentials
            if credentials is None:
                raise self._missing()
            identity = credential_identity(credentials)
            if self._client is None or identity != self._client_identity:
                self._client = self._build(credentials)
                self._client_identity = identity
            return self._client


def credential_identity(credentials: Any) -> Tuple[str, str, Optional[str]]:
    """(key ID, secret, security token or None): what makes credentials these credentials (FC hands
    over a new object every invocation), and what the store SDKs are built from."""
    return (credentials.access_key_id, credentials.access_key_secret,
            getattr(credentials, "security_token", None) or None)


def unwrapped(exc: BaseException) -> Tuple[BaseException, str]:
    """An SDK error that got no answer, and the first line of its text (URL queries redacted).

    tea-openapi wraps the HTTP library's error in ``UnretryableException.inner_exception``,
    a darabonba ``RetryError`` that keeps its text in ``message``.
    """
    inner = getattr(exc, "inner_exception", None) or exc
    return inner, first_line(getattr(inner, "message", None) or inner)
