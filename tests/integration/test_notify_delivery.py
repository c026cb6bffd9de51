"""Completion events over loopback to a real receiver (tests/support/webhook_receiver.py), which
verifies every request with the standardwebhooks package and parses the CloudEvent.

``Invocation`` below, over the unit tests' ``MemoryStore``, is the outbox's intended use in a
few lines (what the stores and the sweep implement for real): a write that takes a record into an announced state
owes the event before the record is written; each invocation delivers what is due.
"""
from __future__ import annotations

import base64
import http.server
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Dict, List, Sequence

import pytest
from ice_upload_sync import notify
from ice_upload_sync.cloudevent import build_event, event_id
from ice_upload_sync.config import NotifyEndpoint, Settings
from ice_upload_sync.delivery import GIVE_UP_AFTER_TRIES, RETRY, deliver
from ice_upload_sync.notify import Owed
from ice_upload_sync.outbox import attempt
from ice_upload_sync.records import JobRecord, format_time, merge
from ice_upload_sync.webhook import webhooks

from tests.store_records import final, record
from tests.support.fakes import MemoryStore
from tests.support.webhook_receiver import WebhookReceiver

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
NEW_SECRET = "whsec_" + base64.b64encode(b"t" * 32).decode()
T0 = datetime(2026, 11, 25, 3, 0, 0, tzinfo=timezone.utc)
MAX_AGE = timedelta(hours=72)
RECEIVER_EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "receiving-events.md"


def settings_for(*urls: str, secrets: Sequence[str] = (SECRET,), states: str = "") -> Settings:
    env = {"NOTIFY_URL": ",".join(urls), "NOTIFY_SECRET": ",".join(secrets)}
    if states:
        env["NOTIFY_STATES"] = states
    return Settings.from_env(env)


def send(event, settings: Settings, *, within_s: float = 5.0, timeout_s: float = 5.0):
    return deliver(event, webhooks(settings), deadline=time.monotonic() + within_s, timeout_s=timeout_s)


@pytest.fixture
def receiver():
    with WebhookReceiver(SECRET) as running:
        yield running


# ---------------------------------------------------------------- one delivery


def test_a_final_record_reaches_the_receiver_verified(receiver):
    rec = final(user_data={"title": "\u00e9t\u00e9"})
    event = build_event(rec, "cn-shanghai")
    result = send(event, settings_for(receiver.url))
    assert result.delivered and result.results[0].status == 204
    assert receiver.events[event.id]["data"] == rec.to_dict()
    assert receiver.events[event.id]["type"] == "ice.upload.succeeded"
    request = receiver.requests[0]
    assert request.verified and request.content_type == "application/cloudevents+json" and request.signatures == 1
    assert abs(int(request.timestamp) - time.time()) < 5


def test_a_repeat_carries_the_same_id_so_the_receiver_can_deduplicate(receiver):
    settings = settings_for(receiver.url)
    first = build_event(final(), "cn-shanghai")
    again = build_event(replace(final(), updated_at="2026-11-25T04:00:00Z"), "cn-shanghai")
    assert send(first, settings).delivered and send(again, settings).delivered
    assert list(receiver.events) == [first.id] and receiver.deliveries[first.id] == 2


@pytest.mark.parametrize("status, retry_after", [(500, None), (502, None), (503, "7"), (429, "120"), (408, None)])
def test_server_errors_throttling_and_request_timeouts_are_retried(receiver, status, retry_after):
    receiver.answer(status, retry_after=retry_after)
    item = send(build_event(final(), "cn-shanghai"), settings_for(receiver.url)).results[0]
    assert (item.outcome, item.status, item.error) == (RETRY, status, f"HTTP {status}")
    assert item.retry_after_s == (None if retry_after is None else float(retry_after))
    assert receiver.events == {}


@pytest.mark.parametrize("status", [400, 404, 410, 422])
def test_other_client_errors_are_for_giving_up(receiver, status):
    receiver.answer(status)
    item = send(build_event(final(), "cn-shanghai"), settings_for(receiver.url)).results[0]
    assert (item.outcome, item.status) == (GIVE_UP_AFTER_TRIES, status)


