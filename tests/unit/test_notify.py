"""Completion events without a network: the event, its signature (checked with the standardwebhooks
package, not our code), the NOTIFY_* settings, the backoff, the outbox entry and its policy."""
from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from ice_upload_sync import cloudevent, delivery, notify, webhook
from ice_upload_sync.cloudevent import build_event, event_id, webhook_headers
from ice_upload_sync.config import NotifyEndpoint, Settings, WebhookSecret
from ice_upload_sync.delivery import (
    DELIVERED,
    GIVE_UP_AFTER_TRIES,
    NOT_TRIED,
    RETRY,
    DeliveryResult,
    EndpointResult,
    Outcome,
    classify_status,
)
from ice_upload_sync.errors import ConfigError
from ice_upload_sync.notify import (
    DROP,
    WAIT,
    BadOutboxEntry,
    EntryStatus,
    Owed,
    advance,
    entry_status,
    owes_notification,
    retry_delay_s,
    try_now,
)
from ice_upload_sync.outbox import attempt
from ice_upload_sync.records import STATES, UnencodableRecord, format_time
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.store_records import NOW, final, record

OLD_SECRET = "whsec_" + base64.b64encode(b"o" * 32).decode()
NEW_SECRET = "whsec_" + base64.b64encode(b"n" * 32).decode()
T0 = datetime(2026, 11, 25, 3, 0, 0, tzinfo=timezone.utc)
MAX_AGE = timedelta(hours=72)
HOOK = webhook.Webhook(NotifyEndpoint("https://hooks.example.com/ice?token=s3cr3t-token"))
OTHER = webhook.Webhook(NotifyEndpoint("https://other.example.net/events"))


def secrets(*texts: str):
    return Settings.from_env({"NOTIFY_SECRET": ",".join(texts)}).notify_secrets


# ---------------------------------------------------------------- the event


def test_the_event_is_a_cloudevent_whose_data_is_the_record():
    rec = replace(final(user_data={"title": "clip \u00e9t\u00e9"}), updated_at="2026-11-25T03:04:05Z")
    event = build_event(rec, "cn-beijing")
    body = json.loads(event.body)
    assert body == {
        "specversion": "1.0", "id": event_id("job00001", "succeeded"), "source": "ice-upload-sync/cn-beijing",
        "type": "ice.upload.succeeded", "subject": "job00001", "time": "2026-11-25T03:04:05Z",
        "datacontenttype": "application/json", "data": rec.to_dict(),
    }
    assert list(body) == ["specversion", "id", "source", "type", "subject", "time", "datacontenttype", "data"]
    assert event.to_dict() == body and (event.job_id, event.state) == ("job00001", "succeeded")
    assert "\u00e9t\u00e9".encode() in event.body  # UTF-8, not \\u escapes


def test_the_id_is_stable_per_job_and_state_and_safe_everywhere():
    first = build_event(final(), "cn-shanghai")
    repeat = build_event(replace(final(completed_at="2026-11-26T00:00:00Z"), updated_at="2026-11-26T00:00:00Z"),
                         "cn-shanghai")
    assert first.id == repeat.id  # a repeat deduplicates at the receiver
    assert first.body != repeat.body
    ids = {event_id("job00001", state) for state in STATES} | {event_id("job00002", "succeeded")}
    assert len(ids) == len(STATES) + 1
    for identifier in ids:  # no "." (the signed string's separator); valid as an EventBridge event id
        assert len(identifier) == 32 and all(char in "0123456789abcdef" for char in identifier)


def test_a_record_that_is_not_strict_json_is_refused_naming_the_job():
    with pytest.raises(UnencodableRecord, match="job00001"):
        build_event(record(user_data={"x": float("nan")}), "cn-shanghai")


# ---------------------------------------------------------------- the signature


def test_standardwebhooks_verifies_our_signature():
    event = build_event(final(), "cn-shanghai")
    headers = webhook_headers(event, secrets(OLD_SECRET), int(time.time()))
    assert Webhook(OLD_SECRET).verify(event.body, headers) == json.loads(event.body)
    assert headers["Content-Type"] == "application/cloudevents+json"
    assert headers["webhook-id"] == event.id
    with pytest.raises(WebhookVerificationError):
        Webhook(NEW_SECRET).verify(event.body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD_SECRET).verify(event.body.replace(b"succeeded", b"failed!!!"), headers)


