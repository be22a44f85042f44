"""A tiny run of the notices benchmark so the script cannot rot. It checks that the script runs
end to end and reports figures that exist and make sense; the figures themselves (throughput,
CPU, latency) are printed by real runs, never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "bench" / "notices.py"


def test_notices_benchmark_smoke_run() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--users", "7", "--rounds", "1", "--concurrency", "4",
         "--patience", "3", "--deadline", "90", "--json"],
        capture_output=True, text=True, timeout=240, check=False,
        cwd=SCRIPT.parents[1],
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Notices off vs on" in result.stdout
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    runs = {run["mode"]: run for run in figures["runs"]}
    assert set(runs) == {"off", "on"}
    for run in runs.values():
        assert run["users"] == 7  # plan(): every kind once, the stalling one included
        assert run["mismatches"] == 0
        assert run["not_ended"] == 0
        assert run["journeys_per_s"] > 0
        assert run["cpu_ms_per_journey"]["worker"] > 0
        assert run["cpu_ms_per_journey"]["temporal"] > 0
        assert run["worker_peak_rss_mb"] > 0
        assert run["history_events_per_journey"] > 0
    off, on = runs["off"], runs["on"]
    assert off["activities_per_journey"]["notices"] == 0
    assert "notices" not in off
    notices = on["notices"]
    # Every journey starts, reaches data_ready or stalls, and ends: at least three notices each,
    # all verified, each once, in order, none lost.
    assert notices["received"] == notices["verified"] == notices["unique"]
    assert notices["duplicates"] == notices["out_of_order"] == notices["missing"] == 0
    assert notices["per_journey"] >= 3
    assert notices["per_journey"] == on["activities_per_journey"]["notices"]
    assert notices["by_type"]["started"] == 7
    assert notices["by_type"]["completed"] == 6 and notices["by_type"]["cancelled"] == 1
    for measure in ("from_change", "from_schedule"):
        latency = notices["latency_ms"][measure]
        assert 0 < latency["p50"] <= latency["p95"] <= latency["max"]
    # Notices are activities in the workflow's history: on has more events than off.
    assert on["history_events_per_journey"] > off["history_events_per_journey"]
    assert set(figures["ratios"]) == {
        "journeys_per_s", "worker_cpu_per_journey", "temporal_cpu_per_journey",
        "history_events_per_journey",
    }  # fmt: skip
    assert figures["ratios"]["history_events_per_journey"]["median"] > 1