def test_a_wrong_secret_gets_401_which_is_for_giving_up(receiver):
    item = send(build_event(final(), "cn-shanghai"), settings_for(receiver.url, secrets=(NEW_SECRET,))).results[0]
    assert (item.outcome, item.status) == (GIVE_UP_AFTER_TRIES, 401)
    assert receiver.requests[0].verified is False


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed(receiver, status):
    with WebhookReceiver(SECRET) as elsewhere:
        receiver.answer(status, location=elsewhere.url)
        item = send(build_event(final(), "cn-shanghai"), settings_for(receiver.url)).results[0]
        assert (item.outcome, item.status) == (GIVE_UP_AFTER_TRIES, status)
        assert f"redirect to 127.0.0.1:{elsewhere.port} not followed" in item.error
        assert elsewhere.requests == []


def test_while_rotating_receivers_holding_either_secret_accept():
    with WebhookReceiver(SECRET) as old, WebhookReceiver(NEW_SECRET) as new:
        settings = settings_for(old.url, new.url, secrets=(SECRET, NEW_SECRET))
        result = send(build_event(final(), "cn-shanghai"), settings)
        assert result.delivered
        assert old.requests[0].signatures == new.requests[0].signatures == 2


def test_a_slow_endpoint_times_out_as_a_retry(receiver):
    receiver.delay(3)
    started = time.monotonic()
    item = send(build_event(final(), "cn-shanghai"), settings_for(receiver.url), timeout_s=0.3).results[0]
    assert (item.outcome, item.error) == (RETRY, "timed out after 0.3 s")
    assert time.monotonic() - started < 1.5


def test_slow_endpoints_never_push_delivery_past_the_deadline():
    with WebhookReceiver(SECRET) as first, WebhookReceiver(SECRET) as second:
        first.delay(3)
        second.delay(3)
        started = time.monotonic()
        result = send(build_event(final(), "cn-shanghai"), settings_for(first.url, second.url),
                      within_s=0.5, timeout_s=30)
        assert time.monotonic() - started < 0.9  # both in parallel, each bounded by the deadline
        assert [item.outcome for item in result.results] == [RETRY, RETRY]


def test_a_receiver_that_is_down_is_a_retry(receiver):
    receiver.go_down()
    item = send(build_event(final(), "cn-shanghai"), settings_for(receiver.url)).results[0]
    assert (item.outcome, item.status, item.error) == (RETRY, None, "connection refused")


def test_logs_name_the_job_and_host_but_never_the_secret_signature_or_query(receiver, caplog):
    url = receiver.url + "?token=tok-must-not-be-logged"
    receiver.answer(503)
    with caplog.at_level(logging.DEBUG):
        send(build_event(final(), "cn-shanghai"), settings_for(url))
        send(build_event(final(), "cn-shanghai"), settings_for(url))
    text = caplog.text
    assert "job00001" in text and f"127.0.0.1:{receiver.port}" in text and "HTTP 503" in text
    assert "tok-must-not-be-logged" not in text and SECRET[6:] not in text and "v1," not in text


# ---------------------------------------------------------------- the outbox across invocations


