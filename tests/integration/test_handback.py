"""The hand-back (contract section 2): a cold instance tracks a signed callback, hands the same
request back to its own HTTP trigger as an asynchronous invocation, and answers ICE 200; the
asynchronous run looks the job up with the function's time and is never handed back again.

The trigger here is a stub on loopback (tests/support/trigger_stub.py) that answers as FC's
front end does to an async request (202) and keeps what it got; the asynchronous run is that
request fed to a fresh instance, as FC would. Through the local FC front end (tests/support/fc.py),
tests/integration/test_callbacks_end_to_end.py drives the same with real async runs.
"""
from __future__ import annotations

import json

import pytest
from ice_upload_sync import handback
from ice_upload_sync.config import Settings
from ice_upload_sync.errors import ConfigError
from ice_upload_sync.events import HttpCallback

from tests.scenario import CALLBACK_AUTH_KEY, JOB, signed_http_event
from tests.support.trigger_stub import Trigger

FILE_ONLY = pytest.mark.parametrize("fc", ["file"], indirect=True)


def _cold_with_handback(fc, trigger: Trigger, **env: str) -> None:
    fc.monkeypatch.setenv("CALLBACK_AUTH_KEY", CALLBACK_AUTH_KEY)
    fc.monkeypatch.setenv("CALLBACK_URL", trigger.url)
    fc.monkeypatch.setenv("CALLBACK_HANDBACK", "on")
    for name, value in env.items():
        fc.monkeypatch.setenv(name, value)
    fc.restart()


def test_a_cold_callback_is_handed_back_once_and_its_async_run_records_it(fc, seeded):
    with Trigger() as trigger:
        _cold_with_handback(fc, trigger)
        original = signed_http_event(url=trigger.url)
        answer = fc.invoke(original)
        summary = json.loads(answer["body"])
        assert answer["statusCode"] == 200 and summary["handed_back"] is True
        assert summary["deferred"] == [JOB["http"]] and fc.pending() == {JOB["http"]} and fc.record(JOB["http"]) is None
        [sent] = trigger.requests
        assert sent.body == original["body"].encode()  # the very request ICE signed
        got = {name.lower(): value for name, value in sent.headers.items()}
        for name, value in original["headers"].items():
            if name.lower() in ("x-ice-signature", "x-ice-timestamp"):
                assert got[name.lower()] == value
        assert got["x-fc-invocation-type"] == "Async" and got[handback.HEADER] == "1"
        # FC runs it on a fresh (cold) instance: looked up there, and not handed back again
        fc.restart()
        run = fc.invoke(trigger.as_fc_event())
        summary = json.loads(run["body"])
        assert run["statusCode"] == 200 and summary["written"] == 1 and "handed_back" not in summary
        assert fc.record(JOB["http"])["state"] == "succeeded" and fc.pending() == set()
        assert len(trigger.requests) == 1


@pytest.mark.parametrize("status", [500, 403, 200])
def test_a_hand_back_fc_does_not_take_leaves_the_job_to_the_sweep(fc, seeded, status):
    with Trigger(status=status) as trigger:
        _cold_with_handback(fc, trigger)
        summary = json.loads(fc.invoke(signed_http_event(url=trigger.url))["body"])
        assert summary["handed_back"] is False and summary["deferred"] == [JOB["http"]]
    fc.invoke({"triggerTime": "2026-11-25T03:00:00Z", "triggerName": "sweep", "payload": ""})
    assert fc.record(JOB["http"])["state"] == "succeeded"


@FILE_ONLY
def test_nothing_listening_at_the_trigger_is_a_failed_hand_back_not_a_failed_callback(fc, seeded):
    with Trigger() as trigger:
        url = trigger.url
    fc.monkeypatch.setenv("CALLBACK_AUTH_KEY", CALLBACK_AUTH_KEY)
    fc.monkeypatch.setenv("CALLBACK_URL", url)
    fc.monkeypatch.setenv("CALLBACK_HANDBACK", "on")
    fc.restart()
    answer = fc.invoke(signed_http_event(url=url))
    assert answer["statusCode"] == 200 and json.loads(answer["body"])["handed_back"] is False
    assert fc.pending() == {JOB["http"]}