def test_our_signature_is_the_one_the_library_computes():
    event = build_event(final(), "cn-shanghai")
    moment = 1_780_000_000
    expected = Webhook(OLD_SECRET).sign(event.id, datetime.fromtimestamp(moment, tz=timezone.utc),
                                        event.body.decode())
    assert cloudevent.sign(event.id, moment, event.body, secrets(OLD_SECRET)) == expected


def test_while_rotating_every_secret_signs_and_either_verifies():
    event = build_event(final(), "cn-shanghai")
    headers = webhook_headers(event, secrets(OLD_SECRET, NEW_SECRET), int(time.time()))
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert all(part.startswith("v1,") for part in headers["webhook-signature"].split(" "))
    for secret in (OLD_SECRET, NEW_SECRET):
        assert Webhook(secret).verify(event.body, headers)["id"] == event.id
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(b"x" * 32).decode()).verify(event.body, headers)


def test_an_unpadded_secret_signs_as_the_library_reads_it():
    unpadded = "whsec_" + base64.b64encode(b"k" * 25).decode().rstrip("=")
    event = build_event(final(), "cn-shanghai")
    headers = webhook_headers(event, secrets(unpadded), int(time.time()))
    assert Webhook(unpadded).verify(event.body, headers)


def test_without_a_secret_there_is_no_signature_header():
    headers = webhook_headers(build_event(final(), "cn-shanghai"), (), 1)
    assert "webhook-signature" not in headers and headers["webhook-timestamp"] == "1"


# ---------------------------------------------------------------- NOTIFY_* settings


def test_notify_defaults():
    settings = Settings.from_env({})
    assert settings.notify_endpoints == () and settings.notify_secrets == ()
    assert settings.notify_states == ("succeeded", "failed", "expired")
    assert settings.notify_eventbridge_bus is None and not settings.notifies


def test_notify_settings_parse():
    settings = Settings.from_env({
        "NOTIFY_URL": " https://hooks.example.com/a?t=1 , http://127.0.0.1:9000/e,http://localhost/x,"
                      "http://[::1]:8080/, http://127.9.9.9/,https://hooks.example.com/a?t=1",
        "NOTIFY_SECRET": f"{OLD_SECRET}, {NEW_SECRET},",
        "NOTIFY_STATES": "succeeded, failed,not_found,succeeded",
    })
    assert [endpoint.url for endpoint in settings.notify_endpoints] == [
        "https://hooks.example.com/a?t=1", "http://127.0.0.1:9000/e", "http://localhost/x", "http://[::1]:8080/",
        "http://127.9.9.9/"]
    assert [endpoint.loopback for endpoint in settings.notify_endpoints] == [False, True, True, True, True]
    assert [secret.number for secret in settings.notify_secrets] == [1, 2]
    assert settings.notify_secrets[0].key == b"o" * 32
    assert settings.notify_states == ("succeeded", "failed", "not_found")
    assert settings.notify_eventbridge_bus is None and settings.notifies


def test_an_eventbridge_bus_alone_turns_events_on_at_its_openapi_endpoint():
    settings = Settings.from_env({"NOTIFY_EVENTBRIDGE": " ice-events ", "ICE_REGION": "cn-beijing"})
    assert settings.notify_eventbridge_bus == "ice-events" and settings.notifies
    assert settings.notify_endpoints == ()
    assert settings.eventbridge_endpoint.url == "https://eventbridge-console.cn-beijing.aliyuncs.com"


@pytest.mark.parametrize("value, url", [
    ("eventbridge-console-vpc.cn-shanghai.aliyuncs.com", "https://eventbridge-console-vpc.cn-shanghai.aliyuncs.com"),
    ("http://127.0.0.1:8081", "http://127.0.0.1:8081"),
    ("https://eb.example:8443/", "https://eb.example:8443"),
])
def test_eventbridge_endpoint_overrides(value, url):
    assert Settings.from_env({"EVENTBRIDGE_ENDPOINT": value}).eventbridge_endpoint.url == url


