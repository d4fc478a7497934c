"""The operator image runs what the tests run, as the chart expects: read from the Dockerfile
(the image itself is built and run on the real node, tests/realnode)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "operator" / "Dockerfile").read_text()
VALUES = yaml.safe_load((REPO / "charts" / "stoker" / "values.yaml").read_text())


def instructions(keyword: str, text: str = DOCKERFILE) -> list[str]:
    return re.findall(rf"^{keyword}\s+(.+)$", text, flags=re.MULTILINE)


def final_stage() -> str:
    return re.split(r"^FROM\s.*$", DOCKERFILE, flags=re.MULTILINE)[-1]


def test_both_stages_start_from_the_base_build_argument() -> None:
    # The public base by default; hack/images.sh passes its local Debian base.
    assert DOCKERFILE.index("\nARG BASE_IMAGE=python:3.11-slim") < DOCKERFILE.index("\nFROM ")
    assert instructions("FROM") == ["${BASE_IMAGE} AS build", "${BASE_IMAGE}"]


def test_installs_the_locked_dependencies_by_hash() -> None:
    assert "--require-hashes -r requirements-runtime.lock" in DOCKERFILE
    assert "requirements-runtime.lock" in instructions("COPY")[0]


def test_build_only_proxy_certificate_stays_out_of_the_image() -> None:
    # PIP_CERT is a build argument of the build stage only: nothing of it reaches the image.
    assert "ARG PIP_CERT" in DOCKERFILE
    assert "PIP_CERT" not in final_stage()


def test_runs_the_operator_as_the_chart_s_user() -> None:
    (entrypoint,) = instructions("ENTRYPOINT")
    assert json.loads(entrypoint) == ["stoker", "operator"]
    (user,) = instructions("USER")
    security = VALUES["podSecurityContext"]
    assert user == f"{security['runAsUser']}:{security['runAsGroup']}"


def test_exposes_the_chart_s_ports() -> None:
    (exposed,) = instructions("EXPOSE")
    assert {int(p) for p in exposed.split()} == {
        VALUES["metrics"]["port"],
        VALUES["health"]["port"],
    }
