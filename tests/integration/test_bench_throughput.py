"""`python -m ops.bench.throughput --quick` runs every part of the benchmark on tiny numbers, so it cannot rot.

Not a performance test: it checks that each figure is produced and that every image got its verdict.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_throughput_benchmark_runs_quick() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "ops.bench.throughput", "--quick", "--json"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    (width,) = result["widths"]
    assert width["width"] == 8 and width["completed"] == width["images"]
    assert width["pipeline_per_s"] > 0 and width["direct_per_s"] > 0
    for key in ("realtime_640x480_ms", "bulk_1280x800_ms", "peak_worker_rss_mb", "overhead_p50_ms",
                "audit_enqueue_per_s", "redis_bytes_per_queued_image"):
        assert result[key] > 0, key
