"""``ice-callback set``'s plan from ICE's setting and the request, and ICE's rule for an AuthKey: pure, no I/O."""
from __future__ import annotations

import io
import json
import string
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ice_upload_sync.callback_setting import (
    MAX_AUTH_KEY_LENGTH,
    URL_UPLOAD_EVENT,
    BadCallbackRequest,
    CallbackRefused,
    CallbackSetting,
    SetRequest,
    apply,
    auth_key_problem,
    masked_key,
    new_auth_key,
    parse_event_types,
    plan,
)

OURS = "https://1234567890123456.cn-shanghai.fcapp.run/ice-callback"
OTHER = "https://media.example.com/ice-events"
KEY = "OurKey2026abc"
THEIR_KEY = "TheirKey42x"


def http(url=OTHER, events=("ProduceMediaComplete",), key=THEIR_KEY, switch="on") -> CallbackSetting:
    return CallbackSetting("HTTP", url, None, tuple(events), switch, key)


NOTHING = CallbackSetting()


# ---------------------------------------------------------------- ICE's rule for an AuthKey


@pytest.mark.parametrize("key", ["TestKey001", "Ab1", "A" * 30 + "b1", "1aB"])
def test_keys_ice_accepts(key):
    assert auth_key_problem(key) is None


@pytest.mark.parametrize("key, why", [
    ("", "empty"),
    ("Ab1" * 11, "at most 32"),  # 33 characters
    ("alllowercase123", "upper-case"),
    ("ALLUPPERCASE123", "lower-case"),
    ("NoDigitsAtAll", "digits"),
    ("Has-Hyphen1", "only letters"),
    ("With Space1a", "only letters"),
    ("Ünicode1a", "only letters"),
    ("Fullwidth１a", "only letters"),  # a digit str.isdigit accepts and ICE's rule does not
])
def test_keys_ice_refuses_and_the_reason_never_quotes_the_key(key, why):
    problem = auth_key_problem(key)
    assert problem is not None and why in problem
    assert not key or key not in problem


@given(st.text(alphabet=string.ascii_letters + string.digits + "-_ é", max_size=40))
def test_the_rule_is_length_alphabet_and_three_kinds(key):
    ok = (0 < len(key) <= 32 and all(c in string.ascii_letters + string.digits for c in key)
          and any(c.isupper() for c in key) and any(c.islower() for c in key) and any(c.isdigit() for c in key))
    assert (auth_key_problem(key) is None) == ok


def test_a_new_key_is_32_characters_ice_accepts_and_never_the_same():
    keys = {new_auth_key() for _ in range(200)}
    assert len(keys) == 200
    assert all(len(key) == MAX_AUTH_KEY_LENGTH and auth_key_problem(key) is None for key in keys)
    assert auth_key_problem(new_auth_key(3)) is None  # the three kinds even when short


def test_a_key_is_shown_masked_and_never_in_a_repr():
    assert masked_key("OurKey2026abc") == "set (13 characters)" and masked_key(None) == "not set"
    setting = http(key=KEY)
    assert KEY not in repr(setting) and KEY not in json.dumps(setting.to_dict())
    request = SetRequest(url=OURS, key=KEY)
    assert KEY not in repr(request)


# ---------------------------------------------------------------- the request, checked before any call


@pytest.mark.parametrize("options, why", [
    ({"url": None, "queue": None}, "one destination"),
    ({"url": OURS, "queue": "ice-callback-x"}, "one destination"),
    ({"url": "ftp://host/cb"}, "http(s)"),
    ({"url": "not a url"}, "http(s)"),
    ({"url": "https://example.com/" + "x" * 240}, "256 bytes"),
    ({"queue": "uploads"}, "ice-callback-"),
    ({"queue": "ice-callback-"}, "ice-callback-"),
    ({"queue": "ice-callback-a_b"}, "letters, digits and hyphens"),
    ({"queue": "ice-callback-x", "key": KEY}, "HTTP callbacks only"),
    ({"url": OURS, "key": "bad-key"}, "ICE would refuse this --key"),
    ({"url": OURS, "key": "A" * 33 + "a1"}, "at most 32"),
])
def test_a_request_ice_would_refuse_is_bad_usage(options, why):
    with pytest.raises(BadCallbackRequest) as refused:
        SetRequest(**options)
    assert why in str(refused.value)
    if options.get("key"):
        assert options["key"] not in str(refused.value)