@FILE_ONLY
def test_a_warm_instance_looks_up_in_place_and_hands_nothing_back(fc, seeded):
    with Trigger() as trigger:
        _cold_with_handback(fc, trigger)
        fc.warm()
        summary = json.loads(fc.invoke(signed_http_event(url=trigger.url))["body"])
        assert summary["written"] == 1 and "handed_back" not in summary and trigger.requests == []


@FILE_ONLY
def test_callback_handback_off_leaves_the_lookup_to_the_sweep(fc, seeded):
    with Trigger() as trigger:
        _cold_with_handback(fc, trigger, CALLBACK_HANDBACK="off")
        summary = json.loads(fc.invoke(signed_http_event(url=trigger.url))["body"])
        assert summary["deferred"] == [JOB["http"]] and "handed_back" not in summary and trigger.requests == []


@FILE_ONLY
def test_only_authenticated_callbacks_are_handed_back(fc, seeded):
    with Trigger() as trigger:
        _cold_with_handback(fc, trigger)
        fc.monkeypatch.delenv("CALLBACK_AUTH_KEY")
        fc.restart()
        summary = json.loads(fc.invoke(signed_http_event(url=trigger.url))["body"])
        assert summary["deferred"] == [JOB["http"]] and trigger.requests == []


@FILE_ONLY
def test_claiming_to_be_handed_back_gains_nothing(fc, seeded):
    with Trigger() as trigger:
        _cold_with_handback(fc, trigger)
        forged = signed_http_event(url=trigger.url, key="not-the-key")
        forged["headers"][handback.HEADER] = "1"
        assert fc.invoke(forged)["statusCode"] == 401 and fc.pending() == set() and trigger.requests == []
        fc.monkeypatch.delenv("CALLBACK_AUTH_KEY")  # unchecked callbacks: the header is not believed
        fc.restart()
        unchecked = signed_http_event(url=trigger.url)
        unchecked["headers"][handback.HEADER] = "1"
        summary = json.loads(fc.invoke(unchecked)["body"])
        assert summary["deferred"] == [JOB["http"]] and fc.record(JOB["http"]) is None  # cold, as any other


# ---------------------------------------------------------------- where it goes


def _request(domain, path="/ice-callback"):
    return HttpCallback(method="POST", raw_path=path, domain_name=domain)


@pytest.mark.parametrize("configured, domain, expected", [
    ("https://1234.cn-shanghai.fcapp.run/ice-callback", "ignored.example", "https://1234.cn-shanghai.fcapp.run/ice-callback"),
    (None, "1234.cn-shanghai.fcapp.run", "https://1234.cn-shanghai.fcapp.run/ice-callback"),
    (None, "127.0.0.1:9000", "http://127.0.0.1:9000/ice-callback"),
    (None, "localhost:9000", "http://localhost:9000/ice-callback"),
    ("http://media.example.com/ice-callback", None, None),  # plain http: only to this machine
    ("http://127.0.0.1:9000/cb", None, "http://127.0.0.1:9000/cb"),
    (None, None, None),  # nowhere to send it
    ("ftp://127.0.0.1/cb", None, None),
])
def test_the_hand_back_goes_to_the_trigger_and_plain_http_only_to_loopback(configured, domain, expected):
    assert handback.trigger_url(_request(domain), configured) == expected


@pytest.mark.parametrize("raw, expected", [("", True), ("on", True), ("OFF", False), ("false", False), ("1", True)])
def test_callback_handback_is_on_unless_turned_off(raw, expected):
    assert Settings.from_env({"CALLBACK_HANDBACK": raw}).callback_handback is expected


def test_callback_handback_refuses_anything_but_on_or_off():
    with pytest.raises(ConfigError, match="CALLBACK_HANDBACK"):
        Settings.from_env({"CALLBACK_HANDBACK": "sometimes"})