@dataclass
class Invocation:
    """What a store's ``save`` and the sweep do with the outbox, in the order they must."""

    settings: Settings
    stored: Dict[str, JobRecord] = field(default_factory=dict)  # the records, by job ID
    store: MemoryStore = field(default_factory=MemoryStore)  # only its outbox is used
    now: datetime = T0
    counts: Dict[str, int] = field(default_factory=lambda: {"notified": 0, "notify_failed": 0})

    def save(self, fresh: JobRecord) -> None:
        stored = self.stored.get(fresh.job_id)
        outcome = merge(stored, replace(fresh, updated_at=format_time(self.now)))
        if outcome.changed:
            if notify.owes_notification(stored, outcome.record, self.settings.notify_states):
                self.store.owe(Owed.for_record(outcome.record, format_time(self.now)))  # before the record
            self.stored[fresh.job_id] = outcome.record

    def deliver_due(self, budget_s: float = 5.0) -> None:
        deadline = time.monotonic() + budget_s
        for entry in self.store.owed():
            current = self.stored.get(entry.job_id)
            status = notify.entry_status(entry, current, self.now, states=self.settings.notify_states)
            if status == notify.DROP:
                self.store.settle(entry)
            elif status == notify.REOWE:
                self.store.owe(Owed.for_record(current, format_time(self.now)))
            if status != notify.DELIVER:
                continue
            claimed = self.store.claim(entry, "holder", self.now, self.now + timedelta(minutes=1))  # before sending
            if claimed is None:
                continue
            progress = attempt(claimed, self.stored[entry.job_id], region="cn-shanghai",
                               targets=webhooks(self.settings), deadline=deadline, now=self.now, max_age=MAX_AGE,
                               timeout_s=2)
            if progress.settled:
                self.store.settle(claimed)
            else:
                self.store.reschedule(progress.entry)
            self.counts["notified"] += len(progress.delivered)
            self.counts["notify_failed"] += len(progress.given_up) + len(progress.failed)

    def later(self, minutes: float) -> Invocation:
        self.now += timedelta(minutes=minutes)
        return self


def test_final_states_are_announced_once(receiver):
    run = Invocation(settings_for(receiver.url))
    run.save(record("job1", "processing"))
    run.save(final("job1"))
    run.save(replace(final("job2"), state="failed", error_code="DOWNLOAD_FAIL"))
    run.deliver_due()
    for _ in range(3):
        run.later(30).deliver_due()
    assert sorted(event["type"] for event in receiver.events.values()) == ["ice.upload.failed", "ice.upload.succeeded"]
    assert set(receiver.deliveries.values()) == {1} and run.store.outbox == {}
    assert run.counts == {"notified": 2, "notify_failed": 0}


def test_non_final_states_are_announced_only_when_configured(receiver):
    quiet = Invocation(settings_for(receiver.url))
    quiet.save(record("job1", "pending"))
    quiet.save(record("job1", "processing"))
    quiet.deliver_due()
    assert receiver.requests == []
    chatty = Invocation(settings_for(receiver.url, states="processing,succeeded"))
    chatty.save(record("job1", "processing"))
    chatty.deliver_due()
    assert [event["type"] for event in receiver.events.values()] == ["ice.upload.processing"]


def test_duplicate_callbacks_and_stale_answers_send_no_duplicate_event(receiver):
    run = Invocation(settings_for(receiver.url))
    run.save(final("job1"))
    run.deliver_due()
    run.later(1).save(final("job1"))  # the same answer again (a duplicate callback)
    run.later(1).save(record("job1", "processing"))  # a stale answer: the final record stays
    run.deliver_due()
    assert receiver.deliveries == {event_id("job1", "succeeded"): 1}


def test_a_receiver_down_for_several_invocations_gets_the_event_when_back(receiver):
    run = Invocation(settings_for(receiver.url))
    run.save(final("job1"))
    receiver.go_down()
    for _ in range(4):  # invocations every 20 minutes; backoff 1, 2, 4, 8 minutes
        run.deliver_due()
        run.later(20)
    entry = run.store.outbox["job1"]
    assert entry.tries == 4 and "connection refused" in entry.last_error
    receiver.come_back()
    run.deliver_due()
    assert receiver.deliveries == {event_id("job1", "succeeded"): 1} and run.store.outbox == {}
    assert run.counts == {"notified": 1, "notify_failed": 4}


def test_a_receiver_answering_400_is_given_up_after_three_tries(receiver, caplog):
    run = Invocation(settings_for(receiver.url))
    run.save(final("job1"))
    receiver.answer(400, times=10)
    with caplog.at_level(logging.ERROR, logger="ice_upload_sync.notify"):
        for _ in range(6):
            run.deliver_due()
            run.later(30)
    assert [request.status for request in receiver.requests] == [400, 400, 400]
    assert run.store.outbox == {} and run.counts == {"notified": 0, "notify_failed": 3}
    assert "job1" in caplog.text and "given up after 3 tries" in caplog.text


