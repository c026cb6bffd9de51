"""The Tablestore store through the official tablestore SDK against the local Tablestore server.

What only it does: table layout, the seal and the fingerprint, the compare-and-set merge,
batching and per-row failures, the pending index's paging, retries, error translation,
credentials, set-up. The contract every store keeps (the merge rule, markers, listing,
cursors, races between writers) is tests/integration/test_store_contract.py's.
"""
from __future__ import annotations

import json
import logging
import socket
import time
import uuid
from dataclasses import replace

import pytest
from ice_upload_sync.config import Settings
from ice_upload_sync.errors import ConfigError, StoreError
from ice_upload_sync.ice import Credentials
from ice_upload_sync.stores import Tracking, open_store
from ice_upload_sync.stores import tablestore as ts_module
from ice_upload_sync.stores.tablestore import TablestoreStore, parse_location, resolve_endpoint

from tests.conftest import ACCESS_KEY_ID, ACCESS_KEY_SECRET, STS_KEY_ID, STS_SECRET, STS_TOKEN, TABLESTORE_INSTANCE
from tests.store_records import LATER, NOW, at_once, final, record

PLAIN = Credentials(ACCESS_KEY_ID, ACCESS_KEY_SECRET)
STS = Credentials(STS_KEY_ID, STS_SECRET, STS_TOKEN)


@pytest.fixture
def server(tablestore_server):
    tablestore_server.clear_faults()
    tablestore_server.reset_calls()
    yield tablestore_server
    tablestore_server.clear_faults()


def make_store(server, table, credentials=PLAIN, **options):
    return TablestoreStore(TABLESTORE_INSTANCE, table, server.endpoint, credentials, **options)


@pytest.fixture
def table(server):
    name = f"t_{uuid.uuid4().hex[:12]}"
    assert make_store(server, name).create_tables() == [f"created {name}", f"created {name}_pending"]
    return name


@pytest.fixture
def store(server, table):
    return make_store(server, table)


def assert_no_secret(text):
    for secret in (ACCESS_KEY_SECRET, STS_SECRET, STS_TOKEN):
        assert secret not in text


# ---------------------------------------------------------------- layout, the fingerprint and the seal


def test_one_row_per_job_with_a_column_per_field_and_a_revision(server, store, table):
    store.save(record(user_data={"biz": {"id": 7}}, upload_url="https://x/a.mp4", file_size=12))
    row = server.row(table, [("job_id", "job00001")])
    assert row["state"] == "processing" and row["final"] is False and row["file_size"] == 12
    assert json.loads(row["user_data"]) == {"biz": {"id": 7}} and row["revision"] == 1
    assert "media_id" not in row and "completed_at" not in row  # absent fields are absent columns
    assert server.row(f"{table}_pending", [("job_id", "job00001")]) == {"first_seen_at": NOW, "source": "timer"}
    store.save(final())
    row = server.row(table, [("job_id", "job00001")])
    assert (row["state"], row["final"], row["revision"]) == ("succeeded", True, 2)
    assert server.row(f"{table}_pending", [("job_id", "job00001")]) is None
    assert store.load("job00001") == final(user_data=None)


def test_the_same_answer_twice_writes_nothing(server, store):
    assert store.save(final()).changed
    server.reset_calls()
    assert not store.save(replace(final(), updated_at=LATER, ice_request_id="r2")).changed
    assert [call.api for call in server.calls] == ["BatchGetRow"]  # one read, no write


def test_an_unchanged_answer_is_told_from_the_fingerprint_alone(server, store, table, monkeypatch):
    store.save(record(user_data={"a": 1}))

    def no_decoding(job_id, columns):
        raise AssertionError("an unchanged answer decoded the stored record")

    with monkeypatch.context() as patched:
        patched.setattr(ts_module, "record_from_row", no_decoding)
        assert not store.save(replace(record(user_data={"a": 1}), updated_at=LATER)).changed


def test_a_cell_edited_in_place_is_never_vouched_for(server, store, table):
    """UpdateRow leaves ``info`` (and ``answer``) as they were: only the seal tells the row was edited."""
    store.save(record(user_data={"a": 1}))
    server.set_columns(table, [("job_id", "job00001")], user_data="{not json")
    with pytest.raises(StoreError, match="corrupt"):  # the same answer now reads the whole row
        store.save(replace(record(user_data={"a": 1}), updated_at=LATER))
    assert store.answer_digests(["job00001"]) == {}


