"""The profiling script still runs: a tiny sweep, its SDK floor in the same process, and a profile."""
from __future__ import annotations

import json

from tests.bench import profile_sweep


def test_the_profile_measures_a_sweep_of_unchanged_jobs_against_the_sdk_floor(capsys):
    assert profile_sweep.main(["--jobs", "30", "--latency-ms", "0", "--repeat", "1", "--profile", "--top", "5",
                               "--json"]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[-1])
    run = row["runs"][0]
    assert run["checked"] == 30 and run["unchanged"] == 30 and run["api_calls"] == 3 and run["failed"] == 0
    assert run["floor_calls"] == 3 and run["cpu_s"] > 0 and run["floor_cpu_s"] > 0
    assert "function" in row["profile"]