def test_only_the_endpoints_still_owed_are_sent_again():
    with WebhookReceiver(SECRET) as up, WebhookReceiver(SECRET) as down:
        down.go_down()
        run = Invocation(settings_for(up.url, down.url))
        run.save(final("job1"))
        run.deliver_due()
        assert run.store.outbox["job1"].endpoints_done == (NotifyEndpoint(up.url).key,)
        down.come_back()
        run.later(5).deliver_due()
        assert up.deliveries == down.deliveries == {event_id("job1", "succeeded"): 1}
        assert run.store.outbox == {}


def test_a_newer_state_replaces_what_was_owed(receiver):
    run = Invocation(settings_for(receiver.url))
    receiver.go_down()
    run.save(replace(final("job1", completed_at=None), state="expired"))
    run.deliver_due()
    run.later(5).save(final("job1"))  # a real outcome replaces expired
    receiver.come_back()
    run.later(60).deliver_due()
    assert [event["type"] for event in receiver.events.values()] == ["ice.upload.succeeded"]


def test_an_entry_left_behind_by_a_racing_writer_is_owed_again_for_the_winning_state(receiver):
    run = Invocation(settings_for(receiver.url))
    run.save(replace(final("job1", completed_at="2026-11-25T05:00:00Z"), state="failed", error_code="X"))
    run.store.owe(Owed.for_record(final("job1"), format_time(run.now)))  # the loser's entry, written last
    run.deliver_due()
    assert receiver.requests == []  # within the grace: the entry's record may still be on its way
    run.later(20).deliver_due()  # re-owed for the record's state
    run.later(1).deliver_due()
    assert [event["type"] for event in receiver.events.values()] == ["ice.upload.failed"]


# ---------------------------------------------------------------- the documented receiver


def receiver_example() -> str:
    text = RECEIVER_EXAMPLE.read_text(encoding="utf-8")
    found = re.search(r"<!-- receiver-example[^>]*-->\s*```python\n(.*?)```", text, re.DOTALL)
    assert found, f"no receiver example in {RECEIVER_EXAMPLE}"
    return found.group(1)


def test_the_documented_receiver_example_verifies_a_delivery(monkeypatch, capsys):
    snippet = receiver_example()
    assert len(snippet.strip().splitlines()) <= 25
    servers: List[http.server.HTTPServer] = []

    class LoopbackHTTPServer(http.server.HTTPServer):  # the example's server, on a free loopback port
        def __init__(self, address, handler):
            super().__init__(("127.0.0.1", 0), handler)
            servers.append(self)

    monkeypatch.setattr(http.server, "HTTPServer", LoopbackHTTPServer)
    monkeypatch.setenv("NOTIFY_SECRET", SECRET)
    runner = threading.Thread(target=exec, args=(compile(snippet, str(RECEIVER_EXAMPLE), "exec"),
                                                 {"__name__": "__main__"}), daemon=True)
    runner.start()
    for _ in range(200):
        if servers:
            break
        time.sleep(0.01)
    assert servers, "the example did not start its server"
    try:
        url = f"http://127.0.0.1:{servers[0].server_address[1]}/"
        event = build_event(final("job42"), "cn-shanghai")
        assert send(event, settings_for(url)).delivered
        forged = send(event, settings_for(url, secrets=(NEW_SECRET,))).results[0]
        assert (forged.outcome, forged.status) == (GIVE_UP_AFTER_TRIES, 401)
    finally:
        servers[0].shutdown()
        runner.join(5)
    assert "ice.upload.succeeded job42 m1" in capsys.readouterr().out


def test_the_event_fields_documented_are_the_event_fields():
    text = RECEIVER_EXAMPLE.read_text(encoding="utf-8")
    sample = json.loads(re.search(r"## The event\s*```json\n(.*?)```", text, re.DOTALL).group(1))
    assert list(sample) == list(build_event(final(), "cn-shanghai").to_dict())
    assert all(f"| `{name}` |" in text for name in ("id", "source", "type", "subject", "time", "data"))
