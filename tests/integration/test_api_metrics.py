"""A real `llavaguard api --workers 2`: `/metrics` on its own bind sums both processes, per route and status.

Also: every problem code exists at 0 before the first request (alerts on `increase()` see the first one),
process metrics come per live process (`pid` label), and the API's port itself does not serve `/metrics`.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from producers.api.metrics import PROBLEM_CODES
from tests.harness import worker_env
from tests.services import free_port, stop_process

API_KEY = "sk-llavaguard-api-metrics-5d1e"
READS = 12
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def wait_healthy(proc: subprocess.Popen[bytes], url: str, err: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)


def pids_reporting(port: int, want: int, timeout_s: float = 30) -> set[str]:
    """The `pid` labels of process metrics once `want` processes report (uvicorn's workers start one by one)."""
    deadline = time.monotonic() + timeout_s
    while True:
        pids = {dict(labels)["pid"] for name, labels in scrape(port) if name == "process_resident_memory_bytes"}
        if len(pids) >= want or time.monotonic() > deadline:
            return pids
        time.sleep(0.2)


def test_api_metrics_sum_every_worker_process(fresh_redis: str, tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    (tmp_path / "tmp").mkdir()
    env = {**worker_env(redis_url=fresh_redis, store_url=f"sqlite:///{tmp_path}/v.db", api_keys=API_KEY,
                        api_metrics_port=str(metrics_port)), "TMPDIR": str(tmp_path / "tmp")}
    err = tmp_path / "stderr.log"
    with err.open("wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "producers.cli", "api", "--port", str(port), "--workers", "2"],
                                env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url, err)
        pids = pids_reporting(metrics_port, want=3)
        before = scrape(metrics_port)
        headers = {"Authorization": f"Bearer {API_KEY}"}
        with httpx.Client(base_url=url, headers=headers) as api:  # new connections: both processes answer
            statuses = [api.get(f"/v1/moderations/missing{i}", headers={"Connection": "close"}).status_code
                        for i in range(READS)]
        assert httpx.get(f"{url}/v1/moderations/x").status_code == 401
        assert httpx.get(f"{url}/metrics").status_code == 404
        after = scrape(metrics_port)
    finally:
        stop_process(proc, timeout_s=30)

    for code in PROBLEM_CODES:
        assert before[("llavaguard_api_problems_total", frozenset({("code", code)}))] == 0, code
    assert statuses == [404] * READS
    read = frozenset({("route", "/v1/moderations/{moderation_id}"), ("method", "GET"), ("status", "404")})
    assert after[("llavaguard_api_requests_total", read)] == READS
    assert after[("llavaguard_api_requests_total", (read - {("status", "404")}) | {("status", "401")})] == 1
    assert after[("llavaguard_api_problems_total", frozenset({("code", "not_found")}))] == READS + 1
    assert after[("llavaguard_api_problems_total", frozenset({("code", "unauthorized")}))] == 1
    timed = frozenset({("route", "/v1/moderations/{moderation_id}"), ("method", "GET")})
    assert after[("llavaguard_api_request_duration_seconds_count", timed)] == READS + 1
    assert len(pids) >= 3, f"the supervisor and both uvicorn workers report process metrics: {pids}"
    assert any(name == "python_info" for name, _ in after)


@pytest.mark.parametrize("module", ["routes", "limits", "problems", "callbacks", "app", "auth", "validation"])
def test_every_problem_code_in_the_source_is_known(module: str) -> None:
    """PROBLEM_CODES is initialised at 0; a code added to the source without it would start missing."""
    source = (Path(__file__).parents[2] / "producers" / "api" / f"{module}.py").read_text()
    used = set(re.findall(r'ApiProblem\(\s*\d{3},\s*"([a-z_]+)"', source))
    used |= set(re.findall(r'code: str = "([a-z_]+)"', source))
    assert used <= set(PROBLEM_CODES), used - set(PROBLEM_CODES)
