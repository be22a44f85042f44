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
        [sys.executable, str(SCRIPT), "--events", "30", "--concurrency", "4", "--users", "6",
         "--half-load-seconds", "1", "--no-wrk"],
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
    assert figures["generator"] == "asyncio raw HTTP/1.1 client (keep-alive, pre-built requests)"
    assert figures["journey"] == {"users": 6, "seconds": figures["journey"]["seconds"],
                                  "mismatches": 0}  # fmt: skip
    assert figures["peak_rss_mb"]["worker after journeys"] > 0
