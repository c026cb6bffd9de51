"""One rule for every log line and error message: a URL's query string is never shown.

Presigned upload URLs carry their credentials in the query (``Signature=``,
``security-token=``, ``OSSAccessKeyId=``, ``Expires=``): ``https://host/path?<redacted>``
keeps what tells uploads apart (host and path) and drops what grants access. SDK error texts
carry our request's query too (``... with url: /?UploadURLs=https%253A%252F...``), so they are
redacted before they are passed on. Records keep ``upload_url`` as ICE returned it: a record
is data, not a log.

``logs.install_record_factory()`` (called when the package is imported) applies
``redact_record`` to every log record of the process, ours and the SDKs', so no logger call
can forget it.
"""
from __future__ import annotations

import logging
import re

REDACTED = "<redacted>"

# A token with a "/" in it (a URL, or a request target such as "/?UploadURLs=..."), then "?"
# and a query: the query goes, up to the next space, quote or bracket. Queries may hold ")",
# "," or "#": redacting too much is safe, too little is not.
_QUERY = re.compile(r"""([^\s'"<>\\?]*/[^\s'"<>\\?]*)\?[^\s'"<>\\]+""")
# The same, percent-encoded (once or twice) inside another query or a list of URLs.
_ENCODED_QUERY = re.compile(r"""(%(?:25)?2F[^\s'"<>\\]*?)%(?:25)?3F[^\s'"<>\\]+""", re.IGNORECASE)
# Belt and braces: a credential parameter wherever it shows up without a "/?" before it.
_CREDENTIAL_PARAM = re.compile(
    r"""(?i)\b((?:x-(?:oss|amz)-)?(?:signature|security-token|credential)|securitytoken|ossaccesskeyid|"""
    r"""accesskeyid|expires|auth_key)=[^&\s'"<>\\]+""")


def redact_urls(text: str) -> str:
    """``text`` with the query string of every URL in it replaced by ``<redacted>``."""
    if "?" not in text and "%" not in text and "=" not in text:  # the usual case: a job ID, a plain message
        return text
    text = _QUERY.sub(rf"\1?{REDACTED}", text)
    text = _ENCODED_QUERY.sub(rf"\1%3F{REDACTED}", text)
    return _CREDENTIAL_PARAM.sub(rf"\1={REDACTED}", text)


def first_line(value: object, limit: int = 200) -> str:
    """The first line of ``str(value)`` (an error's text), at most ``limit`` characters, URL
    queries redacted: what an SDK's error may say in a log line or a stored error."""
    text = str(value)
    text = text.splitlines()[0] if text else ""
    return redact_urls(text)[:limit]


_formatter = logging.Formatter()


def redact_record(record: logging.LogRecord) -> None:
    """Redact a log record in place: its message, its traceback and its stack."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a broken format: logging reports it when the record is emitted
        return
    clean = redact_urls(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        # formatters print ``exc_text`` when it is set, instead of formatting the exception again
        record.exc_text = redact_urls(_formatter.formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redact_urls(record.stack_info)
