"""Where the machine cannot host the real node, the scripts say why in one line (and the
cluster falls back to kwok's simulated node): checked as an unprivileged user."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NODE_SH = REPO / "hack" / "node.sh"


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    # As root, drop to nobody; as anyone else, run as is (not root either way).
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    return subprocess.run(
        [*(drop if os.geteuid() == 0 else []), *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_says_in_one_line_why_a_non_root_user_cannot_host_the_node() -> None:
    done = as_nobody(str(NODE_SH), "check")
    assert done.returncode == 1
    assert done.stdout.splitlines() == ["not root (containerd and the kubelet need root)"]


def test_up_refuses_before_touching_anything() -> None:
    done = as_nobody(str(NODE_SH), "up", "never-created")
    assert done.returncode == 1
    assert "cannot host a real node: not root" in done.stderr
