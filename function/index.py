"""The FC edge: ``initialize(context)`` once per instance, ``handler(event, context)`` per event.

Thin on purpose: decode -> parse -> run the use case -> shape the answer. Importing
this module imports no SDK; ``initialize`` builds the clients (and imports them).
"""
from __future__ import annotations

import time

# Importing this module is the cold start's first step: it imports nothing else on
# purpose (``python -X importtime -c "import index"``: a few ms). The package, logging,
# json and the SDK are imported by ``initialize``, which FC runs once per instance;
# the handler's own imports below then cost a dictionary lookup each.
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (6 ms)
if TYPE_CHECKING:
    from typing import Any, Optional

    from ice_upload_sync.config import Settings
    from ice_upload_sync.events import HttpCallback, SyncRequest
    from ice_upload_sync.ice import IceGateway
    from ice_upload_sync.stores import RecordStore
    from ice_upload_sync.sync import SyncService

_INFO, _WARNING, _ERROR = 20, 30, 40  # logging's levels, without importing logging here


class App:
    """What one instance builds once: settings, the ICE gateway, the store and the use case."""

    __slots__ = ("settings", "gateway", "store", "service")

    def __init__(self, settings: Settings, gateway: IceGateway, store: RecordStore, service: SyncService) -> None:
        self.settings = settings
        self.gateway = gateway
        self.store = store
        self.service = service


_app: Optional[App] = None


def initialize(context: Any) -> App:
    """FC3 initializer: read settings, import the SDK and build its client, open the store."""
    global _app
    import logging

    from ice_upload_sync.config import Settings
    from ice_upload_sync.ice import IceGateway, resolve_credentials
    from ice_upload_sync.stores import open_store
    from ice_upload_sync.sync import SyncService

    if not logging.getLogger().handlers:  # local runs; FC installs its own handler
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    logging.getLogger("ice_upload_sync").setLevel(logging.INFO)
    settings = Settings.from_env()
    credentials = resolve_credentials(context)
    gateway = IceGateway(settings)
    gateway.bind(credentials)
    store = open_store(settings, credentials)
    _app = App(settings, gateway, store, SyncService(gateway, store, settings))
    return _app


def handler(event: Any, context: Any) -> Any:
    started = time.monotonic()
    app = _app or initialize(context)
    from ice_upload_sync.errors import BadRequest
    from ice_upload_sync.events import HttpCallback, parse_event
    from ice_upload_sync.ice import resolve_credentials
    from ice_upload_sync.sync import request_deadline

    credentials = resolve_credentials(context)  # STS credentials rotate between invocations
    app.gateway.bind(credentials)
    app.store.bind(credentials)
    try:
        parsed = parse_event(event)
    except BadRequest as exc:
        _log({"event": "bad_request", "error": str(exc)}, context, started, _WARNING)
        raise
    if isinstance(parsed, HttpCallback):
        return _http_callback(app, parsed, context, started)
    summary = _run(app, parsed, context, request_deadline(_remaining_s(context)), started)
    return summary


def _http_callback(app: App, request: HttpCallback, context: Any, started: float) -> dict:
    """ICE waits 3 s: authenticate, track, look up under a deadline, answer 200 regardless."""
    from ice_upload_sync import callback_auth
    from ice_upload_sync.errors import BadRequest, MethodNotAllowed, Unauthorized
    from ice_upload_sync.events import parse_http_body

    try:
        if request.method != "POST":
            raise MethodNotAllowed(f"method {request.method} not allowed; ICE callbacks are POST")
        if app.settings.callback_auth_keys:
            callback_auth.verify(request, keys=app.settings.callback_auth_keys,
                                 configured_url=app.settings.callback_url, now=time.time(),
                                 max_skew_s=app.settings.callback_max_skew_s)
        sync_request = parse_http_body(request)
    except Unauthorized as exc:
        _log({"event": "callback_refused", "reason": str(exc)}, context, started, _WARNING)
        return _http_answer(401, {"error": str(exc)})
    except BadRequest as exc:
        status = 405 if isinstance(exc, MethodNotAllowed) else 400
        _log({"event": "bad_request", "error": str(exc)}, context, started, _WARNING)
        return _http_answer(status, {"error": str(exc)})
    deadline = started + app.settings.callback_deadline_s
    return _http_answer(200, _run(app, sync_request, context, deadline, started))


def _run(app: App, request: SyncRequest, context: Any, deadline: float, started: float) -> dict:
    from ice_upload_sync.errors import SyncIncomplete

    summary = app.service.run(request, deadline=deadline).to_dict()
    level = _ERROR if summary["failed_count"] else _INFO
    _log({"event": "summary", "source": request.source, "sweep": request.sweep, **summary},
         context, started, level)
    if summary["failed_count"]:
        raise SyncIncomplete(summary)  # after every other record was written: FC retries
    return summary


def _http_answer(status: int, body: dict) -> dict:
    import json

    return {"statusCode": status, "headers": {"Content-Type": "application/json"},
            "body": json.dumps(body)}


def _remaining_s(context: Any) -> Optional[float]:
    """Seconds this invocation has left: the context's own clock where it has one, else the timeout."""
    remaining_ms = getattr(context, "get_remaining_time_in_ms", None)
    if callable(remaining_ms):
        try:
            return float(remaining_ms()) / 1000
        except (TypeError, ValueError):
            pass
    timeout = getattr(getattr(context, "function", None), "timeout", None)
    try:
        return float(timeout) if timeout else None
    except (TypeError, ValueError):
        return None


def _log(fields: dict, context: Any, started: float, level: int = _INFO) -> None:
    import json
    import logging

    line = {"fc_request_id": getattr(context, "request_id", None),
            "duration_ms": round((time.monotonic() - started) * 1000, 1), **fields}
    logging.getLogger("ice_upload_sync").log(level, json.dumps(line, default=str))
