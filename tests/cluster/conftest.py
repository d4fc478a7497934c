"""The operator under test: CRDs applied once, the operator run as a real process against
the session's cluster, the way a user runs it outside a cluster."""

from __future__ import annotations

from collections.abc import Iterator

import kubernetes
import pytest
from jobs_api import Jobs

from harness import Cluster, apply_crds
from operator_process import Operator


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> None:
    apply_crds(cluster)


@pytest.fixture(scope="session")
def operator(
    cluster: Cluster, crds: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    op = Operator(cluster, tmp_path_factory.mktemp("operator") / "operator.log")
    op.start()
    try:
        yield op
    finally:
        op.stop()
        print(f"operator log: {op.log_path}")


@pytest.fixture(scope="session")
def api(cluster: Cluster) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(cluster.api_client(user_agent="stoker-tests"))


@pytest.fixture(scope="session")
def core(cluster: Cluster) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(cluster.api_client(user_agent="stoker-tests"))


@pytest.fixture
def jobs(
    operator: Operator,
    api: kubernetes.client.CustomObjectsApi,
    core: kubernetes.client.CoreV1Api,
    namespace: str,
) -> Jobs:
    return Jobs(api, core, namespace)
