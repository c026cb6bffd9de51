"""The rate limit is a ceiling (issue 12, item 3): ICE never sees more than ``ICE_MAX_QPS`` of our
calls arrive in any one-second window, the first second included, however the threads
interleave and however long each request takes to reach ICE.

The limiter takes its clock and its sleep as arguments, so these tests run it on a virtual
clock under a deterministic scheduler (``VirtualThreads``): real threads, but only one runs at
a time, and the test (hypothesis) decides which runnable thread goes next, how late a
sleeper wakes up, when each call comes, how long it lasts, what deadline it has, and when,
between its start and its end, it reaches ICE.

Why that covers real runs: the limiter reads the clock and decides inside one lock, and
sleeps outside it. A real run is therefore some sequence of those locked steps, in clock
order, where a thread tries again only after sleeping at least what it asked for (it may
wake up late, or be held off the CPU after waking). The scheduler produces exactly such
sequences: every order of the steps that are due at the same moment, and any lateness.
"""
from __future__ import annotations

import bisect
import math
import threading
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ice_upload_sync.ice import RateLimiter

INF = float("inf")


class VirtualThreads:
    """Thread bodies run one at a time on a virtual clock; ``choose`` picks who runs next.

    ``choose(n)`` returns an index in ``range(n)`` (which of the ``n`` runnable threads runs);
    ``lateness()`` returns how much later than asked a thread sleeping in the limiter wakes up
    (or gets the CPU back). Both are called on the test's own thread only (hypothesis draws there).
    """

    def __init__(self, choose: Callable[[int], int], lateness: Callable[[], float]) -> None:
        self.now = 0.0
        self._choose = choose
        self._lateness = lateness
        self._cv = threading.Condition()
        self._turn: Optional[str] = None  # the thread allowed to run; None: the scheduler's turn
        self._ready_at: Dict[str, float] = {}  # unfinished threads -> when they may run again
        self._woke_late: Optional[str] = None
        self.limiter_sleeps: List[float] = []
        self.errors: List[BaseException] = []

    def clock(self) -> float:
        return self.now

    def limiter_sleep(self, seconds: float) -> None:
        """The sleep handed to the limiter: it must never spin (ask for nothing or less)."""
        assert seconds > 0, f"the limiter asked to sleep {seconds!r} s"
        self.limiter_sleeps.append(seconds)
        self.pause(seconds, late=True)

    def pause(self, seconds: float, *, late: bool = False) -> None:
        """Let others run; back after ``seconds`` (and, with ``late``, however late the test says)."""
        me = threading.current_thread().name
        with self._cv:
            self._ready_at[me] = self.now + seconds
            self._woke_late = me if late else None
            self._turn = None
            self._cv.notify_all()
            self._cv.wait_for(lambda: self._turn == me)

    def run(self, bodies: Dict[str, Callable[[], None]], max_steps: int = 100_000) -> None:
        threads = []
        for name, body in bodies.items():
            self._ready_at[name] = 0.0
            thread = threading.Thread(target=self._main, args=(name, body), name=name, daemon=True)
            threads.append(thread)
            thread.start()
        with self._cv:
            for _ in range(max_steps):
                if not self._ready_at:
                    break
                if self._woke_late is not None:
                    self._ready_at[self._woke_late] += self._lateness()
                    self._woke_late = None
                runnable = sorted(name for name, at in self._ready_at.items() if at <= self.now)
                if not runnable:
                    self.now = min(self._ready_at.values())
                    continue
                self._turn = runnable[self._choose(len(runnable))]
                self._cv.notify_all()
                self._cv.wait_for(lambda: self._turn is None)
            else:
                raise AssertionError(f"no end after {max_steps} steps: the limiter spins")
        for thread in threads:
            thread.join(timeout=5)
        if self.errors:
            raise self.errors[0]

    def _main(self, name: str, body: Callable[[], None]) -> None:
        with self._cv:
            self._cv.wait_for(lambda: self._turn == name)
        try:
            body()
        except BaseException as error:  # reported by run()
            self.errors.append(error)
        finally:
            with self._cv:
                del self._ready_at[name]
                self._turn = None
                self._cv.notify_all()


def max_in_any_window(times: List[float], window_s: float) -> int:
    """The most of ``times`` inside one window ``[x, x + window_s)``, over every placement ``x``."""
    ordered = sorted(times)
    # a window holding the most can always be slid right until it begins at one of them
    return max((bisect.bisect_left(ordered, t + window_s) - i for i, t in enumerate(ordered)), default=0)


@dataclass(frozen=True)
class Call:
    pause: float  # the caller's own work before it asks for a slot
    patience: Optional[float]  # its deadline, from when it asks; None: no deadline
    duration: float  # from the grant to the answer
    reaches_ice: float  # where in [grant, answer] the request reaches ICE, 0..1


