"""An audit redone: workers without `LLAVAGUARD_SHARED_ROOT` fail every image, the audit says so and exits
non-zero; with the workers fixed, `--retry-failed` judges exactly the failed images (counted on the
stand-in), never a completed one again, and `export --audit NAME --status ...` selects either side.
Real CLI processes and workers, verdicts on the S3 store (moto) in its day-partitioned layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.audit_support import audit_json, cli, write_dataset
from tests.harness import running_workers, worker_env
from worker.standin.sglang_standin import SGLangStandIn

IMAGES = 12
NAME = "cats-2026"


def exported(env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    done = cli(env, "export", "--audit", NAME, *args)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_an_audit_failed_on_worker_configuration_is_redone_with_retry_failed(
    fresh_redis: str, standin: SGLangStandIn, s3_endpoint: str, bucket: str, s3: Any, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"
    dataset = shared / "dataset"
    write_dataset(dataset, IMAGES)
    settings = {"redis_url": fresh_redis, "sglang_url": standin.url, "store_url": f"s3://{bucket}/moderation",
                "s3_endpoint_url": s3_endpoint, "audit_batch_size": "5"}
    producer = worker_env(shared_root=str(shared), **settings)
    audit = ["audit", str(dataset), "--name", NAME, "--json"]

    with running_workers(worker_env(**settings), tmp_path / "unconfigured", count=1, concurrency=4):
        first = cli(producer, *audit)
        assert first.returncode == 3, first.stderr
        assert "fetch_scheme_unsupported" in first.stderr
        assert "set LLAVAGUARD_SHARED_ROOT on the workers" in first.stderr and "--retry-failed" in first.stderr
        summary = json.loads(first.stdout.splitlines()[-1])
        assert (summary["name"], summary["tally"]["failed"], summary["tally"]["completed"]) == (NAME, IMAGES, 0)

        other_code = cli(producer, *audit, "--retry-failed", "image_truncated")
        assert other_code.returncode == 3, "nothing failed with that code: nothing judged again"
        assert json.loads(other_code.stdout.splitlines()[-1])["retried"] == 0
    assert standin.stats()["total_requests"] == 0

    with running_workers(worker_env(shared_root=str(shared), **settings), tmp_path / "fixed", count=1,
                         concurrency=4):
        retried = audit_json(producer, *audit[1:-1], "--retry-failed", "fetch_scheme_unsupported,image_empty")
        assert (retried["retried"], retried["enqueued"], retried["judged_before"]) == (IMAGES, IMAGES, 0)
        assert (retried["tally"]["completed"], retried["tally"]["failed"]) == (IMAGES, 0)
        assert retried["configuration_error"] is None
        assert standin.stats()["total_requests"] == IMAGES, "only the failed images were judged again"

        again = audit_json(producer, *audit[1:-1], "--retry-failed")
        assert (again["retried"], again["enqueued"], again["judged_before"]) == (0, 0, IMAGES)
        assert again["tally"]["completed"] == IMAGES
    assert standin.stats()["total_requests"] == IMAGES, "a completed image is never judged again"

    completed, failed = exported(producer, "--status", "completed"), exported(producer, "--status", "failed")
    assert len(completed) == IMAGES and {v["status"] for v in completed} == {"completed"}
    assert len(failed) == IMAGES and {v["error"]["code"] for v in failed} == {"fetch_scheme_unsupported"}
    assert {v["metadata"]["retry_of"] for v in completed} == {v["id"] for v in failed}
    assert {v["audit"] for v in completed + failed} == {NAME}
    assert exported(producer, "--status", "completed", "--rating", "Safe") == [
        v for v in completed if v["rating"] == "Safe"
    ]
    assert cli(producer, "export", "--audit", "another").stdout == ""

    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket, Prefix="moderation/verdicts/dt=")["Contents"]]
    assert len(keys) == 2 * IMAGES and sum(f",audit={NAME},decision=" in key for key in keys) == 2 * IMAGES

    bad = cli(producer, *audit, "--retry-failed", "no_such_code")
    assert bad.returncode == 2 and "unknown error code(s) no_such_code" in bad.stderr
