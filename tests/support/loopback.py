"""What every loopback test server here shares: a socket server run in a daemon thread.

Subclasses build their server in ``_make_server`` and may act around shutdown in
``_stopping_server`` (before) and ``_stopped_server`` (after).
"""
from __future__ import annotations

import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional, Set


class LoopbackServer:
    thread_name = "loopback-server"
    poll_interval_s = 0.05

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._port = port
        self._server: Optional[Any] = None
        self._thread: Optional[threading.Thread] = None

    def _make_server(self) -> Any:
        """A ``socketserver``-style server bound to ``(self.host, self._port)``."""
        raise NotImplementedError

    def _stopping_server(self, server: Any) -> None:
        pass

    def _stopped_server(self, server: Any) -> None:
        pass

    def start(self):
        if self._server is not None:
            return self
        server = self._make_server()
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": self.poll_interval_s},
                                        name=f"{self.thread_name}-{self._port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Idempotent."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        self._stopping_server(server)
        server.shutdown()
        server.server_close()
        self._stopped_server(server)
        if thread is not None:
            thread.join(timeout=5)

    def serve_until_interrupted(self, banner: str) -> None:
        """For a command line: start, print ``banner``, serve until Ctrl-C (SIGINT), stop.

        SIGINT is made to interrupt even where it was inherited ignored: a process started in the
        background by a non-interactive shell (``nohup``, ``cmd &`` in a script or a CI runner)
        starts with it ignored, and Python then never raises KeyboardInterrupt, so Ctrl-C or
        ``kill -INT`` would leave the server running."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.default_int_handler)
        with self:
            print(banner.format(endpoint=self.endpoint), flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError(f"{type(self).__name__} has no port until it is started")
        return self._port

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"


class TrackingHTTPServer(ThreadingHTTPServer):
    """An HTTP server that can drop its keep-alive connections on stop (clients see a reset)."""

    daemon_threads = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._connections: Set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def track(self, connection: socket.socket, alive: bool) -> None:
        with self._connections_lock:
            if alive:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):  # the client went away (timeouts, stop()): not worth a traceback
            return
        super().handle_error(request, client_address)


class KeepAliveHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, as the SDKs' connection pools expect; quiet."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    sys_version = ""
    timeout = 120  # idle keep-alive connections are dropped eventually
    server: TrackingHTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        pass
