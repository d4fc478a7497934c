"""The image runs what the tests run: checked by reading the Dockerfile (no Docker here)."""

from __future__ import annotations

import json
import re

from runner_harness import RUNNER_DIR, RUNNER_MODULE

DOCKERFILE = (RUNNER_DIR / "Dockerfile").read_text()


def instructions(keyword: str) -> list[str]:
    return re.findall(rf"^{keyword}\s+(.+)$", DOCKERFILE, flags=re.MULTILINE)


def test_entrypoint_runs_the_runner_module_in_exec_form() -> None:
    # Exec form keeps python as PID 1, so it receives the kubelet's SIGTERM.
    (entrypoint,) = instructions("ENTRYPOINT")
    assert json.loads(entrypoint) == ["python", "-m", RUNNER_MODULE]


def test_base_is_python_311_slim_unless_a_build_argument_names_another() -> None:
    # Published builds get the public base; hack/images.sh passes its local Debian base.
    assert instructions("ARG") == ["BASE_IMAGE=python:3.11-slim", 'PIP_CERT=""']
    assert instructions("FROM") == ["${BASE_IMAGE}"]
    assert DOCKERFILE.index("\nARG BASE_IMAGE") < DOCKERFILE.index("\nFROM ")


def test_copies_the_runner_and_the_examples_onto_the_python_path() -> None:
    copies = [line.split() for line in instructions("COPY")]
    assert copies == [
        ["examples/requirements.txt", "/tmp/requirements.txt"],
        [f"{RUNNER_MODULE}/", f"/app/{RUNNER_MODULE}/"],
        ["examples/", "/app/examples/"],
    ]
    for source, _ in copies[1:]:
        assert (RUNNER_DIR / source / "__init__.py").is_file()
    assert "PYTHONPATH=/app" in DOCKERFILE


def test_runs_as_a_numeric_non_root_user() -> None:
    (user,) = instructions("USER")
    uid, _, gid = user.partition(":")
    assert int(uid) > 0
    assert int(gid) > 0


def test_the_examples_dependencies_install_pinned_by_hash_into_the_venv_on_path() -> None:
    assert "/opt/venv/bin/pip install --require-hashes -r /tmp/requirements.txt" in DOCKERFILE
    assert "PATH=/opt/venv/bin:$PATH" in DOCKERFILE
    requirements = (RUNNER_DIR / "examples" / "requirements.txt").read_text()
    pins = re.findall(r"^([a-z0-9-]+)==\S+ \\$", requirements, flags=re.MULTILINE)
    assert "pg8000" in pins
    assert requirements.count("--hash=sha256:") >= len(pins)
