"""A stand-in for FC's HTTP trigger taking asynchronous invocations: answers 202 and keeps each request.

For the hand-back's tests and the cold-start benchmark, where only the function's side matters;
tests/support/fc.py is the whole front end (instances, async runs, retries).
"""
from __future__ import annotations

import base64
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Dict, List


class Trigger:
    """A stand-in for FC's HTTP trigger: answers ``status`` (202: taken) and records each request."""

    def __init__(self, status: int = 202) -> None:
        self.status = status
        self.requests: List[SimpleNamespace] = []
        trigger = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                trigger.requests.append(SimpleNamespace(path=self.path, headers=dict(self.headers), body=body))
                self.send_response(trigger.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/ice-callback"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Trigger:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()

    def as_fc_event(self, index: int = 0) -> Dict:
        """The request FC would run asynchronously, as the HTTP-trigger event it hands the function."""
        got = self.requests[index]
        return {"version": "v1", "rawPath": got.path, "body": base64.b64encode(got.body).decode(),
                "isBase64Encoded": True, "headers": got.headers, "queryParameters": {},
                "requestContext": {"domainName": self.url.split("/")[2], "http": {"method": "POST"},
                                   "requestId": "async-1"}}
