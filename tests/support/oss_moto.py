"""An OSS endpoint on loopback: moto's S3 server behind a small wrapper that speaks OSS's dialect.

The official ``oss2`` SDK talks to it unmodified (path-style URLs, since the endpoint is an
IP address). Only moto's S3 WSGI app is served, so every request reaches the S3 backend
whatever its signature says (moto's multi-service dispatcher would read V4 signatures
scoped to "oss" as a service it does not have). moto never checks signatures; the
wrapper records each request (:attr:`OssMotoServer.requests`) so tests can check which
credentials were sent.

What the wrapper converts, each because oss2 against plain moto misbehaves without it
(each checked against moto 5.2.5 and 5.1.22, the last for Python 3.9;
``tests/support/test_oss_moto.py`` runs oss2 against bare moto to show it):

request side
- an empty ``continuation-token`` query parameter is dropped: oss2's ListObjectsV2 always
  sends one and moto answers 400 ``InvalidArgument``. (Empty ``start-after``, ``marker``
  and ``delimiter``, which oss2 sends too, moto accepts: they pass through unchanged.)
- ``x-oss-meta-*`` headers become ``x-amz-meta-*``: moto drops any other user metadata.
- ``x-oss-forbid-overwrite: true`` (OSS's create-only put) becomes ``If-None-Match: *``,
  which moto honours; moto ignores the OSS header and would overwrite.

response side
- the 412 ``PreconditionFailed`` that such a put gets when the object exists becomes OSS's
  409 with an OSS error body (``Code`` ``FileAlreadyExists``), which is what OSS answers.
- bucket-level XML answers lose S3's namespace (``xmlns="http://s3.amazonaws.com/doc/..."``):
  oss2 looks elements up without a namespace, so with it a listing fails to parse
  (``IsTruncated could not be found``) and a batch delete reports no deleted key.
- every ``<Contents>`` of a listing gets OSS's ``<Type>Normal</Type>``: oss2 requires it.
- ``x-amz-meta-*`` answer headers become ``x-oss-meta-*``, where oss2 reads metadata.
- an ``x-oss-request-id`` header is added: oss2 takes the request ID of every result and
  error from it (empty without), and OSS's support asks for that ID.

Not converted, because oss2 works without: ``x-oss-hash-crc64ecma`` (oss2 checks CRCs only
when the header is present), ListObjects v1 paging, and put / get / head / delete / batch
delete themselves. Faults can be injected (:meth:`OssMotoServer.inject_fault`) to test how
clients handle 403 / 5xx answers. moto keeps its state per process: use a fresh bucket per
test.

    python -m tests.support.oss_moto --port 9000
"""
from __future__ import annotations

import argparse
import re
import threading
import urllib.request
import uuid
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional, Tuple
from xml.sax.saxutils import escape

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from tests.support.loopback import LoopbackServer

S3_NAMESPACE = re.compile(rb'\s+xmlns="http://s3\.amazonaws\.com/doc/[^"]*"')  # with or without a final "/"
FILE_ALREADY_EXISTS = "The object you specified already exists and can not be overwritten."


@dataclass(frozen=True)
class OssRequest:
    """One request as the client sent it (before any conversion), and the status it got."""

    method: str
    path: str  # bucket and key, decoded: /<bucket>/<key>
    query: str
    headers: Dict[str, str]  # lower-case names
    status: int = 0

    @property
    def security_token(self) -> Optional[str]:
        return self.headers.get("x-oss-security-token")

    @property
    def access_key_id(self) -> Optional[str]:
        """From ``OSS <id>:<signature>`` (V1) or ``OSS4-HMAC-SHA256 Credential=<id>/<scope>,...`` (V4)."""
        value = self.headers.get("authorization", "")
        if value.startswith("OSS "):
            return value[4:].rsplit(":", 1)[0]
        match = re.search(r"Credential=([^/,\s]+)/", value)
        return match.group(1) if match else None


@dataclass
class _Fault:
    status: int
    code: str
    message: str
    method: Optional[str]
    path_contains: Optional[str]
    remaining: Optional[int]  # None: every matching request

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path_contains is None or self.path_contains in path)


