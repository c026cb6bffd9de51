"""What the Alibaba Cloud OpenAPI emulators (ICE, EventBridge) share.

:class:`OpenApiEmulator` serves RPC-style OpenAPI requests on loopback: it reads the parameters
from the query and a form body, authenticates the request with
:class:`tests.support.acs3.Acs3Verifier`, checks the action and the API version, answers errors
the way the gateway does, sleeps the injected latency and records every call. A subclass names its
API in class attributes and answers its actions in :meth:`OpenApiEmulator._call`.

Standard library only.
"""
from __future__ import annotations

import json
import threading
from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional, Tuple
from urllib.parse import parse_qsl

from tests.support.acs3 import Acs3Verifier, ApiError, credential_of, first, new_request_id
from tests.support.loopback import KeepAliveHandler, LoopbackServer, TrackingHTTPServer

Headers = Dict[str, List[str]]  # lower-case header names -> every value received


def read_params(raw_path: str, headers: Headers, body: bytes) -> Tuple[str, Dict[str, str], Dict[str, str]]:
    """(path, query, params): params are the query plus a form body's fields (the query wins)."""
    path, _, raw_query = raw_path.partition("?")
    query = dict(parse_qsl(raw_query, keep_blank_values=True))
    params = dict(query)
    content_type = (first(headers, "content-type") or "").lower()
    if body and content_type.startswith("application/x-www-form-urlencoded"):
        for key, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
            params.setdefault(key, value)
    return path, query, params


class OpenApiEmulator(LoopbackServer):
    """An OpenAPI product on loopback. ``with Emulator() as api: ...`` or ``start()`` / ``stop()``."""

    poll_interval_s = 0.01
    server_version = "OpenApiEmulator/1.0"  # the Server header
    api_version: ClassVar[str] = ""
    actions: ClassVar[Tuple[str, ...]] = ()
    default_host_id: ClassVar[str] = ""  # an error's HostId when the request had no Host header
    product: ClassVar[str] = ""  # in an error's Recommend URL
    error_fields: ClassVar[Mapping[str, Any]] = {}  # added to every error answer, after its Message
    # builds a call record from action, access_key_id, security_token, status, error_code, request_id
    # and the fields _call_fields read
    call_type: ClassVar[Callable[..., Any]]

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.latency_s: float = 0.0
        self.auth = Acs3Verifier()
        self._lock = threading.Lock()
        self._calls: List[Any] = []
        self._faults: List[Any] = []
        self._stopping = threading.Event()

    # ---------------------------------------------------------------- lifecycle (LoopbackServer)

    def _make_server(self) -> _Server:
        self._stopping.clear()
        server = _Server((self.host, self._port), _Handler)
        server.emulator = self
        return server

    def _stopping_server(self, server: _Server) -> None:
        self._stopping.set()  # wakes handlers sleeping on latency

    def _stopped_server(self, server: _Server) -> None:
        server.close_connections()  # keep-alive connections would otherwise outlive the server

    # ---------------------------------------------------------------- keys, faults and call records

    def add_access_key(self, access_key_id: str, access_key_secret: str, security_token: Optional[str] = None) -> None:
        """A key with a ``security_token`` is an STS key: its requests must carry that token."""
        self.auth.add_access_key(access_key_id, access_key_secret, security_token)

    def _add_faults(self, count: int, fault: Any) -> None:
        """Faults fire in the order they were added, one per :meth:`_next_fault`."""
        with self._lock:
            self._faults.extend([fault] * count)

    def _next_fault(self) -> Optional[Any]:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def _recorded_calls(self) -> List[Any]:
        with self._lock:
            return list(self._calls)

    # ---------------------------------------------------------------- request handling

    def _handle(self, method: str, raw_path: str, headers: Headers,
                body: bytes) -> Tuple[int, Dict[str, Any], str, Dict[str, str]]:
        """Answer one request: (HTTP status, JSON body, request id, extra headers). Records the call."""
        request_id = new_request_id()
        path, query, params = read_params(raw_path, headers, body)
        action = first(headers, "x-acs-action") or params.get("Action") or ""
        fields = self._call_fields(params)
        extra_headers: Dict[str, str] = {}
        try:
            self._authenticate(method, path, query, headers, body)
            version = first(headers, "x-acs-version") or params.get("Version")
            if action not in self.actions:
                raise ApiError(404, "InvalidAction.NotFound",
                               f"Specified api is not found, please check your url and method. Action: {action}")
            if version != self.api_version:
                raise ApiError(400, "InvalidVersion", f"Specified parameter Version is not valid: {version}")
            answer, error_code = self._call(action, params, fields)
            status = 200
        except ApiError as error:
            status, error_code = error.status, error.code
            extra_headers = self._error_headers(error)
            answer = {"HostId": first(headers, "host") or self.default_host_id, "Code": error.code,
                      "Message": error.message, **self.error_fields,
                      "Recommend": f"https://api.aliyun.com/troubleshoot?q={error.code}&product={self.product}"
                                   f"&requestId={request_id}"}
        answer = {"RequestId": request_id, **answer}
        latency = self.latency_s
        if latency > 0:
            self._stopping.wait(latency)
        call = self.call_type(action=action, access_key_id=credential_of(headers),
                              security_token=first(headers, "x-acs-security-token"), status=status,
                              error_code=error_code, request_id=request_id, **fields)
        with self._lock:
            self._calls.append(call)
        return status, answer, request_id, extra_headers

    def _call_fields(self, params: Dict[str, str]) -> Dict[str, Any]:
        """The product's own fields of the call record, read before authentication."""
        return {}

    def _authenticate(self, method: str, path: str, query: Dict[str, str], headers: Headers, body: bytes) -> None:
        self.auth.authenticate(method, path, query, headers, body)

    def _call(self, action: str, params: Dict[str, str],
              fields: Dict[str, Any]) -> Tuple[Dict[str, Any], Optional[str]]:
        """An authenticated call of a known action: (answer without its RequestId, error code or None).

        Raises :class:`ApiError` for an HTTP error.
        """
        raise NotImplementedError

    def _error_headers(self, error: ApiError) -> Dict[str, str]:
        """Extra headers of an error answer."""
        return {}


# ------------------------------------------------------------------ HTTP plumbing


class _Server(TrackingHTTPServer):
    emulator: OpenApiEmulator


class _Handler(KeepAliveHandler):
    server: _Server

    @property
    def server_version(self) -> str:  # the emulator's, for the Server header
        return self.server.emulator.server_version

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._answer()

    def do_POST(self) -> None:  # noqa: N802
        self._answer()

    def _answer(self) -> None:
        emulator = self.server.emulator
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers: Headers = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        try:
            status, answer, request_id, extra = emulator._handle(self.command, self.path, headers, body)
        except Exception as error:  # an emulator bug still answers like the service would
            request_id, extra = new_request_id(), {}
            status, answer = 500, {"RequestId": request_id, "Code": "InternalError", **emulator.error_fields,
                                   "Message": f"emulator error: {type(error).__name__}: {error}"}
        # \u escapes for anything not ASCII: valid JSON for any text, lone surrogates included
        payload = json.dumps(answer).encode("ascii")
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-acs-request-id", request_id)
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)
