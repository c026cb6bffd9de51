"""Completion events on an EventBridge bus, end to end, on every store.

The real handler puts its events through the official SDK (``alibabacloud_eventbridge20200401``)
to the EventBridge emulator (tests/support/eventbridge.py), which checks every request's
ACS3 signature like the service. Retries wait for a backoff of minutes, so the tests make an
owed entry due by rescheduling it, as time passing would.
"""
from __future__ import annotations

import base64
import json
import sys
import time

import pytest

from tests.conftest import ACCESS_KEY_SECRET, EVENTBRIDGE_BUS, STS_KEY_ID, STS_SECRET, STS_TOKEN
from tests.scenario import JOB, load_event, signed_http_event
from tests.support.webhook_receiver import WebhookReceiver

BUS = EVENTBRIDGE_BUS
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
SWEEP = load_event("timer-sweep.json")


@pytest.fixture
def on_bus(fc, eventbridge):
    fc.monkeypatch.setenv("NOTIFY_EVENTBRIDGE", BUS)
    fc.monkeypatch.setenv("EVENTBRIDGE_ENDPOINT", eventbridge.endpoint)
    return fc




def by_subject(eventbridge) -> dict:
    events = eventbridge.events(BUS)
    assert len({event["Id"] for event in events}) == len(events), "an event was put twice"
    return {event["Subject"]: event for event in events}


def test_final_states_go_on_the_bus_once_as_the_cloudevent(seeded, on_bus, eventbridge):
    summary = on_bus.invoke({"JobIds": [JOB["succeeded"], JOB["failed"], JOB["processing"]]})
    assert (summary["notified"], summary["notify_failed"]) == (2, 0)
    events = by_subject(eventbridge)
    assert set(events) == {JOB["succeeded"], JOB["failed"]}
    event = events[JOB["succeeded"]]
    record = on_bus.record(JOB["succeeded"])
    assert event["Data"] == record  # the record itself, not a string of it
    assert (event["Type"], event["Source"], event["SpecVersion"], event["DataContentType"]) == (
        "ice.upload.succeeded", "ice-upload-sync/cn-shanghai", "1.0", "application/json")
    assert event["Time"] == record["updated_at"]
    assert on_bus.owed() == {}
    on_bus.invoke({"JobIds": [JOB["succeeded"], JOB["failed"]]})  # the same answers again
    on_bus.make_due()
    on_bus.invoke(SWEEP)
    assert len(eventbridge.events(BUS)) == 2


def test_the_bus_and_a_webhook_get_the_same_event_and_are_settled_apart(seeded, on_bus, eventbridge):
    with WebhookReceiver(SECRET) as receiver:
        on_bus.monkeypatch.setenv("NOTIFY_URL", receiver.url)
        on_bus.monkeypatch.setenv("NOTIFY_SECRET", SECRET)
        eventbridge.fail_next(1, status=503, code="ServiceUnavailable")
        summary = on_bus.invoke({"JobIds": [JOB["succeeded"]]})
        assert (summary["notified"], summary["notify_failed"]) == (1, 1)  # the webhook took it, the bus did not
        (webhook_event,) = receiver.events.values()
        assert by_subject(eventbridge) == {}
        on_bus.make_due()
        assert on_bus.invoke(SWEEP)["notified"] == 1  # only the bus is tried again
        (bus_event,) = eventbridge.events(BUS)
        assert bus_event["Id"] == webhook_event["id"] and bus_event["Data"] == webhook_event["data"]
        assert list(receiver.deliveries.values()) == [1]
    assert on_bus.owed() == {}


def test_a_bus_down_for_several_invocations_gets_the_event_when_back(seeded, on_bus, eventbridge):
    eventbridge.fail_next(1, status=500, code="InternalError")
    summary = on_bus.invoke({"JobIds": [JOB["failed"]]})
    assert (summary["written"], summary["notified"], summary["notify_failed"]) == (1, 0, 1)
    for fault in (lambda: eventbridge.throttle_next(1), lambda: eventbridge.reject_next(1, "InternalError", "busy"),
                  lambda: eventbridge.fail_entries_next(1, "InternalError", "retry me")):
        fault()
        on_bus.make_due()
        assert on_bus.invoke(SWEEP)["notify_failed"] == 1
    assert on_bus.owed()[JOB["failed"]].tries == 4 and eventbridge.events(BUS) == []
    on_bus.make_due()
    assert on_bus.invoke(SWEEP)["notified"] == 1
    assert on_bus.owed() == {} and list(by_subject(eventbridge)) == [JOB["failed"]]


