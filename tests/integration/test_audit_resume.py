"""2,000 images, an audit killed while publishing, another interrupted with Ctrl-C while waiting, a rerun:
exactly one verdict per image, and the model asked exactly 2,000 times."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from producers.bulk.audit import default_audit_name
from tests.audit_support import audit_json, write_dataset
from tests.harness import running_workers, worker_env
from worker.intake.file_fetch import file_uri
from worker.models import DEFAULT_POLICY
from worker.queues import AUDIT_QUEUED_KEY, BULK_QUEUE, SUBMITTED_KEY
from worker.standin.sglang_standin import SGLangStandIn
from worker.stores import VerdictQuery, open_store

IMAGES = 2000


def start_audit(env: dict[str, str], dataset: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-m", "producers.cli", "audit", str(dataset)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def wait_until(condition: object, timeout_s: float = 120, step_s: float = 0.005) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(step_s)


def test_an_interrupted_audit_resumes_and_judges_every_image_exactly_once(
    fresh_redis: str, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    files = write_dataset(shared / "imagenet-like", IMAGES)
    dataset = shared / "imagenet-like"
    store_url = f"sqlite:///{tmp_path}/v.db"
    broker = redis.Redis.from_url(fresh_redis)
    with SGLangStandIn("127.0.0.1", 0, max_running=32, service_time_s=0.002) as standin:
        env = worker_env(redis_url=fresh_redis, sglang_url=standin.url, store_url=store_url,
                         shared_root=str(shared), audit_batch_size="50")

        # 1. No worker yet; the audit is SIGKILLed as soon as its first batches are on the queue.
        first = start_audit(env, dataset, tmp_path / "first.log")
        wait_until(lambda: broker.llen(BULK_QUEUE) >= 3)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        published = broker.llen(BULK_QUEUE)
        assert published >= 3

        with running_workers(env, tmp_path / "logs", count=2, concurrency=4):
            # 2. A rerun resumes; Ctrl-C (SIGINT) stops it while it waits for verdicts.
            store = open_store(store_url)
            second = start_audit(env, dataset, tmp_path / "second.log")
            wait_until(lambda: store.count() >= 600, step_s=0.05)
            second.send_signal(signal.SIGINT)
            code = second.wait(60)
            shown = (tmp_path / "second.log").read_text()
            assert code == 130 or (code == 0 and "pending: 0" in shown), shown
            if code == 130:
                assert "Run the same command again to resume" in shown

            # 3. Run to the end.
            final = audit_json(env, str(dataset))
        stats = standin.stats()

    assert (final["images"], final["pending"], final["tally"]["completed"]) == (IMAGES, 0, IMAGES)
    assert final["enqueued"] == 0, "everything was enqueued by the interrupted runs"
    assert final["judged_before"] + final["resumed"] == IMAGES
    # SIGKILL between recording a batch and publishing it leaves a record without a message: found and re-enqueued.
    assert final["republished"] in (0, 50)
    assert store.count() == IMAGES
    verdicts = store.list(VerdictQuery(limit=None))
    assert {v.image.source for v in verdicts} == {file_uri(dataset / r) for r in files}
    assert stats["total_requests"] == IMAGES, "no image was judged twice"
    assert broker.llen(BULK_QUEUE) == 0 and published < IMAGES / 50 + 1
    assert not broker.exists(SUBMITTED_KEY + verdicts[0].id), "audits keep no marker key per image"
    assert broker.hlen(AUDIT_QUEUED_KEY + default_audit_name(str(dataset), DEFAULT_POLICY, [])) == 0
    store.close()
