"""Callback benchmark: ICE's callbacks on cold and warm instances, with the hand-back on and off (issue 19).

    .venv/bin/python -m tests.bench.bench_callbacks [--callbacks 50] [--modes on off] [--idle-s 1.5]
                                                    [--sweep-every-s 7.5] [--within-share 0.2] [--seed 1]
                                                    [--tail-s S] [--json]

Through the local FC front end (tests/support/fc.py: the HTTP trigger, asynchronous invocations, a
timer, an instance pool in which every instance is a fresh interpreter running ``function/`` through
tests/fc_runtime.py) and the ICE emulator calling back like ICE (tests/support/ice.py: a 200 within
3 s, else two retries 1 s apart, then dropped), on a file store. Each callback is the first news of its
job: the job is put in the emulator as ``UPLOADING``, never tracked by the function, then finished, and
ICE calls back at once (a real upload whose ``UploadMediaByURL`` answer was not forwarded).

Time is scaled, or a run would take an hour: the front end reclaims an idle instance after
``--idle-s`` (FC keeps one about 60 s) and the sweep timer fires every ``--sweep-every-s`` (the
template's every 5 minutes), the same 1:5 ratio by default. What is not scaled is real time: cold
starts, the SDK import, lookups, ICE's 3-second window and its retries. So the gap before each callback
is counted from the end of the previous callback's last invocation (its answer, or its hand-back's
asynchronous run), since the keep-alive counts from an instance's last request: ``--within-share`` of
the callbacks come ``U(0.2, 0.9) x idle-s`` after it (within the keep-alive), the rest ``U(1.35, 1.8)
x idle-s`` after it (beyond it: the front end reclaims within 1.25 x idle-s). Gaps are drawn from
``--seed``; the first callback meets no instance. The timer runs in both modes, as it does in a
deployment; a sweep's instance may itself take a callback that arrives within its keep-alive.

Per mode (``on``: ``CALLBACK_HANDBACK=on``, a cold instance hands the callback back to its trigger as an
asynchronous invocation; ``off``: the job waits for the next sweep), measured:

- ICE's view: the answer time of every attempt (first attempts: p50 / p99 / max, cold and warm), how
  many callbacks needed a retry, how many were dropped;
- what the function did with each callback: looked up in place, handed back, hand-back refused, left
  to the sweep; cold (a new interpreter) or warm;
- the time from ICE's first attempt (``sent_at`` of attempt 1) to the record ``<records>/jobs/<job>.json``
  first saying ``final`` (a watcher polls every 20 ms and takes the file's mtime, clamped to when it
  was seen): p50 / p99 / max (nearest rank: below 100 callbacks p99 is the max), the callbacks never
  recorded within the tail wait, and which invocation wrote each record (by its time window);
- CPU per instance (each instance's whole process, cold start included, from the front end's
  figures), grouped by what the instance was started for (a callback, a hand-back run, a sweep), the
  total and per callback, and CPU / 0.25: the wall time the template's 0.25 vCPU instance needs for it.

Computed, not measured (labelled so): what a deployment with the template's 5-minute sweep sees when
the hand-back is off (the record waits for the next sweep: half the period on average, the whole
period at worst), and the cold hand-back chain at 0.25 vCPU. The ICE emulator runs in this process:
its CPU is not the function's, which is the instances' processes. Everything listens on 127.0.0.1 on
free ports and stops with the run. ``--json`` prints one JSON line per mode instead of the report. Not
run by the test suite except tiny (tests/integration/test_bench_smoke.py).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from tests.support.fc import HTTP, HTTP_ASYNC, TIMER, FcFrontEnd, InstanceFigures, Invocation
from tests.support.ice import CallbackDelivery, IceEmulator

ACCESS_KEY_ID = "bench-ak"
ACCESS_KEY_SECRET = "bench-secret"
CALLBACK_AUTH_KEY = "bench-callback-key"
TEMPLATE_VCPU = 0.25
FC_KEEP_ALIVE_S = 60.0  # FC's idle on-demand instance since its 2025-12-09 billing change (contract section 7)
TEMPLATE_SWEEP_S = 300.0  # template.yml's timer: every 5 minutes
ICE_WINDOW_S = 3.0
WITHIN_GAP = (0.2, 0.9)  # x idle_s, after the previous callback's last invocation ended
BEYOND_GAP = (1.35, 1.8)  # the front end's reaper reclaims an idle instance within 1.25 x idle_s
POLL_S = 0.02
DELIVERY_WAIT_S = 20.0  # ICE settles a callback within 3 x 3 s + 2 x 1 s
IDLE_WAIT_S = 60.0
CLOCK_SLACK_S = 0.02  # time.time() against the front end's windows (perf_counter) and mtime's coarse clock

WITHIN, BEYOND, FIRST = "within", "beyond", "first"
# what the function did with a callback (its first attempt's answer)
IN_PLACE, HANDED_BACK, HANDBACK_REFUSED, LEFT_TO_SWEEP, ERROR = (
    "in place", "handed back", "hand-back refused", "left to the sweep", "error")
PATHS = (IN_PLACE, HANDED_BACK, HANDBACK_REFUSED, LEFT_TO_SWEEP, ERROR)
ROLES = {HTTP: "callback", HTTP_ASYNC: "hand-back run", TIMER: "sweep"}
WRITERS = {HTTP: "in place", HTTP_ASYNC: "hand-back run", TIMER: "sweep"}


# ---------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Arrival:
    where: str  # first, within (the keep-alive) or beyond
    gap_s: float  # after the previous callback's last invocation ended


def plan_arrivals(callbacks: int, within_share: float, idle_s: float, seed: int) -> List[Arrival]:
    """``round(within_share x callbacks)`` arrivals within the keep-alive, at random places, the rest beyond."""
    rng = random.Random(seed)
    within_count = min(callbacks - 1, max(0, round(within_share * callbacks)))
    within = set(rng.sample(range(1, callbacks), within_count)) if callbacks > 1 else set()
    arrivals = [Arrival(FIRST, 0.0)]
    for index in range(1, callbacks):
        low, high = WITHIN_GAP if index in within else BEYOND_GAP
        arrivals.append(Arrival(WITHIN if index in within else BEYOND, round(rng.uniform(low, high) * idle_s, 3)))
    return arrivals


# ---------------------------------------------------------------- watching the records


class RecordWatcher:
    """Polls ``jobs/<job>.json`` of the watched jobs until each says final; when it became so."""

    def __init__(self, jobs_dir: Path, poll_s: float = POLL_S) -> None:
        self.jobs_dir, self.poll_s = jobs_dir, poll_s
        self._lock = threading.Condition()
        self._watched: Dict[str, Optional[int]] = {}  # job -> the mtime_ns last read (not final then)
        self.final_at: Dict[str, float] = {}  # job -> time.time() it was written final
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-record-watcher", daemon=True)

    def __enter__(self) -> RecordWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    def watch(self, job_id: str) -> None:
        with self._lock:
            self._watched[job_id] = None

    def wait_all(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._watched:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
            return True

    def _run(self) -> None:
        while not self._stopped.wait(self.poll_s):
            with self._lock:
                watched = dict(self._watched)
            for job_id, last_mtime in watched.items():
                path = self.jobs_dir / f"{job_id}.json"
                try:
                    status = os.stat(path)
                    if status.st_mtime_ns == last_mtime:
                        continue
                    final = bool(json.loads(path.read_bytes()).get("final"))
                except (OSError, ValueError):  # not written yet (records are replaced by rename: read whole)
                    continue
                seen_at = time.time()
                with self._lock:
                    if final:
                        self.final_at[job_id] = min(status.st_mtime_ns / 1e9, seen_at)
                        self._watched.pop(job_id, None)
                        self._lock.notify_all()
                    else:
                        self._watched[job_id] = status.st_mtime_ns


# ---------------------------------------------------------------- one mode


@dataclass(frozen=True)
class Callback:
    """One callback: its plan, ICE's delivery, the function's first answer and the record."""

    job_id: str
    where: str
    delivery: CallbackDelivery
    answer: Optional[Invocation]  # the HTTP invocation of ICE's first attempt
    handback_run: Optional[Invocation]  # the asynchronous run of its hand-back
    recorded_at: Optional[float]


def _created() -> str:
    return (datetime.now(timezone.utc) - timedelta(minutes=3)).strftime("%Y-%m-%d %H:%M:%S")


def _answer_body(invocation: Invocation) -> Dict[str, Any]:
    try:
        body = json.loads(invocation.value().get("body") or "{}")
    except (ValueError, AttributeError):
        return {}
    return body if isinstance(body, dict) else {}


def _path(callback: Callback) -> str:
    answer = callback.answer
    if answer is None or answer.error is not None or answer.status != 200:
        return ERROR
    body = _answer_body(answer)
    if "handed_back" in body:
        return HANDED_BACK if body["handed_back"] is True else HANDBACK_REFUSED
    if callback.job_id in (body.get("deferred") or []):
        return LEFT_TO_SWEEP
    return IN_PLACE


def _within(invocation: Invocation, moment: float) -> bool:
    return invocation.started_at - CLOCK_SLACK_S <= moment <= invocation.started_at + invocation.wall_s + CLOCK_SLACK_S


def _written(invocation: Invocation) -> int:
    """How many records the invocation wrote, from its answer (an HTTP answer's body, or the summary)."""
    if invocation.result is None:
        return 0
    try:
        value = invocation.value()
    except ValueError:
        return 0
    summary = _answer_body(invocation) if isinstance(value, dict) and "statusCode" in value else value
    written = summary.get("written") if isinstance(summary, dict) else None
    return written if isinstance(written, int) else 0


def _writer(recorded_at: Optional[float], invocations: Sequence[Invocation]) -> str:
    """Which invocation wrote the final record: the one running when it was written that says it wrote
    one (a sweep and a hand-back run may overlap; the later of the two finds the record unchanged)."""
    if recorded_at is None:
        return "never"
    running = [i for i in invocations if _within(i, recorded_at)]
    kinds = sorted({WRITERS.get(i.kind, i.kind) for i in running if _written(i)}
                   or {WRITERS.get(i.kind, i.kind) for i in running})
    return kinds[0] if len(kinds) == 1 else ("unknown" if not kinds else " or ".join(kinds))


def run_mode(mode: str, arrivals: Sequence[Arrival], args: argparse.Namespace) -> Dict[str, Any]:
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-callbacks-") as temporary:
        records = Path(temporary) / "records"
        ice = IceEmulator()
        ice.add_access_key(ACCESS_KEY_ID, ACCESS_KEY_SECRET)
        env = {"ICE_REGION": "cn-shanghai", "ALIBABA_CLOUD_ACCESS_KEY_ID": ACCESS_KEY_ID,
               "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ACCESS_KEY_SECRET, "RECORD_STORE": f"file://{records}",
               "CALLBACK_AUTH_KEY": CALLBACK_AUTH_KEY, "CALLBACK_HANDBACK": mode}
        with ice, FcFrontEnd(env=env, idle_s=args.idle_s, failure_dir=Path(temporary) / "failed") as fc, \
                RecordWatcher(records / "jobs") as watcher:
            trigger = f"{fc.url}/ice-callback"
            fc.update_env(ICE_ENDPOINT=ice.endpoint, CALLBACK_URL=trigger)  # before the first instance starts
            ice.set_callback(trigger, CALLBACK_AUTH_KEY)
            timer = fc.start_timer("sweep", args.sweep_every_s)
            job_ids: List[str] = []
            for arrival in arrivals:
                time.sleep(arrival.gap_s)
                job_id = uuid.uuid4().hex
                ice.put_job(job_id, Status="UPLOADING", CreationTime=_created(),
                            UploadURL=f"https://media.example.com/{job_id}.mp4")
                watcher.watch(job_id)
                ice.finish_job(job_id, media_id=f"media-{job_id[:8]}")
                job_ids.append(job_id)
                ice.wait_for_callback(job_id, timeout_s=DELIVERY_WAIT_S)
                wait_for_handback_runs(fc)  # the next gap counts from the end of this callback's last invocation
            last_sent = time.monotonic()
            watcher.wait_all(args.tail_s)
            tail_s = time.monotonic() - last_sent
            timer.stop()
            fc.wait_idle(timeout_s=IDLE_WAIT_S)  # a sweep still running ends, rather than being killed by stop
            deliveries = {delivery.job_id: delivery for delivery in ice.callback_deliveries}
            invocations = fc.invocations
            failures = len(fc.failures)
            throttled = fc.throttled
        instances = fc.instances
        recorded = dict(watcher.final_at)
    callbacks = _callbacks(job_ids, arrivals, deliveries, invocations, recorded)
    return summarize(mode, args, callbacks, invocations, instances, failures=failures, throttled=throttled,
                     wall_s=time.monotonic() - began, tail_s=tail_s)


def wait_for_handback_runs(fc: FcFrontEnd, timeout_s: float = IDLE_WAIT_S) -> None:
    """Until every hand-back FC accepted has run to success or to the failure destination (bounded).

    Not ``fc.wait_idle``: sweeps keep firing and may keep an instance busy; they are not the callback's.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        invocations = fc.invocations
        accepted = sum(_answer_body(i).get("handed_back") is True for i in invocations if i.kind == HTTP)
        settled = sum(i.kind == HTTP_ASYNC and i.error is None for i in invocations) + len(fc.failures)
        if settled >= accepted:
            return
        time.sleep(POLL_S)


def _callbacks(job_ids: Sequence[str], arrivals: Sequence[Arrival], deliveries: Dict[str, CallbackDelivery],
               invocations: Sequence[Invocation], recorded: Dict[str, float]) -> List[Callback]:
    """Each callback with its invocations. Callbacks come one after another, so the HTTP invocation that
    started during ICE's first attempt is its answer, and a hand-back run before the next callback its run."""
    http_runs = [i for i in invocations if i.kind == HTTP]
    async_runs = [i for i in invocations if i.kind == HTTP_ASYNC]
    result: List[Callback] = []
    for index, (job_id, arrival) in enumerate(zip(job_ids, arrivals)):
        delivery = deliveries[job_id]
        answer = handback_run = None
        if delivery.attempts:
            first = delivery.attempts[0]
            answer = next((i for i in http_runs if first.sent_at - CLOCK_SLACK_S <= i.started_at
                           <= first.sent_at + first.duration_s + CLOCK_SLACK_S), None)
        following = deliveries[job_ids[index + 1]].attempts if index + 1 < len(job_ids) else ()
        until = following[0].sent_at if following else math.inf
        if answer is not None:
            handback_run = next((i for i in async_runs if answer.started_at <= i.started_at < until), None)
        result.append(Callback(job_id, arrival.where, delivery, answer, handback_run, recorded.get(job_id)))
    return result


# ---------------------------------------------------------------- figures


def quantiles(values: Sequence[float]) -> Dict[str, Optional[float]]:
    """p50 / p99 / max, nearest rank (with fewer than 100 values p99 is the max)."""
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "p50": None, "p99": None, "max": None}

    def rank(share: float) -> float:
        return round(ordered[max(0, math.ceil(share * len(ordered)) - 1)], 3)

    return {"n": len(ordered), "p50": rank(0.50), "p99": rank(0.99), "max": round(ordered[-1], 3)}


