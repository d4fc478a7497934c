"""Session fixtures shared by the cluster and chart tests.

The control plane starts only when a test asks for `cluster` (or `namespace`), so unit tests
stay fast and cluster-free. Set STOKER_TEST_KUBECONFIG to run against a cluster you started
yourself (`hack/cluster.sh up`); the tests then never delete it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from harness import Cluster, KubectlError, session_cluster, wait_for


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Whatever needs the control plane, directly or through another fixture, is a cluster test.
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    with session_cluster() as running:
        yield running


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace, deleted after the test (without waiting for it to go)."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    cluster.kubectl("create", "namespace", name)

    # Pods are refused until the controller-manager has created the default ServiceAccount.
    def default_service_account() -> bool:
        try:
            cluster.kubectl("get", "serviceaccount", "default", "--namespace", name)
        except KubectlError:
            return False
        return True

    wait_for(default_service_account, timeout=30, description=f"ServiceAccount {name}/default")
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false")
