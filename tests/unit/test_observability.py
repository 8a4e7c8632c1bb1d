"""Metrics recording, log redaction, the heartbeat's stall rule, Redis key layout, and the ops files' metric names."""

from __future__ import annotations

import gc
import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import Counter, Gauge, Histogram

from producers.api import metrics as api_metrics
from worker.celery_app import celery_config
from worker.errors import InferenceUnavailable, StoreUnavailable
from worker.logs import redact_text
from worker.models import ErrorInfo, ImageInfo, ImageRef, ModerationRequest, PolicyRef, Verdict
from worker.observability import metrics
from worker.observability.heartbeat import Beat, ConsumptionWatch, verdict_on
from worker.observability.multiproc import dead_pids, join_shared_dir, prepare_multiprocess, shared_metrics_dir
from worker.observability.queue_depth import broker_keys
from worker.observability.wiring import RecentTasks
from worker.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def verdict(request: ModerationRequest, **fields: object) -> Verdict:
    return Verdict(
        id=request.id, policy=PolicyRef(name="llavaguard-v1.2"), image=ImageInfo(), created_at=request.created_at,
        completed_at=request.created_at + timedelta(seconds=2), **fields,  # type: ignore[arg-type]
    )


def test_verdict_hook_counts_first_storage_only() -> None:
    request = ModerationRequest(id="m1", image=ImageRef(data=b"x"))
    unsafe = verdict(request, status="completed", rating="Unsafe", category="O6: Weapons or Substance Abuse")
    failed = verdict(request, status="failed", error=ErrorInfo(code="fetch_timeout", message="slow"))
    def counts() -> list[float]:
        return [sample("llavaguard_verdicts_total", rating="Unsafe", category="O6"),
                sample("llavaguard_failures_total", code="fetch_timeout"),
                sample("llavaguard_verdict_latency_seconds_count")]

    before = counts()
    metrics.count_verdict(request, unsafe, True)
    metrics.count_verdict(request, unsafe, False)  # a redelivered task: already counted
    metrics.count_verdict(request, failed, True)
    assert [a - b for a, b in zip(counts(), before, strict=True)] == [1, 1, 2]


def test_stage_is_observed_even_when_it_fails_and_in_flight_returns_to_zero() -> None:
    before = sample("llavaguard_stage_duration_seconds_count", stage="fetch")
    with pytest.raises(ValueError), metrics.stage("fetch"):
        raise ValueError("bad image")
    assert sample("llavaguard_stage_duration_seconds_count", stage="fetch") == before + 1
    with metrics.in_flight():
        assert sample("llavaguard_inflight_requests") == 1
    assert sample("llavaguard_inflight_requests") == 0


def test_retries_and_webhooks_are_counted_by_reason() -> None:
    metrics.retry_scheduled(StoreUnavailable("db down"))
    metrics.retry_scheduled(InferenceUnavailable("503"))
    metrics.webhook_attempt("delivered")
    metrics.webhook_failed("exhausted")
    assert sample("llavaguard_retries_total", reason="store_unavailable") >= 1
    assert sample("llavaguard_retries_total", reason="inference_unavailable") >= 1
    assert sample("llavaguard_webhook_deliveries_total", outcome="delivered") >= 1
    assert sample("llavaguard_webhook_failures_total", reason="exhausted") >= 1


@pytest.mark.parametrize(("text", "hidden", "kept"), [
    ("args: {'image': {'data': '" + "QUJD" * 40 + "'}}", "QUJDQUJD", "args"),
    ("{'data': 'iVBORw0KGgoAAAA", "iVBORw0KGgo", "data"),  # cut short by Celery's repr limit
    ("Connected to redis://:hunter2@redis:6379/0", "hunter2", "redis://:***@redis"),
    ("postgresql://llavaguard:s3cret@db/x", "s3cret", "postgresql://llavaguard:***@db"),
    ("GET https://b.s3/k?X-Amz-Signature=abc123&x=1", "abc123", "x=1"),
    ("Authorization: Bearer sk-123.456", "sk-123", "Bearer ***"),
])
def test_redaction_hides_image_bytes_and_credentials(text: str, hidden: str, kept: str) -> None:
    redacted = redact_text(text)
    assert hidden not in redacted and kept in redacted


def test_a_sha256_and_ids_are_not_redacted() -> None:
    line = "moderation 9f0c1e2d3c4b5a69788796a5b4c3d2e1 sha256 " + "ab" * 32
    assert redact_text(line) == line


def test_consumption_watch_measures_starvation_only_with_backlog_and_free_slots() -> None:
    watch = ConsumptionWatch()
    assert watch.starved_s(100.0, backlog=5, free_slots=2) == 0  # starts counting
    assert watch.starved_s(110.0, backlog=5, free_slots=2) == 10
    watch.message_received()
    assert watch.starved_s(120.0, backlog=5, free_slots=2) == 0  # something arrived: not starved
    assert watch.starved_s(130.0, backlog=5, free_slots=0) == 0  # busy, not starved
    assert watch.starved_s(140.0, backlog=0, free_slots=2) == 0  # nothing waits


def test_health_verdict_from_a_beat() -> None:
    beat = Beat(worker="w@h", host="h", pid=1, at=0.0, queues=["realtime"], concurrency=4, reserved=1, backlog=3,
                starved_s=0.0)
    assert verdict_on(beat, "w@h", stall_s=60)[0] is True
    assert verdict_on(Beat(**{**beat.__dict__, "starved_s": 61.0}), "w@h", stall_s=60)[0] is False
    healthy, why = verdict_on(None, "w@h", stall_s=60)
    assert not healthy and "no heartbeat" in why
    assert Beat.from_json(beat.to_json()) == beat


