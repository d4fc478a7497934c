"""The local control plane for tests: start and stop it (hack/cluster.sh), run kubectl, wait.

A started cluster is deleted by a watchdog process as soon as the process that started it
ends, however it ends (a failing test, Ctrl-C, SIGKILL): the watchdog holds the read end of a
pipe whose write end only the starting process has, and runs `hack/cluster.sh down` on EOF.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

import kubernetes

REPO = Path(__file__).resolve().parents[1]
CLUSTER_SH = REPO / "hack" / "cluster.sh"
BUILD_SH = REPO / "hack" / "build-control-plane.sh"

# Cold builds take long; a warm `up` takes seconds.
UP_TIMEOUT = 3600.0
DOWN_TIMEOUT = 120.0

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """wait_for gave up; the message says what was awaited and what was seen last."""


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float,
    interval: float = 0.2,
    description: str | None = None,
) -> T:
    """Call predicate until it returns a truthy value, and return that value.

    Raises WaitTimeout after `timeout` seconds, naming `description` (default: the
    predicate's name) and the last value returned. Exceptions from predicate propagate.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = description or getattr(predicate, "__name__", repr(predicate))
            raise WaitTimeout(f"timed out after {timeout}s waiting for {what}; last: {value!r}")
        time.sleep(interval)


class KubectlError(RuntimeError):
    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        super().__init__(f"{shlex.join(args)} exited {returncode}: {stderr.strip()}")
        self.returncode = returncode
        self.stderr = stderr


@dataclass(frozen=True)
class Cluster:
    """A reachable control plane.

    audit_log is None for a cluster this session did not start, unless STOKER_TEST_AUDIT_LOG
    names it. real_node names the real (kubelet + containerd) node, None where the machine
    could not host one; pod_apiserver is where pods reach the apiserver ("host:port"; the
    local apiserver listens on 127.0.0.1 and there is no kube-proxy).
    """

    name: str
    kubeconfig: Path
    bin_dir: Path
    audit_log: Path | None
    real_node: str | None = None
    pod_apiserver: str | None = None
    # The watchdog that deletes the cluster; None for a cluster the session only uses.
    _watchdog: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def owned(self) -> bool:
        return self._watchdog is not None

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 60.0) -> str:
        """Run kubectl against the cluster; return stdout, raise KubectlError on failure."""
        argv = [str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args]
        done = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise KubectlError(argv, done.returncode, done.stderr)
        return done.stdout

    def api_client(self, user_agent: str | None = None) -> kubernetes.client.ApiClient:
        """A kubernetes (sync) client authenticated as the cluster admin."""
        client: kubernetes.client.ApiClient = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig)
        )
        if user_agent is not None:
            client.user_agent = user_agent
        return client


def create_namespace(cluster: Cluster, prefix: str = "t-") -> str:
    """A fresh namespace that accepts pods: they are refused until the controller-manager has
    created its default ServiceAccount."""
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    cluster.kubectl("create", "namespace", name)

    def default_service_account() -> bool:
        try:
            cluster.kubectl("get", "serviceaccount", "default", "--namespace", name)
        except KubectlError:
            return False
        return True

    wait_for(default_service_account, timeout=30, description=f"ServiceAccount {name}/default")
    return name


def apply_crds(cluster: Cluster) -> None:
    """Apply crds/ (server-side, taking over fields from earlier appliers) and wait until the
    API server serves them."""
    crds = str(REPO / "crds")
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", crds)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", crds)


def parse_env(text: str) -> dict[str, str]:
    """The variables of `hack/cluster.sh env` output (lines `export NAME=VALUE`)."""
    env: dict[str, str] = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, _, value = words[1].partition("=")
            env[key] = value
    return env


def build_bin_dir() -> Path:
    """The bin dir of the pinned control plane (builds it on first use)."""
    done = subprocess.run(
        [str(BUILD_SH)], stdout=subprocess.PIPE, text=True, timeout=UP_TIMEOUT, check=True
    )
    return Path(done.stdout.strip().splitlines()[-1])