@pytest.mark.parametrize("refusal", ["missing bus", "access denied", "event refused"])
def test_a_refusing_bus_is_given_up_after_three_tries(seeded, on_bus, eventbridge, caplog, refusal):
    if refusal == "missing bus":
        on_bus.monkeypatch.setenv("NOTIFY_EVENTBRIDGE", "no-such-bus")
        expected = "EventBusNotExist"
    elif refusal == "access denied":
        eventbridge.fail_next(3, status=403, code="AccessDenied", message="not authorized")
        expected = "HTTP 403 AccessDenied"
    else:
        eventbridge.fail_entries_next(3, "EventInvalid", "refused")
        expected = "EventInvalid"
    on_bus.invoke({"JobIds": [JOB["failed"]]})
    on_bus.make_due()
    on_bus.invoke(SWEEP)
    assert on_bus.owed()[JOB["failed"]].tries == 2
    on_bus.make_due()
    assert on_bus.invoke(SWEEP)["notify_failed"] == 1
    assert on_bus.owed() == {}
    given_up = [r.getMessage() for r in caplog.records if "given up after 3 tries" in r.getMessage()]
    assert given_up and JOB["failed"] in given_up[0] and expected in given_up[0], given_up
    assert ACCESS_KEY_SECRET not in caplog.text
    calls = len(eventbridge.calls())
    on_bus.invoke(SWEEP)
    assert len(eventbridge.calls()) == calls == 3


def test_the_bus_is_signed_with_the_fc_contexts_sts_credentials(seeded, on_bus, eventbridge):
    credentials = type("Credentials", (), {"access_key_id": STS_KEY_ID, "access_key_secret": STS_SECRET,
                                           "security_token": STS_TOKEN})()
    on_bus.add_access_key(STS_KEY_ID, STS_SECRET, STS_TOKEN)
    on_bus.index.initialize(on_bus.context(credentials))
    assert on_bus.invoke({"JobIds": [JOB["succeeded"]]}, on_bus.context(credentials))["notified"] == 1
    (call,) = eventbridge.calls()
    assert (call.access_key_id, call.security_token, call.status) == (STS_KEY_ID, STS_TOKEN, 200)


def test_a_slow_bus_never_pushes_a_callback_past_its_deadline(seeded, on_bus, eventbridge):
    on_bus.warm()
    on_bus.index._app.bus.prepare()
    eventbridge.latency_s = 5.0
    started = time.monotonic()
    answer = on_bus.invoke(signed_http_event())
    assert answer["statusCode"] == 200 and time.monotonic() - started < 2.5
    summary = json.loads(answer["body"])
    assert summary["written"] == 1 and summary["notify_failed"] == 1
    assert set(on_bus.owed()) == {JOB["http"]}  # owed: the sweep puts it on the bus
    eventbridge.latency_s = 0.0


def test_a_timer_leaves_the_instance_ready_to_put_events_and_a_cold_start_never_imports_the_sdk(
        seeded, on_bus, eventbridge):
    on_bus.index.initialize(on_bus.context())
    bus = on_bus.index._app.bus
    assert bus is not None and not bus.ready  # initialize built nothing
    on_bus.invoke(SWEEP)
    assert bus.ready and "alibabacloud_eventbridge20200401.client" in sys.modules


def test_without_notify_eventbridge_nothing_goes_to_the_bus(seeded, fc, eventbridge):
    fc.monkeypatch.setenv("EVENTBRIDGE_ENDPOINT", eventbridge.endpoint)
    summary = fc.invoke({"JobIds": [JOB["succeeded"]]})
    assert summary["notified"] == 0 and fc.owed() == {} and eventbridge.calls() == []


