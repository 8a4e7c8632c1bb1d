"""What a new user meets first (issue 9 item 6), with real processes: `run-local.sh --serve` prints what another
shell needs, readers never create a missing store, `http://` is refused at submit when the workers refuse it,
and a local file's verdict records where it came from.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

from producers import ModerationClient
from producers.references import ImageRefused
from tests.harness import running_workers, worker_env
from worker.errors import ErrorCode, StoreNotFound
from worker.intake.file_fetch import file_uri
from worker.settings import load_settings
from worker.standin.palette import make_image
from worker.standin.sglang_standin import SGLangStandIn

ROOT = Path(__file__).resolve().parents[2]


def cli(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "producers.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def test_readers_never_create_a_missing_store(fresh_redis: str, tmp_path: Path) -> None:
    env = worker_env(redis_url=fresh_redis, store_url="sqlite:///missing.db")
    for args in (("get", "0123456789abcdef"), ("export",)):
        done = cli(env, *args, cwd=tmp_path)
        assert done.returncode == 2, done
        assert "sqlite:///missing.db" in done.stderr and "does not exist" in done.stderr
        assert str(tmp_path / "missing.db") in done.stderr, "the message names the file it looked for"
    settings = load_settings(redis_url=fresh_redis, store_url=f"sqlite:///{tmp_path}/missing.db")
    with ModerationClient(settings=settings) as client:
        with pytest.raises(StoreNotFound, match="does not exist"):
            client.get("0123456789abcdef")
        with pytest.raises(TimeoutError, match="does not exist"):
            client.wait("0123456789abcdef", timeout=0.3)
    assert not (tmp_path / "missing.db").exists()


def test_sdk_refuses_http_at_submit_when_the_workers_do(fresh_redis: str) -> None:
    url = "http://images.example.com/cat.png"
    with ModerationClient(settings=load_settings(redis_url=fresh_redis)) as client:
        with pytest.raises(ImageRefused, match="LLAVAGUARD_ALLOW_HTTP") as refused:
            client.submit(url)
        assert refused.value.code is ErrorCode.FETCH_SCHEME_UNSUPPORTED
    assert redis.Redis.from_url(fresh_redis).dbsize() == 0, "nothing was enqueued"
    with ModerationClient(settings=load_settings(redis_url=fresh_redis, allow_http=True)) as client:
        assert client.submit(url)


def test_local_files_record_their_source_and_the_worker_creates_its_store(
    fresh_redis: str, standin: SGLangStandIn, tmp_path: Path,
) -> None:
    photo = tmp_path / "my photos" / "cat.png"
    photo.parent.mkdir()
    photo.write_bytes(make_image("O3"))
    store = tmp_path / "new" / "verdicts.db"
    store.parent.mkdir()
    settings = {"redis_url": fresh_redis, "sglang_url": standin.url, "store_url": f"sqlite:///{store}"}
    env = worker_env(**settings)
    with running_workers(env, tmp_path / "logs", count=1, concurrency=2, queues="realtime"):
        deadline = time.monotonic() + 20
        while not store.exists():  # at start, before any verdict: readers can then rely on it
            assert time.monotonic() < deadline, "the worker did not create its store at start"
            time.sleep(0.1)
        done = cli(env, "submit", "--wait", "--timeout", "60", "cat.png", cwd=photo.parent)
        with ModerationClient(settings=load_settings(**settings)) as client:
            from_sdk = client.wait(client.submit(photo), timeout=60)
    assert done.returncode == 0, done.stderr
    from_cli = json.loads(done.stdout)
    assert from_cli["status"] == "completed" and from_cli["image"]["source"] == file_uri(photo)
    assert from_sdk.status == "completed" and from_sdk.image.source == file_uri(photo)


def test_serve_prints_the_store_the_standin_and_the_environment_to_copy(tmp_path: Path) -> None:
    """`bash ops/run-local.sh --serve` from a checkout whose .venv exists; the printed environment then works."""
    repo = tmp_path / "checkout"
    (repo / "ops").mkdir(parents=True)
    for name in ("ops/run-local.sh", "ops/setup.sh", "pyproject.toml"):
        shutil.copy(ROOT / name, repo / name)
    bin_dir = repo / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    for tool in ("python", "llavaguard"):  # this venv stands for the one ensure_venv would have made
        (bin_dir / tool).symlink_to(Path(sys.executable).parent / tool)
    stamp = subprocess.run(["sha256sum", "pyproject.toml"], cwd=repo, capture_output=True, text=True).stdout[:16]
    (repo / ".venv" / ".llavaguard-stamp").write_text(f"{stamp}-\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLAVAGUARD_")}
    out = tmp_path / "serve.out"
    with out.open("wb") as stdout:
        proc = subprocess.Popen(["bash", "ops/run-local.sh", "--serve"], cwd=repo, env=env, stdout=stdout,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while "# another worker" not in out.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, out.read_text()
            time.sleep(0.2)
        text = out.read_text()
        printed = dict(re.findall(r"^export (LLAVAGUARD_[A-Z_]+)=(\S+)$", text, re.M))
        assert printed["LLAVAGUARD_STORE_URL"] == f"sqlite:///{repo}/run/verdicts.db", text  # absolute
        assert f"verdict store: sqlite:///{repo}/run/verdicts.db" in text
        assert re.search(r"model server: +http://127\.0\.0\.1:\d+ \(the SGLang STAND-IN", text), text
        assert httpx.get(f"{printed['LLAVAGUARD_SGLANG_URL']}/v1/models").status_code == 200
        assert {"LLAVAGUARD_REDIS_URL", "LLAVAGUARD_SGLANG_URL", "LLAVAGUARD_METRICS_PORT"} <= set(printed)
        image = tmp_path / "elsewhere" / "dog.png"  # another shell, another folder: the printed env is enough
        image.parent.mkdir()
        image.write_bytes(make_image("NA"))
        done = cli({**env, **printed}, "submit", "--wait", "--timeout", "60", str(image), cwd=image.parent)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["status"] == "completed"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