def _bound(**fields):
    return replace(record(**fields), answer_digest="d" * 32)


def test_a_column_removed_in_place_is_never_vouched_for(server, store, table):
    store.save(_bound(media_id="m-real"))
    assert store.answer_digests(["job00001"]) == {"job00001": "d" * 32}
    server.drop_columns(table, [("job_id", "job00001")], "media_id")  # e.g. a console's "delete column"
    assert store.answer_digests(["job00001"]) == {}
    assert store.save(replace(_bound(media_id="m-real"), updated_at=LATER)).changed  # repaired, not vouched
    assert server.row(table, [("job_id", "job00001")])["media_id"] == "m-real"
    assert store.answer_digests(["job00001"]) == {"job00001": "d" * 32}


def test_a_row_put_back_whole_by_hand_is_never_vouched_for(server, store, table):
    """A script that reads the row, changes a cell and puts every column back (seal and digest
    included) gives the cells the service's own version, not the one the seal names."""
    store.save(_bound(media_id="m-real"))
    copied = dict(server.row(table, [("job_id", "job00001")]), media_id="m-wrong")
    store.client.put_row(table, ts_module.ots.Row([("job_id", "job00001")], list(copied.items())),
                         ts_module.ots.Condition("IGNORE"))
    assert store.answer_digests(["job00001"]) == {}
    assert store.save(replace(_bound(media_id="m-real"), updated_at=LATER)).changed
    assert store.load("job00001").media_id == "m-real"


def test_rows_the_previous_version_wrote_are_sealed_by_their_next_save(server, store, table):
    """The upgrade: rows without a seal are checked the ordinary way once, then vouched for."""
    unsealed = [(name, value) for name, value, _stamp in ts_module.record_columns(_bound(), 1)
                if name != ts_module.SEAL]
    store.client.put_row(table, ts_module.ots.Row([("job_id", "job00001")], unsealed),
                         ts_module.ots.Condition("IGNORE"))
    store.track(Tracking("job00001", NOW, "timer"))
    assert store.answer_digests(["job00001"]) == {}
    result = store.save(replace(_bound(), updated_at=LATER))
    assert not result.changed  # the same information: written again only to seal it
    row = server.row(table, [("job_id", "job00001")])
    assert row["revision"] == 2 and ts_module.SEAL in row and row["state"] == "processing"
    assert store.answer_digests(["job00001"]) == {"job00001": "d" * 32}


def test_a_bare_key_in_the_table_is_filled_in(server, store, table):
    store.client.put_row(table, ts_module.ots.Row([("job_id", "job00001")], []), ts_module.ots.Condition("IGNORE"))
    assert store.save(final()).changed
    assert store.load("job00001").state == "succeeded"


def test_a_row_written_by_hand_without_a_revision_is_updated_once(server, store, table):
    store.save(record())
    server.drop_columns(table, [("job_id", "job00001")], "revision")  # as if put without our bookkeeping
    assert store.save(final()).changed
    assert server.row(table, [("job_id", "job00001")])["revision"] == 1


# ---------------------------------------------------------------- batches


def test_many_records_take_a_few_batched_calls(server, store, table):
    records = [record(f"job{n:05d}") for n in range(250)] + [final(f"fin{n:05d}") for n in range(50)]
    server.reset_calls()
    results = store.save_many(records)
    assert all(r.changed for r in results)
    apis = [call.api for call in server.calls]
    assert apis.count("BatchGetRow") == 6  # 50 jobs per read (record + marker rows)
    # 250 markers of open jobs in 2 batches, then 300 records in 2; no marker to drop
    assert apis == ["BatchGetRow"] * 6 + ["BatchWriteRow"] * 4
    assert max(call.rows for call in server.calls) == 200
    assert len(set(store.pending_job_ids())) == 250


def test_rows_that_fail_alone_are_retried_and_the_rest_are_written(server, store):
    server.fail_rows_next(3)  # the service answers 200 with three rows refused
    results = store.save_many([final(f"job{n:05d}") for n in range(10)])
    assert all(r.changed for r in results)
    assert all(store.load(f"job{n:05d}").state == "succeeded" for n in range(10))


# ---------------------------------------------------------------- one odd row never fails its batch-mates


