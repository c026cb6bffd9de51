"""``ice-upload-sync ice-callback show|set`` against the ICE emulator, through the official SDK.

ICE keeps one callback setting per region; these are the ways an account's other integrations could lose
theirs, and what the command does instead (contract section 10).
"""
from __future__ import annotations

import io
import json
import logging

import pytest
from ice_upload_sync import cli
from ice_upload_sync.callback_setting import auth_key_problem

from tests.conftest import ACCESS_KEY_ID, ACCESS_KEY_SECRET
from tests.support.acs3 import ApiError

OURS = "https://1234567890123456.cn-shanghai.fcapp.run/ice-callback"
OTHER = "https://media.example.com/ice-events"
THEIR_KEY = "TheirKey42x"
OUR_KEY = "OurKey2026abc"


@pytest.fixture
def ice_env(ice, monkeypatch):
    """The command line pointed at the emulator, as an operator's shell would be."""
    for name in ("ALIBABA_CLOUD_SECURITY_TOKEN", "CALLBACK_AUTH_KEY", "CALLBACK_URL", "HTTP_PROXY", "HTTPS_PROXY",
                 "http_proxy", "https_proxy", "RECORD_STORE", "NOTIFY_URL", "NOTIFY_SECRET", "NOTIFY_EVENTBRIDGE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ICE_ENDPOINT", ice.endpoint)
    monkeypatch.setenv("ICE_REGION", "cn-shanghai")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ACCESS_KEY_SECRET)
    return ice


def run(*argv: str):
    out = io.StringIO()
    code = cli.main(["ice-callback", *argv], out=out)
    return code, out.getvalue()


def actions(ice):
    return [call.action for call in ice.calls]


def test_set_keeps_an_existing_event_list_url_and_key(ice_env, caplog):
    ice_env.set_callback(OURS, THEIR_KEY, event_types=["ProduceMediaComplete", "TranscodeComplete"])
    caplog.set_level(logging.DEBUG)
    code, text = run("set", "--url", OURS)
    assert code == 0, text
    setting = ice_env.callback_setting
    assert setting.event_types == ("ProduceMediaComplete", "TranscodeComplete", "UploadByURLComplete")
    assert (setting.url, setting.auth_key, setting.auth_switch) == (OURS, THEIR_KEY, "on")
    assert actions(ice_env) == ["GetEventCallback", "SetEventCallback", "GetEventCallback"]  # read, write, verify
    assert "keep the AuthKey ICE holds (set (11 characters))" in text and "Written and read back" in text
    assert THEIR_KEY not in text + caplog.text


def test_set_again_writes_nothing_when_ice_holds_it_already(ice_env):
    ice_env.set_callback(OURS, OUR_KEY, event_types=["UploadByURLComplete", "ProduceMediaComplete"])
    code, text = run("set", "--url", OURS, "--key", OUR_KEY)
    assert code == 0 and "nothing was written" in text
    assert actions(ice_env) == ["GetEventCallback"]


def test_set_refuses_another_url_without_replace_and_changes_nothing(ice_env, capsys):
    ice_env.set_callback(OTHER, THEIR_KEY, event_types=["ProduceMediaComplete"])
    before = ice_env.callback_setting
    code, text = run("set", "--url", OURS, "--new-key")
    assert code == 1
    assert ice_env.callback_setting == before and actions(ice_env) == ["GetEventCallback"]
    assert OTHER in text and "ProduceMediaComplete" in text and "Lost if it goes ahead" in text
    assert "--replace" in capsys.readouterr().err
    # --dry-run shows the same plan with --replace, and writes nothing either
    code, text = run("set", "--url", OURS, "--replace", "--dry-run", "--json")
    plan = json.loads(text)
    assert code == 0 and plan["dry_run"] and not plan["written"] and "new_auth_key" not in plan
    assert ice_env.callback_setting == before and "SetEventCallback" not in actions(ice_env)


def test_replace_replaces_keeps_the_event_list_and_prints_what_is_lost(ice_env):
    ice_env.set_callback(OTHER, THEIR_KEY, event_types=["ProduceMediaComplete"])
    code, text = run("set", "--url", OURS, "--key", OUR_KEY, "--replace")
    assert code == 0, text
    setting = ice_env.callback_setting
    assert (setting.url, setting.auth_key) == (OURS, OUR_KEY)
    assert setting.event_types == ("ProduceMediaComplete", "UploadByURLComplete")
    lost = text[text.index("Lost:"):text.index("Written")]
    assert OTHER in lost and "ProduceMediaComplete" in lost and OURS in lost
    assert OUR_KEY not in text  # a key given on the command line is not printed back


