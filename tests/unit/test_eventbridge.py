"""The EventBridge bus as an outbox target: how its answers are classified, and its key.

The answers here are the SDK's own response models and exception classes, built as the SDK
builds them from a reply; the wire itself (signing, the form body, the emulator's refusals)
is exercised in tests/integration/test_eventbridge_delivery.py.
"""
from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
from alibabacloud_eventbridge20200401 import models
from alibabacloud_tea_openapi import exceptions
from hypothesis import given
from hypothesis import strategies as st
from ice_upload_sync import notify
from ice_upload_sync.cloudevent import build_event
from ice_upload_sync.config import NotifyEndpoint, Settings
from ice_upload_sync.delivery import DELIVERED, GIVE_UP_AFTER_TRIES, RETRY, DeliveryResult, EndpointResult
from ice_upload_sync.eventbridge import EventBridgeBus, answer_outcome, error_outcome
from ice_upload_sync.records import parse_time
from ice_upload_sync.webhook import Webhook

from tests.hostile_values import FIELD, FUZZ
from tests.store_records import final

BUS_SETTINGS = Settings(notify_eventbridge_bus="ice-events")


def body(raw: dict) -> models.PutEventsResponseBody:
    return models.PutEventsResponseBody().from_map(raw)


def accepted(*event_ids: str) -> dict:
    return {"RequestId": "r-1", "Code": "200", "Success": True, "Message": "success",
            "Data": {"FailedEntryCount": 0, "EntryList": [{"EventId": i, "TraceId": "t"} for i in event_ids]}}


def test_an_accepted_event_is_delivered():
    assert answer_outcome(200, body(accepted("e1"))).outcome == DELIVERED


@pytest.mark.parametrize("raw, outcome, said", [
    ({"RequestId": "r-2", "Success": False, "Code": "EventBusNotExist", "Message": "The event bus [x] not existed!"},
     GIVE_UP_AFTER_TRIES, "EventBusNotExist: The event bus [x] not existed! (request r-2)"),
    ({"RequestId": "r-3", "Success": False, "Code": "InternalError", "Message": "busy"}, RETRY, "InternalError"),
    ({"RequestId": "r-4", "Success": False, "Code": "Throttling.User", "Message": "slow down"}, RETRY, "Throttling"),
    ({"RequestId": "r-5", "Success": True, "Data": {"FailedEntryCount": 1, "EntryList": [
        {"EventId": "e1", "ErrorCode": "EventSizeExceed", "ErrorMessage": "too big"}]}},
     GIVE_UP_AFTER_TRIES, "failed the event: EventSizeExceed: too big"),
    ({"RequestId": "r-6", "Success": True, "Data": {"FailedEntryCount": 1, "EntryList": [
        {"EventId": "e1", "ErrorCode": "InternalError"}]}}, RETRY, "InternalError"),
    ({"RequestId": "r-7", "Success": True, "Data": {"FailedEntryCount": 1, "EntryList": []}},
     GIVE_UP_AFTER_TRIES, "FailedEntryCount"),
])
def test_a_2xx_answer_can_still_refuse_or_fail_the_event(raw, outcome, said):
    result = answer_outcome(200, body(raw))
    assert result.outcome == outcome and said in result.error


def test_an_answer_without_a_body_is_retried():
    assert answer_outcome(200, None).outcome == RETRY


@pytest.mark.parametrize("exception, outcome", [
    (exceptions.ClientException(status_code=404, code="EventBusNotExist", data={"Message": "no bus"}),
     GIVE_UP_AFTER_TRIES),
    (exceptions.ClientException(status_code=403, code="AccessDenied", data={"Message": "no"}), GIVE_UP_AFTER_TRIES),
    (exceptions.ClientException(status_code=400, code="SignatureDoesNotMatch", data={}), GIVE_UP_AFTER_TRIES),
    (exceptions.ClientException(status_code=429, code="TooManyRequests", data={}), RETRY),
    (exceptions.ClientException(status_code=408, code="RequestTimeout", data={}), RETRY),
    (exceptions.ThrottlingException(status_code=400, code="Throttling.User", data={}), RETRY),
    (exceptions.ServerException(status_code=503, code="ServiceUnavailable", data={}), RETRY),
    (exceptions.ClientException(code="ParameterMissing", message="'config' can not be unset"), GIVE_UP_AFTER_TRIES),
])
def test_error_answers_are_classified_like_a_webhooks(exception, outcome):
    result = error_outcome(exception)
    assert result.outcome == outcome
    assert (result.status or 0) == (exception.status_code or 0)