def test_a_row_the_sdk_cannot_encode_fails_alone_and_its_batch_mates_are_written(server, store, table):
    # bypassing the normalizer (which caps sizes at 2**63-1): the SDK's PlainBuffer cannot pack it
    records = [final(f"job{n:05d}") for n in range(8)]
    records[5] = final("job00005", file_size=2 ** 70)
    server.reset_calls()
    results = store.save_many(records)
    assert isinstance(results[5], StoreError) and "job00005" in str(results[5])
    assert [r.changed for i, r in enumerate(results) if i != 5] == [True] * 7
    assert store.load("job00005") is None
    assert all(store.load(f"job{n:05d}").state == "succeeded" for n in range(8) if n != 5)
    writes = [call for call in server.calls if call.api == "BatchWriteRow"]
    assert sum(call.rows for call in writes) == 7 and len(writes) <= 4  # halves, never row by row


def test_text_no_utf8_can_hold_is_named_for_what_it_is(store):
    """Tablestore checks each text column itself, before the SDK would fail the batch (that the
    record fails alone and leaves nothing is the contract suite's)."""
    result = store.save_many([record("job00002", error_message="cut \ud83d")])[0]
    assert isinstance(result, StoreError) and "job00002" in str(result)
    assert "UnicodeEncodeError" not in str(result)  # named for what it is


def test_a_batch_the_service_refuses_whole_is_split_until_the_rows_go_through(server, store):
    server.fail_next(1, api="BatchWriteRow", status=400, code="OTSParameterInvalid", message="Invalid column value.")
    results = store.save_many([final(f"job{n:05d}") for n in range(6)])
    assert all(r.changed for r in results)
    writes = [call for call in server.calls if call.api == "BatchWriteRow"]
    assert [(call.status, call.rows) for call in writes[1:]] == [(200, 3), (200, 3)] and writes[0].status == 400


def test_a_busy_service_is_not_split_row_by_row(server, store):
    server.fail_next(100, api="BatchWriteRow", status=503, code="OTSServerBusy")
    results = store.save_many([final(f"job{n:05d}") for n in range(6)])
    assert all(isinstance(r, StoreError) and "OTSServerBusy" in str(r) for r in results)
    # one request and the SDK's bounded retries of it, not a request per half or per row
    writes = [call for call in server.calls if call.api == "BatchWriteRow"]
    assert len(writes) == 1 + ts_module.BoundedRetryPolicy.max_retry_times


def test_a_final_job_whose_marker_cannot_be_dropped_is_still_recorded(server, store, table, caplog):
    store.save(record())
    server.deny_writes(f"{table}_pending", [("job_id", "job00001")])
    assert store.save(final()).changed
    assert "stays until the next sweep" in caplog.text
    server.clear_faults()
    assert not store.save(final()).changed  # the next look cleans the index up
    assert store.tracking("job00001") is None


# ---------------------------------------------------------------- a lost race


def test_a_lost_race_is_read_again_and_merged(server, store, table):
    store.save(record())
    real = store._read_many
    calls = []

    def read_then_lose(job_ids, ahead):
        found = real(job_ids, ahead)
        if not calls:  # another instance finishes the job between our read and our write
            make_store(server, table).save(final())
        calls.append(job_ids)
        return found

    store._read_many = read_then_lose
    result = store.save(record(state="pending"))
    assert not result.changed and result.record.state == "succeeded" and len(calls) == 2


# ---------------------------------------------------------------- the vouching read, read ahead


def _vouch_then(store, fresh):
    """What the sweep's writer does with one answer: ask ``vouched``, then save what it did not vouch for."""
    assert store.vouched({fresh.job_id: "the digest of ICE's answer now"}) == set()
    return store.save_many([fresh])[0]


def test_a_changed_answer_reads_its_record_row_once(server, store, table):
    store.save(record(answer_digest="the digest of an older answer"))
    server.reset_calls()
    result = _vouch_then(store, final())
    # the vouching read, then the record and the marker's removal: no second read of either row
    assert [call.api for call in server.calls] == ["BatchGetRow", "BatchWriteRow", "BatchWriteRow"]
    assert result.changed and store.load("job00001").state == "succeeded"
    assert server.row(f"{table}_pending", [("job_id", "job00001")]) is None