def test_a_new_key_is_one_ice_accepts_and_is_printed_once(ice_env):
    code, text = run("set", "--url", OURS, "--new-key", "--json")
    assert code == 0, text
    answer = json.loads(text)
    key = answer["new_auth_key"]
    assert answer["verified"] and len(key) == 32 and auth_key_problem(key) is None
    setting = ice_env.callback_setting  # the emulator's SetEventCallback applies ICE's rule: it took the key
    assert setting.auth_key == key and setting.signed
    # the text form prints it once, with what to do with it
    code, text = run("set", "--url", OURS, "--new-key")
    new_key = ice_env.callback_setting.auth_key
    assert code == 0 and new_key != key and text.count(new_key) == 2
    assert f"export CALLBACK_AUTH_KEY={new_key}" in text and "redeploy" in text


def test_a_bad_key_is_refused_with_exit_2_before_any_call(ice_env, capsys):
    ice_env.set_callback(OTHER, THEIR_KEY)
    before = ice_env.callback_setting
    for bad in ("has-hyphens-1A", "lowercase1", "A1a" * 11):
        assert run("set", "--url", OURS, "--key", bad)[0] == 2
        err = capsys.readouterr().err
        assert "ICE would refuse this --key" in err and bad not in err
    assert run("set", "--queue", "uploads")[0] == 2
    assert run("set", "--queue", "ice-callback-uploads", "--new-key")[0] == 2
    assert ice_env.calls == [] and ice_env.callback_setting == before


def test_an_mns_queue_is_set_without_a_key(ice_env):
    code, text = run("set", "--queue", "ice-callback-uploads")
    assert code == 0, text
    setting = ice_env.callback_setting
    assert (setting.callback_type, setting.queue_name, setting.event_types) == (
        "MNS", "ice-callback-uploads", ("UploadByURLComplete",))


def test_show_masks_the_key(ice_env, caplog):
    ice_env.set_callback(OURS, THEIR_KEY, event_types=["ProduceMediaComplete", "UploadByURLComplete"])
    caplog.set_level(logging.DEBUG)
    code, text = run("show")
    assert code == 0
    assert "set (11 characters)" in text and OURS in text and "ProduceMediaComplete, UploadByURLComplete" in text
    code, raw = run("show", "--json")
    shown = json.loads(raw)
    assert code == 0 and shown["auth_key"] == "set (11 characters)" and shown["upload_by_url_complete"] is True
    assert shown["event_types"] == ["ProduceMediaComplete", "UploadByURLComplete"]
    assert THEIR_KEY not in text + raw + caplog.text
    ice_env.set_callback(None)
    code, text = run("show")
    assert code == 0 and "nothing is set" in text and "not subscribed" in text


@pytest.mark.parametrize("variable, value, ice_code", [
    ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "not-the-secret", "SignatureDoesNotMatch"),
    ("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI-unknown", "InvalidAccessKeyId"),
])
def test_wrong_credentials_exit_1_with_ices_code(ice_env, monkeypatch, capsys, variable, value, ice_code):
    monkeypatch.setenv(variable, value)
    assert run("show")[0] == 1
    assert ice_code in capsys.readouterr().err
    assert run("set", "--url", OURS, "--key", OUR_KEY)[0] == 1
    err = capsys.readouterr().err
    assert ice_code in err and OUR_KEY not in err and ice_env.callback_setting is None


def test_ice_refusing_the_write_exits_1_with_its_code_and_without_the_key(ice_env, capsys):
    """A refusal of the write itself (a permission the caller lacks), even one whose message quoted the key."""
    ice_env.set_callback(OURS)
    original = ice_env._call

    def refuse_the_write(action, params, fields):
        if action == "SetEventCallback":
            raise ApiError(403, "Forbidden.RAM", f"User not authorized (AuthKey={params.get('AuthKey')})")
        return original(action, params, fields)

    ice_env._call = refuse_the_write
    assert run("set", "--url", OURS, "--key", OUR_KEY)[0] == 1
    err = capsys.readouterr().err
    assert "Forbidden.RAM" in err and "ice:SetEventCallback" in err and OUR_KEY not in err
    assert ice_env.callback_setting.auth_key is None  # unchanged