class OssMotoServer(LoopbackServer):
    """``with OssMotoServer() as oss: oss.create_bucket("b"); oss2.Bucket(auth, oss.endpoint, "b")``."""

    thread_name = "oss-moto"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, dialect: bool = True,
                 max_recorded: int = 10_000) -> None:
        """``dialect=False`` serves moto's S3 app bare: it shows what each conversion is for."""
        super().__init__(host, port)
        self.dialect = dialect
        self._lock = threading.Lock()
        self._faults: List[_Fault] = []
        self._requests: Deque[OssRequest] = deque(maxlen=max_recorded)

    # ---------------------------------------------------------------- lifecycle

    def _make_server(self) -> BaseWSGIServer:
        # moto is imported here, not with this module: it costs about half a second
        from moto.moto_server import werkzeug_app

        s3_app = werkzeug_app.create_backend_app("s3")
        # moto >= 5.2 ships a handler that keeps header names with underscores; older ones do not
        base = getattr(werkzeug_app, "MotoRequestHandler", WSGIRequestHandler)
        handler = type("OssMotoRequestHandler", (_QuietHandler, base), {})
        app = OssDialect(s3_app, self) if self.dialect else s3_app
        server = make_server(self.host, self._port, app, threaded=True, request_handler=handler)
        server.daemon_threads = True
        return server

    # ---------------------------------------------------------------- state and faults

    def create_bucket(self, name: str) -> None:
        """Create a bucket (moto keeps buckets per process, so pick a fresh name per test)."""
        request = urllib.request.Request(f"{self.endpoint}/{name}/", method="PUT", data=b"")
        with urllib.request.urlopen(request, timeout=5) as answer:
            answer.read()

    def inject_fault(self, status: int = 503, code: str = "ServiceUnavailable", message: str = "injected fault",
                     *, method: Optional[str] = None, path_contains: Optional[str] = None,
                     count: Optional[int] = 1) -> None:
        """Answer matching requests with an OSS error instead of serving them.

        ``count`` requests (``None``: every one until :meth:`clear_faults`); ``method`` and
        ``path_contains`` (a substring of ``/<bucket>/<key>``) narrow which requests match.
        """
        with self._lock:
            self._faults.append(_Fault(status, code, message, method, path_contains, count))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def requests(self) -> List[OssRequest]:
        with self._lock:
            return list(self._requests)

    def reset_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def _fault_for(self, request: OssRequest) -> Optional[_Fault]:
        with self._lock:
            for fault in self._faults:
                if fault.matches(request.method, request.path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def _record(self, request: OssRequest) -> None:
        with self._lock:
            self._requests.append(request)


# ------------------------------------------------------------------ the dialect


StartResponse = Callable[..., Any]


class OssDialect:
    """WSGI middleware: OSS requests in, moto's S3 app in the middle, OSS answers out."""

    def __init__(self, app: Callable[[Dict[str, Any], StartResponse], Iterable[bytes]],
                 server: OssMotoServer) -> None:
        self.app = app
        self.server = server

    def __call__(self, environ: Dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = _describe(environ)
        request_id = uuid.uuid4().hex.upper()[:24]
        fault = self.server._fault_for(request)
        if fault is not None:
            status, body = fault.status, _error_xml(fault.code, fault.message, request_id)
            headers = [("Content-Type", "application/xml"), ("x-oss-request-id", request_id)]
        else:
            create_only = _translate_request(environ)
            status, headers, body = _call(self.app, environ)
            if create_only and status == 412:
                status, body = 409, _error_xml("FileAlreadyExists", FILE_ALREADY_EXISTS, request_id)
                headers = [("Content-Type", "application/xml"), ("x-oss-request-id", request_id)]
            else:
                bucket_level = request.path.strip("/").count("/") == 0  # listings, batch deletes
                headers, body = _translate_response(headers, body, request_id, bucket_level=bucket_level)
        self.server._record(replace(request, status=status))
        return _answer(start_response, status, body, headers)


def _describe(environ: Dict[str, Any]) -> OssRequest:
    headers = {key[5:].replace("_", "-").lower(): str(value) for key, value in environ.items()
               if key.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = str(environ[key])
    return OssRequest(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""),
                      headers)


def _translate_request(environ: Dict[str, Any]) -> bool:
    """Rewrite the request in place into what moto understands; True for a create-only put."""
    query = environ.get("QUERY_STRING", "")
    if query:
        kept = [part for part in query.split("&") if part not in ("continuation-token", "continuation-token=")]
        environ["QUERY_STRING"] = "&".join(kept)
    for key in [k for k in environ if k.startswith("HTTP_X_OSS_META_")]:
        environ["HTTP_X_AMZ_META_" + key[len("HTTP_X_OSS_META_"):]] = environ.pop(key)
    forbid = str(environ.pop("HTTP_X_OSS_FORBID_OVERWRITE", "")).strip().lower() == "true"
    if forbid and environ.get("REQUEST_METHOD") == "PUT":
        environ["HTTP_IF_NONE_MATCH"] = "*"
        return True
    return False


def _call(app: Callable[[Dict[str, Any], StartResponse], Iterable[bytes]],
          environ: Dict[str, Any]) -> Tuple[int, List[Tuple[str, str]], bytes]:
    captured: Dict[str, Any] = {}
    written: List[bytes] = []

    def start_response(status: str, headers: List[Tuple[str, str]], exc_info: Any = None) -> Callable:
        captured["status"], captured["headers"] = status, headers
        return written.append

    result = app(environ, start_response)
    try:
        body = b"".join(written) + b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return int(captured["status"].split(" ", 1)[0]), list(captured["headers"]), body


def _translate_response(headers: List[Tuple[str, str]], body: bytes, request_id: str, *,
                        bucket_level: bool) -> Tuple[List[Tuple[str, str]], bytes]:
    """Bucket-level XML answers lose S3's namespace and gain ``<Type>``; objects are never touched."""
    translated = []
    new_body = body
    if bucket_level and body.lstrip().startswith(b"<"):
        new_body = S3_NAMESPACE.sub(b"", body, count=1)
        if b"<ListBucketResult" in new_body[:200]:
            new_body = new_body.replace(b"</Contents>", b"<Type>Normal</Type></Contents>")
    for name, value in headers:
        lower = name.lower()
        if lower.startswith("x-amz-meta-"):
            name = "x-oss-meta-" + name[len("x-amz-meta-"):]
        elif lower == "content-length" and new_body != body:
            value = str(len(new_body))
        translated.append((name, value))
    translated.append(("x-oss-request-id", request_id))
    return translated, new_body


def _error_xml(code: str, message: str, request_id: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Error>'
            f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
            f"<RequestId>{request_id}</RequestId><HostId>127.0.0.1</HostId></Error>").encode()


def _answer(start_response: StartResponse, status: int, body: bytes,
            headers: List[Tuple[str, str]]) -> List[bytes]:
    if not any(name.lower() == "content-length" for name, _ in headers):
        headers = headers + [("Content-Length", str(len(body)))]
    start_response(f"{status} {_REASONS.get(status, 'Status')}", headers)
    return [body]


_REASONS = {200: "OK", 204: "No Content", 206: "Partial Content", 304: "Not Modified", 400: "Bad Request",
            403: "Forbidden", 404: "Not Found", 409: "Conflict", 412: "Precondition Failed",
            500: "Internal Server Error", 503: "Service Unavailable"}


# ------------------------------------------------------------------ HTTP plumbing


class _QuietHandler:
    """No Nagle delay (else answers written in two parts stall ~40 ms on a delayed ACK), no access log.

    werkzeug closes every connection after one answer, so there are no keep-alive
    connections to close on ``stop()``.
    """

    disable_nagle_algorithm = True

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


# ------------------------------------------------------------------ command line


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.support.oss_moto", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--bucket", action="append", default=[], help="create this bucket (repeatable)")
    args = parser.parse_args(argv)
    server = OssMotoServer(args.host, args.port)
    server.start()
    for name in args.bucket:
        server.create_bucket(name)
    server.serve_until_interrupted(f"OSS (moto) on {{endpoint}}; buckets: {', '.join(args.bucket) or 'none'}; "
                                   "Ctrl-C stops")

if __name__ == "__main__":
    main()
