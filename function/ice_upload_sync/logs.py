"""Log lines that carry the request: one JSON object per line, with FC's request ID, from any thread.

- ``REQUEST_ID`` (a context variable) holds the invocation's FC request ID; the handler sets it.
- Every log record created while it is set gets ``fc_request_id`` (a record factory, so the
  SDKs' records get it too). Worker threads see it because tasks are submitted through
  ``ContextThreadPool``, which runs each task in a copy of the submitter's context.
- ``JsonFormatter`` writes ``{"time", "level", "logger", "fc_request_id", "message", ...}``;
  a record logged with ``extra={"fields": {...}}`` (the invocation's summary) has those fields
  merged in, so SLS indexes them as they are. ``use_json_lines`` puts it on the root
  logger's handlers: FC's own handler on FC, the one ``basicConfig`` made locally.

Redaction of URL query strings (``redact.py``) applies before any of this.
"""
from __future__ import annotations

import contextvars
import json
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Optional

from .redact import redact_record, redact_urls

REQUEST_ID: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("fc_request_id", default=None)


class JsonFormatter(logging.Formatter):
    """A log record as one line of JSON; never raises (a field that is not JSON becomes its ``str``)."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "fc_request_id": getattr(record, "fc_request_id", None),
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):  # the message is these fields as text: keep them as fields instead
            line["message"] = str(fields.get("event") or line["message"])
            line.update({key: value for key, value in fields.items() if key not in line})
        if record.exc_info:
            line["exception"] = record.exc_text or self.formatException(record.exc_info)
        if record.threadName and record.threadName != "MainThread":
            line["thread"] = record.threadName
        return redact_urls(json.dumps(line, ensure_ascii=False, default=str))


class ContextThreadPool(ThreadPoolExecutor):
    """A ``ThreadPoolExecutor`` whose tasks run in a copy of the submitting thread's context.

    Plain pools run tasks in the worker's own (empty) context, so a log line from a writer
    thread would not know which invocation it belongs to.
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)


_install_lock = threading.Lock()
_installed = False


def install_record_factory() -> None:
    """Every log record created from now on is redacted (``redact.redact_record``) and carries the
    ``fc_request_id`` of its context (idempotent).

    A record factory, not a ``logging.Filter``: a logger's filters see only the records logged
    to that very logger, and the handler is FC's, on the root logger.
    """
    global _installed
    with _install_lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def ours(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            redact_record(record)
            record.fc_request_id = REQUEST_ID.get()
            return record

        logging.setLogRecordFactory(ours)
        _installed = True


def use_json_lines(logger: Optional[logging.Logger] = None) -> None:
    """Format every handler of ``logger`` (the root logger) as JSON lines."""
    for handler in (logger or logging.getLogger()).handlers:
        if not isinstance(handler.formatter, JsonFormatter):
            handler.setFormatter(JsonFormatter())
