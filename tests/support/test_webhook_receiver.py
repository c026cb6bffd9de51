"""The webhook receiver, driven with http.client and signatures made by the standardwebhooks library
itself (so the receiver is checked independently of our signing code)."""
from __future__ import annotations

import base64
import http.client
import json
import socket
import time
from datetime import datetime, timezone
from typing import Dict, Optional, Tuple

import pytest
from standardwebhooks import Webhook

from tests.support.webhook_receiver import WebhookReceiver

SECRET = "whsec_" + base64.b64encode(b"r" * 32).decode()


def cloudevent(identifier: str = "evt1") -> bytes:
    return json.dumps({"specversion": "1.0", "id": identifier, "source": "test", "type": "ice.upload.succeeded",
                       "subject": "job1", "time": "2026-11-25T03:00:00Z", "datacontenttype": "application/json",
                       "data": {"job_id": "job1"}}).encode()


def signed_headers(body: bytes, identifier: str = "evt1", secret: str = SECRET,
                   moment: Optional[int] = None) -> Dict[str, str]:
    moment = int(time.time()) if moment is None else moment
    signature = Webhook(secret).sign(identifier, datetime.fromtimestamp(moment, tz=timezone.utc), body.decode())
    return {"Content-Type": "application/cloudevents+json", "webhook-id": identifier,
            "webhook-timestamp": str(moment), "webhook-signature": signature}


def post(receiver: WebhookReceiver, body: bytes, headers: Dict[str, str]) -> Tuple[int, Dict[str, str]]:
    connection = http.client.HTTPConnection(receiver.host, receiver.port, timeout=5)
    try:
        connection.request("POST", "/events", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, dict(response.getheaders())
    finally:
        connection.close()


@pytest.fixture
def receiver():
    with WebhookReceiver(SECRET) as running:
        yield running


def test_a_signed_cloudevent_is_accepted_and_recorded(receiver):
    body = cloudevent()
    assert post(receiver, body, signed_headers(body))[0] == 204
    assert post(receiver, body, signed_headers(body))[0] == 204
    assert receiver.events == {"evt1": json.loads(body)}
    assert receiver.deliveries["evt1"] == 2
    request = receiver.requests[0]
    assert (request.path, request.status, request.verified, request.signatures) == ("/events", 204, True, 1)


@pytest.mark.parametrize("change, status", [
    (lambda headers: headers.pop("webhook-signature"), 401),
    (lambda headers: headers.update({"webhook-signature": "v1,AAAA"}), 401),
    (lambda headers: headers.update({"webhook-signature": "garbage"}), 401),  # the library raises ValueError
    (lambda headers: headers.update({"webhook-timestamp": str(int(time.time()) - 600)}), 401),
    (lambda headers: headers.update({"Content-Type": "application/json"}), 415),
    (lambda headers: headers.update(signed_headers(cloudevent(), identifier="other")), 400),
])
def test_what_a_receiver_refuses(receiver, change, status):
    body = cloudevent()
    headers = signed_headers(body)
    change(headers)
    assert post(receiver, body, headers)[0] == status
    assert receiver.events == {} and receiver.requests[0].status == status


def test_a_wrong_secret_is_refused():
    other = "whsec_" + base64.b64encode(b"w" * 32).decode()
    with WebhookReceiver(other) as receiver:
        body = cloudevent()
        assert post(receiver, body, signed_headers(body))[0] == 401
        assert "No matching signature" in receiver.requests[0].error


def test_a_receiver_with_two_secrets_accepts_either():
    other = "whsec_" + base64.b64encode(b"w" * 32).decode()
    with WebhookReceiver([other, SECRET]) as receiver:
        body = cloudevent()
        assert post(receiver, body, signed_headers(body))[0] == 204


def test_scripted_answers_come_first_and_do_not_accept(receiver):
    receiver.answer(503, times=2, retry_after=30)
    receiver.answer(307, location="http://127.0.0.1:1/elsewhere")
    body = cloudevent()
    answers = [post(receiver, body, signed_headers(body)) for _ in range(4)]
    assert [status for status, _ in answers] == [503, 503, 307, 204]
    assert answers[0][1]["Retry-After"] == "30" and answers[2][1]["Location"] == "http://127.0.0.1:1/elsewhere"
    assert receiver.deliveries["evt1"] == 1


def test_a_delay_holds_the_answer(receiver):
    receiver.delay(0.3)
    body = cloudevent()
    started = time.monotonic()
    assert post(receiver, body, signed_headers(body))[0] == 204
    assert time.monotonic() - started >= 0.3


def test_down_refuses_connections_and_back_listens_on_the_same_port(receiver):
    port = receiver.port
    receiver.go_down()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    receiver.come_back()
    assert receiver.port == port
    body = cloudevent()
    assert post(receiver, body, signed_headers(body))[0] == 204


def test_leaving_the_context_stops_it():
    with WebhookReceiver(SECRET) as receiver:
        port = receiver.port
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
