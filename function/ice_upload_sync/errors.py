"""The few named errors the function raises; each message says what to fix."""
from __future__ import annotations


class IceUploadSyncError(Exception):
    """Base class of every error this package raises on purpose."""


class BadRequest(IceUploadSyncError, ValueError):
    """The event cannot be understood; nothing was written (HTTP: 400)."""


class MethodNotAllowed(BadRequest):
    """The HTTP trigger was called with a method other than POST (HTTP: 405)."""


class Unauthorized(IceUploadSyncError):
    """An HTTP callback failed signature or timestamp checks (HTTP: 401)."""


class ConfigError(IceUploadSyncError, ValueError):
    """An environment variable is missing or malformed."""


class UpstreamError(IceUploadSyncError):
    """ICE's API failed. ``retryable`` tells whether trying later may help."""

    def __init__(self, message: str, *, code: str | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


class StoreError(IceUploadSyncError):
    """The record store failed to read or write."""


class SyncIncomplete(IceUploadSyncError):
    """Some jobs could not be looked up or recorded; all others were written.

    Raised at the end of an invocation so FC retries it (async) or routes it to
    the failure destination. ``summary`` is the answer that would have been given.
    """

    def __init__(self, summary: dict) -> None:
        failed = summary.get("failed", [])  # at most the answer's list cap; the count is the total
        count = summary.get("failed_count", len(failed))
        shown = ", ".join(failed[:10]) + (" ..." if count > 10 else "")
        super().__init__(f"{count} job(s) not recorded: {shown}")
        self.summary = summary