def _cpu(invocation: Invocation) -> float:
    """What the invocation cost its instance: on a cold one the whole process so far."""
    value = invocation.instance_cpu_s if invocation.cold else invocation.cpu_s
    return value or 0.0


def summarize(mode: str, args: argparse.Namespace, callbacks: Sequence[Callback], invocations: Sequence[Invocation],
              instances: Sequence[InstanceFigures], *, failures: int, throttled: int, wall_s: float,
              tail_s: float) -> Dict[str, Any]:
    first_attempts = [c.delivery.attempts[0] for c in callbacks if c.delivery.attempts]
    answered = [c for c in callbacks if c.answer is not None]
    cold = [c for c in answered if c.answer.cold]  # type: ignore[union-attr]
    warm = [c for c in answered if not c.answer.cold]  # type: ignore[union-attr]
    paths = {path: sum(_path(c) == path for c in callbacks) for path in PATHS}
    to_record = [c.recorded_at - c.delivery.attempts[0].sent_at for c in callbacks
                 if c.recorded_at is not None and c.delivery.attempts]
    writers: Dict[str, int] = {}
    for callback in callbacks:
        writer = _writer(callback.recorded_at, invocations)
        writers[writer] = writers.get(writer, 0) + 1
    roles = {i.instance_id: ROLES.get(i.kind, i.kind) for i in invocations if i.cold}
    by_role: Dict[str, List[float]] = {}
    for instance in instances:
        by_role.setdefault(roles.get(instance.instance_id, "none"), []).append(instance.cpu_s or 0.0)
    instance_cpu = [instance.cpu_s or 0.0 for instance in instances]
    total_cpu = sum(instance_cpu)
    chains = [(_cpu(c.answer) + _cpu(c.handback_run)) / TEMPLATE_VCPU for c in callbacks
              if c.answer is not None and c.handback_run is not None and c.answer.cold]
    cold_answers = [_cpu(c.answer) / TEMPLATE_VCPU for c in cold]  # type: ignore[arg-type]
    sweeps = [i for i in invocations if i.kind == TIMER]
    row: Dict[str, Any] = {
        "mode": mode, "callbacks": len(callbacks), "seed": args.seed, "idle_s": args.idle_s,
        "sweep_every_s": args.sweep_every_s, "time_scale": round(FC_KEEP_ALIVE_S / args.idle_s, 2),
        "planned": {where: sum(c.where == where for c in callbacks) for where in (FIRST, WITHIN, BEYOND)},
        "cold": len(cold), "warm": len(warm), "warm_planned_within": sum(c.where == WITHIN for c in warm),
        "paths": paths,
        "ice": {
            "first_attempt_ok": sum(a.delivered for a in first_attempts),
            "retried": sum(len(c.delivery.attempts) > 1 for c in callbacks),
            "dropped": sum(c.delivery.outcome == "dropped" for c in callbacks),
            "attempts": sum(len(c.delivery.attempts) for c in callbacks),
            "answer_s": quantiles([a.duration_s for a in first_attempts]),
            "answer_cold_s": quantiles([c.delivery.attempts[0].duration_s for c in cold]),
            "answer_warm_s": quantiles([c.delivery.attempts[0].duration_s for c in warm]),
            "errors": sorted({a.error for c in callbacks for a in c.delivery.attempts if a.error}),
        },
        "record_s": quantiles(to_record),
        "record_cold_s": quantiles([c.recorded_at - c.delivery.attempts[0].sent_at for c in cold
                                    if c.recorded_at is not None]),
        "record_warm_s": quantiles([c.recorded_at - c.delivery.attempts[0].sent_at for c in warm
                                    if c.recorded_at is not None]),
        "never_recorded": sum(c.recorded_at is None for c in callbacks),
        "recorded_by": writers,
        "handback_runs": sum(i.kind == HTTP_ASYNC and i.error is None for i in invocations),
        "handback_runs_wrote": sum(i.kind == HTTP_ASYNC and _written(i) > 0 for i in invocations),
        "sweeps": len(sweeps), "sweeps_cold": sum(i.cold for i in sweeps),
        "sweep_run_s": quantiles([i.wall_s for i in sweeps]),
        "function_errors": sum(i.error is not None for i in invocations),
        "failure_destination": failures, "throttled": throttled,
        "instances": len(instances),
        "instances_by_role": {role: len(values) for role, values in sorted(by_role.items())},
        "cpu_by_role_s": {role: round(sum(values), 3) for role, values in sorted(by_role.items())},
        "cpu_per_instance_s": quantiles(instance_cpu),
        "cpu_per_instance_by_role_s": {role: quantiles(values) for role, values in sorted(by_role.items())},
        "cpu_total_s": round(total_cpu, 3),
        "cpu_per_callback_s": round(total_cpu / len(callbacks), 3) if callbacks else None,
        "at_vcpu": TEMPLATE_VCPU,
        "at_vcpu_per_instance_s": quantiles([value / TEMPLATE_VCPU for value in instance_cpu]),
        "at_vcpu_per_callback_s": round(total_cpu / TEMPLATE_VCPU / len(callbacks), 3) if callbacks else None,
        "computed_cold_answer_at_vcpu_s": quantiles(cold_answers),
        "computed_handback_chain_at_vcpu_s": quantiles(chains),
        "wall_s": round(wall_s, 1), "tail_s": round(tail_s, 1),
    }
    if mode == "off":
        row["computed_template_record_s"] = {"sweep_every_s": TEMPLATE_SWEEP_S, "mean": TEMPLATE_SWEEP_S / 2,
                                             "worst": TEMPLATE_SWEEP_S}
    return row