def test_queue_keys_follow_the_apps_transport_options() -> None:
    options = celery_config(load_settings())["broker_transport_options"]
    assert broker_keys("realtime", options) == ["realtime", "realtime:3", "realtime:6", "realtime:9"]


def test_dead_processes_are_found_by_their_live_gauge_files(tmp_path: Path) -> None:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(finished.stdout)
    (tmp_path / f"gauge_livesum_{dead}.db").touch()
    (tmp_path / f"gauge_livesum_{os.getpid()}.db").touch()
    (tmp_path / "counter_1.db").touch()  # counters stay, whoever wrote them
    assert dead_pids(tmp_path) == {dead}


def test_multiprocess_mode_cannot_be_switched_on_too_late(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="imported before"):
        prepare_multiprocess(tmp_path)


def test_celery_lines_naming_a_task_get_its_moderation_id() -> None:
    recent = RecentTasks(size=2)
    recent.add("11111111-2222-3333-4444-555555555555", "m1")
    tagged = recent.tag(None, "debug", {"event": "TaskPool: Apply (args:('x', '11111111-2222-3333-4444-555555555555'"})
    assert tagged["moderation_id"] == "m1" and tagged["task_id"] == "11111111-2222-3333-4444-555555555555"
    recent.add("a" * 8 + "-aaaa-aaaa-aaaa-" + "a" * 12, "m2")
    recent.add("b" * 8 + "-bbbb-bbbb-bbbb-" + "b" * 12, "m3")  # the oldest is forgotten
    assert "moderation_id" not in recent.tag(None, "debug", {"event": "11111111-2222-3333-4444-555555555555"})


def test_dashboard_and_alerts_use_only_metrics_that_exist() -> None:
    defined = {family.name for module in (metrics, api_metrics) for collector in vars(module).values()
               if isinstance(collector, Counter | Gauge | Histogram) for family in collector.describe()}
    defined |= {"llavaguard_queue_depth", "llavaguard_unacked_messages", "llavaguard_redis_up"}  # read at scrape
    used = set()
    for path in (ROOT / "ops/grafana/dashboards/llavaguard.json", ROOT / "ops/prometheus/alerts.yml"):
        used |= set(re.findall(r"llavaguard_[a-z_]+", path.read_text()))
    base = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in used}
    assert base <= defined, base - defined
    json.loads((ROOT / "ops/grafana/dashboards/llavaguard.json").read_text())


def test_the_shared_metrics_directory_is_cleared_only_by_its_last_user(tmp_path: Path) -> None:
    shared = tmp_path / "llavaguard-metrics"
    first = join_shared_dir(shared)
    (shared / "counter_11.db").touch()
    second = join_shared_dir(shared)  # a second worker: the first one's counts stay
    assert (shared / "counter_11.db").exists()
    first.release()  # a worker leaving while another runs: its counts keep being served
    assert (shared / "counter_11.db").exists()
    second.release()  # the last one out
    assert not list(shared.glob("*.db")) and shared.is_dir()


def test_a_worker_alone_in_the_shared_directory_drops_what_killed_workers_left(tmp_path: Path) -> None:
    shared = tmp_path / "llavaguard-metrics"
    shared.mkdir(mode=0o700)
    (shared / "counter_12.db").touch()
    joined = join_shared_dir(shared)
    assert not (shared / "counter_12.db").exists()
    joined.release()


def test_a_shared_directory_others_can_write_into_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "open"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(PermissionError, match="LLAVAGUARD_METRICS_DIR"):
        join_shared_dir(shared)


def test_the_default_shared_directory_is_per_user_and_port(tmp_path: Path) -> None:
    assert shared_metrics_dir(9108).name == f"llavaguard-metrics-{os.getuid()}-9108"
    assert shared_metrics_dir(9108, tmp_path) == tmp_path


def test_known_label_values_follow_the_code_s_enums() -> None:
    """A transient error class, error code or dead-letter reason added later is initialised at 0 without a list."""
    from worker.broker.guard import REASONS
    from worker.errors import ErrorCode, TransientError
    from worker.notify.schedule import Outcome

    class ArrivedLater(TransientError):  # a new transient failure with a code no retry used before
        code = ErrorCode.FETCH_TIMEOUT

    known = metrics.known_labels()
    assert {"reason": "fetch_timeout"} in known[metrics.RETRIES]
    assert {"reason": "store_unavailable"} in known[metrics.RETRIES]  # OutboxUnavailable too, without a duplicate
    assert len(known[metrics.RETRIES]) == len({tuple(d.items()) for d in known[metrics.RETRIES]})
    assert [d["code"] for d in known[metrics.FAILURES]] == [code.value for code in ErrorCode]
    assert [d["reason"] for d in known[metrics.DEAD_LETTERS]] == list(REASONS)
    assert [d["outcome"] for d in known[metrics.WEBHOOK_DELIVERIES]] == [o.value for o in Outcome]
    assert len(known[metrics.VERDICTS]) == 2 * 10
    del ArrivedLater
    gc.collect()  # a class lives in reference cycles: forget it, or later tests in this process would see it
    assert {"reason": "fetch_timeout"} not in metrics.known_labels()[metrics.RETRIES]
