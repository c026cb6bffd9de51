"""The completion event (contract section 9): a CloudEvent per job and state, and its Standard Webhooks signature.

- ``build_event(record, region)``: the CloudEvents 1.0 structured-JSON event, its body encoded
  once. ``id`` is ``event_id(job_id, state)``: the first 32 hex digits of SHA-256 of
  ``"<job_id>\\n<state>"``. So a repeat (a retry, a second sweep, a duplicate callback) carries
  the same id and receivers deduplicate on it; a different state of the same job is a
  different event. Hex digits only: no ``.`` (the Standard Webhooks signed string is
  ``{id}.{timestamp}.{body}``) and valid as an EventBridge event id (letters, digits,
  hyphens). ``subject`` and ``type`` carry the job ID and the state in readable form.
- ``webhook_headers(...)``: the Standard Webhooks headers. ``webhook-timestamp`` is the time of
  the attempt, not of the event (receivers refuse timestamps more than 5 minutes off, and a
  retry may come hours later); ``webhook-signature`` holds one ``v1,<base64>`` per key of
  ``NOTIFY_SECRET``, space-separated, so rotation never breaks a receiver.

Pure. Where the event goes is ``delivery.py``; when it is sent again, ``notify.py``.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Sequence

from .config import WebhookSecret
from .records import JobRecord, UnencodableRecord

SPECVERSION = "1.0"
CONTENT_TYPE = "application/cloudevents+json"
DATA_CONTENT_TYPE = "application/json"
USER_AGENT = "ice-upload-sync"


def event_id(job_id: str, state: str) -> str:
    """Stable for this job and this state; see the module's docstring."""
    return hashlib.sha256(f"{job_id}\n{state}".encode("utf-8", "surrogatepass")).hexdigest()[:32]


def event_type(state: str) -> str:
    return f"ice.upload.{state}"


def event_source(region: str) -> str:
    return f"ice-upload-sync/{region}"


@dataclass(frozen=True)
class CloudEvent:
    """A CloudEvents 1.0 event in structured JSON mode; ``body`` is exactly what is sent and signed."""

    id: str
    source: str
    type: str
    subject: str  # the job ID
    time: str  # the record's updated_at
    data: Mapping[str, Any] = field(repr=False)  # the record (contract section 4)
    body: bytes = field(repr=False)
    specversion: str = SPECVERSION
    datacontenttype: str = DATA_CONTENT_TYPE

    @property
    def job_id(self) -> str:
        return self.subject

    @property
    def state(self) -> str:
        return str(self.data["state"])

    def to_dict(self) -> Dict[str, Any]:
        return _envelope(self.id, self.source, self.type, self.subject, self.time, self.data)


def _envelope(identifier: str, source: str, kind: str, subject: str, moment: str,
              data: Mapping[str, Any]) -> Dict[str, Any]:
    return {"specversion": SPECVERSION, "id": identifier, "source": source, "type": kind, "subject": subject,
            "time": moment, "datacontenttype": DATA_CONTENT_TYPE, "data": data}


def build_event(record: JobRecord, region: str) -> CloudEvent:
    """The event announcing that ``record`` is in its state. Raises ``UnencodableRecord`` for a
    record that is not strict JSON in UTF-8 (normalization makes that a bug, never ICE's doing)."""
    data = record.to_dict()
    identifier, source, kind = event_id(record.job_id, record.state), event_source(region), event_type(record.state)
    envelope = _envelope(identifier, source, kind, record.job_id, record.updated_at, data)
    try:
        body = json.dumps(envelope, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except (ValueError, TypeError, RecursionError) as exc:
        raise UnencodableRecord(f"the event of job {record.job_id} is not strict JSON in UTF-8 "
                                f"({type(exc).__name__}: {str(exc)[:120]})") from None
    return CloudEvent(identifier, source, kind, record.job_id, record.updated_at, data, body)


# ---------------------------------------------------------------- Standard Webhooks signature


def sign(message_id: str, timestamp: int, body: bytes, secrets: Sequence[WebhookSecret]) -> str:
    """``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` per key,
    space-separated (how Standard Webhooks rotates keys; verifiers accept any one that matches)."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return " ".join("v1," + base64.b64encode(hmac.new(secret.key, signed, hashlib.sha256).digest()).decode("ascii")
                    for secret in secrets)


def webhook_headers(event: CloudEvent, secrets: Sequence[WebhookSecret], timestamp: int) -> Dict[str, str]:
    """The request's headers. Without secrets (allowed for loopback endpoints only) no signature."""
    headers = {
        "Content-Type": CONTENT_TYPE,
        "User-Agent": USER_AGENT,
        "webhook-id": event.id,
        "webhook-timestamp": str(timestamp),
    }
    if secrets:
        headers["webhook-signature"] = sign(event.id, timestamp, event.body, secrets)
    return headers
