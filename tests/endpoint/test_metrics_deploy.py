"""deploy/: the example scrape configuration and the alert rules.

With promtool (Debian package prometheus) the files are checked and the rules
unit-tested by Prometheus itself; without it they are at least parsed, and every
series a rule reads must be one the endpoint exposes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from tlsendpoint.metrics import EndpointMetrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "albatross-alerts.yml"


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def _exposed() -> set[str]:
    registry = CollectorRegistry()
    EndpointMetrics(registry, security=True)
    return {family.name for family in registry.collect()}


def test_the_rules_read_only_series_the_endpoint_exposes() -> None:
    groups = _load(RULES)["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} == {
        "AlbatrossDelegationNearQuota",
        "AlbatrossDelegationExpiresSoon",
    }
    exposed = _exposed()
    for rule in rules:
        names = set(re.findall(r"albatross_[a-z_]+", rule["expr"]))
        assert names, rule["alert"]
        assert names <= exposed, (rule["alert"], names - exposed)
    near_quota = next(r for r in rules if r["alert"] == "AlbatrossDelegationNearQuota")
    assert "> 0.9" in near_quota["expr"]
    expires = next(r for r in rules if r["alert"] == "AlbatrossDelegationExpiresSoon")
    assert "14 * 86400" in expires["expr"]


def test_the_scrape_configuration_loads_the_rules() -> None:
    config = _load(DEPLOY / "prometheus.yml")
    assert config["rule_files"] == [RULES.name]
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["127.0.0.1:9464"]


@pytest.mark.parametrize(
    "args",
    [
        ["check", "rules", "albatross-alerts.yml"],
        ["check", "config", "prometheus.yml"],
        ["test", "rules", "albatross-alerts.test.yml"],
    ],
)
def test_promtool_accepts_the_files(args: list[str]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    result = subprocess.run(
        [promtool, *args], cwd=DEPLOY, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
