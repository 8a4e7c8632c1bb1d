"""A real worker decides allow | review | block from the stand-in's exact scores (issue 11 items 1-2).

One worker, two sets of thresholds: the settings for the default policy, a sidecar file for the named policy
`strict`. The stand-in's scores are its documented rule (worker/standin/logprobs.py): 0.99 on a palette colour,
0.05 less per whole 5 RGB units off it, never below 0.51; so each image below sits at a known score, on either
side of a threshold or inside a review band. A bad sidecar stops the worker at start.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from producers import ModerationClient
from tests.harness import running_workers, worker_env
from worker.policy import default_policy_text
from worker.settings import load_settings
from worker.standin.palette import make_image
from worker.standin.sglang_standin import SGLangStandIn

O1, O2, O4, O5 = ("O1: Hate, Humiliation, Harassment", "O2: Violence, Harm, or Cruelty", "O4: Nudity Content",
                  "O5: Criminal Planning")
STRICT = {"unsafe": 0.95, "review": [0.55, 0.6], "categories": {"O4": {"unsafe": 0.5, "review": None}}}


def solid(rgb: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), rgb).save(buffer, format="PNG")
    return buffer.getvalue()


IMAGES = {
    "red": make_image("O1"),  # O1 Unsafe 0.99
    "off-red": solid((255, 42, 0)),  # 42 units off red: O1 Unsafe 0.59
    "far-red": solid((200, 60, 60)),  # far off the palette: O1 Unsafe 0.51, the floor
    "off-yellow": solid((255, 255, 42)),  # 42 units off yellow: O4 Unsafe 0.59
    "blue-grey": solid((128, 128, 160)),  # 32 units off grey: NA Safe, score 0.31
    "grey": make_image("NA"),  # NA Safe, score 0.01
}
SCORES = {"red": 0.99, "off-red": 0.59, "far-red": 0.51, "off-yellow": 0.59, "blue-grey": 0.31, "grey": 0.01}
# LLAVAGUARD_UNSAFE_THRESHOLD=0.55, LLAVAGUARD_REVIEW_BAND=0.3,0.35 on the default policy:
BY_SETTINGS = {"red": "block", "off-red": "block", "far-red": "allow", "off-yellow": "block", "blue-grey": "review",
               "grey": "allow"}
# strict.thresholds.json (STRICT): block at 0.95, review in [0.55, 0.6]; O4 blocks at 0.5 and has no band.
BY_SIDECAR = {"red": "block", "off-red": "review", "far-red": "allow", "off-yellow": "block", "blue-grey": "allow",
              "grey": "allow"}


def test_exact_scores_decided_by_settings_and_by_a_sidecar(fresh_redis: str, tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "strict.txt").write_text(default_policy_text(), encoding="utf-8")
    (policies / "strict.thresholds.json").write_text(json.dumps(STRICT), encoding="utf-8")
    with SGLangStandIn("127.0.0.1", 0, service_time_s=0.0) as server:
        settings = {"redis_url": fresh_redis, "sglang_url": server.url, "store_url": f"sqlite:///{tmp_path}/v.db",
                    "policy_dir": str(policies), "unsafe_threshold": "0.55", "review_band": "0.3,0.35"}
        with running_workers(worker_env(**settings), tmp_path, count=1, concurrency=4):
            with ModerationClient(settings=load_settings(**settings)) as client:
                default = {name: client.submit(image) for name, image in IMAGES.items()}
                strict = {name: client.submit(image, policy="strict") for name, image in IMAGES.items()}
                by_default = {name: client.wait(id, timeout=60) for name, id in default.items()}
                by_strict = {name: client.wait(id, timeout=60) for name, id in strict.items()}
    for name, verdict in by_default.items():
        assert verdict.score == pytest.approx(SCORES[name], abs=1e-9), name
        assert verdict.decision == BY_SETTINGS[name], name
        assert verdict.thresholds == {"source": "settings", "unsafe": 0.55, "review": [0.3, 0.35]}
    for name, verdict in by_strict.items():
        assert verdict.score == pytest.approx(SCORES[name], abs=1e-9), name
        assert verdict.decision == BY_SIDECAR[name], name
    assert by_strict["off-red"].thresholds == {"source": "sidecar:strict.thresholds.json", "unsafe": 0.95,
                                               "review": [0.55, 0.6]}
    assert by_strict["off-yellow"].thresholds == {"source": "sidecar:strict.thresholds.json", "unsafe": 0.5,
                                                  "review": None, "category": "O4"}
    # The model's answer stays as it said it: Unsafe, yet allowed under these thresholds.
    assert (by_default["far-red"].rating, by_default["far-red"].decision) == ("Unsafe", "allow")
    assert by_default["off-red"].category_scores == pytest.approx({O1: 0.59, O2: 0.41}, abs=1e-9)
    assert by_default["off-yellow"].category_scores == pytest.approx({O4: 0.59, O5: 0.41}, abs=1e-9)
    assert by_default["grey"].category_scores == {"NA: None applying": 1.0}


def test_a_bad_sidecar_stops_the_worker_at_start(fresh_redis: str, tmp_path: Path) -> None:
    (tmp_path / "strict.txt").write_text("a policy", encoding="utf-8")
    (tmp_path / "strict.thresholds.json").write_text('{"unsafe": 0.5, "categories": {"O12": {}}}', encoding="utf-8")
    env = worker_env(redis_url=fresh_redis, store_url=f"sqlite:///{tmp_path}/v.db", policy_dir=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "producers.cli", "worker"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2
    assert "strict.thresholds.json: categories: Value error, unknown category 'O12'" in done.stderr
    assert "Traceback" not in done.stderr
