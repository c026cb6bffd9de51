"""The store-writes benchmark still runs: a tiny N on every store, one row per store and mode."""
from __future__ import annotations

import json

from tests.bench import bench_store_writes


def test_the_store_writes_benchmark_counts_what_each_store_asks_of_its_backend(capsys):
    assert bench_store_writes.main(["--jobs", "20", "--store-latency-ms", "0", "--json"]) == 0
    rows = {(row["store"], row["mode"]): row for row in map(json.loads, capsys.readouterr().out.splitlines()[1:])}
    assert set(rows) == {(store, mode) for store in bench_store_writes.STORES for mode in bench_store_writes.MODES}
    for (store, mode), row in rows.items():
        assert row["failed"] == 0 and row["written"] == (0 if mode == "unchanged" else 20), (store, mode)
    assert rows["file", "finished"]["requests"]["fsync"]["per_job"] >= 1  # one durable write per record
    assert rows["file", "unchanged"]["requests"] == {}  # nothing changed: nothing written
    assert set(rows["oss", "unchanged"]["requests"]) == {"GET record", "GET marker"}  # two reads, no lock
    assert rows["oss", "finished"]["requests"]["PUT record"]["per_job"] == 1
    assert "GET marker" not in rows["oss", "finished"]["requests"]  # a change to an existing record: not read
    assert set(rows["tablestore", "finished"]["requests"]) == {"BatchGetRow", "BatchWriteRow"}
