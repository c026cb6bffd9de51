"""The benchmarks still run: the sweep benchmark with a tiny N, both modes, every store.

Its servers run in processes of their own (ICE, OSS on moto, Tablestore), and so does each
measured sweep, naive baseline and SDK floor.
"""
from __future__ import annotations

import json

from tests.bench import bench_sweep


def test_the_sweep_benchmark_runs_both_modes_on_every_store(capsys):
    assert bench_sweep.main(["--jobs", "25", "--latency-ms", "0", "--naive-jobs", "5", "--store-latency-ms", "0",
                             "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [(row["mode"], row["store"]) for row in rows] == [
        (mode, store) for mode in ("unchanged", "changed") for store in ("file", "oss", "tablestore")]
    for row in rows:
        where = f"{row['store']} {row['mode']}"
        assert row["N"] == 25 and row["checked"] == 25 and row["failed"] == 0 and row["complete"], where
        assert row["api_calls"] == row["ideal_calls"] == row["floor_calls"] == 3, where  # one call per 10 jobs
        if row["mode"] == "unchanged":  # ICE answers what the store holds: nothing to write
            assert (row["written"], row["unchanged"], row["naive_written"]) == (0, 25, 0), where
        else:  # ICE says Success for jobs stored as UPLOADING: every record rewritten
            assert (row["written"], row["unchanged"], row["naive_written"]) == (25, 0, 5), where
        assert row["cpu_s"] > 0 and row["floor_cpu_s"] > 0 and row["cpu_over_floor"] > 0, where
        assert row["peak_rss_mb"] > 0 and row["naive_jobs"] == 5 and row["naive_api_calls"] == 5, where
        assert row["ratio_to_ideal"] is None  # no latency: no ideal to compare with


def test_the_sweep_benchmark_prints_a_readable_line_per_run(capsys):
    assert bench_sweep.main(["--jobs", "12", "--latency-ms", "1", "--naive-jobs", "0", "--stores", "file",
                             "--modes", "changed"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("ICE latency=1ms") and len(lines) == 2
    assert lines[1].startswith("file       changed   N=12") and "api_calls=2 (ceil(N/10)=2)" in lines[1]
    assert "written=12" in lines[1] and "floor" in lines[1] and "naive" not in lines[1]


def test_the_notify_benchmark_delivers_the_whole_backlog_to_each_target(capsys):
    from tests.bench import bench_notify

    bench_notify.main(["--events", "5", "--json"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [row["targets"] for row in rows] == ["webhook", "eventbridge", "both"]
    assert [row["notified"] for row in rows] == [5, 5, 10]
    assert all(row["complete"] and row["notify_failed"] == 0 and row["cpu_s"] > 0 for row in rows)


def test_the_callback_benchmark_records_cold_and_warm_callbacks_with_the_hand_back_on_and_off(capsys):
    from tests.bench import bench_callbacks

    assert bench_callbacks.main(["--callbacks", "2", "--within-share", "0.5", "--idle-s", "0.4",
                                 "--sweep-every-s", "1", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [row["mode"] for row in rows] == ["on", "off"]
    for row in rows:
        ice = row["ice"]
        assert row["callbacks"] == 2 and row["planned"] == {"first": 1, "within": 1, "beyond": 0}, row["mode"]
        assert (ice["first_attempt_ok"], ice["retried"], ice["dropped"]) == (2, 0, 0), ice
        assert row["cold"] >= 1 and row["cold"] + row["warm"] == 2 and sum(row["paths"].values()) == 2, row
        assert row["never_recorded"] == 0 and row["record_s"]["n"] == 2, row
        assert row["instances"] >= 1 and row["cpu_total_s"] > 0 and row["function_errors"] == 0, row
        assert row["at_vcpu_per_callback_s"] == round(row["cpu_total_s"] / 0.25 / 2, 3), row
    on, off = rows
    assert on["paths"]["handed back"] >= 1 and on["handback_runs"] >= on["paths"]["handed back"], on
    assert on["record_s"]["max"] < 5.0, on  # the bound, on a cold instance through the hand-back
    assert off["paths"]["handed back"] == off["handback_runs"] == 0 and off["paths"]["left to the sweep"] >= 1, off
    assert off["recorded_by"].get("sweep", 0) >= 1 and off["computed_template_record_s"]["mean"] == 150, off
    assert "| on |" in bench_callbacks.table(rows) and all(bench_callbacks.describe(row) for row in rows)
