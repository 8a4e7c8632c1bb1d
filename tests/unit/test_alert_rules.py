"""The Prometheus alert rules load and behave as their unit tests say (`promtool check/test rules`).

promtool comes from Debian's `prometheus` package (ops/test.sh installs it). A missing promtool fails, in CI
and everywhere else: nothing here skips. Also checks that every alert has a unit test, so a new rule
cannot be added untested, and that the alerts only name metrics the code defines.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import yaml

PROMETHEUS = Path(__file__).resolve().parents[2] / "ops" / "prometheus"
RULES = PROMETHEUS / "alerts.yml"
TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: apt-get install prometheus (ops/test.sh does)"
    return subprocess.run([binary, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60)


def alert_names() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def test_promtool_accepts_the_rules() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_passes_its_unit_tests() -> None:
    assert TESTS, "no rule tests under ops/prometheus/tests"
    done = promtool("test", "rules", *map(str, TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_firing_and_a_quiet_test() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert alert_names() <= fired, f"alerts never shown firing: {alert_names() - fired}"
    assert alert_names() <= quiet, f"alerts never shown quiet: {alert_names() - quiet}"


def test_alerts_name_only_metrics_the_code_defines() -> None:
    """A renamed metric would leave its alert silently evaluating nothing."""
    root = PROMETHEUS.parents[1]
    modules = ("worker/observability/metrics.py", "worker/observability/exporter.py", "producers/api/metrics.py")
    source = "".join((root / module).read_text() for module in modules)
    defined = set(re.findall(r'"(llavaguard_[a-z_]+)"', source))
    for name in set(re.findall(r"\b(llavaguard_[a-z_]+)", RULES.read_text())):
        assert name.removesuffix("_total") in defined, name
