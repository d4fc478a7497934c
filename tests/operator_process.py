"""The operator as a real process (`python -m stoker.cli operator`), for tests and benchmarks.

Crash tests kill it with SIGKILL and start it again; the Lease identity stays the same, so the
new process takes the lead at once. It dies with the process that started it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from harness import REPO, Cluster, wait_for

GROUP, VERSION = "stoker.dev", "v1alpha1"
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # The operator must never outlive the test session, however the session ends.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Operator:
    def __init__(self, cluster: Cluster, log_path: Path, env: dict[str, str] | None = None):
        self.cluster, self.log_path = cluster, log_path
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.env = {
            **os.environ,
            "KUBECONFIG": str(cluster.kubeconfig),
            "STOKER_METRICS_PORT": str(self.metrics_port),
            "STOKER_HEALTH_PORT": str(self.health_port),
            "STOKER_LEASE_NAMESPACE": "default",
            "STOKER_IDENTITY": "stoker-test",
            # A short Lease keeps failover tests quick; production keeps the 15 s default. Its
            # renew deadline (2/3) still leaves room for a slow renewal on a busy machine.
            "STOKER_LEASE_DURATION": "10s",
            "STOKER_API_QPS": "500",
            "STOKER_API_BURST": "1000",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> None:
        """Start the process; with `wait`, return once it leads (a standby serves its metrics
        endpoint too, with stoker_leader 0)."""
        assert self.proc is None or self.proc.poll() is not None
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stoker.cli", "operator", "--log-level", "info"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            preexec_fn=_die_with_parent,
        )
        if wait:
            wait_for(self.leading, timeout=60, description="the operator taking the lead")

    def serving(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"operator exited {self.proc.returncode}; see {self.log_path}")
        try:
            with socket.create_connection(("127.0.0.1", self.metrics_port), timeout=0.5):
                return True
        except OSError:
            return False

    def leading(self) -> bool:
        """Serving, and the holder of the Lease (stoker_leader 1)."""
        return self.serving() and "\nstoker_leader 1.0" in self.metrics()

    def healthz(self) -> int:
        """The HTTP status of the liveness endpoint (0 when it does not answer)."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.health_port}/healthz", timeout=5
            ) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return int(e.code)
        except OSError:
            return 0

    def kill(self) -> None:
        """SIGKILL: no cleanup, as in a crash or a node loss."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def metrics(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as r:
            return str(r.read().decode())