# ---------------------------------------------------------------- the report


def _seconds(figures: Dict[str, Any], digits: int = 2) -> str:
    if not figures.get("n"):
        return "-"
    return " / ".join(f"{figures[key]:.{digits}f}" for key in ("p50", "p99", "max")) + " s"


def describe(row: Dict[str, Any]) -> str:
    ice, paths = row["ice"], row["paths"]
    done = ", ".join(f"{name} {count}" for name, count in paths.items() if count)
    writers = ", ".join(f"{name} {count}" for name, count in sorted(row["recorded_by"].items()))
    roles = ", ".join(f"{count} for a {role}" for role, count in row["instances_by_role"].items())
    role_cpu = "; ".join(f"{role}: {_seconds(q, 3)} per instance, {row['cpu_by_role_s'][role]:.2f} s in all"
                         for role, q in row["cpu_per_instance_by_role_s"].items())
    lines = [
        f"hand-back {row['mode']}: {row['callbacks']} callbacks ({row['planned'][WITHIN]} planned within the "
        f"keep-alive, {row['planned'][BEYOND]} beyond, 1 first) in {row['wall_s']:.0f} s; met {row['cold']} cold "
        f"and {row['warm']} warm instances ({row['warm_planned_within']} of the warm ones planned within); "
        f"{row['sweeps']} sweeps ran ({row['sweeps_cold']} cold)",
        f"  the function: {done}" + (f"; {row['handback_runs']} hand-back runs succeeded, "
                                     f"{row['handback_runs_wrote']} of them wrote the record"
                                     if row["handback_runs"] else ""),
        f"  ICE's view: a 200 at the first attempt {ice['first_attempt_ok']}/{row['callbacks']}, retried "
        f"{ice['retried']}, dropped {ice['dropped']} ({ice['attempts']} attempts); first answer p50 / p99 / max "
        f"{_seconds(ice['answer_s'], 3)} (cold {_seconds(ice['answer_cold_s'], 3)}, warm "
        f"{_seconds(ice['answer_warm_s'], 3)})" + (f"; errors: {ice['errors']}" if ice["errors"] else ""),
        f"  ICE's first attempt -> record final, p50 / p99 / max: {_seconds(row['record_s'])} (cold "
        f"{_seconds(row['record_cold_s'])}, warm {_seconds(row['record_warm_s'])}); never recorded "
        f"{row['never_recorded']} (tail wait {row['tail_s']:.1f} s); written by: {writers}",
        f"  CPU: {row['instances']} instances ({roles}); {row['cpu_total_s']:.2f} s in all, "
        f"{row['cpu_per_callback_s']:.3f} s per callback, per instance p50 / p99 / max "
        f"{_seconds(row['cpu_per_instance_s'], 3)}",
        f"    by what each instance was started for (its whole CPU: it may serve more later): {role_cpu}",
        f"    at {TEMPLATE_VCPU} vCPU (CPU / {TEMPLATE_VCPU}): per instance p50 / p99 / max "
        f"{_seconds(row['at_vcpu_per_instance_s'])}, {row['at_vcpu_per_callback_s']:.2f} s per callback",
        f"  computed, not measured, at {TEMPLATE_VCPU} vCPU: a cold callback's answer (its instance's CPU to the "
        f"answer / {TEMPLATE_VCPU}) p50 / p99 / max {_seconds(row['computed_cold_answer_at_vcpu_s'])} against "
        f"ICE's {ICE_WINDOW_S:g} s"
        + (f"; the hand-back chain (the cold answer's CPU + its run's / {TEMPLATE_VCPU}) "
           f"{_seconds(row['computed_handback_chain_at_vcpu_s'])}, network and FC's scheduling not included"
           if row["computed_handback_chain_at_vcpu_s"]["n"] else ""),
    ]
    if row["function_errors"] or row["failure_destination"] or row["throttled"]:
        lines.append(f"  FC: {row['function_errors']} function errors, {row['failure_destination']} in the "
                     f"failure destination, {row['throttled']} throttled")
    if row["mode"] == "off":
        template = row["computed_template_record_s"]
        lines.append(
            f"  computed, not measured, for a deployment (the template's sweep every {template['sweep_every_s']:.0f} "
            f"s): the record waits for the next sweep, {template['mean']:.0f} s on average and {template['worst']:.0f} "
            f"s at worst, plus the sweep's own run (measured here, wall p50 / p99 / max: "
            f"{_seconds(row['sweep_run_s'])}, {row['sweeps_cold']} of {row['sweeps']} on a cold instance)")
    return "\n".join(lines)


