"""A webhook receiver on loopback, as a user's system would run one: it verifies each request with
the ``standardwebhooks`` package from PyPI (not with our own code) and parses the CloudEvent.

What it received is kept to be inspected: ``events`` (by id, the first copy accepted with a 2xx),
``deliveries`` (how many times each id was accepted), ``requests`` (every request, refused ones
included, with the status it was answered). It can be told to misbehave:

- ``answer(status, times=N)``: the next N verified requests get that status (a 3xx with
  ``location=...``, a 429/503 with ``retry_after=...``); the event is not accepted then;
- ``delay(seconds, times=N)``: the next N requests wait that long before answering;
- ``go_down()`` / ``come_back()``: stop listening (connections are refused) and listen again on
  the same port.

Answers: 204 for an accepted event, 401 when verification fails (missing headers, a wrong
secret, a timestamp more than 5 minutes off), 415 for another Content-Type, 400 for a body that
is not a CloudEvent whose id is the ``webhook-id``. The handler sets ``disable_nagle_algorithm``
(see contract section 7: otherwise every answer waits for a delayed ACK).

Run it on its own to watch a local function's events::

    python -m tests.support.webhook_receiver --port 9000 --secret whsec_...
"""
from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple, Union

from standardwebhooks import Webhook

from tests.support.loopback import KeepAliveHandler, LoopbackServer, TrackingHTTPServer

CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"
MAX_BODY = 4 * 1024 * 1024


@dataclass(frozen=True)
class ReceivedRequest:
    """One request and how it was answered."""

    path: str
    status: int
    event_id: Optional[str]  # the webhook-id header
    verified: bool
    content_type: Optional[str]
    timestamp: Optional[str]  # the webhook-timestamp header
    signatures: int  # how many signatures webhook-signature listed
    error: Optional[str] = None


@dataclass(frozen=True)
class _Scripted:
    status: int
    location: Optional[str]
    retry_after: Optional[str]


