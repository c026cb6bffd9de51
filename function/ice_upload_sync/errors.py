"""The few named errors the function raises; each message says what to fix."""
from __future__ import annotations


class IceUploadSyncError(Exception):
    """Base class of every error this package raises on purpose."""


class BadRequest(IceUploadSyncError, ValueError):
    """The event cannot be understood; nothing was written (HTTP: ``http_status``)."""

    http_status = 400


class MethodNotAllowed(BadRequest):
    """The HTTP trigger was called with a method other than POST (HTTP: 405)."""

    http_status = 405


class PayloadTooLarge(BadRequest):
    """A callback body or queue message is larger than any ICE callback (HTTP: 413)."""

    http_status = 413


class Unauthorized(IceUploadSyncError):
    """An HTTP callback failed signature or timestamp checks (HTTP: 401)."""


class ConfigError(IceUploadSyncError, ValueError):
    """An environment variable is missing or malformed."""


class UpstreamError(IceUploadSyncError):
    """ICE's API failed. ``retryable``: trying again soon may help (throttling, 5xx, timeouts).
    ``permanent``: it will not pass by itself (our credentials or permissions, an endpoint that
    does not resolve or refuses connections): the message names what to fix."""

    def __init__(self, message: str, *, code: str | None = None, retryable: bool = False,
                 permanent: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.permanent = permanent


class StoreError(IceUploadSyncError):
    """The record store failed to read or write."""


class SyncIncomplete(IceUploadSyncError):
    """Some jobs could not be looked up or recorded; all others were written.

    Raised at the end of an invocation so FC retries it (async) or routes it to
    the failure destination. ``summary`` is the answer that would have been given.
    """

    def __init__(self, summary: dict) -> None:
        parts = []
        failed = summary.get("failed", [])  # at most the answer's list cap; the count is the total
        failed_count = summary.get("failed_count", len(failed))
        if failed_count:
            parts.append(f"{failed_count} job(s) not recorded: " + ", ".join(failed[:10])
                         + (" ..." if failed_count > 10 else ""))
        refused = summary.get("refused", [])
        refused_count = summary.get("refused_count", len(refused))
        if refused_count:
            shown = "; ".join(f"#{item['index']} ({item['message_id'] or 'no messageId'}): {item['error']}"
                              for item in refused[:3])
            parts.append(f"{refused_count} message(s) refused: {shown}" + (" ..." if refused_count > 3 else ""))
        super().__init__("; ".join(parts) or "the invocation did not finish its work")
        self.summary = summary


class MessagesRefused(SyncIncomplete):
    """Some messages of an MNS / EventBridge batch were malformed; every other one was recorded.

    A ``SyncIncomplete`` rather than a ``BadRequest``: something was written (``BadRequest``
    promises nothing was). Raised after the valid messages were checked and recorded, so the
    batch, bad messages included, reaches the failure destination; ``summary["refused"]``
    says which messages (index in the batch, MNS ``messageId``) and why. Retrying the batch
    repeats the good messages harmlessly (the same information twice changes nothing).
    """


class IceRefused(SyncIncomplete):
    """ICE refused our lookups for a reason that will not pass by itself (contract section 6).

    Raised at the end of a timer or direct invocation, after everything else was recorded, so
    FC counts an error, alarms fire and the failure destination sees it; the jobs stay tracked.
    The message is ICE's refusal and what to fix (a variable, a permission).
    """

    def __init__(self, summary: dict) -> None:
        super().__init__(summary)
        unreached = summary.get("unreached_count", 0)
        self.args = (f"ICE refused {unreached} lookup(s): {summary.get('ice_error')}",)
