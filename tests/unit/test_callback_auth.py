"""ICE callback signatures: md5("{CallbackURL}|{timestamp}|{AuthKey}"), constant-time, key rotation."""
import pytest
from hypothesis import given
from hypothesis import strategies as st
from ice_upload_sync.callback_auth import sign, verify
from ice_upload_sync.errors import Unauthorized
from ice_upload_sync.events import HttpCallback, parse_event

from tests.hostile_values import ANY_TEXT, FUZZ, HEADER_NAMES, HEADER_VALUES

URL = "https://www.example.com/your/callback"


def test_the_documented_example_with_the_correct_hash():
    # The ICE doc's own example hash is wrong; this is md5 of the documented inputs.
    assert sign(URL, "1519375990", "Test123") == "c587b80d2d0ede300e8967937da7219b"


def callback(signature, timestamp, domain="www.example.com", path="/your/callback"):
    headers = {}
    if signature is not None:
        headers["x-ice-signature"] = signature
    if timestamp is not None:
        headers["x-ice-timestamp"] = timestamp
    return HttpCallback(method="POST", raw_path=path, domain_name=domain, headers=headers)


def check(request, keys=("Test123",), url=URL, now=1519375990 + 10, skew=300):
    verify(request, keys=keys, configured_url=url, now=now, max_skew_s=skew)


def test_a_valid_signature_passes_with_configured_or_derived_url():
    good = callback("c587b80d2d0ede300e8967937da7219b", "1519375990")
    check(good)
    check(good, url=None)  # derived from domainName + rawPath
    check(callback("C587B80D2D0EDE300E8967937DA7219B", "1519375990"))  # hex case does not matter


def test_either_key_passes_while_rotating():
    request = callback(sign(URL, "1519375990", "NewKey"), "1519375990")
    check(request, keys=("Test123", "NewKey"))
    with pytest.raises(Unauthorized):
        check(request, keys=("Test123",))


@pytest.mark.parametrize("signature, timestamp, message", [
    (None, "1519375990", "missing"),
    ("c587b80d2d0ede300e8967937da7219b", None, "missing"),
    ("c587b80d2d0ede300e8967937da7219b", "15193759x0", "Unix seconds"),
    ("0" * 32, "1519375990", "does not match"),
    (sign(URL, "1519375991", "Test123"), "1519375990", "does not match"),
])
def test_bad_signatures_are_refused(signature, timestamp, message):
    with pytest.raises(Unauthorized, match=message):
        check(callback(signature, timestamp))


def test_replays_outside_the_window_are_refused():
    request = callback("c587b80d2d0ede300e8967937da7219b", "1519375990")
    with pytest.raises(Unauthorized, match="window"):
        check(request, now=1519375990 + 301)
    with pytest.raises(Unauthorized, match="window"):
        check(request, now=1519375990 - 301)


def test_another_url_does_not_verify():
    request = callback("c587b80d2d0ede300e8967937da7219b", "1519375990", path="/other")
    with pytest.raises(Unauthorized):
        check(request, url=None)


@pytest.mark.parametrize("signature, timestamp, message", [
    ("c587b80d2d0ede300e8967937da7219b", "\u00b2", "Unix seconds"),  # str.isdigit() says yes, int() says no
    ("c587b80d2d0ede300e8967937da7219b", "\u0661\u0665\u0661\u0669", "Unix seconds"),  # Arabic-Indic digits
    ("c587b80d2d0ede300e8967937da7219b", "9" * 400, "Unix seconds"),
    ("c587b80d2d0ede300e8967937da7219b", "9" * 5000, "Unix seconds"),  # int() refuses > 4300 digits
    ("c587b80d2d0ede300e8967937da7219b", "-1519375990", "Unix seconds"),
    ("c587b80d2d0ede300e8967937da7219b", "1519375990\x00", "Unix seconds"),
    ("\u00e9" * 32, "1519375990", "32 hexadecimal"),  # compare_digest refuses non-ASCII str
    ("c587b80d2d0ede300e8967937da7219\u00e9", "1519375990", "32 hexadecimal"),
    ("c587b80d2d0ede300e8967937da7219b\ud800", "1519375990", "32 hexadecimal"),
    ("c587b80d2d0ede300e8967937da7219b" * 1000, "1519375990", "32 hexadecimal"),
    ("\x00" * 32, "1519375990", "32 hexadecimal"),
])
def test_garbage_in_the_signature_headers_is_unauthorized(signature, timestamp, message):
    with pytest.raises(Unauthorized, match=message):
        check(callback(signature, timestamp))


def http_event(headers, domain="www.example.com", path="/your/callback"):
    return {"version": "v1", "rawPath": path, "headers": headers, "body": "{}", "isBase64Encoded": False,
            "requestContext": {"domainName": domain, "http": {"method": "POST"}}}


@pytest.mark.parametrize("headers, message", [
    ({"X-Ice-Signature": ["c587b80d2d0ede300e8967937da7219b"], "X-Ice-Timestamp": "1519375990"}, "X-ICE-SIGNATURE"),
    ({"X-Ice-Signature": "c587b80d2d0ede300e8967937da7219b", "X-Ice-Timestamp": 1519375990}, "X-ICE-TIMESTAMP"),
    ({"X-Ice-Signature": None, "X-Ice-Timestamp": "1519375990"}, "X-ICE-SIGNATURE"),
    ({"X-Ice-Signature": "c587b80d2d0ede300e8967937da7219b", "X-Ice-Timestamp": 1.5e9}, "X-ICE-TIMESTAMP"),
    ({"X-Ice-Signature": "c587b80d2d0ede300e8967937da7219b", "x-ice-signature": "0" * 32,
      "X-Ice-Timestamp": "1519375990"}, "X-ICE-SIGNATURE"),  # given twice: neither is believed
])
def test_signature_headers_that_are_not_one_string_are_unauthorized(headers, message):
    with pytest.raises(Unauthorized, match=message):
        check(parse_event(http_event(headers)))


def test_a_callback_url_that_is_not_valid_text_is_unauthorized():
    request = parse_event(http_event({"X-Ice-Signature": "c587b80d2d0ede300e8967937da7219b",
                                      "X-Ice-Timestamp": "1519375990"}, path="/your/\ud800"))
    with pytest.raises(Unauthorized, match="not valid text"):
        check(request, url=None)


@FUZZ
@given(headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=5),
       domain=st.one_of(st.just("www.example.com"), ANY_TEXT, st.none(), st.integers()),
       path=st.one_of(st.just("/your/callback"), ANY_TEXT, st.none(), st.lists(ANY_TEXT, max_size=1)))
def test_any_header_content_is_unauthorized_and_nothing_else(headers, domain, path):
    """Whatever a stranger puts in the headers (and the URL), the check answers Unauthorized."""
    request = parse_event(http_event(headers, domain, path))
    try:
        check(request, url=None)
    except Unauthorized:
        return
    # accepted: only the documented example's genuine signature, timestamp and URL get here
    assert request.header("x-ice-signature").strip().lower() == "c587b80d2d0ede300e8967937da7219b"
    assert request.header("x-ice-timestamp").strip() == "1519375990"
