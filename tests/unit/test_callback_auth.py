"""ICE callback signatures: md5("{CallbackURL}|{timestamp}|{AuthKey}"), constant-time, key rotation."""
import pytest
from ice_upload_sync.callback_auth import sign, verify
from ice_upload_sync.errors import Unauthorized
from ice_upload_sync.events import HttpCallback

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