@dataclass
class Run:
    grants: List[float]
    ends: List[float]
    arrivals: List[float]
    refusals: List[tuple]  # (when, deadline)
    limiter_sleeps: List[float]


def simulate(qps: float, calls_by_thread: List[List[Call]], choose: Callable[[int], int],
             lateness: Callable[[], float]) -> Run:
    """Each thread makes its calls one after another through one shared limiter, on the virtual clock."""
    world = VirtualThreads(choose, lateness)
    limiter = RateLimiter(qps, clock=world.clock, sleep=world.limiter_sleep)
    run = Run([], [], [], [], world.limiter_sleeps)

    def body(calls: List[Call]) -> Callable[[], None]:
        def make_calls() -> None:
            for call in calls:
                world.pause(call.pause)  # also a point where the others may run
                deadline = INF if call.patience is None else world.now + call.patience
                with limiter.slot(deadline) as granted:
                    if not granted:
                        run.refusals.append((world.now, deadline))
                        continue
                    granted_at = world.now  # nothing runs between the grant and this line
                    world.pause(call.duration)
                    run.grants.append(granted_at)
                    run.ends.append(world.now)  # the slot is given back at this very moment
                    run.arrivals.append(granted_at + call.reaches_ice * (world.now - granted_at))
        return make_calls

    world.run({f"t{index}": body(calls) for index, calls in enumerate(calls_by_thread)})
    return run


# ---------------------------------------------------------------- the property, over arrivals and interleavings

# small limits show the window's edges; up to 40 a second, a burst on top of the rate shows too
rates = st.one_of(st.integers(1, 6).map(float), st.floats(0.2, 6.5), st.integers(7, 40).map(float))
seconds = st.one_of(st.just(0.0), st.floats(0, 3))
calls = st.builds(Call, pause=seconds, patience=st.one_of(st.none(), st.floats(0, 4)),
                  duration=st.one_of(st.just(0.0), st.floats(0, 1.5)),
                  reaches_ice=st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0, 1)))
