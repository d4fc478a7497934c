"""The fault suite's own control plane, never the session's: these tests kill kube-apiserver
and etcd, deny writes cluster-wide by policy and cut the operator's connection, which other
tests must not see.

One cluster (stoker-fault-<pid>) for the package, supervised (components that exit are
started again); each test gets a fresh TCP proxy between the operator and the API server, its
own operator process (and Lease), a canary namespace and the audit log from its start.
The figures each test records are printed at the end of the run, for the note.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import kubernetes
import pytest
from audit import AuditLog
from controlplane import ControlPlane, describe
from faultkit import Canary, Figures, Stoker, apiserver_port, proxied_kubeconfig
from proxy import TcpProxy

from harness import Cluster, apply_crds, create_namespace, start_cluster, stop_cluster
from operator_process import Operator

FIGURES: list[Figures] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests on the fault cluster are cluster tests: `-m "not cluster"` leaves them out.
    for item in items:
        if "fault_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="package")
def fault_cluster() -> Iterator[Cluster]:
    cluster = start_cluster(f"stoker-fault-{os.getpid()}")
    try:
        apply_crds(cluster)
        yield cluster
    finally:
        stop_cluster(cluster)


@pytest.fixture(scope="package")
def plane(fault_cluster: Cluster) -> Iterator[ControlPlane]:
    plane = ControlPlane(fault_cluster)
    plane.supervise()
    try:
        yield plane
    finally:
        plane.stop_supervising()


@pytest.fixture(autouse=True)
def healthy_control_plane(request: pytest.FixtureRequest) -> None:
    """Every fault test starts on a whole, ready control plane (a failed test may have left a
    component down)."""
    if "plane" not in request.fixturenames:
        return
    plane: ControlPlane = request.getfixturevalue("plane")
    for name in plane.components:
        if not plane.running(name):
            plane.start(name)
    plane.wait_ready()
    assert plane.all_running(), describe(plane)


@pytest.fixture
def admin(fault_cluster: Cluster) -> kubernetes.client.ApiClient:
    """The tests' own client: straight to the API server, never through the proxy."""
    return fault_cluster.api_client(user_agent="stoker-fault-tests")


@pytest.fixture
def audit(fault_cluster: Cluster) -> AuditLog:
    assert fault_cluster.audit_log is not None
    log = AuditLog(fault_cluster.audit_log)
    log.mark()
    return log


@pytest.fixture
def proxy(fault_cluster: Cluster) -> Iterator[TcpProxy]:
    p = TcpProxy("127.0.0.1", apiserver_port(fault_cluster))
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def new_operator(
    fault_cluster: Cluster, plane: ControlPlane, proxy: TcpProxy, tmp_path: Path
) -> Iterator[Callable[..., Operator]]:
    """Make operator processes; they are stopped after the test. `proxied` ones reach the API
    server through the test's proxy. Each test has its own Lease, so no operator of an
    earlier test (SIGKILLed, or still holding it) delays this one's."""
    made: list[Operator] = []
    lease = f"stoker-fault-{uuid.uuid4().hex[:8]}"
    kubeconfig = proxied_kubeconfig(fault_cluster, proxy.port)

    def make(identity: str = "fault-operator", proxied: bool = True, **env: str) -> Operator:
        op = Operator(
            fault_cluster,
            tmp_path / f"operator-{identity}.log",
            env={
                "STOKER_IDENTITY": identity,
                "STOKER_LEASE_NAME": lease,
                **({"KUBECONFIG": str(kubeconfig)} if proxied else {}),
                **env,
            },
        )
        made.append(op)
        return op

    try:
        yield make
    finally:
        for op in made:
            op.stop()
            print(f"operator log: {op.log_path}")
        kubeconfig.unlink(missing_ok=True)


@pytest.fixture
def namespace(fault_cluster: Cluster) -> Iterator[str]:
    """The namespace the fault hits."""
    name = create_namespace(fault_cluster, "fault-")
    try:
        yield name
    finally:
        fault_cluster.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture
def canary(fault_cluster: Cluster, admin: kubernetes.client.ApiClient) -> Iterator[Canary]:
    name = create_namespace(fault_cluster, "canary-")
    try:
        yield Canary(Stoker(admin, name))
    finally:
        fault_cluster.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    f = Figures(request.node.name)
    FIGURES.append(f)
    return f


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("fault figures")
        for f in FIGURES:
            terminalreporter.write_line(f.line())