def test_a_job_that_stays_open_keeps_its_marker_unread(server, store, table):
    store.save(record(state="pending"))
    assert _vouch_then(store, record()).changed
    assert server.row(f"{table}_pending", [("job_id", "job00001")]) == {"first_seen_at": NOW, "source": "timer"}
    store.client.delete_row(f"{table}_pending", ots_row("job00001"), ts_module.ots.Condition("IGNORE"))
    assert _vouch_then(store, record(state="pending", ice_status="PENDING")).changed
    assert list(store.pending_job_ids()) == ["job00001"]  # an open job is never left unswept


def test_a_row_written_after_the_vouching_read_is_read_again(server, store, table):
    store.save(record())
    assert store.vouched({"job00001": "the digest of ICE's answer now"}) == set()
    make_store(server, table).save(final(completed_at=LATER))  # another instance, in between
    server.reset_calls()
    result = store.save_many([final(completed_at=NOW)])[0]  # an older completion, read ahead stale
    # the write on the revision read ahead loses; the row is read anew and the later completion stands
    assert [call.api for call in server.calls] == ["BatchWriteRow", "BatchGetRow"]
    assert not result.changed and result.record.completed_at == LATER
    assert store.load("job00001").completed_at == LATER


def test_a_row_created_after_the_vouching_read_is_merged(server, store, table):
    assert store.vouched({"job00001": "the digest of ICE's answer now"}) == set()  # no row yet
    make_store(server, table).save(final())
    result = store.save_many([record()])[0]
    assert not result.changed and store.load("job00001").state == "succeeded"
    assert server.row(f"{table}_pending", [("job_id", "job00001")]) is None


def test_the_read_ahead_serves_one_save_on_its_thread_and_only_briefly(server, store, table, monkeypatch):
    store.save(record(answer_digest="old"))

    def reads_of(save):
        server.reset_calls()
        save()
        return [call.api for call in server.calls].count("BatchGetRow")

    assert store.vouched({"job00001": "new"}) == set()
    assert reads_of(lambda: store.save_many([record(ice_status="UPLOADING")])) == 0
    assert reads_of(lambda: store.save_many([record(ice_status="DOWNLOADING")])) == 1  # taken once
    assert store.vouched({"job00001": "new"}) == set()
    assert reads_of(lambda: at_once(lambda: store.save_many([record(ice_status="X")]))) == 1  # another thread
    store.save_many([record(ice_status="Y")])  # this thread's read ahead, used up
    assert store.vouched({"job00001": "new"}) == set()
    monkeypatch.setattr(ts_module, "READ_AHEAD_S", 0.0)
    time.sleep(0.01)
    assert reads_of(lambda: store.save_many([record(ice_status="Z")])) == 1  # too old: read anew


def ots_row(job_id):
    return ts_module.ots.Row([("job_id", job_id)])


# ---------------------------------------------------------------- the pending index


def test_pending_jobs_are_listed_page_by_page_in_order_without_cursors(server, table):
    store = make_store(server, table, page_size=7)
    ids = [f"job{n:05d}" for n in range(30)]
    store.save_many([record(job_id) for job_id in ids])
    store.save_cursor("sweep", "job00010")
    server.reset_calls()
    listing = store.pending_job_ids()
    assert next(listing) == "job00000" and [c.api for c in server.calls] == ["GetRange"]  # lazily, a page
    assert ["job00000"] + list(listing) == ids  # no cursor row among them
    assert sum(c.api == "GetRange" for c in server.calls) == 5


# ---------------------------------------------------------------- retries and errors


def test_busy_answers_are_retried_within_bounds(server, store, monkeypatch):
    monkeypatch.setattr(ts_module.BoundedRetryPolicy, "get_retry_delay", lambda *args: 0.01)
    server.fail_next(2, code="OTSServerBusy")
    assert store.save(final()).changed
    server.fail_next(10, status=503, code="OTSServerBusy")
    with pytest.raises(StoreError, match="OTSServerBusy") as raised:
        store.load("job00001")
    assert "request " in str(raised.value)
    assert sum(1 for c in server.calls if c.error_code == "OTSServerBusy") == 2 + 4  # 1 try + 3 retries
    server.clear_faults()
    server.fail_next(1, api="BatchWriteRow", status=500, code="OTSInternalServerError")
    assert store.save(final("job00002")).changed  # writes are retried too: they are conditional
    server.fail_next(1, api="BatchGetRow", status=403, code="OTSQuotaExhausted", message="Quota exhausted.")
    server.fail_next(1, api="BatchGetRow", status=503, code="OTSTimeout", message="Operation timeout.")
    assert store.save(final("job00003")).changed