def table(rows: Sequence[Dict[str, Any]]) -> str:
    """The rows as the markdown table of docs/performance.md."""
    lines = ["| hand-back | cold / warm | function | ICE: 200 first time / retried / dropped | ICE's first answer "
             "p50 / p99 / max | first attempt -> record p50 / p99 / max | never recorded | instances | CPU per "
             "callback | at 0.25 vCPU |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        ice = row["ice"]
        done = ", ".join(f"{name} {count}" for name, count in row["paths"].items() if count)
        lines.append(
            f"| {row['mode']} | {row['cold']} / {row['warm']} | {done} | {ice['first_attempt_ok']} / "
            f"{ice['retried']} / {ice['dropped']} | {_seconds(ice['answer_s'], 3)} | {_seconds(row['record_s'])} | "
            f"{row['never_recorded']} | {row['instances']} | {row['cpu_per_callback_s']:.3f} s | "
            f"{row['at_vcpu_per_callback_s']:.2f} s |")
    return "\n".join(lines)


def scaling_note(args: argparse.Namespace, arrivals: Sequence[Arrival]) -> str:
    scale = FC_KEEP_ALIVE_S / args.idle_s
    within = sum(a.where == WITHIN for a in arrivals)
    return (f"{len(arrivals)} callbacks, seed {args.seed}: {within} within the keep-alive, "
            f"{len(arrivals) - within - 1} beyond it, the first on no instance.\n"
            f"Time scaled 1:{scale:g}: an idle instance is reclaimed after {args.idle_s:g} s (FC: about "
            f"{FC_KEEP_ALIVE_S:.0f} s), the sweep timer fires every {args.sweep_every_s:g} s in both modes (the "
            f"template: every {TEMPLATE_SWEEP_S / 60:.0f} minutes, i.e. {TEMPLATE_SWEEP_S / scale:g} s at this "
            f"scale). Gaps from the end of the previous callback's last invocation: within "
            f"U({WITHIN_GAP[0]:g}, {WITHIN_GAP[1]:g}) x {args.idle_s:g} s, beyond U({BEYOND_GAP[0]:g}, "
            f"{BEYOND_GAP[1]:g}) x {args.idle_s:g} s. Not scaled: cold starts, lookups, ICE's {ICE_WINDOW_S:g} s "
            f"window and retries.\n"
            f"Function: {Path(__file__).resolve().parents[2] / 'function'} on Python "
            f"{sys.version.split()[0]}, {os.cpu_count()} cores; file store; ICE emulator in this process.")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="ICE's callbacks on cold and warm instances, hand-back on and off")
    parser.add_argument("--callbacks", type=int, default=50)
    parser.add_argument("--modes", nargs="+", choices=("on", "off"), default=["on", "off"],
                        help="CALLBACK_HANDBACK on (a cold instance hands back) and/or off (the sweep records)")
    parser.add_argument("--idle-s", type=float, default=1.5, help="the front end's keep-alive (FC: about 60 s)")
    parser.add_argument("--sweep-every-s", type=float, default=7.5,
                        help="the timer standing in for the template's 5-minute sweep")
    parser.add_argument("--within-share", type=float, default=0.2,
                        help="the share of callbacks arriving within the keep-alive")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tail-s", type=float, default=None,
                        help="after the last callback, wait this long for records (default: 2 sweeps + 5 s)")
    parser.add_argument("--json", action="store_true", help="one JSON line per mode")
    args = parser.parse_args(argv)
    if args.callbacks < 1 or args.idle_s <= 0 or args.sweep_every_s <= 0 or not 0 <= args.within_share <= 1:
        parser.error("--callbacks >= 1, --idle-s and --sweep-every-s > 0, --within-share in [0, 1]")
    if args.tail_s is None:
        args.tail_s = 2 * args.sweep_every_s + 5
    arrivals = plan_arrivals(args.callbacks, args.within_share, args.idle_s, args.seed)
    if not args.json:
        print(scaling_note(args, arrivals), flush=True)
    rows = []
    for mode in args.modes:
        row = run_mode(mode, arrivals, args)
        rows.append(row)
        print(json.dumps(row) if args.json else "\n" + describe(row), flush=True)
    if not args.json:
        print("\n" + table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