def test_from_options_makes_the_new_key_and_refuses_both_key_options():
    request = SetRequest.from_options(url=OURS, queue=None, key=None, new_key=True, replace=False)
    assert request.new_key and auth_key_problem(request.key) is None
    with pytest.raises(BadCallbackRequest):
        SetRequest.from_options(url=OURS, queue=None, key=KEY, new_key=True, replace=False)
    with pytest.raises(BadCallbackRequest):
        SetRequest.from_options(url=None, queue="ice-callback-x", key=None, new_key=True, replace=False)


# ---------------------------------------------------------------- the plan


def test_nothing_set_gets_our_url_and_event_and_unsigned_is_a_note():
    result = plan(NOTHING, SetRequest(url=OURS))
    assert result.wanted == CallbackSetting("HTTP", OURS, None, (URL_UPLOAD_EVENT,), "off", None)
    assert not result.replaces and result.needed
    assert any("not be signed" in note for note in result.notes)


def test_our_url_already_set_keeps_its_events_and_its_key():
    current = http(url=OURS, events=("ProduceMediaComplete", "TranscodeComplete"))
    result = plan(current, SetRequest(url=OURS))
    assert result.wanted.event_types == ("ProduceMediaComplete", "TranscodeComplete", URL_UPLOAD_EVENT)
    assert (result.wanted.url, result.wanted.auth_key, result.wanted.auth_switch) == (OURS, THEIR_KEY, "on")
    assert not result.replaces
    assert any("keep the AuthKey ICE holds (set (11 characters))" in line for line in result.changes)
    assert not any(THEIR_KEY in line for line in result.changes + result.notes)


def test_a_setting_that_holds_everything_already_needs_no_write():
    current = http(url=OURS, events=(URL_UPLOAD_EVENT, "ProduceMediaComplete"), key=KEY)
    assert not plan(current, SetRequest(url=OURS)).needed
    assert not plan(current, SetRequest(url=OURS, key=KEY)).needed
    assert plan(current, SetRequest(url=OURS, key="Another1Key")).needed
    # ICE may list the events in another order: still the same setting
    reordered = http(url=OURS, events=("ProduceMediaComplete", URL_UPLOAD_EVENT), key=KEY)
    assert current.same_as(reordered)


def test_another_url_is_named_with_the_events_that_would_come_to_us():
    current = http(url=OTHER, events=("ProduceMediaComplete", URL_UPLOAD_EVENT, "TranscodeComplete"))
    result = plan(current, SetRequest(url=OURS, key=KEY))
    assert result.replaces
    assert any(OTHER in line for line in result.lost)
    assert any("ProduceMediaComplete, TranscodeComplete" in line and OURS in line for line in result.lost)
    assert result.wanted.event_types == ("ProduceMediaComplete", URL_UPLOAD_EVENT, "TranscodeComplete")
    assert (result.wanted.url, result.wanted.auth_key) == (OURS, KEY)


@pytest.mark.parametrize("current, request_", [
    (CallbackSetting("MNS", None, "ice-callback-theirs", ("ProduceMediaComplete",)), SetRequest(url=OURS)),
    (http(url=OURS), SetRequest(queue="ice-callback-ours")),
    (CallbackSetting("MNS", None, "ice-callback-theirs", ()), SetRequest(queue="ice-callback-ours")),
])
def test_another_queue_or_the_other_type_is_a_replacement_too(current, request_):
    assert plan(current, request_).replaces


def test_an_mns_queue_sends_no_key_and_says_so():
    result = plan(http(url=OTHER), SetRequest(queue="ice-callback-uploads", replace=True))
    assert result.wanted == CallbackSetting("MNS", None, "ice-callback-uploads",
                                            ("ProduceMediaComplete", URL_UPLOAD_EVENT))
    assert any("not signed" in note for note in result.notes)
    same = CallbackSetting("MNS", None, "ice-callback-uploads", (URL_UPLOAD_EVENT,), "off")
    assert not plan(same, SetRequest(queue="ice-callback-uploads")).needed  # auth fields do not count for MNS


