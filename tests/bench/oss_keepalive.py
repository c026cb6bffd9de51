"""OSS on moto for benchmarks: the same app as ``tests.support.oss_moto``, served with keep-alive.

werkzeug's server closes every connection after one answer, so every oss2 request would
open a new TCP connection and pay for it in the client's CPU; real OSS keeps connections
alive, and that client CPU is not ours. Here the very same WSGI app (moto's S3 backend
behind ``OssDialect``) is served by ``http.server`` with HTTP/1.1 keep-alive and no Nagle
delay (``tests.support.loopback.KeepAliveHandler``), one request at a time: moto lists a
bucket by iterating its keys while other threads may add or delete some, and at 10,000 jobs
a listing fails that way (``KeyError``, a 500) often enough to end a sweep. For benchmarks
only: the emulator's own tests run it on werkzeug.

    python -m tests.bench.oss_keepalive --port 0
"""
from __future__ import annotations

import argparse
import io
import sys
import threading
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import unquote_to_bytes

from tests.support.loopback import KeepAliveHandler, TrackingHTTPServer
from tests.support.oss_moto import OssDialect, OssMotoServer, _error_xml


class KeepAliveOssServer(OssMotoServer):
    thread_name = "oss-keepalive"

    def _make_server(self) -> TrackingHTTPServer:
        from moto.moto_server import werkzeug_app  # about half a second: only when started

        server = _WsgiServer((self.host, self._port), _WsgiHandler)
        server.app = OssDialect(werkzeug_app.create_backend_app("s3"), self)
        return server

    def _stopped_server(self, server: Any) -> None:
        server.close_connections()


class _WsgiServer(TrackingHTTPServer):
    app: Any
    app_lock = threading.Lock()  # moto's app is pure Python under the interpreter lock anyway


class _WsgiHandler(KeepAliveHandler):
    """Just enough WSGI for moto's S3 app: whole bodies in, whole bodies out, Content-Length always."""

    server: _WsgiServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET  # noqa: N815

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        path, _, query = self.path.partition("?")
        host, port = self.server.server_address[:2]
        environ: Dict[str, Any] = {
            "REQUEST_METHOD": self.command, "SCRIPT_NAME": "", "QUERY_STRING": query,
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),  # PEP 3333: decoded bytes as latin-1
            "REQUEST_URI": self.path, "RAW_URI": self.path, "SERVER_NAME": str(host), "SERVER_PORT": str(port),
            "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": self.client_address[0],
            "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False,
            "wsgi.run_once": False, "CONTENT_LENGTH": str(len(body)),
        }
        for name, value in self.headers.items():
            key = name.upper().replace("-", "_")
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = value
            elif key != "CONTENT_LENGTH":
                environ["HTTP_" + key] = f"{environ['HTTP_' + key]},{value}" if "HTTP_" + key in environ else value
        captured: List[Tuple[str, List[Tuple[str, str]]]] = []

        def start_response(status: str, headers: List[Tuple[str, str]], exc_info: Any = None) -> Any:
            captured.append((status, headers))
            return lambda data: None

        try:
            with self.server.app_lock:  # moto lists a bucket by iterating its keys unguarded: one request at a time
                result = self.server.app(environ, start_response)
            try:
                payload = b"".join(result)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            status, headers = captured[-1]
        except Exception as error:  # noqa: BLE001 - as werkzeug does: a 500, and the connection lives on
            payload = _error_xml("InternalError", f"{type(error).__name__}: {error}", "bench")
            status, headers = "500 Internal Server Error", [("Content-Type", "application/xml")]
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason)
        sized = self.command == "HEAD" and any(name.lower() == "content-length" for name, _ in headers)
        for name, value in headers:
            if name.lower() not in ("connection", "transfer-encoding") and (sized or name.lower() != "content-length"):
                self.send_header(name, value)
        if not sized:  # a HEAD answer keeps the object's size; every other answer has its body's
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.oss_keepalive", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args(argv)
    KeepAliveOssServer(args.host, args.port).serve_until_interrupted("OSS (moto, keep-alive) listening on {endpoint}")


if __name__ == "__main__":
    main()
