"""The sweep pipeline against in-memory stand-ins: batching, cursor, wraparound, shards, budget, writes."""
from __future__ import annotations

import math
import time
import zlib
from datetime import datetime, timezone
from typing import List

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ice_upload_sync.config import Settings
from ice_upload_sync.errors import BadRequest, SyncIncomplete
from ice_upload_sync.events import Shard, SyncRequest, parse_event, parse_shard, shard_of
from ice_upload_sync.stores.base import RecordStore
from ice_upload_sync.sync import LIST_CAP, SyncService

from tests.support.fakes import MemoryStore, ScriptedIce

NOW = datetime(2026, 11, 25, 3, tzinfo=timezone.utc)
CREATED = "2026-11-25T02:00:00Z"
SWEEP = SyncRequest(source="timer", sweep=True)


def ids(count: int, prefix: str = "job") -> List[str]:
    return [f"{prefix}{n:05d}" for n in range(count)]


def uploading(**knobs) -> ScriptedIce:
    """ICE answering every job as still uploading (``knobs``: what ``ScriptedIce`` does otherwise)."""
    return ScriptedIce(default={"Status": "UPLOADING", "CreationTime": CREATED}, **knobs)


def service(store, ice, **settings) -> SyncService:
    return SyncService(ice, store, Settings(**settings), clock=lambda: NOW)


def sweep(store, ice, request: SyncRequest = SWEEP, **settings):
    return service(store, ice, **settings).run(request, deadline=time.monotonic() + 60)


# ---------------------------------------------------------------- shards (pure)


def test_shard_of_is_crc32_not_the_salted_hash():
    assert shard_of("3829500c0fef429fa4ec1680b122d001", 7) == zlib.crc32(b"3829500c0fef429fa4ec1680b122d001") % 7
    assert shard_of("job00001", 1) == 0


@given(st.lists(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,20}", fullmatch=True), max_size=50),
       st.integers(min_value=1, max_value=16))
def test_the_shards_of_k_split_every_set_of_jobs_exactly_once(job_ids, count):
    owners = [[i for i in range(count) if job in Shard(i, count)] for job in job_ids]
    assert all(len(found) == 1 for found in owners)


@pytest.mark.parametrize("text, shard", [("0/1", Shard(0, 1)), ("3/4", Shard(3, 4)), (" 1 / 2 ", Shard(1, 2))])
def test_a_shard_reads_i_of_k(text, shard):
    assert parse_shard(text) == shard and shard.cursor_name == f"sweep-{shard.index}-of-{shard.count}"


@pytest.mark.parametrize("bad", ["4/4", "1/0", "-1/4", "a/b", "1", 3, None, "1/2000", "1/2/3"])
def test_a_bad_shard_is_refused_with_what_a_shard_looks_like(bad):
    with pytest.raises(BadRequest, match="Shard"):
        parse_shard(bad)


def test_a_timer_payload_selects_a_shard_as_an_object_or_a_json_string():
    as_object = parse_event({"triggerTime": "t", "triggerName": "n", "payload": {"Shard": "1/4"}})
    as_text = parse_event({"triggerTime": "t", "triggerName": "n", "payload": '{"Shard": "1/4"}'})
    assert as_object == as_text == SyncRequest(source="timer", sweep=True, shard=Shard(1, 4))


def test_an_async_fan_out_invocation_may_name_a_shard():
    assert parse_event({"Shard": "0/2"}) == SyncRequest(source="direct", sweep=True, shard=Shard(0, 2))


@pytest.mark.parametrize("event", [
    {"triggerTime": "t", "triggerName": "n", "payload": '{"Shard": "9/4"}'},
    {"Shard": "0/2", "JobIds": ["job00001"]},
])
def test_a_bad_shard_request_is_refused(event):
    with pytest.raises(BadRequest, match="Shard"):
        parse_event(event)


# ---------------------------------------------------------------- the pipeline


@pytest.mark.parametrize("count", [1, 10, 11, 257])
def test_a_sweep_asks_ice_exactly_once_per_ten_jobs(count):
    store, ice = MemoryStore(ids(count)), uploading()
    summary = sweep(store, ice, ice_concurrency=4)
    assert summary.api_calls == math.ceil(count / 10) == len(ice.batches)
    assert sorted(ice.checked) == ids(count) and summary.checked == summary.written == count
    assert summary.complete and summary.cursor is None and store.cursors == {}


def test_lookups_run_in_parallel():
    store, ice = MemoryStore(ids(80)), uploading(latency_s=0.05)
    started = time.monotonic()
    summary = sweep(store, ice, ice_concurrency=8)
    assert summary.written == 80 and time.monotonic() - started < 0.3  # 8 batches x 50 ms, not in series


def test_without_save_many_records_are_written_by_a_pool_of_threads():
    store = MemoryStore(ids(200))
    summary = sweep(store, uploading(latency_s=0.002), ice_concurrency=4)
    assert summary.written == 200 and all(name.startswith("store") for name in store.saved_by)


def test_a_store_that_batches_gets_five_answers_per_save_many():
    store = MemoryStore(ids(125), batches_writes=True)
    summary = sweep(store, uploading())
    assert sorted(store.save_many_calls) == [25, 50, 50] and summary.written == 125
    assert store.saved_by and all(name.startswith("store") for name in store.saved_by)