@pytest.mark.parametrize("value", ["ftp://eb.example", "https://eb.example/path", "https://eb.example/?a=1",
                                   "https://user:pw@eb.example", "https://", "https://eb.example:abc",
                                   "eb.example:99999", "https://:443", "https://[::1", "https://eb.example:0"])
def test_an_unusable_eventbridge_endpoint_stops_the_function(value):
    with pytest.raises(ConfigError, match="EVENTBRIDGE_ENDPOINT .* must be host"):
        Settings.from_env({"EVENTBRIDGE_ENDPOINT": value})


@pytest.mark.parametrize("name", ["EVENTBRIDGE_ENDPOINT", "ICE_ENDPOINT"])
def test_plain_http_is_for_loopback_emulators_only(name):
    """The SDKs send the STS token in a header: over http:// only to this machine."""
    with pytest.raises(ConfigError, match=f"{name} 'http://eb.example.com' must use https://"):
        Settings.from_env({name: "http://eb.example.com"})
    assert Settings.from_env({name: "http://localhost:8081"})


def test_an_empty_notify_secret_is_unset_as_the_template_passes_it():
    assert Settings.from_env({"NOTIFY_SECRET": "", "NOTIFY_URL": ""}).notify_secrets == ()


def test_loopback_endpoints_need_no_secret():
    assert Settings.from_env({"NOTIFY_URL": "http://127.0.0.1:9000/"}).notify_secrets == ()


@pytest.mark.parametrize("env, message", [
    ({"NOTIFY_URL": ","}, "NOTIFY_URL is set but holds no URL"),
    ({"NOTIFY_URL": "http://hooks.example.com/e?token=abc"}, "must use https://"),
    ({"NOTIFY_URL": "http://10.0.0.1/e"}, "must use https://"),
    ({"NOTIFY_URL": "http://127.0.0.1.evil.example/e"}, "must use https://"),
    ({"NOTIFY_URL": "http://[::ffff:8.8.8.8]/"}, "must use https://"),
    ({"NOTIFY_URL": "ftp://hooks.example.com/e"}, "must be https://host"),
    ({"NOTIFY_URL": "hooks.example.com/e"}, "must be https://host"),
    ({"NOTIFY_URL": "https:///e"}, "must be https://host"),
    ({"NOTIFY_URL": "https://user:pw@hooks.example.com/e"}, "carries user info"),
    ({"NOTIFY_URL": "https://hooks.example.com:99999/e"}, "port"),
    ({"NOTIFY_URL": "https://hooks.example.com/a b"}, "whitespace"),
    ({"NOTIFY_URL": "https://hooks.example.com/\x00"}, "control"),
    ({"NOTIFY_URL": "https://h\u00f6oks.example.com/"}, "non-ASCII"),
    ({"NOTIFY_URL": "https://hooks.example.com/e"}, "needs NOTIFY_SECRET"),
    ({"NOTIFY_URL": "http://127.0.0.1/, https://hooks.example.com/e?k=v"}, "needs NOTIFY_SECRET"),
    ({"NOTIFY_SECRET": "", "NOTIFY_URL": "https://hooks.example.com/e"}, "needs NOTIFY_SECRET"),
    ({"NOTIFY_SECRET": " , "}, "holds no secret"),
    ({"NOTIFY_SECRET": base64.b64encode(b"k" * 32).decode()}, "secret #1 does not start with 'whsec_'"),
    ({"NOTIFY_SECRET": f"{OLD_SECRET},whsec_not*base64!"}, "secret #2 is not valid base64"),
    ({"NOTIFY_SECRET": "whsec_"}, "secret #1 is not valid base64"),
    ({"NOTIFY_SECRET": "whsec_QUJD\u00e9"}, "not valid base64"),
    ({"NOTIFY_SECRET": "whsec_A"}, "not valid base64"),
    ({"NOTIFY_SECRET": "whsec_" + base64.b64encode(b"short").decode()}, "holds 5 bytes"),
    ({"NOTIFY_STATES": ","}, "NOTIFY_STATES holds no state"),
    ({"NOTIFY_STATES": "succeeded,done"}, "'done' is not a state"),
    ({"NOTIFY_STATES": "SUCCEEDED"}, "is not a state"),
    ({"NOTIFY_EVENTBRIDGE": "my_bus"}, "NOTIFY_EVENTBRIDGE 'my_bus' is not an event bus name"),
    ({"NOTIFY_EVENTBRIDGE": "-bus"}, "not an event bus name"),
    ({"NOTIFY_EVENTBRIDGE": "b"}, "not an event bus name"),
    ({"NOTIFY_EVENTBRIDGE": "b" * 128}, "not an event bus name"),
    ({"NOTIFY_EVENTBRIDGE": "eventbridge-reserved-bus"}, "not an event bus name"),
])
def test_unusable_notify_settings_stop_the_function(env, message):
    with pytest.raises(ConfigError, match=message.replace("?", r"\?").replace("*", r"\*")):
        Settings.from_env(env)


