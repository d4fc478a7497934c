"""Fixtures of the tests that need the real node (kubelet + containerd) of the local cluster:
real containers, real probes, the chart's Deployment as users install it.

These tests get a cluster of their own, with the real node: the operators they install serve
every namespace, and must not meet the operator process the cluster tests run on the shared
session cluster. STOKER_TEST_KUBECONFIG points them at a running cluster instead (started by
`hack/cluster.sh up`, with its env in this shell).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import Cluster, existing_cluster, start_cluster, stop_cluster


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """Overrides the session cluster for tests/realnode (the `namespace` fixture follows)."""
    given = os.environ.get("STOKER_TEST_KUBECONFIG")
    if given:
        yield existing_cluster(Path(given))
        return
    started = start_cluster(f"stoker-real-{os.getpid()}", real_node=True)
    try:
        yield started
    finally:
        stop_cluster(started)


@pytest.fixture(scope="session")
def real_node(cluster: Cluster) -> str:
    """The name of the cluster's real node; these tests cannot run without one."""
    if cluster.real_node is None:
        pytest.fail(
            "the cluster has no real node: this machine cannot host one (hack/node.sh check "
            "says why) or STOKER_REAL_NODE=0 was set"
        )
    ready = cluster.kubectl(
        "get", "node", cluster.real_node,
        "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
    )  # fmt: skip
    assert ready == "True", f"node {cluster.real_node} is not Ready"
    return cluster.real_node
