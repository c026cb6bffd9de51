"""What every loopback test server here shares: a socket server run in a daemon thread.

Subclasses build their server in ``_make_server`` and may act around shutdown in
``_stopping_server`` (before) and ``_stopped_server`` (after).
"""
from __future__ import annotations

import threading
from typing import Any, Optional


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