@pytest.mark.parametrize("env", [
    {"NOTIFY_URL": "https://user:hunter2@hooks.example.com/e?token=s3cr3t"},
    {"NOTIFY_URL": "http://hooks.example.com/e?token=s3cr3t"},
    {"NOTIFY_URL": "https://hooks.example.com:99999/e?token=s3cr3t"},
    {"NOTIFY_URL": "https://hooks.example.com/e?token=s3cr3t"},
    {"NOTIFY_URL": "https://hooks.example.com/e?token=s3cr3t", "NOTIFY_SECRET": "whsec_s3cr3t!"},
    {"NOTIFY_SECRET": "s3cr3t" * 8},
    {"NOTIFY_SECRET": "whsec_czNjcjN0"},
])
def test_refusals_never_echo_a_secret_or_a_token(env):
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env)
    assert "s3cr3t" not in str(refused.value) and "hunter2" not in str(refused.value)
    assert "czNjcjN0" not in str(refused.value)


def test_settings_repr_hides_keys_and_url_queries():
    settings = Settings.from_env({"NOTIFY_URL": "https://hooks.example.com/e?token=s3cr3t",
                                  "NOTIFY_SECRET": OLD_SECRET})
    text = repr(settings)
    assert "s3cr3t" not in text and OLD_SECRET[6:] not in text and "ooo" not in text
    assert "https://hooks.example.com/e?<redacted>" in text


def test_endpoint_key_is_a_digest_not_the_url():
    assert "token" not in HOOK.key and len(HOOK.key) == 16 and HOOK.key != OTHER.key
    assert HOOK.host == "hooks.example.com" and HOOK.endpoint.shown == "https://hooks.example.com/ice?<redacted>"
    assert (HOOK.key, HOOK.host) == (HOOK.endpoint.key, HOOK.endpoint.host)  # the target is known by its endpoint


# ---------------------------------------------------------------- classification and backoff


@pytest.mark.parametrize("status, outcome", [
    (200, DELIVERED), (201, DELIVERED), (202, DELIVERED), (204, DELIVERED), (299, DELIVERED),
    (408, RETRY), (429, RETRY), (500, RETRY), (502, RETRY), (503, RETRY), (504, RETRY), (599, RETRY),
    (400, GIVE_UP_AFTER_TRIES), (401, GIVE_UP_AFTER_TRIES), (403, GIVE_UP_AFTER_TRIES),
    (404, GIVE_UP_AFTER_TRIES), (410, GIVE_UP_AFTER_TRIES), (413, GIVE_UP_AFTER_TRIES),
    (301, GIVE_UP_AFTER_TRIES), (302, GIVE_UP_AFTER_TRIES), (307, GIVE_UP_AFTER_TRIES),
    (308, GIVE_UP_AFTER_TRIES), (304, GIVE_UP_AFTER_TRIES), (100, GIVE_UP_AFTER_TRIES),
])
def test_answers_are_classified(status, outcome):
    assert classify_status(status) == outcome


