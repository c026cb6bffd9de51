"""The local Tablestore server, driven through the unmodified official SDK, plus its wire codec alone.

What the record store relies on must behave as the service documents it: signatures and
tokens, the response headers the SDK verifies, conditions, batch limits and paging.
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import struct
import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import tablestore as ots
from tablestore.plainbuffer.plain_buffer_builder import PlainBufferBuilder
from tablestore.retry import NoRetryPolicy

from tests.support.tablestore import TablestoreServer
from tests.support.tablestore_wire import (
    INF_MAX,
    INF_MIN,
    OP_DELETE_ALL_VERSIONS,
    OP_DELETE_ONE_VERSION,
    OP_INCREMENT,
    WireError,
    decode_row,
    request_signature,
)

KEY, SECRET = "ak-local", "secret-local"
STS_KEY, STS_SECRET, TOKEN = "STS.local", "sts-secret", "sts-token"


@pytest.fixture(scope="module")
def server():
    with TablestoreServer(instance="inst", page_rows=4) as running:
        running.add_access_key(KEY, SECRET)
        running.add_access_key(STS_KEY, STS_SECRET, security_token=TOKEN)
        yield running


def client(server, key=KEY, secret=SECRET, token=None, instance="inst"):
    return ots.OTSClient(server.endpoint, key, secret, instance, sts_token=token, retry_policy=NoRetryPolicy())


@pytest.fixture
def table(server):
    name = f"t_{uuid.uuid4().hex[:10]}"
    client(server).create_table(ots.TableMeta(name, [("id", "STRING")]), ots.TableOptions(-1, 1),
                                ots.ReservedThroughput(ots.CapacityUnit(0, 0)))
    server.clear_faults()
    return name


def code_of(call):
    with pytest.raises(ots.OTSServiceError) as raised:
        call()
    return raised.value.get_error_code()


def row(key, columns=()):
    return ots.Row([("id", key)], list(columns))


# ---------------------------------------------------------------- the codec alone


def test_row_changes_the_sdk_writes_are_read_back_exactly():
    put = PlainBufferBuilder.serialize_for_put_row(
        [("id", "k1"), ("n", 7)], [("s", "héllo"), ("i", -3), ("f", 1.5), ("b", True), ("x", bytearray(b"\x00\xff")),
                                   ("t", "v", 1700000000000)])
    decoded = decode_row(bytes(put))
    assert decoded.primary_key == [("id", "k1"), ("n", 7)]
    assert [(c.name, c.value, c.op, c.timestamp) for c in decoded.cells] == [
        ("s", "héllo", None, None), ("i", -3, None, None), ("f", 1.5, None, None), ("b", True, None, None),
        ("x", bytearray(b"\x00\xff"), None, None), ("t", "v", None, 1700000000000)]
    update = PlainBufferBuilder.serialize_for_update_row(
        [("id", "k1")], {"PUT": [("a", 1)], "DELETE": [("b", None, 5)], "DELETE_ALL": ["c"], "INCREMENT": [("d", 2)]})
    ops = [(c.name, c.op, c.timestamp) for c in decode_row(bytes(update)).cells]
    assert ops == [("a", None, None), ("b", OP_DELETE_ONE_VERSION, 5), ("c", OP_DELETE_ALL_VERSIONS, None),
                   ("d", OP_INCREMENT, None)]
    deleted = decode_row(bytes(PlainBufferBuilder.serialize_for_delete_row([("id", "k1")])))
    assert deleted.delete_marker and deleted.cells == []
    bounds = decode_row(bytes(PlainBufferBuilder.serialize_primary_key([("id", INF_MIN_SDK), ("n", INF_MAX_SDK)])))
    assert bounds.primary_key == [("id", INF_MIN), ("n", INF_MAX)]


INF_MIN_SDK, INF_MAX_SDK = ots.INF_MIN, ots.INF_MAX


@pytest.mark.parametrize("damage", ["cell checksum", "row checksum", "truncated", "header", "trailing"])
def test_damaged_plainbuffer_is_refused(damage):
    data = bytearray(PlainBufferBuilder.serialize_for_put_row([("id", "k1")], [("s", "v")]))
    if damage == "cell checksum":
        data[-4] ^= 0xFF  # the attribute cell's checksum byte
    elif damage == "row checksum":
        data[-1] ^= 0xFF
    elif damage == "truncated":
        data = data[:-6]
    elif damage == "header":
        data[0:4] = struct.pack("<i", 0x76)
    else:
        data += b"\x00"
    with pytest.raises(WireError):
        decode_row(bytes(data))


# ---------------------------------------------------------------- authentication


def test_the_sdk_accepts_the_answers_and_sts_tokens_are_checked(server, table):
    sts = client(server, STS_KEY, STS_SECRET, TOKEN)
    sts.put_row(table, row("a", [("v", 1)]), ots.Condition("IGNORE"))
    assert sts.get_row(table, [("id", "a")], max_version=1)[1].attribute_columns[0][:2] == ("v", 1)
    assert code_of(lambda: client(server, STS_KEY, STS_SECRET, "other").get_row(table, [("id", "a")])) \
        == "OTSAuthFailed"
    assert code_of(lambda: client(server, STS_KEY, STS_SECRET).get_row(table, [("id", "a")])) == "OTSAuthFailed"
    assert code_of(lambda: client(server, KEY, "wrong").get_row(table, [("id", "a")])) == "OTSAuthFailed"
    assert code_of(lambda: client(server, "nobody", SECRET).get_row(table, [("id", "a")])) == "OTSAuthFailed"
    assert code_of(lambda: client(server, instance="other").get_row(table, [("id", "a")])) == "OTSAuthFailed"


def raw_post(server, api, body, **overrides):
    headers = {"x-ots-date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
               "x-ots-apiversion": "2015-12-31", "x-ots-accesskeyid": KEY, "x-ots-instancename": "inst",
               "x-ots-contentmd5": base64.b64encode(hashlib.md5(body).digest()).decode()}
    headers.update(overrides.pop("headers", {}))
    headers["x-ots-signature"] = request_signature(SECRET, f"/{api}", headers)
    headers.update(overrides.pop("after_signing", {}))
    connection = http.client.HTTPConnection(server.host, server.port, timeout=5)
    try:
        connection.request("POST", f"/{api}", body=body, headers=headers)
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        connection.close()


def test_md5_date_and_signature_are_checked_and_every_answer_is_signed(server, table):
    from tablestore.protobuf import table_store_pb2 as pb

    body = pb.DescribeTableRequest(table_name=table).SerializeToString()
    status, headers, _ = raw_post(server, "DescribeTable", body)
    assert status == 200
    assert {"x-ots-contentmd5", "x-ots-requestid", "x-ots-date", "x-ots-contenttype", "authorization"} <= set(headers)
    assert headers["authorization"].startswith(f"OTS {KEY}:")
    old = (datetime.now(timezone.utc) - timedelta(minutes=16)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert raw_post(server, "DescribeTable", body, headers={"x-ots-date": old})[0] == 403
    assert raw_post(server, "DescribeTable", body, headers={"x-ots-contentmd5": "AAAA"})[0] == 403
    assert raw_post(server, "DescribeTable", body, after_signing={"x-ots-instancename": "x"})[0] == 403
    status, _, payload = raw_post(server, "DescribeTable", body, headers={"x-ots-apiversion": "2014-08-08"})
    error = pb.Error()
    error.ParseFromString(payload)
    assert status == 400 and error.code == "OTSUnsupportOperation"


# ---------------------------------------------------------------- tables and rows


def test_tables_are_created_described_listed_and_deleted(server):
    c = client(server)
    name = f"d_{uuid.uuid4().hex[:10]}"
    c.create_table(ots.TableMeta(name, [("id", "STRING"), ("n", "INTEGER")]), ots.TableOptions(-1, 1),
                   ots.ReservedThroughput(ots.CapacityUnit(0, 0)))
    assert code_of(lambda: c.create_table(ots.TableMeta(name, [("id", "STRING")]), ots.TableOptions(-1, 1),
                                          ots.ReservedThroughput(ots.CapacityUnit(0, 0)))) == "OTSObjectAlreadyExist"
    described = c.describe_table(name)
    assert described.table_meta.schema_of_primary_key == [("id", "STRING"), ("n", "INTEGER")]
    assert name in c.list_table()
    c.delete_table(name)
    assert code_of(lambda: c.describe_table(name)) == "OTSObjectNotExist"
    assert code_of(lambda: c.get_row(name, [("id", "a"), ("n", 1)])) == "OTSObjectNotExist"


def test_keys_must_match_the_schema(server, table):
    c = client(server)
    assert code_of(lambda: c.put_row(table, ots.Row([("other", "a")], [("v", 1)]), ots.Condition("IGNORE"))) \
        == "OTSParameterInvalid"
    assert code_of(lambda: c.put_row(table, ots.Row([("id", 5)], [("v", 1)]), ots.Condition("IGNORE"))) \
        == "OTSParameterInvalid"


def test_update_row_puts_deletes_and_increments_columns(server, table):
    c = client(server)
    c.put_row(table, row("a", [("keep", "x"), ("gone", 1), ("n", 5)]), ots.Condition("IGNORE"))
    c.update_row(table, ots.Row([("id", "a")], {"put": [("new", True)], "delete_all": ["gone"],
                                                 "increment": [("n", 2)]}), ots.Condition("EXPECT_EXIST"))
    assert server.row(table, [("id", "a")]) == {"keep": "x", "new": True, "n": 7}
    c.update_row(table, ots.Row([("id", "b")], {"put": [("v", 1)]}), ots.Condition("IGNORE"))
    assert server.row(table, [("id", "b")]) == {"v": 1}  # UpdateRow creates a missing row


def test_row_existence_and_column_conditions(server, table):
    c = client(server)
    c.put_row(table, row("a", [("rev", 1), ("state", "open")]), ots.Condition("EXPECT_NOT_EXIST"))
    assert code_of(lambda: c.put_row(table, row("a", [("rev", 9)]), ots.Condition("EXPECT_NOT_EXIST"))) \
        == "OTSConditionCheckFail"
    assert code_of(lambda: c.delete_row(table, row("zz"), ots.Condition("EXPECT_EXIST"))) == "OTSConditionCheckFail"

    def cond(name, value, comparator=ots.ComparatorType.EQUAL, pass_if_missing=False):
        return ots.Condition("EXPECT_EXIST", ots.SingleColumnCondition(name, value, comparator, pass_if_missing))

    assert code_of(lambda: c.put_row(table, row("a", [("rev", 2)]), cond("rev", 2))) == "OTSConditionCheckFail"
    assert code_of(lambda: c.put_row(table, row("a", [("rev", 2)]), cond("rev", "1"))) == "OTSConditionCheckFail"
    assert code_of(lambda: c.put_row(table, row("a", [("rev", 2)]), cond("missing", 1))) == "OTSConditionCheckFail"
    c.put_row(table, row("a", [("rev", 2), ("state", "open")]), cond("rev", 1))
    c.put_row(table, row("a", [("rev", 3), ("state", "open")]), cond("missing", 1, pass_if_missing=True))
    c.put_row(table, row("a", [("rev", 4), ("state", "done")]), cond("rev", 2, ots.ComparatorType.GREATER_THAN))
    both = ots.CompositeColumnCondition(ots.LogicalOperator.AND)
    both.add_sub_condition(ots.SingleColumnCondition("rev", 4, ots.ComparatorType.EQUAL))
    both.add_sub_condition(ots.SingleColumnCondition("state", "done", ots.ComparatorType.NOT_EQUAL))
    assert code_of(lambda: c.put_row(table, row("a", [("rev", 5)]), ots.Condition("IGNORE", both))) \
        == "OTSConditionCheckFail"
    either = ots.CompositeColumnCondition(ots.LogicalOperator.OR)
    either.add_sub_condition(ots.SingleColumnCondition("rev", 4, ots.ComparatorType.EQUAL))
    either.add_sub_condition(ots.SingleColumnCondition("state", "done", ots.ComparatorType.NOT_EQUAL))
    c.put_row(table, row("a", [("rev", 5), ("state", "done")]), ots.Condition("IGNORE", either))
    assert server.row(table, [("id", "a")]) == {"rev": 5, "state": "done"}


def test_a_conditional_write_is_atomic_under_contention(server, table):
    c = client(server)
    c.put_row(table, row("counter", [("rev", 0)]), ots.Condition("IGNORE"))
    wins = []

    def bump():
        for _ in range(20):
            current = dict((col[0], col[1]) for col in c.get_row(table, [("id", "counter")])[1].attribute_columns)
            try:
                c.put_row(table, row("counter", [("rev", current["rev"] + 1)]), ots.Condition(
                    "EXPECT_EXIST", ots.SingleColumnCondition("rev", current["rev"], ots.ComparatorType.EQUAL)))
                wins.append(1)
            except ots.OTSServiceError as error:
                assert error.get_error_code() == "OTSConditionCheckFail"

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert server.row(table, [("id", "counter")])["rev"] == len(wins)  # no lost update


# ---------------------------------------------------------------- batches and ranges


def test_batch_write_answers_row_by_row_and_enforces_its_limits(server, table):
    c = client(server)
    c.put_row(table, row("exists", [("v", 1)]), ots.Condition("IGNORE"))
    request = ots.BatchWriteRowRequest()
    request.add(ots.TableInBatchWriteRowItem(table, [
        ots.PutRowItem(row("new", [("v", 1)]), ots.Condition("EXPECT_NOT_EXIST")),
        ots.PutRowItem(row("exists", [("v", 2)]), ots.Condition("EXPECT_NOT_EXIST")),
        ots.DeleteRowItem(row("gone"), ots.Condition("IGNORE"))]))
    answer = c.batch_write_row(request)
    assert not answer.is_all_succeed()
    assert [item.is_ok for item in answer.get_put_by_table(table)] == [True, False]
    assert answer.get_put_by_table(table)[1].error_code == "OTSConditionCheckFail"
    too_many = ots.BatchWriteRowRequest()
    too_many.add(ots.TableInBatchWriteRowItem(table, [ots.PutRowItem(row(f"k{n}", [("v", n)]),
                                                                     ots.Condition("IGNORE")) for n in range(201)]))
    assert code_of(lambda: c.batch_write_row(too_many)) == "OTSParameterInvalid"
    twice = ots.BatchWriteRowRequest()
    twice.add(ots.TableInBatchWriteRowItem(table, [ots.PutRowItem(row("k", [("v", n)]), ots.Condition("IGNORE"))
                                                   for n in range(2)]))
    assert code_of(lambda: c.batch_write_row(twice)) == "OTSParameterInvalid"
    assert server.row(table, [("id", "k0")]) is None  # a refused batch writes nothing


def test_batch_get_reads_several_tables_and_enforces_its_limit(server, table):
    c = client(server)
    c.put_row(table, row("a", [("v", 1)]), ots.Condition("IGNORE"))
    request = ots.BatchGetRowRequest()
    request.add(ots.TableInBatchGetRowItem(table, [[("id", "a")], [("id", "b")]], max_version=1))
    rows = c.batch_get_row(request).get_result_by_table(table)
    assert [(item.is_ok, item.row.primary_key if item.row else None) for item in rows] == [
        (True, [("id", "a")]), (True, None)]
    too_many = ots.BatchGetRowRequest()
    too_many.add(ots.TableInBatchGetRowItem(table, [[("id", f"k{n}")] for n in range(101)], max_version=1))
    assert code_of(lambda: c.batch_get_row(too_many)) == "OTSParameterInvalid"


def test_get_range_pages_forward_and_backward(server, table):
    c = client(server)
    for n in range(10):
        c.put_row(table, row(f"k{n}", [("v", n)]), ots.Condition("IGNORE"))
    keys, start = [], [("id", ots.INF_MIN)]
    pages = 0
    while start:
        _, start, rows, _ = c.get_range(table, "FORWARD", start, [("id", ots.INF_MAX)], ["id"], limit=100,
                                        max_version=1)
        keys += [r.primary_key[0][1] for r in rows]
        pages += 1
    assert keys == [f"k{n}" for n in range(10)] and pages == 3  # the server's page is 4 rows
    _, _, rows, _ = c.get_range(table, "FORWARD", [("id", "k3")], [("id", "k6")], limit=10, max_version=1)
    assert [(r.primary_key[0][1], r.attribute_columns[0][1]) for r in rows] == [("k3", 3), ("k4", 4), ("k5", 5)]
    _, _, rows, _ = c.get_range(table, "BACKWARD", [("id", "k6")], [("id", "k3")], limit=10, max_version=1)
    assert [r.primary_key[0][1] for r in rows] == ["k6", "k5", "k4"]


def test_injected_faults_reach_the_sdk_as_service_errors(server, table):
    c = client(server)
    server.fail_next(1, api="GetRow", status=503, code="OTSServerBusy")
    assert code_of(lambda: c.get_row(table, [("id", "a")])) == "OTSServerBusy"
    c.get_row(table, [("id", "a")])
    assert server.calls[-2].error_code == "OTSServerBusy" and server.calls[-1].status == 200
