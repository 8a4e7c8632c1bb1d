"""`llavaguard audit` and `llavaguard export` as a curator runs them: real CLI processes, real workers, the
stand-in; folders through a shared root or an S3 upload, manifests, S3 prefixes, reruns."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import boto3
import pytest
import redis

from producers.bulk import audit_moderation_id
from producers.bulk.audit import default_audit_name
from producers.ids import IdSecret
from tests.audit_support import CODES, audit_json, cli, cli_in_terminal, write_dataset
from tests.harness import LoopbackHTTPServer, running_workers, worker_env
from worker.categories import category_for_code
from worker.intake.file_fetch import file_uri
from worker.models import DEFAULT_POLICY
from worker.queues import AUDIT_QUEUED_KEY, SUBMITTED_KEY
from worker.standin.palette import make_image
from worker.standin.sglang_standin import SGLangStandIn


@pytest.fixture()
def shared(tmp_path: Path) -> Path:
    root = tmp_path / "shared"
    root.mkdir()
    return root


@pytest.fixture()
def env(
    fresh_redis: str, standin: SGLangStandIn, shared: Path, s3_endpoint: str, bucket: str, tmp_path: Path
) -> dict[str, str]:
    return worker_env(
        redis_url=fresh_redis, sglang_url=standin.url, store_url=f"sqlite:///{tmp_path}/v.db",
        shared_root=str(shared), s3_endpoint_url=s3_endpoint, allowed_networks="127.0.0.1/32", allow_http="true",
        audit_batch_size="8", s3_allowed_buckets=bucket,
    )


def stored(env: dict[str, str]) -> list[dict[str, object]]:
    exported = cli(env, "export")
    assert exported.returncode == 0, exported.stderr
    return [json.loads(line) for line in exported.stdout.splitlines()]


def test_a_shared_folder_audited_resumed_extended_and_exported(
    env: dict[str, str], shared: Path, standin: SGLangStandIn, tmp_path: Path
) -> None:
    dataset = shared / "dataset"
    files = write_dataset(dataset, 40)
    with running_workers(env, tmp_path / "logs", count=2, concurrency=4):
        code, shown = cli_in_terminal(env, "audit", str(dataset))
        assert code == 0, shown
        assert "judged: 100%" in shown and "img/s" in shown and "40/40" in shown  # the progress bar
        assert "images: 40; judged before this run: 0" in shown and "enqueued now: 40" in shown
        assert re.search(rf"{category_for_code('O4')} +4\r?\n", shown)

        again = audit_json(env, str(dataset))
        assert (again["judged_before"], again["enqueued"], again["tally"]["completed"]) == (40, 0, 40)
        files.update(write_dataset(dataset, 5, start=40))
        extended = audit_json(env, str(dataset))
        assert (extended["images"], extended["judged_before"], extended["enqueued"]) == (45, 40, 5)
        declared = audit_json(env, str(dataset), "--non-violating", "O4,O6")
        assert (declared["judged_before"], declared["enqueued"]) == (0, 45), "another policy: judged anew"
        assert declared["tally"]["ratings"]["Safe"] == sum(code in ("NA", "O4", "O6") for code in files.values())
    assert standin.stats()["total_requests"] == 90

    verdicts = stored(env)
    assert len(verdicts) == 90 and len({v["id"] for v in verdicts}) == 90
    by_source = {v["image"]["source"] for v in verdicts}  # type: ignore[index]
    assert by_source == {file_uri(dataset / relative) for relative in files}
    unsafe_o4 = cli(env, "export", "--format", "csv", "--rating", "Unsafe", "--category", "O4")
    rows = list(csv.DictReader(io.StringIO(unsafe_o4.stdout)))
    flagged = {row["image_source"] for row in rows}
    assert flagged == {file_uri(dataset / r) for r, c in files.items() if c == "O4"}
    assert {json.loads(row["metadata"])["file"] for row in rows} == {r for r, c in files.items() if c == "O4"}
    assert cli(env, "export", "--since", "2999-01-01").stdout == ""
    assert len(cli(env, "export", "--since", "1h", "--limit", "7").stdout.splitlines()) == 7
    assert cli(env, "export", "--rating", "Maybe").returncode == 2


def test_folders_the_workers_cannot_read_are_refused_up_front(env: dict[str, str], tmp_path: Path) -> None:
    outside = tmp_path / "not-shared"
    write_dataset(outside, 3)
    refused = cli(env, "audit", str(outside))
    assert refused.returncode == 2 and "LLAVAGUARD_SHARED_ROOT" in refused.stderr
    no_root = cli({k: v for k, v in env.items() if k != "LLAVAGUARD_SHARED_ROOT"}, "audit", str(outside))
    assert no_root.returncode == 2 and "--upload-to" in no_root.stderr
    assert cli(env, "audit", str(outside), "--policy", "nope").returncode == 2
    assert cli(env, "audit", str(tmp_path / "missing")).returncode == 2
    assert redis.Redis.from_url(env["LLAVAGUARD_REDIS_URL"]).dbsize() == 0


def test_a_folder_uploaded_to_s3_then_the_prefix_audited(
    env: dict[str, str], standin: SGLangStandIn, s3_endpoint: str, bucket: str, tmp_path: Path
) -> None:
    private = tmp_path / "private"
    files = write_dataset(private, 12)
    worker = {k: v for k, v in env.items() if k != "LLAVAGUARD_SHARED_ROOT"}  # workers see only S3
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.put_object(Bucket=bucket, Key="uploads/README.txt", Body=b"not an image")
    with running_workers(worker, tmp_path / "logs", count=1, concurrency=4):
        uploaded = audit_json(worker, str(private), "--upload-to", f"s3://{bucket}/uploads")
        assert (uploaded["images"], uploaded["enqueued"], uploaded["tally"]["completed"]) == (12, 12, 12)
        prefix = audit_json(worker, f"s3://{bucket}/uploads/")
    assert (prefix["images"], prefix["judged_before"], prefix["enqueued"]) == (12, 12, 0), "same URIs, same ids"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="uploads/")["Contents"]}
    assert keys == {f"uploads/{r}" for r in files} | {"uploads/README.txt"}
    verdicts = stored(worker)
    assert {(v["image"]["source"], v["category"]) for v in verdicts} == {  # type: ignore[index]
        (f"s3://{bucket}/uploads/{r}", category_for_code(c)) for r, c in files.items()}
    assert standin.stats()["total_requests"] == 12


def test_manifests_txt_jsonl_csv(
    env: dict[str, str], shared: Path, standin: SGLangStandIn, image_server: LoopbackHTTPServer,
    s3_endpoint: str, bucket: str, tmp_path: Path,
) -> None:
    urls = [image_server.serve_bytes(f"/i/{c}.png", make_image(c), "image/png") for c in CODES[:3]]
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").put_object(
        Bucket=bucket, Key="m/o5.png", Body=make_image("O5"))
    write_dataset(shared / "lists", 2, nested=False)
    (shared / "lists" / "a.txt").write_text(
        f"# a comment\n{urls[0]}\n\ns3://{bucket}/m/o5.png\nimg00000.png\nftp://nope/x.png\n{urls[0]}\n")
    (shared / "lists" / "b.jsonl").write_text("\n".join([
        json.dumps({"image": urls[1], "metadata": {"row": 1}}), "{broken", json.dumps({"metadata": {}}),
        json.dumps({"image": "img00001.png", "metadata": {"row": 4}})]) + "\n")
    (shared / "lists" / "c.csv").write_text(f"image,label\n{urls[2]},cat\n,empty\n")
    with running_workers(env, tmp_path / "logs", count=1, concurrency=4):
        txt, jsonl, csv_file = (cli(env, "audit", str(shared / "lists" / n), "--json") for n in
                                ("a.txt", "b.jsonl", "c.csv"))
    summaries = [json.loads(done.stdout.splitlines()[-1]) for done in (txt, jsonl, csv_file)]
    assert [done.returncode for done in (txt, jsonl, csv_file)] == [1, 1, 1], "rejected lines make exit 1"
    assert [s["images"] for s in summaries] == [3, 2, 1]
    assert [len(s["rejected"]) for s in summaries] == [1, 2, 1]
    assert all(s["pending"] == 0 for s in summaries)
    metadata = {v["image"]["source"]: v["metadata"] for v in stored(env)}  # type: ignore[index]
    assert metadata[urls[1]] == {"row": 1} and metadata[urls[2]] == {"label": "cat"}
    assert metadata[file_uri(shared / "lists" / "img00001.png")] == {"file": "img00001.png", "row": 4}
    assert len(metadata) == 6 and standin.stats()["total_requests"] == 6


def test_lost_markers_and_a_lost_queue_are_enqueued_again(
    env: dict[str, str], shared: Path, standin: SGLangStandIn, tmp_path: Path
) -> None:
    """Queued records without messages: an audit killed between recording and publishing, or a lost queue."""
    dataset = shared / "d"
    files = write_dataset(dataset, 20)
    broker = redis.Redis.from_url(env["LLAVAGUARD_REDIS_URL"])
    secret = IdSecret(broker).get()  # the deployment's id secret, created here first as any producer would
    orphaned = [audit_moderation_id(secret, DEFAULT_POLICY, [], file_uri(dataset / r)) for r in sorted(files)[:5]]
    record = AUDIT_QUEUED_KEY + default_audit_name(str(dataset), DEFAULT_POLICY, [])
    broker.hset(record, "orphaned", b"".join(bytes.fromhex(i) for i in orphaned))
    with running_workers(env, tmp_path / "logs", count=1, concurrency=4):
        first = audit_json(env, str(dataset))
    assert (first["resumed"], first["enqueued"], first["republished"], first["tally"]["completed"]) == (5, 15, 5, 20)

    queued = audit_json(env, str(dataset), "--non-violating", "O1", "--no-wait")  # no worker runs
    assert queued["enqueued"] == 20 and queued["pending"] == 20
    assert broker.delete("bulk") == 1  # the queue is lost (a Redis without persistence restarted, a purge ...)
    with running_workers(env, tmp_path / "logs2", count=1, concurrency=4):
        second = audit_json(env, str(dataset), "--non-violating", "O1")
    assert (second["resumed"], second["republished"], second["tally"]["completed"]) == (20, 20, 20)
    assert standin.stats()["total_requests"] == 40, "every image judged once per policy"
    assert not broker.keys(SUBMITTED_KEY + "*"), "no marker key per audited image"
    assert broker.hlen(record) == 0, "the record holds only batches still queued"