def test_outcomes_and_entry_states_are_the_strings_they_always_were():
    assert [outcome.value for outcome in Outcome] == ["delivered", "retry", "give_up_after_tries", "not_tried"]
    assert [status.value for status in EntryStatus] == ["deliver", "wait", "drop", "reowe"]
    assert RETRY == "retry" and WAIT == "wait" and f"{GIVE_UP_AFTER_TRIES} / {DROP}" == "give_up_after_tries / drop"
    assert str(NOT_TRIED) == "not_tried" and json.dumps([DELIVERED, notify.REOWE]) == '["delivered", "reowe"]'


def test_deliver_sends_through_each_targets_own_send():
    class Recording:
        key, host = "recording", "recording target"

        def __init__(self):
            self.sent = []

        def send(self, event, timeout_s):
            self.sent.append((event.id, timeout_s))
            return delivery.SendResult(GIVE_UP_AFTER_TRIES, 400, "refused " * 50, retry_after_s=30)

    event, target = build_event(final(), "cn-shanghai"), Recording()
    (item,) = delivery.deliver(event, (target,), deadline=time.monotonic() + 5, timeout_s=2).results
    assert target.sent == [(event.id, 2)]
    assert (item.endpoint, item.outcome, item.status) == (target, GIVE_UP_AFTER_TRIES, 400)
    assert len(item.error) == 200 and item.retry_after_s is None  # a wait is asked for with a retry only


def test_backoff_doubles_from_a_minute_to_an_hour_with_jitter():
    top = [retry_delay_s(n, rand=lambda: 0.0) for n in range(1, 10)]
    assert top == [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]
    assert retry_delay_s(1, rand=lambda: 0.999) == pytest.approx(48, abs=0.1)
    assert retry_delay_s(10_000, rand=lambda: 0.5) == pytest.approx(3240)  # no overflow, capped
    assert retry_delay_s(0, rand=lambda: 0.0) == 60
    spread = {round(retry_delay_s(3)) for _ in range(200)}
    assert len(spread) > 10 and all(192 <= delay <= 240 for delay in spread)


def test_retry_after_is_read_as_seconds_or_a_date_and_capped():
    assert webhook._retry_after_s("120") == 120
    assert webhook._retry_after_s("99999") == notify.MAX_RETRY_S
    assert webhook._retry_after_s("soon") is None and webhook._retry_after_s(None) is None
    assert webhook._retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past


# ---------------------------------------------------------------- the outbox entry and its policy


def owed(**fields):
    return replace(Owed.for_record(final(), format_time(T0)), **fields)


def result(*items):
    return DeliveryResult(event_id("job00001", "succeeded"), "job00001", tuple(items))


def test_an_entry_is_owed_at_once_and_round_trips_through_json():
    entry = Owed.for_record(final(), NOW)
    assert (entry.job_id, entry.state, entry.event_id, entry.tries) == ("job00001", "succeeded",
                                                                        event_id("job00001", "succeeded"), 0)
    assert entry.next_attempt_at == NOW and entry.due(T0) and not entry.due(T0 - timedelta(seconds=1))
    busy = replace(entry, tries=2, last_error="hooks.example.com: HTTP 503", endpoints_done=(HOOK.key,),
                   target_tries=((OTHER.key, 2),))
    assert Owed.from_json(busy.to_json()) == busy
    assert Owed.from_json(entry.to_json()) == entry


def test_an_entry_written_before_per_target_tries_still_reads():
    raw = json.loads(Owed.for_record(final(), NOW).to_json())
    del raw["target_tries"]
    assert Owed.from_json(json.dumps(raw).encode()).target_tries == ()


def test_an_entry_written_before_claims_reads_as_unclaimed():
    raw = json.loads(Owed.for_record(final(), NOW).to_json())
    del raw["claimed_by"], raw["claimed_until"]
    entry = Owed.from_json(json.dumps(raw).encode())
    assert (entry.claimed_by, entry.claimed_until) == ("", "") and entry.claimable(T0)


