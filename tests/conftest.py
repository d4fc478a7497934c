"""Session fixtures shared by the cluster and chart tests.

The control plane starts only when a test asks for `cluster` (or `namespace`), so unit tests
stay fast and cluster-free. Set STOKER_TEST_KUBECONFIG to run against a cluster you started
yourself (`hack/cluster.sh up`); the tests then never delete it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness import Cluster, create_namespace, session_cluster


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
    name = create_namespace(cluster)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false")
