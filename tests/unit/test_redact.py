"""URL query strings never reach a log line or an error: presigned upload URLs carry credentials there."""
from __future__ import annotations

import logging

import pytest
from ice_upload_sync.redact import redact_urls

SECRET = "c2VjcmV0LXNpZw"
PRESIGNED = (f"https://b.oss-cn-shanghai.aliyuncs.com/in/a.mp4?OSSAccessKeyId=STS.k&Expires=1764040000"
             f"&Signature={SECRET}%3D&security-token=tok")


@pytest.mark.parametrize("text, expected", [
    (PRESIGNED, "https://b.oss-cn-shanghai.aliyuncs.com/in/a.mp4?<redacted>"),
    (f"upload URL must be http(s): {PRESIGNED!r}", "upload URL must be http(s): 'https://b.oss-cn-shanghai.aliyuncs.com"
                                                   "/in/a.mp4?<redacted>'"),
    (f'{{"failed": ["{PRESIGNED}"]}}', '{"failed": ["https://b.oss-cn-shanghai.aliyuncs.com/in/a.mp4?<redacted>"]}'),
    # an SDK error quoting the request target, the URL inside encoded twice
    ("Max retries exceeded with url: /?UploadURLs=https%253A%252F%252Fb%252Fa.mp4%253FSignature%253Dx (Caused by x)",
     "Max retries exceeded with url: /?<redacted> (Caused by x)"),
    ("https%3A%2F%2Fb%2Fa.mp4%3FSignature%3Dx", "https%3A%2F%2Fb%2Fa.mp4%3F<redacted>"),
    ("https://host?X-Amz-Signature=x", "https://host?<redacted>"),
    ("Expires=1764040000&Signature=x", "Expires=<redacted>&Signature=<redacted>"),
    # what is not a URL's query stays as it is
    ("3829500c0fef429fa4ec1680b122d001", "3829500c0fef429fa4ec1680b122d001"),
    ("is ICE slow? 3 calls (request ABC-1)", "is ICE slow? 3 calls (request ABC-1)"),
    ("https://media.example.com/videos/a,b%20c%C3%A9.mp4", "https://media.example.com/videos/a,b%20c%C3%A9.mp4"),
])
def test_queries_are_redacted_and_the_rest_kept(text, expected):
    assert redact_urls(text) == expected
    assert redact_urls(expected) == expected  # idempotent


def test_every_log_record_is_redacted_whichever_logger_and_however_formatted(caplog):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("ice_upload_sync.records").warning("job %s: upload_url %r is odd", "j1", PRESIGNED)
    logging.getLogger("urllib3.connectionpool").warning("Retrying after a reset: %s", PRESIGNED)
    try:
        raise ValueError(f"cannot parse {PRESIGNED}")
    except ValueError:
        logging.getLogger("ice_upload_sync.sync").exception("a bug while saving")
    assert SECRET not in caplog.text and "Signature=" not in caplog.text
    assert caplog.text.count("?<redacted>") == 3  # two messages and the traceback


def test_a_record_without_a_url_is_left_as_it_was(caplog):
    caplog.set_level(logging.INFO)
    logging.getLogger("ice_upload_sync.sync").info("checked %d job(s)", 3)
    record = caplog.records[-1]
    assert (record.msg, record.args) == ("checked %d job(s)", (3,))
