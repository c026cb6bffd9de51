"""The FC edge: ``initialize(context)`` once per instance, ``handler(event, context)`` per event.

Thin on purpose: decode -> parse -> run the use case -> shape the answer.

FC's Python runtime passes whatever these functions return through ``json.dumps``, so both
return plain JSON values (``initialize`` returns None). The initializer runs inside the
first request's latency, which for an HTTP callback is part of ICE's 3 seconds on an
instance with a fraction of a vCPU: it reads the settings and opens the store, and leaves
the ICE SDK (about a second of CPU to import) to the first invocation that needs it.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Optional

from ice_upload_sync import callback_auth, handback
from ice_upload_sync.config import Settings
from ice_upload_sync.errors import (
    BadRequest,
    IceRefused,
    MessagesRefused,
    MethodNotAllowed,
    SyncIncomplete,
    Unauthorized,
)
from ice_upload_sync.eventbridge import EventBridgeBus
from ice_upload_sync.events import HttpCallback, SyncRequest, parse_event, parse_http_body
from ice_upload_sync.ice import IceGateway, resolve_credentials
from ice_upload_sync.logs import REQUEST_ID, use_json_lines
from ice_upload_sync.outbox import Outbox
from ice_upload_sync.redact import redact_urls
from ice_upload_sync.stores import RecordStore, open_store
from ice_upload_sync.sync import SyncService, invocation_deadline, utc_now

logger = logging.getLogger("ice_upload_sync")
# How this instance is set up (CALLBACK_AUTH_KEY unset): for an FC instance serving ICE's callbacks;
# the operator's command line, which runs the handler in a shell, leaves these out.
setup_logger = logging.getLogger("ice_upload_sync.setup")


@dataclass(frozen=True)
class App:
    """What one instance builds once: settings, the ICE gateway, the store and the use case."""

    settings: Settings
    gateway: IceGateway
    store: RecordStore
    service: SyncService
    bus: Optional[EventBridgeBus] = None  # NOTIFY_EVENTBRIDGE: completion events go there too

    def bind(self, credentials: Any) -> None:
        """Use these credentials from now on, for every client: FC's STS credentials rotate.

        Nothing is built here: each client remembers them, and its SDK is imported on first use.
        """
        self.gateway.bind(credentials)
        self.store.bind(credentials)
        if self.bus is not None:
            self.bus.bind(credentials)


_app: Optional[App] = None


def initialize(context: Any) -> None:
    """FC3 initializer: read the settings and open the store; the ICE client waits for its first use."""
    token = REQUEST_ID.set(getattr(context, "request_id", None))
    try:
        _initialize(context)
    finally:
        REQUEST_ID.reset(token)


def _initialize(context: Any) -> None:
    global _app
    if not logging.getLogger().handlers:  # local runs; FC installs its own handler
        logging.basicConfig(level=logging.INFO)
        use_json_lines()
    elif os.environ.get("FC_FUNCTION_NAME"):  # on FC: its handler writes our JSON lines
        use_json_lines()
    logger.setLevel(logging.INFO)
    settings = Settings.from_env()  # a CALLBACK_AUTH_KEY that is set but unusable stops the instance here
    if not settings.callback_auth_keys:
        setup_logger.warning("CALLBACK_AUTH_KEY is not set: HTTP callbacks are accepted without checking their "
                             "signature. Set it to the AuthKey of ICE's callback settings.")
    credentials = resolve_credentials(context)
    gateway = IceGateway(settings)  # the SDK is imported when a lookup needs it
    store = open_store(settings, credentials)
    bus = EventBridgeBus(settings) if settings.notify_eventbridge_bus else None  # imports its SDK on first use
    outbox = Outbox(store, settings, utc_now, bus=bus)  # where completion events go
    app = App(settings, gateway, store, SyncService(gateway, store, settings, outbox=outbox, clock=utc_now), bus)
    app.bind(credentials)
    _app = app


def handler(event: Any, context: Any) -> Any:
    token = REQUEST_ID.set(getattr(context, "request_id", None))  # on every log line, from every thread
    try:
        return _handle(event, context)
    finally:
        REQUEST_ID.reset(token)


def _handle(event: Any, context: Any) -> Any:
    started = time.monotonic()
    if _app is None:
        initialize(context)
    app = _app
    assert app is not None
    app.bind(resolve_credentials(context))  # STS credentials rotate between invocations
    try:
        parsed = parse_event(event)
    except BadRequest as exc:
        _log({"event": "bad_request", "error": str(exc)}, context, started, logging.WARNING)
        raise
    if isinstance(parsed, HttpCallback):
        return _http_callback(app, parsed, context, started)
    for refused in parsed.refused:  # a batch's malformed messages; the others are recorded, then we raise
        _log({"event": "message_refused", **refused.to_dict()}, context, started, logging.WARNING)
    summary = _run(app, parsed, context, invocation_deadline(started, _timeout_s(context)), started)
    # Timer and direct invocations are not in a hurry: leave the instance ready to look
    # callbacks up, and put their events on the bus, at once (no-ops once the clients exist).
    app.gateway.prepare()
    if app.bus is not None:
        try:
            app.bus.prepare()
        except Exception as exc:  # noqa: BLE001 - the run succeeded: its events stay owed, its answer stands
            logger.warning("the EventBridge client could not be built (%s: %s); events for the bus stay owed",
                           type(exc).__name__, str(exc)[:200])
    return summary


def _http_callback(app: App, request: HttpCallback, context: Any, started: float) -> dict:
    """ICE waits 3 s: authenticate, track, look up if the ICE client is ready, answer 200 regardless."""
    try:
        if request.method != "POST":
            raise MethodNotAllowed(f"method {request.method[:16]!r} not allowed; ICE callbacks are POST")
        if app.settings.callback_auth_keys:
            _authenticate(app, request)
        sync_request = parse_http_body(request)
    except Unauthorized as exc:
        _log({"event": "callback_refused", "reason": str(exc)}, context, started, logging.WARNING)
        return _http_answer(401, {"error": str(exc)})
    except BadRequest as exc:
        _log({"event": "bad_request", "error": str(exc)}, context, started, logging.WARNING)
        return _http_answer(exc.http_status, {"error": str(exc)})
    authenticated = bool(app.settings.callback_auth_keys)
    if authenticated and handback.is_handed_back(request):
        # Our own hand-back, which FC runs asynchronously: nobody waits for this answer, so the
        # lookup has the function's whole time, on a cold instance too, and a failure raises
        # (FC retries, then the failure destination). It is never handed back again.
        return _http_answer(200, _run(app, sync_request, context,
                                      invocation_deadline(started, _timeout_s(context)), started))
    deadline = started + app.settings.callback_deadline_s
    # A cold instance would spend the callback's whole window importing the ICE SDK: it
    # records the job as tracked and hands the request back to the function's own trigger, to
    # be looked up asynchronously (else the sweep records it). A callback that names no job ID
    # (only a URL) has nothing to track, so it is looked up whatever it costs.
    defer = not app.gateway.ready and not sync_request.upload_urls
    summary = _run(app, sync_request, context, deadline, started, defer_lookups=defer, answering_ice=True)
    if defer and summary["deferred"] and authenticated and app.settings.callback_handback:
        summary["handed_back"] = _hand_back(app, request, context, started, deadline)
    return _http_answer(200, summary)


def _hand_back(app: App, request: HttpCallback, context: Any, started: float, deadline: float) -> bool:
    """``handback.hand_back`` within what is left of the callback's deadline; True if FC took it.

    Either way the jobs are tracked: a hand-back FC did not take is recorded by the next sweep.
    """
    url = handback.trigger_url(request, app.settings.callback_url)
    if url is None:
        logger.warning("cannot hand the callback back: no trigger URL to use (set CALLBACK_URL to the HTTP "
                       "trigger's https:// URL); the next sweep records the job")
        return False
    timeout_s = max(0.2, min(handback.TIMEOUT_S, deadline - time.monotonic()))
    outcome = handback.hand_back(request, url, timeout_s=timeout_s)
    _log({"event": "handback", "accepted": outcome.accepted, "detail": outcome.detail, "url": redact_urls(url)},
         context, started, logging.INFO if outcome.accepted else logging.WARNING)
    return outcome.accepted


def _authenticate(app: App, request: HttpCallback) -> None:
    """``callback_auth.verify``, whose every refusal is ``Unauthorized``.

    The anonymous caller controls every byte it checks; ``verify`` is written to be total,
    and if it ever is not, the caller still gets 401 (the failure is logged with its trace),
    never a 5xx.
    """
    try:
        callback_auth.verify(request, keys=app.settings.callback_auth_keys, configured_url=app.settings.callback_url,
                             now=time.time(), max_skew_s=app.settings.callback_max_skew_s)
    except Unauthorized:
        raise
    except Exception as exc:  # noqa: BLE001 - a bug in the check must not answer a stranger with a 5xx
        logger.exception("checking a callback's signature failed unexpectedly")
        raise Unauthorized("the callback's signature could not be checked") from exc


def _run(app: App, request: SyncRequest, context: Any, deadline: float, started: float, *,
         defer_lookups: bool = False, answering_ice: bool = False) -> dict:
    """Run the use case and log its summary; raise after everything else is written when
    a job could not be recorded (``SyncIncomplete``), a batch had malformed messages
    (``MessagesRefused``, a ``SyncIncomplete`` too) or ICE refused us for a reason that will
    not pass by itself (``IceRefused``, likewise), so FC counts an error and retries or routes
    the event to the failure destination. Answering ICE's own HTTP callback, that refusal is
    logged instead: the job is tracked, and ICE must get its 200."""
    result = app.service.run(request, deadline=deadline, defer_lookups=defer_lookups)
    summary = result.to_dict()
    incomplete = summary["failed_count"] or summary["refused_count"] or result.ice_refused
    _log({"event": "summary", "source": request.source, "sweep": request.sweep, **summary},
         context, started, logging.ERROR if incomplete else logging.INFO)
    if summary["refused_count"]:
        raise MessagesRefused(summary)
    if result.ice_refused:
        if not answering_ice:
            raise IceRefused(summary)
        logger.error("ICE refused the lookup for good: %s", summary["ice_error"])
    if summary["failed_count"]:
        raise SyncIncomplete(summary)
    return summary


def _http_answer(status: int, body: dict) -> dict:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


def _timeout_s(context: Any) -> Optional[float]:
    """The function's timeout in seconds: FC3 gives ``context.function.timeout`` as text ("300")."""
    timeout = getattr(getattr(context, "function", None), "timeout", None)
    try:
        seconds = float(timeout)
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None


def _log(fields: dict, context: Any, started: float, level: int = logging.INFO) -> None:
    line = {"fc_request_id": getattr(context, "request_id", None),
            "duration_ms": round((time.monotonic() - started) * 1000, 1), **fields}
    logger.log(level, json.dumps(line, default=str), extra={"fields": line})