def start_cluster(name: str, real_node: bool = False) -> Cluster:
    """Start (or reuse) the cluster `name`; it is deleted by stop_cluster or when we exit.

    With real_node, the cluster also gets the real (kubelet + containerd) node, where this
    machine can host one (hack/node.sh check); without, kwok's simulated node only, which is
    all most tests need and starts faster.
    """
    watchdog = subprocess.Popen(
        [sys.executable, __file__, "watchdog", name],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        # Its own session: a signal sent to our process group must not stop the cleanup.
        start_new_session=True,
    )
    try:
        done = subprocess.run(
            [str(CLUSTER_SH), "up", name],
            stdout=subprocess.PIPE,
            text=True,
            timeout=UP_TIMEOUT,
            check=True,
            env={**os.environ, "STOKER_REAL_NODE": "1" if real_node else "0"},
        )
    except BaseException:
        _stop_watchdog(watchdog)
        raise
    env = parse_env(done.stdout)
    return Cluster(
        name=name,
        kubeconfig=Path(env["KUBECONFIG"]),
        bin_dir=Path(env["STOKER_BIN_DIR"]),
        audit_log=Path(env["STOKER_AUDIT_LOG"]),
        _watchdog=watchdog,
        **_real_node_fields(env),
    )


def _real_node_fields(env: Mapping[str, str]) -> dict[str, str | None]:
    """The real node's part of `hack/cluster.sh env` (absent without a real node)."""
    host, port = env.get("STOKER_POD_APISERVER_HOST"), env.get("STOKER_POD_APISERVER_PORT")
    return {
        "real_node": env.get("STOKER_REAL_NODE") or None,
        "pod_apiserver": f"{host}:{port}" if host and port else None,
    }


def stop_cluster(cluster: Cluster) -> None:
    """Delete a cluster start_cluster started (no-op for others, and when already done)."""
    if cluster._watchdog is not None:
        _stop_watchdog(cluster._watchdog)


def _stop_watchdog(watchdog: subprocess.Popen[bytes]) -> None:
    # EOF on its stdin makes the watchdog run `down`; wait for that to finish.
    stdin = watchdog.stdin
    if stdin is not None and not stdin.closed:
        stdin.close()
    watchdog.wait(timeout=DOWN_TIMEOUT)
    if watchdog.returncode != 0:
        raise RuntimeError(f"deleting the test cluster failed (exit {watchdog.returncode})")


def existing_cluster(kubeconfig: Path) -> Cluster:
    """A cluster that someone else runs (never deleted by the tests)."""
    bin_dir = os.environ.get("STOKER_BIN_DIR")
    audit_log = os.environ.get("STOKER_TEST_AUDIT_LOG")
    return Cluster(
        name=kubeconfig.stem,
        kubeconfig=kubeconfig,
        bin_dir=Path(bin_dir) if bin_dir else build_bin_dir(),
        audit_log=Path(audit_log) if audit_log else None,
        # As `eval "$(hack/cluster.sh env)"` left them.
        **_real_node_fields(os.environ),
    )


@contextmanager
def session_cluster() -> Iterator[Cluster]:
    """The cluster of a test session: STOKER_TEST_KUBECONFIG's, or a fresh one deleted after."""
    given = os.environ.get("STOKER_TEST_KUBECONFIG")
    if given:
        yield existing_cluster(Path(given))
        return
    cluster = start_cluster(f"stoker-test-{os.getpid()}")
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


def _watchdog_main(name: str, stdin: IO[bytes]) -> int:
    # Blocks until the starting process closes the pipe or dies.
    while stdin.read(4096):
        pass
    return subprocess.run(
        [str(CLUSTER_SH), "down", name], stdout=subprocess.DEVNULL, timeout=DOWN_TIMEOUT
    ).returncode


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "watchdog":
        sys.exit(_watchdog_main(sys.argv[2], sys.stdin.buffer))
    sys.exit(f"usage: {sys.argv[0]} watchdog NAME")
