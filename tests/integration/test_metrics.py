"""A worker's /metrics counts exactly what it did: real worker processes, both pools, the stand-in over HTTP.

Under `prefork` the moderations run in several child processes; the counts must still come out exact,
which is what prometheus_client's multiprocess mode (worker/observability/exporter.py) is for.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import pytest
from prometheus_client import Histogram
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from producers import ModerationClient
from tests.harness import running_workers, worker_env
from tests.services import free_port
from worker.observability import metrics
from worker.settings import load_settings
from worker.standin.palette import PALETTE, make_image
from worker.standin.sglang_standin import SGLangStandIn

CODES = sorted(PALETTE)
IMAGES = 30
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text) for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def expected_rating(code: str, declared: bool) -> str:
    return "Safe" if code == "NA" or declared else "Unsafe"


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_metrics_count_every_verdict_failure_and_stage(pool: str, fresh_redis: str, tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "tmp").mkdir()
    with SGLangStandIn("127.0.0.1", 0, max_running=16, service_time_s=0.05) as standin:
        settings = {
            "redis_url": fresh_redis, "sglang_url": standin.url, "store_url": f"sqlite:///{tmp_path}/v.db",
            "metrics_port": str(port), "metrics_host": "127.0.0.1",
        }
        env = {**worker_env(**settings), "TMPDIR": str(tmp_path / "tmp")}  # where the metrics directory goes
        expected: Counter[tuple[str, str]] = Counter()
        with ModerationClient(settings=load_settings(**settings)) as client:
            ids = []
            for i in range(IMAGES):  # queued before the worker starts, so prefork children all get work
                code, declared = CODES[i % len(CODES)], i % 3 == 2 and CODES[i % len(CODES)] != "NA"
                ids.append(client.submit(make_image(code), non_violating=[code] if declared else None))
                expected[(expected_rating(code, declared), code)] += 1
            ids.append(client.submit(b"this is not an image"))
            with ModerationClient(settings=load_settings(**settings), queue="bulk") as bulk:
                for priority in (0, 5, 9):  # a queue nobody consumes here: its depth, over kombu's priority lists
                    bulk.submit(make_image("O1"), priority=priority)
            with running_workers(env, tmp_path / "logs", count=1, concurrency=3, queues="realtime", pool=pool):
                verdicts = [client.wait(i, timeout=120) for i in ids]
                samples = scrape(port)
                writers = {p.name.split("_")[-1] for p in (tmp_path / "tmp").glob("llavaguard-metrics-*/counter_*")}

    assert [v.status for v in verdicts].count("completed") == IMAGES
    for (rating, category), count in expected.items():
        assert value(samples, "llavaguard_verdicts_total", rating=rating, category=category) == count
    counted = sum(v for (name, _), v in samples.items() if name == "llavaguard_verdicts_total")
    assert counted == IMAGES
    assert value(samples, "llavaguard_failures_total", code="image_not_an_image") == 1
    assert value(samples, "llavaguard_stage_duration_seconds_count", stage="fetch") == IMAGES + 1
    assert value(samples, "llavaguard_stage_duration_seconds_count", stage="inference") == IMAGES
    assert value(samples, "llavaguard_stage_duration_seconds_count", stage="store") == IMAGES + 1
    assert value(samples, "llavaguard_verdict_latency_seconds_count") == IMAGES + 1
    assert value(samples, "llavaguard_inflight_requests") == 0
    assert value(samples, "llavaguard_redis_up") == 1
    assert value(samples, "llavaguard_queue_depth", queue="realtime") == 0
    assert value(samples, "llavaguard_queue_depth", queue="bulk") == 3
    assert ("llavaguard_unacked_messages", frozenset()) in samples
    if pool == "prefork":
        assert len(writers) >= 2, f"moderations ran in several child processes, summed: {writers}"


def labelled_metrics() -> list[MetricWrapperBase]:
    """Every labelled metric the worker registers (module attributes of `metrics`), found without a list."""
    found = [m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase) and m._labelnames]
    assert found, "no labelled metric found: the lookup is broken"
    return found


def sample_name(metric: MetricWrapperBase) -> str:
    return f"{metric._name}_count" if isinstance(metric, Histogram) else f"{metric._name}_total"


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_every_labelled_series_exists_at_zero_on_a_fresh_worker(pool: str, fresh_redis: str, tmp_path: Path) -> None:
    """`increase(x[5m]) > 0` can only fire on the first failure after a start if the series was there at 0."""
    port = free_port()
    (tmp_path / "tmp").mkdir()
    settings = {"redis_url": fresh_redis, "sglang_url": "http://127.0.0.1:9", "store_url": f"sqlite:///{tmp_path}/v.db",
                "metrics_port": str(port), "metrics_host": "127.0.0.1"}
    env = {**worker_env(**settings), "TMPDIR": str(tmp_path / "tmp")}
    with running_workers(env, tmp_path / "logs", count=1, concurrency=2, queues="realtime", pool=pool):
        samples = scrape(port)

    known = metrics.known_labels()
    assert set(known) == set(labelled_metrics()), "a labelled metric has no known label values (known_labels)"
    for metric, label_sets in known.items():
        present = {labels for (name, labels) in samples if name == sample_name(metric)}
        for labels in label_sets:
            assert value(samples, sample_name(metric), **labels) == 0, (metric._name, labels)
        assert len(present) == len(label_sets), (metric._name, "a series outside the known label values")
    assert {"code": "fetch_not_found"} in known[metrics.FAILURES]
    assert {"reason": "store_unavailable"} in known[metrics.RETRIES]
    assert {"reason": "unknown_task"} in known[metrics.DEAD_LETTERS]
