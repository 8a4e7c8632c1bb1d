"""A real `llavaguard api` process's stdout: JSON lines only, no API key, no query string, no local variables.

The key is sent the ways clients leak it (`?api_key=` in the URL, `Authorization: Bearer`), and a request
hits an unexpected error on a real path: a corrupt row in the verdict store makes reading it raise.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.harness import worker_env
from tests.services import free_port, stop_process
from worker.stores import SqlVerdictStore

API_KEY = "sk-llavaguard-api-7e2b90c4d1f3a685"
CORRUPT_ID = "0123456789abcdef0123456789abcdef"


def run_api(env: dict[str, str], tmp_path: Path) -> tuple[subprocess.Popen[bytes], str, Path, Path]:
    port = free_port()
    out, err = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "producers.cli", "api", "--port", str(port)],
                                env=env, stdout=stdout, stderr=stderr)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, err.read_text()
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return proc, url, out, err
        except httpx.TransportError:
            time.sleep(0.1)


def corrupt_a_verdict(database: Path) -> None:
    """A row whose body is not a verdict: reading it raises inside the store, an error no handler expects."""
    SqlVerdictStore(f"sqlite:///{database}").close()  # the schema, as the API will find it
    with sqlite3.connect(database) as conn:
        conn.execute("INSERT INTO verdicts (id, status, policy_name, created_at, completed_at, body)"
                     " VALUES (?, 'completed', 'llavaguard-v1.2', ?, ?, ?)",
                     (CORRUPT_ID, "2026-01-01 00:00:00", "2026-01-01 00:00:00", '{"not": "a verdict"}'))


def test_api_logs_are_redacted_json_lines(fresh_redis: str, tmp_path: Path) -> None:
    database = tmp_path / "v.db"
    env = worker_env(redis_url=fresh_redis, store_url=f"sqlite:///{database}", api_keys=API_KEY, log_level="DEBUG")
    corrupt_a_verdict(database)
    proc, url, out, err = run_api(env, tmp_path)
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30) as client:
            accepted = client.post(f"/v1/moderations?api_key={API_KEY}&token={API_KEY}",
                                   json={"image_url": "https://a.example/x.png"})
            failed = client.get(f"/v1/moderations/{CORRUPT_ID}?api_key={API_KEY}")
            deep = client.post("/v1/moderations/batch", content=b"[" * 100_000,
                               headers={"Content-Type": "application/json"})
            after = client.get(f"/v1/moderations/{accepted.json()['id']}")
    finally:
        stop_process(proc, timeout_s=30)

    assert accepted.status_code == 202 and after.status_code == 200
    assert failed.status_code == 500 and failed.headers["content-type"] == "application/problem+json"
    assert failed.json()["code"] == "internal_error" and "verdict" not in failed.text  # no details leak
    assert deep.status_code == 400 and deep.json()["code"] == "body_too_deep"

    text, errors = out.read_text(), err.read_text()
    assert API_KEY not in text + errors
    lines: list[dict[str, Any]] = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(isinstance(line, dict) and "event" in line and "level" in line for line in lines)
    assert not errors.strip(), errors  # nothing bypasses the JSON log (no uvicorn or rich output on stderr)

    access = [line for line in lines if line.get("logger") == "uvicorn.access"]
    assert any(f"GET /v1/moderations/{CORRUPT_ID} HTTP/1.1\" 500" in line["event"] for line in access)
    assert access and all("?" not in line["event"] for line in access)  # no query string, whatever it holds

    unexpected = [line for line in lines if line["event"] == "api.unexpected_error"]
    assert len(unexpected) == 1  # logged once: not again by Starlette or uvicorn
    assert not [line for line in lines if "Exception in ASGI application" in line["event"]]
    crash = unexpected[0]
    assert crash["error_type"] == "ValidationError" and crash["path"] == f"/v1/moderations/{CORRUPT_ID}"
    assert crash["exception"].startswith("Traceback (most recent call last):")
    assert "model_validate_json" in crash["exception"]  # the source line that raised, but no locals:
    for local_marker in ("credentials", "locals", "\u2502", "\u256d", "moderation_id ="):
        assert local_marker not in crash["exception"], local_marker
