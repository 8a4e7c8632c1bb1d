"""A producer in Node.js (celery-node, `tests/node/enqueue.js`), written from docs/wire-contract.md alone,
enqueues into a real `llavaguard worker`; the verdicts are read back through the store and the HTTP API.

Everything is enqueued before the worker starts, so the queued state is observed, not raced: the API says
`pending` (not 404) for an id the Node producer marked, and each message waits in the list the contract
names. A payload without `id` and an unknown task name end dead-lettered or failed, never silently dropped.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from producers.client import ModerationClient
from producers.ids import IdSecret, keyed_moderation_id
from tests.api_server import API_KEY, running_api
from tests.harness import running_workers, worker_env
from tests.integration.test_poison_messages import deadletters
from worker.owners import key_id
from worker.settings import load_settings
from worker.standin.palette import make_image
from worker.standin.sglang_standin import SGLangStandIn

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests" / "node"
VIOLENCE = "O2: Violence, Harm, or Cruelty"


@pytest.fixture(scope="module")
def node() -> str:
    """The `node` binary with tests/node's pinned packages installed (`npm ci` when node_modules is missing).

    Missing Node.js fails the test: ops/setup.sh installs it, so its absence is a broken machine, not a skip."""
    node_bin, npm_bin = shutil.which("node"), shutil.which("npm")
    if node_bin is None or npm_bin is None:
        pytest.fail("node and npm are needed (ops/test.sh installs the Debian packages nodejs and npm)")
    if not (NODE_DIR / "node_modules" / "celery-node").is_dir():
        subprocess.run([npm_bin, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR, check=True,
                       timeout=300)
    return node_bin


def run_node(node: str, spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run([node, str(NODE_DIR / "enqueue.js")], input=json.dumps(spec), capture_output=True,
                          text=True, timeout=60, env={k: v for k, v in os.environ.items() if k != "NODE_OPTIONS"})
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_a_node_producer_enqueues_by_the_contract_and_reads_its_verdicts(
    node: str, fresh_redis: str, tmp_path: Path,
) -> None:
    with SGLangStandIn("127.0.0.1", 0, service_time_s=0.01, fail_first=1) as standin:  # one 503: one retry
        enqueue_then_judge(node, fresh_redis, standin.url, tmp_path)


def enqueue_then_judge(node: str, fresh_redis: str, standin_url: str, tmp_path: Path) -> None:
    image = base64.b64encode(make_image("O2", size=(32, 32), fmt="PNG")).decode()
    owner = key_id(API_KEY)
    requests = {
        "plain": {"id": "node-plain-1", "image": {"data": image}, "owner": owner, "metadata": {"from": "node"}},
        "urgent-ish": {"id": "node-prio-5", "image": {"data": image}, "priority": 5, "owner": owner},
        "lowest": {"id": "node-prio-0", "image": {"data": image}, "priority": 0},
        "unknown-task": {"id": "node-unknown-task", "image": {"data": image}},
        "no-id": {"image": {"data": image}, "metadata": {"why": "no id"}},
    }
    spec = {"redis_url": fresh_redis, "keyed": [{"owner": None, "key": "order-17"}], "submit": [
        {"request": requests["plain"]}, {"request": requests["urgent-ish"]}, {"request": requests["lowest"]},
        {"request": requests["unknown-task"], "task": "llavaguard.moderate_v2"}, {"request": requests["no-id"]},
        {"request": requests["plain"]},  # the same id again: its marker exists, nothing is enqueued twice
    ]}
    settings = {"redis_url": fresh_redis, "sglang_url": standin_url, "store_url": f"sqlite:///{tmp_path}/v.db",
                "retry_backoff_base_s": "0.2"}
    r = redis.Redis.from_url(fresh_redis)

    result = run_node(node, spec)
    assert result["enqueued"] == [True, True, True, True, True, False]
    assert result["keyed_ids"] == [keyed_moderation_id(IdSecret(r).get(), None, "order-17")]
    assert r.llen("realtime") == 3 and r.llen("realtime:3") == 1 and r.llen("realtime:9") == 1
    assert r.get("llavaguard:submitted:node-prio-5") == b"realtime"
    assert 604790 < r.ttl("llavaguard:submitted:node-prio-5") <= 604800

    api_settings = load_settings(**settings, api_keys=API_KEY)
    with running_api(api_settings) as url, httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"},
                                                       timeout=10) as api:
        queued = api.get("/v1/moderations/node-plain-1")
        assert queued.status_code == 200 and queued.json() == {"id": "node-plain-1", "status": "pending"}
        env = {**worker_env(**settings), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
        client = ModerationClient(settings=load_settings(**settings))
        with running_workers(env, tmp_path / "logs", count=1, concurrency=2) as (worker,):
            verdicts = {name: client.wait(str(req["id"]), timeout=60)
                        for name, req in requests.items() if "id" in req}
            letters = wait_for_letters(r)
            judged = api.get("/v1/moderations/node-prio-5").json()
            log = worker.output()
        client.close()

    assert "moderation.retry" in log, "the stand-in's 503 was not retried"  # republished from delivery_info
    for name in ("plain", "urgent-ish", "lowest"):
        assert verdicts[name].status == "completed" and verdicts[name].category == VIOLENCE, verdicts[name]
    assert verdicts["plain"].metadata == {"from": "node"} and verdicts["plain"].owner == owner
    assert judged["status"] == "completed" and judged["rating"] == "Unsafe"
    failed = verdicts["unknown-task"]
    assert failed.status == "failed" and failed.error is not None and failed.error.code == "request_invalid"
    assert "unknown_task" in failed.error.message
    missing = [e for e in letters if e["reason"] == "missing_id"]
    assert len(missing) == 1 and json.loads(missing[0]["raw"])["metadata"] == {"why": "no id"}, letters
    assert r.llen("realtime") == 0 and r.llen("realtime:3") == 0 and r.llen("realtime:9") == 0


def wait_for_letters(r: redis.Redis[bytes], timeout_s: float = 30) -> list[dict[str, Any]]:
    """The dead letters once both expected ones (the unknown task, the payload without id) are stored."""
    deadline = time.monotonic() + timeout_s
    while True:
        letters = deadletters(r)
        if len(letters) >= 2 or time.monotonic() > deadline:
            return letters
        time.sleep(0.1)


def js_block(markdown: Path, after: str) -> str:
    """The first ```js block after the heading `after`."""
    text = markdown.read_text(encoding="utf-8")
    found = re.search(r"```js\n(.*?)```", text[text.index(after):], flags=re.DOTALL)
    assert found, f"no js snippet after {after!r} in {markdown.name}"
    return found.group(1)


def test_the_readme_snippet_runs_as_written_and_matches_the_contract(
    node: str, fresh_redis: str, tmp_path: Path,
) -> None:
    snippet = js_block(ROOT / "README.md", "### From another language")
    assert snippet == js_block(ROOT / "docs" / "wire-contract.md", "## Worked example")
    script = tmp_path / "snippet.js"
    script.write_text(snippet + f"""
(async () => {{
  const client = createClient({json.dumps(fresh_redis)}, {json.dumps(fresh_redis)}, "realtime");
  console.log(await moderate(client, "https://cdn.example.com/u/1.jpg"));
  await client.disconnect();
}})();
""", encoding="utf-8")
    done = subprocess.run([node, str(script)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "NODE_PATH": str(NODE_DIR / "node_modules")})
    assert done.returncode == 0, done.stderr
    moderation_id = done.stdout.strip()
    r = redis.Redis.from_url(fresh_redis)
    assert re.fullmatch(r"[0-9a-f]{32}", moderation_id)
    assert r.get(f"llavaguard:submitted:{moderation_id}") == b"realtime"
    (raw,) = r.lrange("realtime:3", 0, -1)
    envelope = json.loads(raw)
    assert envelope["headers"]["task"] == "llavaguard.moderate"
    assert envelope["properties"]["delivery_info"] == {"exchange": "", "routing_key": "realtime"}
    args, kwargs, _ = json.loads(base64.b64decode(envelope["body"]))
    assert args == [{"id": moderation_id, "image": {"url": "https://cdn.example.com/u/1.jpg"}, "priority": 5}]
    assert kwargs == {}
