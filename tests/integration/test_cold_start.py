"""What initialize does once so the first call does not: the SDK's HTTP session, built without a request."""
from __future__ import annotations

import time

from darabonba.core import DaraCore
from ice_upload_sync.config import Settings
from ice_upload_sync.ice import Credentials, IceGateway

from tests.conftest import ACCESS_KEY_ID, ACCESS_KEY_SECRET


def test_binding_the_gateway_builds_the_sdk_session_and_sends_nothing(ice, monkeypatch):
    monkeypatch.setenv("ICE_ENDPOINT", ice.endpoint)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    ice.put_job("warm0001", Status="UPLOADING")
    gateway = IceGateway(Settings.from_env())
    sessions = set(DaraCore._sessions)
    gateway.bind(Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET))
    built = set(DaraCore._sessions) - sessions
    assert len(built) == 1 and ice.calls == []  # the session exists, no request went out
    assert DaraCore.__dict__["_get_session"].__func__.__name__ == "_get_session"  # the SDK is itself again
    outcome = gateway.query("JobIds", ("warm0001",), deadline=time.monotonic() + 10)
    assert outcome.answer is not None and outcome.api_calls == 1 and len(ice.calls) == 1
    assert set(DaraCore._sessions) - sessions == built  # the first call used it
