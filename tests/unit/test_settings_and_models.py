from __future__ import annotations

import ipaddress
import json
import random
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from worker.errors import SettingsError
from worker.models import ErrorInfo, ImageInfo, ImageRef, ModerationRequest, PolicyRef, Verdict
from worker.retry import backoff_delay_s
from worker.settings import load_settings

VERDICT_FIELDS = {
    "id", "status", "rating", "category", "rationale", "policy", "model", "image", "error", "metadata",
    "created_at", "completed_at", "owner", "backend", "constraint", "score", "score_source", "audit",
    "category_scores", "decision", "thresholds", "review", "match", "frames",
}


def test_defaults_match_the_documented_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("REDIS_URL", "SGLANG_URL", "STORE_URL", "ALLOWED_NETWORKS"):
        monkeypatch.delenv(f"LLAVAGUARD_{var}", raising=False)
    settings = load_settings()
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.sglang_url == "http://localhost:30000"
    assert settings.store_url == "sqlite:///./verdicts.db"
    assert settings.allowed_networks == []


def test_allowed_networks_are_comma_separated_cidrs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLAVAGUARD_ALLOWED_NETWORKS", "127.0.0.1/32, ::1/128")
    assert load_settings().allowed_networks == [
        ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128")
    ]


@pytest.mark.parametrize(
    ("var", "value"),
    [("ALLOWED_NETWORKS", "10.0.0.0/33"), ("MAX_IMAGE_BYTES", "lots"), ("INFLIGHT_WINDOW", "0"),
     ("RETRY_BACKOFF_MAX_S", "86400")],
)
def test_a_bad_setting_names_its_variable(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(f"LLAVAGUARD_{var}", value)
    with pytest.raises(SettingsError) as exc:
        load_settings()
    message = str(exc.value)
    assert message.startswith(f"LLAVAGUARD_{var}:") and "\n" not in message


def test_cli_fails_at_start_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"LLAVAGUARD_INFLIGHT_WINDOW": "many", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "producers.cli", "worker"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "LLAVAGUARD_INFLIGHT_WINDOW" in done.stderr


def test_verdict_has_exactly_the_contract_fields_and_round_trips() -> None:
    now = datetime.now(UTC)
    verdict = Verdict(
        id="m1", status="completed", rating="Unsafe", category="O4: Nudity Content", rationale="r",
        policy=PolicyRef(name="llavaguard-v1.2", sha256="ab"), model="m",
        image=ImageInfo(sha256="cd", width=1, height=2, format="PNG", source="s3://b/k"),
        metadata={"a": [1, {"b": None}]}, created_at=now, completed_at=now,
    )
    body = json.loads(verdict.model_dump_json())
    assert set(body) == VERDICT_FIELDS
    assert set(body["image"]) == {"sha256", "width", "height", "format", "source", "pdq", "pdq_quality"}
    assert set(body["policy"]) == {"name", "sha256"}
    assert Verdict.model_validate_json(verdict.model_dump_json()) == verdict


def test_verdict_status_must_agree_with_its_fields() -> None:
    now = datetime.now(UTC)
    common = {"id": "x", "policy": PolicyRef(name="p"), "image": ImageInfo(), "created_at": now, "completed_at": now}
    with pytest.raises(ValueError, match="completed"):
        Verdict(status="completed", **common)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="failed"):
        Verdict(status="failed", **common)  # type: ignore[arg-type]
    Verdict(status="failed", error=ErrorInfo(code="image_empty", message="m"), **common)  # type: ignore[arg-type]


def test_request_carries_inline_bytes_as_base64_json() -> None:
    request = ModerationRequest(id="m1", image=ImageRef(data=b"\x89PNG\x00"), non_violating=["o6", "O2", "O6"])
    assert request.non_violating == ["O2", "O6"]
    again = ModerationRequest.model_validate(json.loads(request.model_dump_json()))
    assert again.image.data == b"\x89PNG\x00" and again.image.source is None
    with pytest.raises(ValueError):
        ModerationRequest(id="m1", image=ImageRef(url="https://x/y.png"), non_violating=["O11"])
    with pytest.raises(ValueError):
        ImageRef(url="https://x", data=b"1")


def test_backoff_grows_is_capped_jittered_and_honours_retry_after() -> None:
    rng = random.Random(7)
    delays = [backoff_delay_s(n, base_s=1, cap_s=60, rng=rng) for n in range(12)]
    assert all(0.5 * min(60, 2**n) <= d <= min(60, 2**n) for n, d in enumerate(delays))
    assert max(delays) <= 60
    assert len({round(d, 6) for d in delays[8:]}) > 1  # jitter: capped delays still differ
    assert backoff_delay_s(0, base_s=1, cap_s=60, retry_after_s=30, rng=rng) == 30
    assert backoff_delay_s(0, base_s=1, cap_s=60, retry_after_s=3600, rng=rng) == 60
