"""The rate limit is a ceiling on the wire (issue 12, item 3): through the gateway and the official SDK,
the ICE emulator never sees more than ``ICE_MAX_QPS`` calls arrive in any one-second window,
retries of throttled calls included, the first second included, and two lookups running at
once on one instance (a sweep and a callback) share the one limit.

The emulator stamps each request when it arrives (before it answers), on its own clock.
"""
from __future__ import annotations

import bisect
import threading
import time
from typing import Any, Dict, List, Tuple

import pytest
from ice_upload_sync.config import Settings
from ice_upload_sync.ice import Credentials, IceGateway

from tests.support.ice import IceEmulator

ACCESS_KEY_ID = "rate-ak"
ACCESS_KEY_SECRET = "rate-secret"
QPS = 20


class StampingIce(IceEmulator):
    """The emulator, noting when each request arrives (``ApiCall`` carries no time)."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: List[float] = []
        self._arrivals_lock = threading.Lock()

    def _handle(self, method: str, raw_path: str, headers: Dict[str, List[str]],
                body: bytes) -> Tuple[int, Dict[str, Any], str, Dict[str, str]]:
        with self._arrivals_lock:
            self.arrivals.append(time.monotonic())
        return super()._handle(method, raw_path, headers, body)


def max_in_any_window(starts: List[float], window_s: float) -> int:
    ordered = sorted(starts)
    return max((bisect.bisect_left(ordered, t + window_s) - i for i, t in enumerate(ordered)), default=0)


@pytest.fixture
def ice():
    emulator = StampingIce()
    emulator.add_access_key(ACCESS_KEY_ID, ACCESS_KEY_SECRET)
    with emulator:
        yield emulator


def gateway_for(ice: IceEmulator, concurrency: int) -> IceGateway:
    settings = Settings.from_env({"ICE_ENDPOINT": ice.endpoint, "ICE_MAX_QPS": str(QPS),
                                  "ICE_CONCURRENCY": str(concurrency)})
    gateway = IceGateway(settings)
    gateway.bind(Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET))
    gateway.prepare()  # the SDK imported and the client built before the clock starts
    return gateway


def seed(ice: IceEmulator, count: int, prefix: str) -> List[str]:
    job_ids = [f"{prefix}{index:05d}" for index in range(count)]
    for job_id in job_ids:
        ice.put_job(job_id, Status="UPLOADING")
    return job_ids


def test_a_lookup_with_throttled_retries_never_puts_more_than_the_limit_in_a_second(ice):
    gateway = gateway_for(ice, concurrency=8)
    job_ids = seed(ice, 250, "rate")  # 25 calls
    ice.throttle_next(6)  # 6 more: the retries count as calls too
    outcomes = list(gateway.lookup(job_ids, [], deadline=time.monotonic() + 30))
    assert all(outcome.answer is not None for outcome in outcomes)
    assert sum(outcome.api_calls for outcome in outcomes) == 31 == len(ice.calls) == len(ice.arrivals)
    assert sum(call.error_code == "Throttling.User" for call in ice.calls) == 6
    assert max_in_any_window(ice.arrivals, 1.0) <= QPS  # any second, the first one included
    first = min(ice.arrivals)
    assert sum(arrival < first + 1.0 for arrival in ice.arrivals) == QPS  # the full rate, not less
    assert max(ice.arrivals) - first < 3.0  # 31 calls at 20 a second: well under 3 s


def test_two_lookups_at_once_share_the_instance_limit(ice):
    gateway = gateway_for(ice, concurrency=8)
    sweep_ids, callback_ids = seed(ice, 200, "sweep"), seed(ice, 150, "callback")
    ice.throttle_next(4)
    answered: Dict[str, int] = {}

    def look_up(name: str, job_ids: List[str]) -> None:
        answered[name] = sum(outcome.answer is not None
                             for outcome in gateway.lookup(job_ids, [], deadline=time.monotonic() + 30))

    threads = [threading.Thread(target=look_up, args=args) for args in (("sweep", sweep_ids),
                                                                         ("callback", callback_ids))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert answered == {"sweep": 20, "callback": 15}
    assert len(ice.arrivals) == 20 + 15 + 4
    assert max_in_any_window(ice.arrivals, 1.0) <= QPS


def test_a_lookup_that_cannot_get_a_slot_before_its_deadline_gives_up_without_calling(ice):
    gateway = gateway_for(ice, concurrency=1)
    job_ids = seed(ice, 10 * (QPS + 1), "late")
    outcomes = list(gateway.lookup(job_ids, [], deadline=time.monotonic() + 0.5))
    answered = [outcome for outcome in outcomes if outcome.answer is not None]
    assert len(answered) == QPS and len(ice.calls) == QPS  # the 21st call would start after the deadline
    assert outcomes[-1].error is not None and outcomes[-1].error.code == "Deadline" and outcomes[-1].api_calls == 0
