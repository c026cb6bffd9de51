"""Completion events end to end, on every store: the real handler, a real receiver that verifies signatures.

The receiver (tests/support/webhook_receiver.py) checks every delivery with the
``standardwebhooks`` package and parses the CloudEvent. Retries wait for a backoff of minutes,
so the tests make an owed entry due by rescheduling it to now, as time passing would.
"""
from __future__ import annotations

import base64
import json

import pytest

from tests.scenario import JOB, load_event, signed_http_event
from tests.support.webhook_receiver import WebhookReceiver

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
SWEEP = load_event("timer-sweep.json")


@pytest.fixture
def receiver():
    with WebhookReceiver(SECRET) as running:
        yield running


@pytest.fixture
def notifying(fc, receiver):
    fc.monkeypatch.setenv("NOTIFY_URL", receiver.url)
    fc.monkeypatch.setenv("NOTIFY_SECRET", SECRET)
    return fc




def test_final_states_are_announced_once_with_the_record(seeded, notifying, receiver):
    summary = notifying.invoke({"JobIds": [JOB["succeeded"], JOB["failed"], JOB["processing"]]})
    assert (summary["notified"], summary["notify_failed"]) == (2, 0)
    events = {event["subject"]: event for event in receiver.events.values()}
    assert set(events) == {JOB["succeeded"], JOB["failed"]}  # processing is not announced by default
    succeeded = events[JOB["succeeded"]]
    assert succeeded["type"] == "ice.upload.succeeded" and succeeded["source"] == "ice-upload-sync/cn-shanghai"
    assert succeeded["data"] == notifying.record(JOB["succeeded"])
    assert succeeded["time"] == succeeded["data"]["updated_at"]
    assert notifying.owed() == {}  # settled
    again = notifying.invoke({"JobIds": [JOB["succeeded"], JOB["failed"]]})  # the same answers again
    notifying.invoke(SWEEP)
    assert again["notified"] == 0 and set(receiver.deliveries.values()) == {1}


def test_duplicate_callbacks_and_stale_answers_announce_nothing_new(seeded, notifying, receiver):
    notifying.warm()
    for _ in range(3):
        assert notifying.invoke(signed_http_event())["statusCode"] == 200
    seeded.update_job(JOB["http"], Status="PROCESSING")  # an out-of-date replica answers
    notifying.invoke({"JobIds": [JOB["http"]]})
    assert list(receiver.deliveries.values()) == [1]
    assert receiver.events[next(iter(receiver.events))]["type"] == "ice.upload.succeeded"


def test_non_final_states_are_announced_only_when_configured(seeded, notifying, receiver):
    notifying.monkeypatch.setenv("NOTIFY_STATES", "processing,succeeded")
    notifying.invoke({"JobIds": [JOB["processing"], JOB["failed"]]})
    assert [event["type"] for event in receiver.events.values()] == ["ice.upload.processing"]


def test_a_receiver_down_for_several_invocations_gets_the_event_when_back(seeded, notifying, receiver):
    receiver.go_down()
    summary = notifying.invoke({"JobIds": [JOB["succeeded"]]})
    assert (summary["written"], summary["notified"], summary["notify_failed"]) == (1, 0, 1)  # the record is written
    assert set(notifying.owed()) == {JOB["succeeded"]} and notifying.pending() == set()  # final, not pending
    for _ in range(3):
        notifying.make_due()
        assert notifying.invoke(SWEEP)["notify_failed"] == 1
    assert notifying.owed()[JOB["succeeded"]].tries == 4
    receiver.come_back()
    assert notifying.invoke(SWEEP)["notified"] == 0  # not due yet: backoff
    notifying.make_due()
    assert notifying.invoke(SWEEP)["notified"] == 1
    assert notifying.owed() == {} and list(receiver.deliveries.values()) == [1]
    notifying.make_due()
    notifying.invoke(SWEEP)
    assert list(receiver.deliveries.values()) == [1]


def test_a_receiver_answering_400_is_given_up_after_three_tries(seeded, notifying, receiver, caplog):
    receiver.answer(400, times=10)
    notifying.invoke({"JobIds": [JOB["failed"]]})
    notifying.make_due()
    notifying.invoke(SWEEP)
    assert notifying.owed()[JOB["failed"]].tries == 2
    notifying.make_due()
    assert notifying.invoke(SWEEP)["notify_failed"] == 1
    assert notifying.owed() == {} and len(receiver.requests) == 3
    assert any("given up after 3 tries" in r.getMessage() and JOB["failed"] in r.getMessage() for r in caplog.records)
    assert SECRET[6:] not in caplog.text
    notifying.invoke(SWEEP)
    assert len(receiver.requests) == 3


def test_a_slow_receiver_never_pushes_a_callback_past_its_deadline(seeded, notifying, receiver):
    import time

    notifying.warm()
    receiver.delay(5.0)
    started = time.monotonic()
    answer = notifying.invoke(signed_http_event())
    assert answer["statusCode"] == 200 and time.monotonic() - started < 2.5
    summary = json.loads(answer["body"])
    assert summary["written"] == 1 and summary["notify_failed"] == 1
    assert set(notifying.owed()) == {JOB["http"]}  # owed: the sweep delivers it


def test_without_notify_url_nothing_is_owed(seeded, fc, receiver):
    summary = fc.invoke({"JobIds": [JOB["succeeded"]]})
    assert summary["notified"] == 0 and fc.owed() == {} and receiver.requests == []


def test_an_owed_entry_survives_a_crash_before_delivery(seeded, notifying, receiver):
    """The entry is written before the record: a new instance (the crash) finds it and delivers it."""
    receiver.go_down()
    notifying.invoke({"JobIds": [JOB["vod"]]})
    notifying.restart()
    receiver.come_back()
    notifying.make_due()
    assert notifying.invoke(SWEEP)["notified"] == 1
    assert list(receiver.deliveries.values()) == [1]
