"""A tiny run of the benchmark so the script cannot rot. It checks that the script runs and
reports; the figures themselves are printed by real runs, never asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "bench" / "ingest.py"


def test_benchmark_smoke_run() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--events", "60", "--concurrency", "4", "--users", "6",
         "--half-load-seconds", "1", "--rounds", "2", "--seconds", "2", "--no-wrk"],
        capture_output=True, text=True, timeout=300, check=False,
        cwd=SCRIPT.parents[1],
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    labels = [row["label"] for row in figures["rows"]]
    assert labels == [
        "baseline one-event", "service one-event", "baseline bursty", "service bursty",
        "baseline at ½ load", "service at ½ load",
    ]  # fmt: skip
    assert all(row["events_per_s"] > 0 for row in figures["rows"])
    # Where the CPU went: the Temporal server worked in every run; the API only in the service's.
    rows = figures["rows"]
    for row in rows:
        assert set(row["cpu_ms_per_event"]) == {"temporal", "worker", "api", "load generator"}
        assert row["cpu_ms_per_event"]["temporal"] > 0
    for baseline, service in zip(rows[::2], rows[1::2], strict=True):
        assert service["cpu_ms_per_event"]["api"] > baseline["cpu_ms_per_event"]["api"]
    assert set(figures["ratios"]) == {"one-event", "bursty", "½ load"}
    assert figures["ratios"]["one-event"].count(",") == 1  # two rounds, both reported
    assert figures["generator"] == "asyncio raw HTTP/1.1 client (keep-alive, pre-built requests)"
    assert figures["journey"] == {"users": 6, "seconds": figures["journey"]["seconds"],
                                  "mismatches": 0}  # fmt: skip
    assert figures["peak_rss_mb"]["worker after journeys"] > 0
    history = figures["history"]["kinds"]
    assert history["ordinary"]["events_mean"] > 0
    assert history["all simulated"]["cpu_ms_per_journey"]["temporal"] > 0


def test_history_phase_smoke_run() -> None:
    """``--only-history``: the journeys' history events and server CPU are produced (printed by
    real runs, never asserted: only that there are figures)."""
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--only-history", "--users", "11", "--ordinary", "2",
         "--concurrency", "8", "--no-wrk"],
        capture_output=True, text=True, timeout=300, check=False,
        cwd=SCRIPT.parents[1],
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "History events per journey" in result.stdout
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    kinds = figures["history"]["kinds"]
    assert {"ordinary", "all simulated"} <= set(kinds)
    for name in ("ordinary", "all simulated"):
        assert kinds[name]["journeys"] > 0
        assert kinds[name]["events_mean"] > 0
        assert kinds[name]["by_type"]["WorkflowTaskCompleted"] > 0
        assert kinds[name]["cpu_ms_per_journey"]["temporal"] > 0
    assert "rows" not in figures  # no ingest rounds in this mode
