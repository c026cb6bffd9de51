"""The benchmarks still run: a tiny sweep benchmark (its own emulator process, two measured processes)."""
from __future__ import annotations

import json

from tests.bench import bench_sweep


def test_the_sweep_benchmark_runs_and_counts_one_call_per_ten_jobs(capsys):
    assert bench_sweep.main(["--jobs", "25", "--latency-ms", "0", "--naive-jobs", "5", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    pipelined, naive = rows
    assert pipelined["mode"] == "pipelined" and pipelined["api_calls"] == 3 and pipelined["jobs"] == 25
    assert pipelined["unchanged"] == 25 and pipelined["failed"] == 0 and pipelined["peak_rss_mb"] > 0
    assert naive["jobs"] == 5 and naive["speedup"] > 0


def test_the_sweep_benchmark_runs_against_the_local_tablestore_server(capsys):
    assert bench_sweep.main(["--jobs", "25", "--latency-ms", "0", "--naive-jobs", "5", "--json",
                             "--store", "tablestore", "--store-latency-ms", "0"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    pipelined, naive = rows
    assert pipelined["api_calls"] == 3 and pipelined["unchanged"] == 25 and pipelined["failed"] == 0
    assert naive["jobs"] == 5
