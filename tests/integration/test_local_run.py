"""The five-minute first run (``make local``) works end to end, with either local store."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("store", ["file", "tablestore"])
def test_the_local_run_replays_every_event_and_prints_the_records(store, tmp_path):
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy")}
    result = subprocess.run([sys.executable, "-m", "tests.local_run", "--store", store, "--records",
                             str(tmp_path / "records")], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "raised" not in result.stdout
    assert "12 records, 3 pending" in result.stdout
    lines = result.stdout.splitlines()
    assert max(map(len, lines)) <= 100, max(lines, key=len)  # fits a 100-column terminal
    table = lines[lines.index(next(line for line in lines if line.startswith("job_id"))):]
    assert not any("WARNING" in line for line in table[:15])  # warnings come after the table, explained
    assert "expected: one seeded job carries a status word" in result.stdout