def test_a_claim_holds_until_it_expires_and_each_step_is_a_new_claim_key():
    entry = owed()
    claimed = entry.claimed_for("holder-a", T0 + timedelta(seconds=60))
    assert Owed.from_json(claimed.to_json()) == claimed
    assert claimed.claimed_until == "2026-11-25T03:01:00Z" and (claimed.event_id, claimed.state) == (
        entry.event_id, entry.state)
    assert not claimed.claimable(T0) and not claimed.claimable(T0 + timedelta(seconds=59))
    assert claimed.claimable(T0 + timedelta(seconds=60))  # expired: its holder crashed or overran
    released = claimed.released()
    assert released.claimable(T0) and released.claimed_by == "holder-a"
    # never claimed, claimed, released: three keys, so a compare-and-set tells each write from the one before
    assert len({entry.claim_key, claimed.claim_key, released.claim_key}) == 3


@pytest.mark.parametrize("raw, message", [
    (b"not json", "not JSON"), (b"\xff", "not JSON"), (b"[]", "not a JSON object"),
    (b'{"job_id": "a/b"}', "no valid job_id"),
    (b'{"job_id": "j1", "state": "done", "event_id": "", "owed_since": "x", "tries": -1, "next_attempt_at": null,'
     b' "last_error": 3, "endpoints_done": "k"}',
     "job j1 has bad state, event_id, owed_since, next_attempt_at, tries, last_error, endpoints_done"),
    (b'{"job_id": "j1", "state": "failed", "event_id": "e", "owed_since": "2026-11-25T03:00:00Z", "tries": true,'
     b' "next_attempt_at": "2026-11-25T03:00:00Z", "last_error": null, "endpoints_done": []}', "bad tries"),
    (b'{"job_id": "j1", "state": "failed", "event_id": "e", "owed_since": "2026-11-25T03:00:00Z", "tries": 1,'
     b' "next_attempt_at": "2026-11-25T03:00:00Z", "last_error": null, "endpoints_done": [],'
     b' "target_tries": {"k": -1}}', "bad target_tries"),
    (b'{"job_id": "j1", "state": "failed", "event_id": "e", "owed_since": "2026-11-25T03:00:00Z", "tries": 1,'
     b' "next_attempt_at": "2026-11-25T03:00:00Z", "last_error": null, "endpoints_done": [],'
     b' "target_tries": [["k", 1]]}', "bad target_tries"),
    (b'{"job_id": "j1", "state": "failed", "event_id": "e", "owed_since": "2026-11-25T03:00:00Z", "tries": 1,'
     b' "next_attempt_at": "2026-11-25T03:00:00Z", "last_error": null, "endpoints_done": [],'
     b' "claimed_by": 7, "claimed_until": "soon"}', "bad claimed_by, claimed_until"),
    (b'{"job_id": "j1", "state": "failed", "event_id": "e", "owed_since": "2026-11-25T03:00:00Z", "tries": 1,'
     b' "next_attempt_at": "2026-11-25T03:00:00Z", "last_error": null, "endpoints_done": [],'
     b' "claimed_by": "h", "claimed_until": null}', "bad claimed_until"),
])
def test_a_garbled_entry_is_refused_saying_what_is_wrong(raw, message):
    with pytest.raises(BadOutboxEntry, match=message):
        Owed.from_json(raw)


@pytest.mark.parametrize("before, after, owes", [
    (None, "succeeded", True), ("processing", "succeeded", True), ("expired", "succeeded", True),
    ("succeeded", "failed", True), ("succeeded", "succeeded", False), (None, "processing", False),
    ("pending", "processing", False), ("processing", "not_found", False),
])
def test_a_notification_is_owed_when_the_record_enters_an_announced_state(before, after, owes):
    previous = None if before is None else record(state=before)
    assert owes_notification(previous, record(state=after), ("succeeded", "failed", "expired")) is owes


def test_non_final_states_are_announced_only_when_configured():
    assert owes_notification(record(state="pending"), record(state="processing"), ("processing",))