def test_a_bus_that_is_down_never_holds_a_webhooks_events_back(seeded, on_bus, eventbridge):
    """A target that failed is skipped for the rest of the invocation, and only that target.
    (One event at a time, so that "the rest" is well defined.)"""
    jobs = [JOB["succeeded"], JOB["failed"], JOB["vod"]]
    on_bus.monkeypatch.setenv("ICE_CONCURRENCY", "1")
    with WebhookReceiver(SECRET) as receiver:
        on_bus.monkeypatch.setenv("NOTIFY_URL", receiver.url)
        on_bus.monkeypatch.setenv("NOTIFY_SECRET", SECRET)
        eventbridge.fail_next(100, status=503, code="ServiceUnavailable")
        receiver.go_down()
        on_bus.invoke({"JobIds": jobs})  # both down: the first event tries both, the others wait
        assert len(eventbridge.calls()) == 1 and set(on_bus.owed()) == set(jobs)
        receiver.come_back()
        on_bus.make_due()
        summary = on_bus.invoke(SWEEP)
        assert (summary["notified"], summary["notify_failed"]) == (3, 3)
        assert {event["subject"] for event in receiver.events.values()} == set(jobs)
        assert len(eventbridge.calls()) == 2  # tried once more, then skipped for this sweep
    entries = on_bus.owed()
    assert set(entries) == set(jobs)  # still owed to the bus, and to nothing else
    bus_key = on_bus.index._app.bus.key
    assert all(len(entry.endpoints_done) == 1 and bus_key not in entry.endpoints_done for entry in entries.values())


def test_a_bus_client_that_cannot_be_built_never_fails_an_invocation_that_succeeded(seeded, on_bus, monkeypatch,
                                                                                   caplog):
    """Preparing the bus after a run is an optimisation: its failure keeps the run's answer (FC
    would otherwise retry a run that recorded everything) and the events stay owed."""
    from ice_upload_sync import eventbridge

    def broken(self):
        raise ImportError("No module named 'alibabacloud_eventbridge20200401'")

    monkeypatch.setattr(eventbridge.EventBridgeBus, "_load_sdk", broken)
    summary = on_bus.invoke({"JobIds": [JOB["succeeded"]]})
    assert (summary["written"], summary["notified"], summary["notify_failed"]) == (1, 0, 1)
    assert set(on_bus.owed()) == {JOB["succeeded"]}
    assert "EventBridge client could not be built" in caplog.text


def test_an_entry_owed_only_to_a_bus_no_longer_configured_is_settled(seeded, on_bus, eventbridge):
    """NOTIFY_EVENTBRIDGE removed while an event was still owed to it: nothing is left to send to."""
    with WebhookReceiver(SECRET) as receiver:
        on_bus.monkeypatch.setenv("NOTIFY_URL", receiver.url)
        on_bus.monkeypatch.setenv("NOTIFY_SECRET", SECRET)
        eventbridge.fail_next(1, status=503, code="ServiceUnavailable")
        on_bus.invoke({"JobIds": [JOB["succeeded"]]})
        assert set(on_bus.owed()) == {JOB["succeeded"]} and len(receiver.events) == 1
        on_bus.monkeypatch.delenv("NOTIFY_EVENTBRIDGE")
        on_bus.restart()
        on_bus.make_due()
        summary = on_bus.invoke(SWEEP)
    assert on_bus.owed() == {} and (summary["notified"], summary["notify_failed"]) == (0, 0)
    assert len(receiver.events) == 1 and len(eventbridge.calls()) == 1


def test_an_event_the_bus_refuses_never_holds_the_next_ones_back(seeded, on_bus, eventbridge):
    """A refusal is about that event (its size, its fields): the bus takes the others at once.
    (One event at a time, so that the refused one comes first.)"""
    jobs = [JOB["succeeded"], JOB["failed"], JOB["vod"]]
    on_bus.monkeypatch.setenv("ICE_CONCURRENCY", "1")
    eventbridge.fail_entries_next(1, "EventInvalid", "refused")
    summary = on_bus.invoke({"JobIds": jobs})
    assert (summary["notified"], summary["notify_failed"]) == (2, 1)
    assert len(eventbridge.calls()) == 3 and len(eventbridge.events(BUS)) == 2
    assert len(on_bus.owed()) == 1


def test_a_throttled_bus_is_tried_again_no_sooner_than_it_asked(seeded, on_bus, eventbridge):
    from datetime import datetime, timedelta, timezone

    from ice_upload_sync.records import parse_time

    eventbridge.throttle_next(1, retry_after_ms=600_000)
    before = datetime.now(timezone.utc)
    assert on_bus.invoke({"JobIds": [JOB["succeeded"]]})["notify_failed"] == 1
    entry = on_bus.owed()[JOB["succeeded"]]
    assert parse_time(entry.next_attempt_at) >= before + timedelta(seconds=599)  # not the 1-minute backoff
    assert "TooManyRequests" in entry.last_error