workloads = st.lists(st.lists(calls, min_size=1, max_size=10), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(qps=rates, workload=workloads, data=st.data())
def test_no_window_ever_holds_more_arrivals_than_the_limit(qps, workload, data):
    late = data.draw(st.sampled_from([0.0, 0.001, 0.3]), label="most lateness")
    run = simulate(qps, workload, choose=lambda n: data.draw(st.integers(0, n - 1)),
                   lateness=lambda: data.draw(st.floats(0, late)) if late else 0.0)
    per_window = max(1, math.floor(qps))
    window_s = max(1.0, per_window / qps)
    # the contract's words: never more than ICE_MAX_QPS calls in any one-second window, as ICE sees them
    assert max_in_any_window(run.arrivals, 1.0) <= max(qps, 1)
    assert max_in_any_window(run.arrivals, window_s) <= per_window  # 0.5 a second: one call in any 2 s
    assert max_in_any_window(run.grants, window_s) <= per_window  # and as we start them
    # it gives up only when no slot can open by the deadline: a full window of calls still holds them
    for when, deadline in run.refusals:
        assert deadline < INF
        holding = [min(end, when) for grant, end in zip(run.grants, run.ends)
                   if grant <= when and end + window_s > when]
        assert len(holding) >= per_window and min(holding) + window_s > deadline
    assert len(run.grants) + len(run.refusals) == sum(len(calls) for calls in workload)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(qps=st.one_of(st.integers(1, 6).map(float), st.floats(0.2, 6.5)), more_threads=st.integers(0, 3),
       total=st.integers(1, 30), duration=st.sampled_from([0.0, 0.02, 0.3]),
       late=st.sampled_from([0.0, 0.002, 0.05]), data=st.data())
def test_a_saturated_limiter_still_makes_calls_at_the_full_rate(qps, more_threads, total, duration, late, data):
    """Threads (at least one per slot) take ``total`` calls from a common queue, each call as soon as
    the last one ended: call i starts within floor(i / n) windows, each one lengthened by a call's
    duration (the price of counting from its end) and by the lateness."""
    per_window = max(1, math.floor(qps))
    window_s = max(1.0, per_window / qps)
    world = VirtualThreads(choose=lambda n: data.draw(st.integers(0, n - 1)),
                           lateness=lambda: data.draw(st.floats(0, late)) if late else 0.0)
    limiter = RateLimiter(qps, clock=world.clock, sleep=world.limiter_sleep)
    queue = [total]
    grants: List[float] = []

    def worker() -> None:
        while queue[0] > 0:
            queue[0] -= 1
            with limiter.slot(INF):
                grants.append(world.now)
                world.pause(duration)

    threads = per_window + more_threads
    world.run({f"t{index}": worker for index in range(threads)})
    assert len(grants) == total
    for index, granted in enumerate(sorted(grants)):
        assert granted <= (index // per_window) * (window_s + duration + late) + 1e-9
    if not late:  # cheap: a grant wakes each waiting thread at most twice
        assert len(world.limiter_sleeps) <= 2 * total * threads


# ---------------------------------------------------------------- plain scenarios on a hand-driven clock


class Clock:
    """One thread: sleeping moves the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: List[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def starts_of(limiter: RateLimiter, clock: Clock, count: int, duration: float = 0.0) -> List[float]:
    """``count`` calls one after another, each lasting ``duration``; when each started."""
    starts = []
    for _ in range(count):
        with limiter.slot(deadline=INF) as granted:
            assert granted
            starts.append(clock.now)
            clock.now += duration
    return starts


def test_at_100_qps_the_first_second_holds_100_calls_not_110():
    clock = Clock()
    limiter = RateLimiter(100, clock=clock, sleep=clock.sleep)
    starts = starts_of(limiter, clock, 250)
    assert starts[:100] == [1000.0] * 100  # no spacing needed under the ceiling...
    assert starts[100] == 1001.0 and starts[200] == 1002.0  # ...and no burst above it
    assert max_in_any_window(starts, 1.0) == 100


def test_a_slot_reopens_a_window_after_its_call_ended_not_after_it_started():
    clock = Clock()
    limiter = RateLimiter(2, clock=clock, sleep=clock.sleep)
    starts = starts_of(limiter, clock, 3, duration=0.25)
    assert [t - 1000.0 for t in starts] == [0.0, 0.25, 1.25]  # the first call ended at 0.25


def test_when_every_slot_is_in_flight_a_waiter_sleeps_a_window_and_looks_again():
    clock = Clock()
    limiter = RateLimiter(1, clock=clock, sleep=clock.sleep)
    assert limiter.acquire(deadline=INF)
    assert not limiter.acquire(deadline=clock.now + 0.99)  # none can reopen within a window
    assert clock.slept == []

    def sleep_and_end_the_call(seconds: float) -> None:  # one thread: the call in flight ends during the sleep
        clock.sleep(seconds)
        if len(clock.slept) == 1:
            limiter.release()  # ...1 s after it started...

    limiter._sleep = sleep_and_end_the_call
    assert limiter.acquire(deadline=INF)
    assert clock.now == 1002.0  # ...so its slot reopens a second later
    assert clock.slept == [1.0, 1.0]


@pytest.mark.parametrize("qps, expected", [
    (0.5, [0.0, 2.0, 4.0]),  # one call per 2 s
    (0.25, [0.0, 4.0, 8.0]),
    (1.0, [0.0, 1.0, 2.0]),
    (1.5, [0.0, 1.0, 2.0]),  # 1.5 calls fit in no second: 1
    (2.5, [0.0, 0.0, 1.0, 1.0, 2.0]),
])
def test_fractional_limits(qps, expected):
    clock = Clock()
    limiter = RateLimiter(qps, clock=clock, sleep=clock.sleep)
    assert [t - 1000.0 for t in starts_of(limiter, clock, len(expected))] == expected


def test_a_call_that_cannot_start_before_its_deadline_is_refused_at_once_and_takes_nothing():
    clock = Clock()
    limiter = RateLimiter(2, clock=clock, sleep=clock.sleep)
    starts_of(limiter, clock, 2)
    assert not limiter.acquire(deadline=clock.now + 0.99)
    assert clock.slept == [] and clock.now == 1000.0  # no waiting for nothing
    with limiter.slot(deadline=clock.now + 1.0) as granted:  # a slot opening exactly at the deadline is in time
        assert granted and clock.now == 1001.0
    clock.now += 0.5
    with limiter.slot(deadline=clock.now) as granted:  # the refusal took no slot: the second one is free
        assert granted and clock.now == 1001.5


def test_a_slot_is_given_back_when_the_call_fails():
    clock = Clock()
    limiter = RateLimiter(1, clock=clock, sleep=clock.sleep)
    with pytest.raises(ConnectionError), limiter.slot(deadline=INF):
        raise ConnectionError("reset")
    assert limiter.acquire(deadline=clock.now + 1.0) and clock.now == 1001.0
    limiter.release()
    with pytest.raises(RuntimeError):
        limiter.release()  # one release per slot taken


@pytest.mark.parametrize("qps", [0, -1, float("inf"), float("nan")])
def test_nonsense_limits_are_refused(qps):
    with pytest.raises(ValueError):
        RateLimiter(qps)


def test_window_counting_helper():
    assert max_in_any_window([], 1.0) == 0
    assert max_in_any_window([0.0, 0.5, 0.999, 1.0], 1.0) == 3
    assert max_in_any_window([0.0, 1.0, 2.0], 1.0) == 1