def test_a_key_kept_with_the_switch_off_stays_off_and_says_so():
    result = plan(http(url=OURS, switch="off"), SetRequest(url=OURS))
    assert (result.wanted.auth_switch, result.wanted.auth_key) == ("off", THEIR_KEY)
    assert any("AuthSwitch is off" in note for note in result.notes)


def test_a_new_key_turns_signing_on():
    result = plan(http(url=OURS, key=None, switch="off"), SetRequest(url=OURS, key=KEY, new_key=True))
    assert (result.wanted.auth_switch, result.wanted.auth_key, result.new_key) == ("on", KEY, True)


def test_ices_answer_is_read_leniently():
    body = SimpleNamespace(callback_type="http", callback_url=" https://x.example/cb ", callback_queue_name="",
                           event_type_list="ProduceMediaComplete, ,UploadByURLComplete,ProduceMediaComplete",
                           auth_switch="ON", auth_key="")
    setting = CallbackSetting.from_sdk(body)
    assert setting == CallbackSetting("HTTP", "https://x.example/cb", None,
                                      ("ProduceMediaComplete", URL_UPLOAD_EVENT), "on", None)
    assert CallbackSetting.from_sdk(None) == NOTHING and not NOTHING.configured
    assert parse_event_types(None) == ()


# ---------------------------------------------------------------- apply, with a fake ICE


class FakeApi:
    """ICE's one setting, in memory (the real SDK path is tests/integration/test_cli_ice_callback.py)."""

    settings = SimpleNamespace(ice_region="cn-shanghai", ice_endpoint=SimpleNamespace(host="ice.test"))
    where = "cn-shanghai (ice.test)"

    def __init__(self, setting: CallbackSetting, read_back=None) -> None:
        self.setting, self.read_back, self.writes = setting, read_back, []

    def get(self) -> CallbackSetting:
        return self.setting

    def set(self, wanted: CallbackSetting) -> str:
        self.writes.append(wanted)
        self.setting = self.read_back or wanted
        return "request-1"


def test_apply_refuses_without_replace_and_writes_nothing():
    api, out = FakeApi(http()), io.StringIO()
    with pytest.raises(CallbackRefused, match="--replace"):
        apply(api, SetRequest(url=OURS), out)
    assert api.writes == [] and OTHER in out.getvalue() and "ProduceMediaComplete" in out.getvalue()
    assert THEIR_KEY not in out.getvalue()


def test_apply_dry_run_and_an_unneeded_write_write_nothing():
    api = FakeApi(NOTHING)
    assert apply(api, SetRequest(url=OURS), io.StringIO(), dry_run=True) == 0 and api.writes == []
    api = FakeApi(http(url=OURS, events=(URL_UPLOAD_EVENT,)))
    out = io.StringIO()
    assert apply(api, SetRequest(url=OURS), out) == 0 and api.writes == []
    assert "nothing was written" in out.getvalue()


def test_apply_prints_a_new_key_once_and_only_after_it_is_set():
    api, out = FakeApi(NOTHING), io.StringIO()
    request = SetRequest(url=OURS, key=KEY, new_key=True)
    assert apply(api, request, out) == 0
    text = out.getvalue()
    assert text.count(KEY) == 2 and f"export CALLBACK_AUTH_KEY={KEY}" in text and "redeploy" in text
    dry = io.StringIO()
    apply(FakeApi(NOTHING), request, dry, dry_run=True)
    assert KEY not in dry.getvalue()
    assert all(len(line) <= 100 for line in text.splitlines() if OURS not in line)


def test_apply_fails_when_ice_reads_back_another_setting():
    api = FakeApi(NOTHING, read_back=http(url=OURS, events=("ProduceMediaComplete",)))
    with pytest.raises(Exception, match="not what was written") as failed:
        apply(api, SetRequest(url=OURS, key=KEY), io.StringIO())
    assert KEY not in str(failed.value)
