from __future__ import annotations

from pathlib import Path

import pytest
from runner_harness import Runner, make_runner  # also puts job_images/runner on sys.path


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    return make_runner(tmp_path)