def test_a_missing_table_says_how_to_create_it(server):
    store = make_store(server, "never_created")
    with pytest.raises(StoreError, match="create-tables") as raised:
        store.save(final())
    assert "never_created" in str(raised.value)


def test_access_denied_names_the_actions_needed(server, table):
    store = make_store(server, table, Credentials(ACCESS_KEY_ID, "wrong-secret-never-shown"))
    with pytest.raises(StoreError, match="access denied") as raised:
        store.load("job00001")
    message = str(raised.value)
    assert "ots:BatchWriteRow" in message and table in message and "wrong-secret" not in message


def test_an_unreachable_endpoint_fails_fast_with_a_store_error():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = TablestoreStore(TABLESTORE_INSTANCE, "records", f"http://127.0.0.1:{port}", STS)
    started = time.monotonic()
    with pytest.raises(StoreError, match="cannot read") as raised:
        store.save(final())
    assert time.monotonic() - started < 3
    assert_no_secret(str(raised.value))


# ---------------------------------------------------------------- credentials and set-up


def test_sts_credentials_are_sent_with_their_token_and_rebound_only_when_they_change(server, table):
    store = make_store(server, table, STS)
    client = store.client
    store.bind(Credentials(STS_KEY_ID, STS_SECRET, STS_TOKEN))
    assert store.client is client
    store.save(final())
    assert {c.access_key_id for c in server.calls if c.api != "CreateTable"} == {STS_KEY_ID}
    store.bind(Credentials(STS_KEY_ID, STS_SECRET, "expired-token"))
    with pytest.raises(StoreError, match="access denied"):
        store.load("job00001")


def test_the_sdk_never_logs_the_token(server, table, caplog):
    caplog.set_level(logging.DEBUG)
    store = make_store(server, table, STS)
    store.save(record())
    store.save(final())
    assert_no_secret(caplog.text)
    assert "OTS request" not in caplog.text  # the SDK's own request log stays off


def test_locations_and_endpoints():
    assert parse_location("my-inst/records") == ("my-inst", "records")
    for bad in ("x/records", "my-inst/", "my-inst/9x", "-inst/records", "inst-/records"):
        with pytest.raises(ConfigError):
            parse_location(bad)
    settings = Settings(ice_region="cn-beijing")
    assert resolve_endpoint(settings, "inst", {}) == "https://inst.cn-beijing.ots.aliyuncs.com"
    in_fc = {"FC_FUNCTION_NAME": "f", "FC_REGION": "cn-beijing"}
    assert resolve_endpoint(settings, "inst", in_fc) == "https://inst.cn-beijing.ots-internal.aliyuncs.com"
    elsewhere = {"FC_FUNCTION_NAME": "f", "FC_REGION": "cn-hangzhou"}
    assert resolve_endpoint(settings, "inst", elsewhere) == "https://inst.cn-beijing.ots.aliyuncs.com"
    override = Settings(ice_region="cn-beijing", tablestore_endpoint="inst.cn-beijing.vpc.tablestore.aliyuncs.com")
    assert resolve_endpoint(override, "inst", in_fc) == "https://inst.cn-beijing.vpc.tablestore.aliyuncs.com"
    with pytest.raises(ConfigError):
        resolve_endpoint(Settings(tablestore_endpoint="ftp://x/y"), "inst", {})


def test_open_store_builds_it_without_a_request(server):
    server.reset_calls()
    store = open_store(Settings(record_store="tablestore://my-inst/records", tablestore_endpoint=server.endpoint),
                       PLAIN)
    assert isinstance(store, TablestoreStore) and store.describe() == "tablestore://my-inst/records"
    assert server.calls == []


def test_the_set_up_command_creates_both_tables_once(server, monkeypatch, capsys):
    table = f"cli_{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("RECORD_STORE", f"tablestore://{TABLESTORE_INSTANCE}/{table}")
    monkeypatch.setenv("TABLESTORE_ENDPOINT", server.endpoint)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ACCESS_KEY_SECRET)
    monkeypatch.delenv("ALIBABA_CLOUD_SECURITY_TOKEN", raising=False)
    assert ts_module.main(["create-tables"]) == 0
    assert ts_module.main(["create-tables"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"created {table}", f"created {table}_pending",
                                                    f"{table} exists", f"{table}_pending exists"]
    assert {table, f"{table}_pending"} <= set(server.table_names())