def test_a_network_failure_is_a_retry_never_an_exception():
    bus = EventBridgeBus(BUS_SETTINGS)
    bus.bind(SimpleNamespace(access_key_id="ak", access_key_secret="sk", security_token=None))

    class Broken:
        def put_events_with_options(self, *args):
            raise ConnectionResetError("reset by peer https://x.example/?token=s3cr3t")

    bus.prepare()  # the SDK loaded, then its client's connection reset mid-call
    bus._clients.get = Broken
    result = bus.send(build_event(final(), "cn-shanghai"), 1.0)
    assert result.outcome == RETRY and result.status is None
    assert "ConnectionResetError" in result.error and "s3cr3t" not in result.error


def test_a_bus_without_credentials_is_retried_later_not_raised():
    bus = EventBridgeBus(BUS_SETTINGS)
    result = bus.send(build_event(final(), "cn-shanghai"), 1.0)
    assert result.outcome == RETRY and "no credentials" in result.error


def test_the_bus_key_never_collides_with_an_endpoints_and_names_the_region():
    bus = EventBridgeBus(BUS_SETTINGS)
    other_region = EventBridgeBus(Settings(ice_region="cn-beijing", notify_eventbridge_bus="ice-events"))
    assert bus.key != other_region.key and len(bus.key) == 16
    assert bus.key not in {NotifyEndpoint("https://ice-events/").key, NotifyEndpoint("eventbridge:ice-events").key}
    assert bus.host == "EventBridge bus ice-events"


def test_the_bus_is_settled_on_its_own_beside_the_webhooks():
    """``advance`` keeps the bus's progress apart from an endpoint's: a bus that took the event
    is not sent it again while the endpoint is retried."""
    bus = EventBridgeBus(BUS_SETTINGS)
    endpoint = Webhook(NotifyEndpoint("https://hooks.example.com/e"))
    entry = notify.Owed.for_record(final(), "2026-12-01T00:00:00Z")
    result = DeliveryResult(entry.event_id, entry.job_id, (
        EndpointResult(endpoint, RETRY, 503, "HTTP 503"), EndpointResult(bus, DELIVERED, 200)))
    progress = notify.advance(entry, result, now=parse_time("2026-12-01T00:00:00Z"), max_age=timedelta(hours=72))
    assert progress.delivered == (bus,) and progress.failed == (endpoint,)
    assert progress.entry is not None and progress.entry.pending_endpoints((endpoint, bus)) == (endpoint,)


def test_an_answer_that_does_not_say_the_event_was_taken_is_retried():
    assert answer_outcome(200, body({})).outcome == RETRY
    assert answer_outcome(200, body({"RequestId": "r", "Data": {"EntryList": [{"EventId": "other"}]}}),
                          "mine").outcome == RETRY
    assert answer_outcome(200, body({"Data": {"EntryList": [{"EventId": "mine"}]}}), "mine").outcome == DELIVERED


ENTRY = st.fixed_dictionaries({}, optional={"EventId": st.one_of(st.just("mine"), FIELD),
                                             "ErrorCode": FIELD, "ErrorMessage": FIELD, "TraceId": FIELD})
ANSWER = st.fixed_dictionaries({}, optional={
    "RequestId": FIELD, "Code": FIELD, "Message": FIELD, "Success": st.one_of(st.booleans(), FIELD),
    "Data": st.one_of(FIELD, st.fixed_dictionaries({}, optional={
        "FailedEntryCount": FIELD, "EntryList": st.one_of(FIELD, st.lists(ENTRY, max_size=3))}))})


@FUZZ
@given(raw=ANSWER)
def test_any_answer_is_classified_never_raised_and_only_a_clear_yes_is_delivered(raw):
    try:
        parsed = body(raw)
    except Exception:  # noqa: BLE001 - the SDK refuses it while parsing: send() reports that as a retry
        return
    result = answer_outcome(200, parsed, "mine")
    assert result.outcome in (DELIVERED, RETRY, GIVE_UP_AFTER_TRIES)
    if result.outcome == DELIVERED:
        entries = parsed.data.entry_list if parsed.data is not None else []
        assert parsed.success is True or any(entry.event_id == "mine" for entry in entries)
        assert not any(entry.error_code for entry in entries)
    else:
        assert result.error and len(result.error) <= 320


def test_a_throttled_put_waits_as_long_as_the_gateway_asks():
    throttled = exceptions.ThrottlingException(status_code=429, code="TooManyRequests", data={}, retry_after=90000)
    assert error_outcome(throttled).retry_after_s == 90.0
    assert error_outcome(exceptions.ClientException(status_code=429, code="TooManyRequests", data={})) \
        .retry_after_s is None