class WebhookReceiver(LoopbackServer):
    """``with WebhookReceiver("whsec_...") as receiver: ...``; ``receiver.url`` is its endpoint."""

    thread_name = "webhook-receiver"
    poll_interval_s = 0.01

    def __init__(self, secret: Union[str, Sequence[str]], host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        secrets = (secret,) if isinstance(secret, str) else tuple(secret)
        self._webhooks = tuple(Webhook(text) for text in secrets)
        self._lock = threading.Lock()
        self._events: Dict[str, dict] = {}
        self._deliveries: Counter = Counter()
        self._requests: List[ReceivedRequest] = []
        self._scripted: Deque[_Scripted] = deque()
        self._delays: Deque[float] = deque()
        self._stopping = threading.Event()
        self.down = False

    # ---------------------------------------------------------------- lifecycle (LoopbackServer)

    def _make_server(self) -> TrackingHTTPServer:
        self._stopping.clear()
        server = TrackingHTTPServer((self.host, self._port), _Handler)
        server.receiver = self  # type: ignore[attr-defined]
        return server

    def _stopping_server(self, server: Any) -> None:
        self._stopping.set()  # wakes handlers sleeping on a delay

    def _stopped_server(self, server: Any) -> None:
        server.close_connections()

    def go_down(self) -> None:
        """Stop listening: connections to the port are refused until ``come_back``."""
        self.stop()
        self.down = True

    def come_back(self) -> None:
        self.down = False
        self.start()

    @property
    def url(self) -> str:
        return f"{self.endpoint}/events"

    # ---------------------------------------------------------------- faults

    def answer(self, status: int, times: int = 1, *, location: Optional[str] = None,
               retry_after: Optional[Union[int, str]] = None) -> None:
        with self._lock:
            for _ in range(times):
                self._scripted.append(_Scripted(status, location, None if retry_after is None else str(retry_after)))

    def delay(self, seconds: float, times: int = 1) -> None:
        with self._lock:
            self._delays.extend([seconds] * times)

    # ---------------------------------------------------------------- state

    @property
    def events(self) -> Dict[str, dict]:
        with self._lock:
            return dict(self._events)

    @property
    def deliveries(self) -> Counter:
        with self._lock:
            return Counter(self._deliveries)

    @property
    def requests(self) -> List[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        with self._lock:
            self._events.clear()
            self._deliveries.clear()
            self._requests.clear()
            self._scripted.clear()
            self._delays.clear()

    # ---------------------------------------------------------------- what a request gets

    def _receive(self, path: str, headers: Dict[str, str], body: bytes) -> Tuple[int, Dict[str, str]]:
        with self._lock:
            delay = self._delays.popleft() if self._delays else 0.0
        if delay:
            self._stopping.wait(delay)
        lowered = {key.lower(): value for key, value in headers.items()}
        message_id = lowered.get("webhook-id")
        content_type = lowered.get("content-type")
        signatures = len((lowered.get("webhook-signature") or "").split())

        def record(status: int, verified: bool, error: Optional[str] = None) -> None:
            self._requests.append(ReceivedRequest(path, status, message_id, verified, content_type,
                                                  lowered.get("webhook-timestamp"), signatures, error))

        event, error = self._verify(body, lowered)
        with self._lock:
            if event is None:
                record(401, False, error)
                return 401, {}
            if (content_type or "").split(";")[0].strip().lower() != CLOUDEVENTS_CONTENT_TYPE:
                record(415, True, f"Content-Type {content_type!r}")
                return 415, {}
            problem = _cloudevent_problem(event, message_id)
            if problem:
                record(400, True, problem)
                return 400, {}
            if self._scripted:
                scripted = self._scripted.popleft()
                record(scripted.status, True, "scripted")
                extra = {}
                if scripted.location:
                    extra["Location"] = scripted.location
                if scripted.retry_after:
                    extra["Retry-After"] = scripted.retry_after
                return scripted.status, extra
            self._events.setdefault(event["id"], event)
            self._deliveries[event["id"]] += 1
            record(204, True)
            return 204, {}

    def _verify(self, body: bytes, headers: Dict[str, str]) -> Tuple[Optional[dict], Optional[str]]:
        """The parsed body if any of our secrets verifies it (standardwebhooks does all the checking)."""
        error = "no secret"
        for webhook in self._webhooks:
            try:
                event = webhook.verify(body, headers)
            except Exception as exc:  # noqa: BLE001 - WebhookVerificationError, or ValueError for a garbled header
                error = f"{type(exc).__name__}: {exc}"
                continue
            return (event, None) if isinstance(event, dict) else (None, "body is not a JSON object")
        return None, error


_REQUIRED = ("specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data")


def _cloudevent_problem(event: dict, message_id: Optional[str]) -> Optional[str]:
    missing = [name for name in _REQUIRED if name not in event]
    if missing:
        return f"CloudEvent lacks {', '.join(missing)}"
    if event["specversion"] != "1.0":
        return f"specversion {event['specversion']!r}"
    if event["id"] != message_id:
        return "the CloudEvent id is not the webhook-id"
    return None


class _Handler(KeepAliveHandler):
    disable_nagle_algorithm = True  # as KeepAliveHandler: said here because a receiver without it measures 40 ms

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._reply(413, {})
            return
        body = self.rfile.read(length)
        status, extra = self.server.receiver._receive(self.path, dict(self.headers), body)  # type: ignore[attr-defined]
        self._reply(status, extra)

    def _reply(self, status: int, headers: Dict[str, str]) -> None:
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()
        except OSError:  # the sender gave up waiting (its timeout): nothing to answer to
            self.close_connection = True


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--secret", action="append", required=True, help="whsec_... (repeat while rotating)")
    args = parser.parse_args(argv)
    receiver = WebhookReceiver(args.secret, port=args.port)

    def report() -> None:
        seen = 0
        while True:
            time.sleep(0.5)
            requests = receiver.requests
            for item in requests[seen:]:
                event = receiver.events.get(item.event_id or "")
                print(json.dumps({"status": item.status, "id": item.event_id, "error": item.error,
                                  "type": event and event["type"], "subject": event and event["subject"]}),
                      flush=True)
            seen = len(requests)

    threading.Thread(target=report, daemon=True).start()
    receiver.serve_until_interrupted("webhook receiver on {endpoint}/events (Ctrl-C stops it)")


if __name__ == "__main__":
    main()