def test_a_direct_request_to_a_store_that_batches_is_written_in_one_call():
    store = MemoryStore(batches_writes=True)
    jobs = tuple(ids(30))
    summary = service(store, uploading()).run(SyncRequest(source="direct", job_ids=jobs, track=True),
                                              deadline=time.monotonic() + 60)
    assert store.save_many_calls == [30] and summary.written == 30 and summary.tracked == 30


def test_save_many_failures_are_reported_per_record():
    store = MemoryStore(ids(10), batches_writes=True)
    store.unwritable = {"job00003"}
    summary = sweep(store, uploading())
    # the job keeps its pending marker, so the next sweep retries it: deferred, not failed (no raise)
    assert summary.deferred == ["job00003"] and summary.failed == [] and summary.written == 9


def test_a_store_that_leaves_the_defaults_is_swept_one_answer_at_a_time_without_digests():
    class Minimal(MemoryStore):  # only the primitives: the rest as the base class has it
        answer_digests = RecordStore.answer_digests

    store = Minimal(ids(3))
    assert not Minimal.batches_writes and Minimal.write_concurrency is None
    summary = sweep(store, uploading())
    assert summary.complete and summary.checked == 3 and summary.written == 3
    assert store.answer_digests(ids(3)) == {}


def test_a_store_missing_a_primitive_cannot_be_made():
    class Forgetful(RecordStore):  # no primitives at all
        pass

    with pytest.raises(TypeError, match="abstract"):
        Forgetful()  # type: ignore[abstract]


# ---------------------------------------------------------------- cursor, wraparound, budget


def test_a_sweep_resumes_after_the_cursor_and_wraps_around_to_it():
    store, ice = MemoryStore(ids(30)), uploading()
    store.cursors["sweep"] = "job00014"
    summary = sweep(store, ice, ice_concurrency=1)
    assert ice.checked == ids(30)[15:] + ids(30)[:15]
    assert summary.complete and "sweep" not in store.cursors  # a full round: start at the top next time


def test_a_sweep_that_meets_its_budget_leaves_a_cursor_and_the_next_one_continues():
    store = MemoryStore(ids(50))
    seen: List[str] = []
    for _ in range(3):
        ice = uploading(latency_s=0.1)
        # budget 0.05 s: the two batches of the first window start, nothing after them
        summary = sweep(store, ice, ice_concurrency=1, sweep_budget_s=0.05)
        assert not summary.complete and summary.checked == 20 and summary.cursor == ice.checked[-1]
        assert store.cursors["sweep"] == summary.cursor
        seen += ice.checked
    assert seen == ids(50) + ids(50)[:10]  # the third run wrapped around: nobody starves


def test_batches_that_ran_out_of_time_are_not_passed_by_the_cursor():
    store = MemoryStore(ids(30))
    summary = sweep(store, uploading(out_of_time=["job00010"]), ice_concurrency=1)
    assert not summary.complete and summary.cursor == store.cursors["sweep"] == "job00009"
    assert summary.deferred_count == 10 and summary.failed == []


def test_a_shard_sweeps_only_its_jobs_with_a_cursor_of_its_own():
    jobs = ids(100)
    store, ice = MemoryStore(jobs), uploading(latency_s=0.1)
    request = SyncRequest(source="timer", sweep=True, shard=Shard(1, 3))
    summary = sweep(store, ice, request, ice_concurrency=1, sweep_budget_s=0.05)
    mine = [j for j in jobs if zlib.crc32(j.encode()) % 3 == 1]
    assert ice.checked == mine[:20] and summary.shard == "1/3"
    assert store.cursors == {"sweep-1-of-3": mine[19]}


# ---------------------------------------------------------------- the answer stays small


def test_the_answer_lists_at_most_a_hundred_ids_of_each_kind_with_their_counts():
    unknown = ids(250, "gone")
    summary = service(MemoryStore(), uploading(unknown=unknown)).run(
        SyncRequest(source="direct", job_ids=tuple(unknown)), deadline=time.monotonic() + 60)
    answer = summary.to_dict()
    assert len(answer["not_found"]) == LIST_CAP and answer["not_found_count"] == 250
    assert answer["failed"] == [] and answer["failed_count"] == 0


def test_the_handler_raises_when_any_job_failed_even_past_the_listed_hundred(monkeypatch):
    import index

    store = MemoryStore()  # untracked jobs: nothing would retry them, so their failure raises
    store.unwritable = set(ids(150))
    app = index.App(Settings(), uploading(), store, service(store, uploading()))  # type: ignore[arg-type]
    with pytest.raises(SyncIncomplete) as raised:
        index._run(app, SyncRequest(source="direct", job_ids=tuple(ids(150))), None, time.monotonic() + 60,
                   time.monotonic())
    assert raised.value.summary["failed_count"] == 150 and len(raised.value.summary["failed"]) == LIST_CAP
    assert str(raised.value).startswith("150 job(s) not recorded: ")  # the total, not the listed hundred


def test_the_cursor_follows_batches_finishing_out_of_order_and_stops_at_a_gap():
    from ice_upload_sync.sweep import _Progress

    progress = _Progress()
    progress.finished(1, "b", checked=True)
    assert progress.last_key is None  # batch 0 is still out
    progress.finished(0, "a", checked=True)
    progress.finished(3, "d", checked=True)
    assert progress.last_key == "b" and progress.unbroken
    progress.finished(2, "c", checked=False)  # ran out of time: nothing after it counts
    progress.finished(4, "e", checked=True)
    assert progress.last_key == "b" and not progress.unbroken
