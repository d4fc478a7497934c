"""Kill and restart the fault cluster's control-plane components, and supervise them.

kwokctl's binary runtime records each component in <workdir>/kwok.yaml (binary, args, work
dir, env) and runs it detached, with its pid in <workdir>/pids/<binary>.pid and its output in
<workdir>/logs/<binary>.log; `kwokctl delete cluster` kills whatever those pid files name.
Components restarted here are started the same way (same command line, same log, pid file
rewritten), so deleting the cluster still stops them.

kwokctl restarts nothing. On a real cluster the kubelet (static pods) or systemd does, and
kube-scheduler and kube-controller-manager rely on it: they exit when they cannot renew their
leader-election lease, which any API server outage longer than their renew deadline causes
(see CONTROL_PLANE.md). The Supervisor plays that part, so that a fault test measures Stoker
and not a control plane left without a scheduler.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness import Cluster, KubectlError, wait_for

APISERVER = "kube-apiserver"
ETCD = "etcd"
SCHEDULER = "kube-scheduler"
CONTROLLER_MANAGER = "kube-controller-manager"
KWOK = "kwok-controller"


@dataclass(frozen=True)
class Component:
    name: str
    binary: str
    args: list[str]
    workdir: Path
    env: dict[str, str]

    @property
    def short(self) -> str:
        """kwokctl's file stem for it: the binary's base name without extension."""
        return Path(self.binary).name.split(".")[0]

    def pid_file(self) -> Path:
        return self.workdir / "pids" / f"{self.short}.pid"

    def log_file(self) -> Path:
        return self.workdir / "logs" / f"{self.short}.log"


def read_components(workdir: Path) -> dict[str, Component]:
    """The components kwokctl recorded for the cluster in `workdir`."""
    components: dict[str, Component] = {}
    with (workdir / "kwok.yaml").open() as f:
        for doc in yaml.safe_load_all(f):
            if not isinstance(doc, dict) or doc.get("kind") != "KwokctlConfiguration":
                continue
            for c in doc.get("components") or []:
                if not c.get("binary"):
                    continue
                components[c["name"]] = Component(
                    name=c["name"],
                    binary=c["binary"],
                    args=list(c.get("args") or []),
                    workdir=Path(c.get("workDir") or workdir),
                    env={e["name"]: e.get("value", "") for e in c.get("envs") or []},
                )
    return components


def alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state follows the command name, which is in parentheses and may contain spaces.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


class ControlPlane:
    """The components of one cluster: kill, start, and a supervisor that restarts what exits."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.workdir = cluster.kubeconfig.parent
        self.components = read_components(self.workdir)
        missing = {APISERVER, ETCD, SCHEDULER, CONTROLLER_MANAGER} - set(self.components)
        assert not missing, f"kwok.yaml of {self.workdir} lacks {missing}"
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # (component, time.time()) of every restart the supervisor made.
        self.restarts: list[tuple[str, float]] = []

    # ------------------------------------------------------------------ one component

    def pid(self, name: str) -> int | None:
        try:
            return int(self.components[name].pid_file().read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self, name: str) -> bool:
        child = self._children.get(name)
        if child is not None and child.poll() is not None:
            return False  # reaped just now: our own child has exited
        pid = self.pid(name)
        return pid is not None and alive(pid)

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send `sig` and wait until the process is gone. The supervisor leaves it down
        until start(name)."""
        with self._lock:
            self._held.add(name)
        pid = self.pid(name)
        if pid is not None and alive(pid):
            os.kill(pid, sig)
            wait_for(lambda: not self.running(name), 60, 0.05, f"{name} (pid {pid}) to exit")

    def start(self, name: str) -> None:
        """Start the component as kwokctl did, and let the supervisor keep it up again."""
        with self._lock:
            self._start(name)
            self._held.discard(name)

    def _start(self, name: str) -> None:
        c = self.components[name]
        with c.log_file().open("ab") as log:
            child = subprocess.Popen(
                [c.binary, *c.args],
                cwd=c.workdir,
                env={**os.environ, **c.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # as kwokctl: detached from our process group
            )
        self._children[name] = child
        c.pid_file().write_text(str(child.pid))

    @contextmanager
    def down(self, name: str) -> Iterator[None]:
        """The component killed for the duration of the block, then started again."""
        self.kill(name)
        try:
            yield
        finally:
            self.start(name)

    def outage(self, name: str, seconds: float) -> None:
        """Kill `name`, keep it down for `seconds`, start it again and wait until the cluster
        is ready; then resync the simulated kubelet.

        kwok drops a stage whose status patch failed during the outage (a pod stays Running
        past its simulated end, forever); a real kubelet re-sends pod status every sync period.
        Restarting kwok-controller makes it replay every pod's stages, as that sync would. The
        node's Lease names the old kwok instance, and a new one that finds it does not manage
        the node: it is deleted in between, as a new kubelet's first heartbeat would replace it.
        """
        with self.down(name):
            time.sleep(seconds)
        self.wait_ready()
        self.kill(KWOK)
        self.cluster.kubectl(
            "delete", "lease", "kwok-node-0", "-n", "kube-node-lease", "--ignore-not-found"
        )
        self.start(KWOK)
        self.wait_ready()

    # ------------------------------------------------------------------ the whole cluster

    def wait_ready(self, timeout: float = 120) -> None:
        """The API server answers /readyz (etcd included) and the node is Ready."""

        def ready() -> bool:
            try:
                self.cluster.kubectl("get", "--raw", "/readyz", timeout=10)
                status = self.cluster.kubectl(
                    "get",
                    "node",
                    "kwok-node-0",
                    "-o",
                    'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
                    timeout=10,
                )
            except (KubectlError, subprocess.TimeoutExpired):
                return False
            return status == "True"

        wait_for(ready, timeout, 0.25, "the control plane to be ready")

    def all_running(self) -> bool:
        return all(self.running(n) for n in self.components)

    # ------------------------------------------------------------------ supervisor

    def supervise(self, interval: float = 0.5) -> None:
        """Restart, from now on, any component that exits and is not being held down."""
        self._thread = threading.Thread(target=self._supervise, args=(interval,), daemon=True)
        self._thread.start()

    def stop_supervising(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)

    def _supervise(self, interval: float) -> None:
        while not self._stopping.wait(interval):
            for name in self.components:
                with self._lock:
                    if name in self._held or self.running(name):
                        continue
                    self._start(name)
                    self.restarts.append((name, time.time()))

    def restarted_since(self, since: float) -> list[str]:
        return [name for name, at in self.restarts if at >= since]


def describe(plane: ControlPlane) -> dict[str, Any]:
    """Component -> pid and whether it runs, for failure messages."""
    return {n: (plane.pid(n), plane.running(n)) for n in plane.components}
