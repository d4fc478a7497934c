"""The chart's alert rules, rendered by the pinned helm and unit-tested by the pinned promtool.

Each file in rules/ is a `promtool test rules` file for one alert, with a case where it fires
and one where it must not; the rules under test are the chart's PrometheusRule rendered with
default values, written next to a copy of the test file as rules.yaml.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import build_bin_dir

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "stoker"
RUNBOOKS = REPO / "docs" / "runbooks.md"
RULE_TESTS = sorted((Path(__file__).parent / "rules").glob("*.yaml"))


@pytest.fixture(scope="module")
def bin_dir() -> Path:
    return build_bin_dir()


def render_rules(bin_dir: Path, *values: str) -> dict[str, Any]:
    """The chart's PrometheusRule spec (a plain Prometheus rules file) for release stoker."""
    done = subprocess.run(
        [
            str(bin_dir / "helm"), "template", "stoker", str(CHART),
            "--namespace", "stoker-system", "--kube-version", "1.34.0",
            "--show-only", "templates/prometheusrule.yaml",
            "--set", "prometheusRule.enabled=true", *(a for v in values for a in ("--set", v)),
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    spec: dict[str, Any] = yaml.safe_load(done.stdout)["spec"]
    return spec


def rules_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in spec["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def rules_file(bin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump(render_rules(bin_dir)))
    return path


def promtool(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "promtool"), *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def test_promtool_accepts_the_rules(bin_dir: Path, rules_file: Path) -> None:
    done = promtool(bin_dir, "check", "rules", rules_file.name, cwd=rules_file.parent)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=[p.stem for p in RULE_TESTS])
def test_promtool_rule_tests(bin_dir: Path, rules_file: Path, test_file: Path) -> None:
    shutil.copy(test_file, rules_file.parent / test_file.name)
    done = promtool(bin_dir, "test", "rules", test_file.name, cwd=rules_file.parent)
    assert done.returncode == 0, done.stdout + done.stderr


def _cases(alert: str) -> list[list[Any]]:
    """The exp_alerts of every promtool case that evaluates `alert`."""
    return [
        case["exp_alerts"]
        for path in RULE_TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test["alert_rule_test"]
        if case["alertname"] == alert
    ]


def test_every_alert_has_a_firing_and_a_quiet_case(bin_dir: Path) -> None:
    for alert in {rule["alert"] for rule in rules_of(render_rules(bin_dir))}:
        cases = _cases(alert)
        assert any(cases), f"{alert}: no promtool case where it fires"
        assert not all(cases), f"{alert}: no promtool case where it stays quiet"


def test_every_alert_waits_and_links_its_runbook(bin_dir: Path) -> None:
    anchors = {
        re.sub(r"[^a-z0-9-]", "", line[3:].strip().lower().replace(" ", "-"))
        for line in RUNBOOKS.read_text().splitlines()
        if line.startswith("## ")
    }
    for rule in rules_of(render_rules(bin_dir, "prometheusRule.runbookUrl=https://x/rb.md")):
        name = rule["alert"]
        assert re.fullmatch(r"[1-9][0-9]*[smhd]", rule.get("for", "")), f"{name}: no for:"
        url = rule["annotations"]["runbook_url"]
        assert url == f"https://x/rb.md#{name.lower()}", name
        assert name.lower() in anchors, f"{name}: no section in docs/runbooks.md"


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("jobsFailingMinFinished=25", ">= 25"),
        ("jobsStuckEnqueuedAfter=90m", "> 5400"),
        ("recurringNotSucceededFor=2d", "> 172800"),
    ],
)
def test_thresholds_come_from_values(bin_dir: Path, value: str, needle: str) -> None:
    exprs = [rule["expr"] for rule in rules_of(render_rules(bin_dir, f"prometheusRule.{value}"))]
    assert any(needle in expr for expr in exprs), (value, needle)


def test_never_succeeded_waits_the_configured_time(bin_dir: Path) -> None:
    rules = rules_of(render_rules(bin_dir, "prometheusRule.recurringNotSucceededFor=3h"))
    waits = {r["for"] for r in rules if r["alert"] == "StokerRecurringJobNotSucceeded"}
    assert waits == {"5m", "3h"}


@pytest.mark.parametrize(
    "value",
    [
        # The rules turn these into seconds, which needs one number and one unit.
        "prometheusRule.jobsStuckEnqueuedAfter=1h30m",
        "prometheusRule.recurringNotSucceededFor=daily",
        "prometheusRule.jobsFailingMinFinished=0",
    ],
)
def test_refuses_values_the_rules_cannot_use(bin_dir: Path, value: str) -> None:
    done = subprocess.run(
        [str(bin_dir / "helm"), "template", "stoker", str(CHART), "--kube-version", "1.34.0",
         "--set", "prometheusRule.enabled=true", "--set", value],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and value.split(".")[1].split("=")[0] in done.stderr, value
