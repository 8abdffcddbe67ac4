"""`python -m bench.http_clients` runs end to end (a tiny run; its figures are not judged here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_tiny_run_measures_every_client_on_every_row() -> None:
    run = subprocess.run([sys.executable, "-m", "bench.http_clients", "--calls", "8", "--concurrency", "2",
                          "--rounds", "1"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    rows = [line.split("|")[1:-1] for line in run.stdout.splitlines() if line.startswith("| http")]
    assert len(rows) == 2 * 2 * 2 * 3  # scheme x answer x in flight x client
    assert {row[3].strip() for row in rows} == {"sluice http1", "aiohttp", "httpx"}
    assert all(float(row[4]) > 0 for row in rows)  # CPU per call was measured