def test_entry_status_follows_the_record():
    entry = owed()
    assert entry_status(entry, final(), T0) == notify.DELIVER
    assert entry_status(replace(entry, next_attempt_at="2026-11-25T03:05:00Z"), final(), T0) == WAIT
    # the record is not written yet (the store owes first): wait, then drop once it clearly never was
    assert entry_status(entry, None, T0 + timedelta(minutes=5)) == WAIT
    assert entry_status(entry, record(state="processing"), T0 + timedelta(minutes=5)) == WAIT
    assert entry_status(entry, None, T0 + timedelta(minutes=16)) == DROP
    assert entry_status(entry, record(state="processing"), T0 + timedelta(hours=1), states=STATES[2:]) == DROP
    # a racing writer's record won in another announced state: owe that one instead
    assert entry_status(entry, record(state="failed"), T0 + timedelta(hours=1), states=STATES[2:]) == notify.REOWE
    assert entry_status(entry, record(state="failed"), T0 + timedelta(minutes=1), states=STATES[2:]) == WAIT


def test_a_2xx_settles_the_entry():
    progress = advance(owed(), result(EndpointResult(HOOK, DELIVERED, 204)), now=T0, max_age=MAX_AGE)
    assert progress.settled and progress.delivered == (HOOK,) and not progress.given_up


def test_a_4xx_is_given_up_on_the_third_try(caplog):
    entry, now = owed(), T0
    for expected_tries in (1, 2):
        progress = advance(entry, result(EndpointResult(HOOK, GIVE_UP_AFTER_TRIES, 400, "HTTP 400")), now=now,
                           max_age=MAX_AGE, rand=lambda: 0.0)
        entry = progress.entry
        assert entry.tries == expected_tries and progress.failed == (HOOK,)
        assert entry.next_attempt_at == format_time(now + timedelta(minutes=2 ** (expected_tries - 1)))
        assert entry.last_error == "hooks.example.com: HTTP 400"
        now += timedelta(minutes=5)
    with caplog.at_level(logging.ERROR, logger="ice_upload_sync.notify"):
        progress = advance(entry, result(EndpointResult(HOOK, GIVE_UP_AFTER_TRIES, 400, "HTTP 400")), now=now,
                           max_age=MAX_AGE)
    assert progress.settled and progress.given_up == (HOOK,)
    assert "job00001" in caplog.text and "given up after 3 tries" in caplog.text and "token" not in caplog.text


def test_retryable_failures_back_off_until_max_age_then_give_up():
    entry = owed()
    progress = advance(entry, result(EndpointResult(HOOK, RETRY, 503, "HTTP 503")), now=T0, max_age=MAX_AGE,
                       rand=lambda: 0.0)
    assert progress.entry.tries == 1 and progress.entry.next_attempt_at == "2026-11-25T03:01:00Z"
    many = replace(entry, tries=20)  # far more than 3: retryable answers are never given up for their count
    near_limit = T0 + MAX_AGE - timedelta(minutes=10)
    progress = advance(many, result(EndpointResult(HOOK, RETRY, None, "timed out")), now=near_limit,
                       max_age=MAX_AGE, rand=lambda: 0.0)
    assert progress.entry.next_attempt_at == format_time(T0 + MAX_AGE)  # one last try at the limit
    progress = advance(progress.entry, result(EndpointResult(HOOK, RETRY, None, "connection refused")),
                       now=T0 + MAX_AGE, max_age=MAX_AGE)
    assert progress.settled and progress.given_up == (HOOK,)


def test_retry_after_longer_than_the_backoff_is_honoured():
    progress = advance(owed(), result(EndpointResult(HOOK, RETRY, 429, "HTTP 429", retry_after_s=900)), now=T0,
                       max_age=MAX_AGE, rand=lambda: 0.0)
    assert progress.entry.next_attempt_at == "2026-11-25T03:15:00Z"


def test_endpoints_that_answered_are_not_sent_again():
    progress = advance(owed(), result(EndpointResult(HOOK, DELIVERED, 200), EndpointResult(OTHER, RETRY, None, "x")),
                       now=T0, max_age=MAX_AGE)
    assert progress.entry.endpoints_done == (HOOK.key,) and progress.delivered == (HOOK,)
    assert progress.entry.pending_endpoints((HOOK, OTHER)) == (OTHER,)
    assert Owed.from_json(progress.entry.to_json()).pending_endpoints((HOOK, OTHER)) == (OTHER,)


