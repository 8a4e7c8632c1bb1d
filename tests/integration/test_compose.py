"""The deployment files: Debian's docker-compose accepts every combination, and the variants stay in step.

No Docker engine runs here, so `docker-compose config` (which validates and resolves without one) is as far
as a test can go. A missing docker-compose fails: `ops/test.sh` installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BASE = ("-f", "docker-compose.yml")
FILES = {
    "gpu": BASE,
    "multi-gpu": (*BASE, "-f", "ops/compose/multi-gpu.yml"),
    "cpu": ("--project-directory", ".", "-f", "ops/compose/cpu.yml"),
}
PROFILES = ("--profile", "api", "--profile", "s3", "--profile", "monitoring", "--profile", "tools")


def compose(*args: str) -> str:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: apt-get install docker-compose (ops/test.sh does)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "LLAVAGUARD_", "DOCKER_"))}
    done = subprocess.run([binary, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def services(name: str) -> dict[str, Any]:
    parsed: dict[str, Any] = yaml.safe_load(compose(*FILES[name], *PROFILES, "config"))
    return parsed["services"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", FILES)
def test_docker_compose_accepts_the_files(name: str) -> None:
    compose(*FILES[name], "config", "-q")
    compose(*FILES[name], *PROFILES, "config", "-q")


def test_base_file_has_what_a_gpu_host_needs() -> None:
    base = services("gpu")
    assert base["redis"]["command"][1:] == [
        "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction"
    ]
    sglang = base["sglang"]
    assert sglang["image"].startswith("lmsysorg/sglang:v")
    assert " ".join(sglang["command"]) == (
        "python3 -m sglang.launch_server --model-path AIML-TUDA/LlavaGuard-v1.2-0.5B-OV --chat-template chatml-llava"
        " --host 0.0.0.0 --port 30000 --enable-metrics"
    )
    assert sglang["ipc"] == "host" and sglang["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    worker = base["worker"]
    assert set(worker["depends_on"]) >= {"redis", "sglang"}
    assert all(dep["condition"] == "service_healthy" for dep in worker["depends_on"].values())
    assert worker["healthcheck"]["test"] == ["CMD", "llavaguard", "health"]
    assert "container_name" not in worker and "ports" not in worker  # `--scale worker=N` needs both absent
    assert worker["mem_limit"] in ("4g", 4 * 1024**3, "4294967296")  # a crash-looping OOM otherwise takes the host
    assert base["api"]["command"] == ["api", "--host", "0.0.0.0", "--port", "8000"]


def test_seven_b_model_is_one_variable_away() -> None:
    env = {"LLAVAGUARD_MODEL": "AIML-TUDA/LlavaGuard-v1.2-7B-OV"}
    binary = shutil.which("docker-compose")
    assert binary
    done = subprocess.run([binary, *BASE, "config"], cwd=ROOT, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=120, check=True)
    assert "AIML-TUDA/LlavaGuard-v1.2-7B-OV" in yaml.safe_load(done.stdout)["services"]["sglang"]["command"]


def test_cpu_file_is_the_base_file_with_a_labelled_standin() -> None:
    base, cpu = services("gpu"), services("cpu")
    for name, definition in cpu.items():
        if name != "sglang":
            assert definition == base[name], f"ops/compose/cpu.yml: {name} differs from docker-compose.yml"
    standin = cpu["sglang"]
    assert standin["command"][0] == "standin" and "deploy" not in standin
    assert standin["labels"]["org.llavaguard.synthetic"] == "true"
    assert "NOT LlavaGuard" in standin["labels"]["org.llavaguard.note"]


def test_multi_gpu_file_adds_a_second_server_with_its_own_workers() -> None:
    base = services("gpu")
    multi = services("multi-gpu")
    server, worker = multi["sglang-gpu1"], multi["worker-gpu1"]
    assert server["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["1"]
    assert base["sglang"]["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["0"]
    assert without(server, "deploy") == without(base["sglang"], "deploy")
    assert worker["environment"]["LLAVAGUARD_SGLANG_URL"] == "http://sglang-gpu1:30000"
    assert "sglang-gpu1" in worker["depends_on"] and "sglang" not in worker["depends_on"]
    url = "LLAVAGUARD_SGLANG_URL"
    assert without(worker["environment"], url) == without(base["worker"]["environment"], url)
    skip = ("environment", "depends_on", "build")
    assert without(worker, *skip) == without(base["worker"], *skip)


def without(mapping: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in mapping.items() if k not in keys}


def test_flower_is_monitoring_with_credentials_from_the_shell_only() -> None:
    """Issue 9: Flower needs only the broker URL now; its entrypoint refuses an empty FLOWER_BASIC_AUTH
    (tests/integration/test_flower.py runs that entrypoint against real workers)."""
    for name in ("gpu", "cpu"):
        flower = services(name)["flower"]
        assert flower["profiles"] == ["monitoring"]
        assert flower["environment"]["FLOWER_BASIC_AUTH"] is None  # passed through from the shell, no default
        assert flower["environment"]["CELERY_BROKER_URL"] == "redis://redis:6379/0"
        assert flower["entrypoint"][:2] == ["sh", "-c"] and "exit 64" in flower["entrypoint"][2]