def test_a_target_is_given_up_after_its_own_tries_not_another_targets():
    """OTHER is retried (down) while HOOK is skipped twice; HOOK's first 403 is its first try, not the third."""
    entry = owed()
    for _ in range(2):
        skipped = EndpointResult(HOOK, NOT_TRIED, error=delivery.SKIPPED)
        progress = advance(entry, result(EndpointResult(OTHER, RETRY, None, "timed out"), skipped),
                           now=T0, max_age=MAX_AGE)
        entry = progress.entry
    assert entry.tries == 2 and dict(entry.target_tries) == {OTHER.key: 2}
    refused = EndpointResult(HOOK, GIVE_UP_AFTER_TRIES, 403, "HTTP 403")
    progress = advance(entry, result(EndpointResult(OTHER, RETRY, None, "timed out"), refused),
                       now=T0, max_age=MAX_AGE)
    assert progress.given_up == () and dict(progress.entry.target_tries) == {OTHER.key: 3, HOOK.key: 1}
    assert progress.unreachable == (OTHER,)  # HOOK refused this event: it is not down


def test_only_a_target_that_answered_retry_is_unreachable():
    progress = advance(owed(), result(EndpointResult(HOOK, GIVE_UP_AFTER_TRIES, 400, "HTTP 400"),
                                      EndpointResult(OTHER, RETRY, 503, "HTTP 503")), now=T0, max_age=MAX_AGE)
    assert progress.failed == (HOOK, OTHER) and progress.unreachable == (OTHER,)


def test_an_attempt_that_sent_nothing_counts_no_try():
    entry = owed()
    progress = advance(entry, result(EndpointResult(HOOK, NOT_TRIED, error="no time left")), now=T0, max_age=MAX_AGE)
    assert progress.entry == entry and not progress.settled


@pytest.mark.parametrize("pending, down, time_left_s, sends", [
    ((HOOK,), set(), 5.0, True),
    ((HOOK,), set(), notify.MIN_TRY_S - 0.01, False),  # too little time left: the next sweep sends it
    ((HOOK, OTHER), {HOOK.key}, 5.0, True),  # OTHER is up: it gets the event, HOOK is skipped
    ((HOOK, OTHER), {HOOK.key, OTHER.key}, 5.0, False),  # every target it needs is down this invocation
    ((), {HOOK.key}, 5.0, True),  # none pending: tried, so that it is settled
])
def test_an_invocation_leaves_an_entry_to_a_later_one_only_for_time_or_targets_down(pending, down, time_left_s,
                                                                                     sends):
    assert try_now(pending, down, time_left_s) is sends


def test_an_entry_whose_endpoints_are_all_done_is_settled_without_sending():
    progress = attempt(owed(endpoints_done=(HOOK.key,)), final(), region="cn-shanghai", targets=(HOOK,),
                       deadline=time.monotonic() + 5, now=T0, max_age=MAX_AGE)
    assert progress.settled and not progress.delivered


def test_deliver_with_no_time_left_sends_nothing_and_never_raises():
    event = build_event(final(), "cn-shanghai")
    signed = tuple(replace(target, secrets=(WebhookSecret(b"k" * 32),)) for target in (HOOK, OTHER))
    outcome = delivery.deliver(event, signed, deadline=time.monotonic() - 1)
    assert [item.outcome for item in outcome.results] == [NOT_TRIED, NOT_TRIED] and not outcome.delivered


def test_a_failing_connection_is_a_retry_never_an_exception():
    # unit tests refuse sockets with an AssertionError: deliver still answers, and says what happened
    event = build_event(final(), "cn-shanghai")
    outcome = delivery.deliver(event, (HOOK,), deadline=time.monotonic() + 5)
    assert outcome.results[0].outcome == RETRY and outcome.results[0].error.startswith("unexpected")
