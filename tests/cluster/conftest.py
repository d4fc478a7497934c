"""The operator under test: CRDs applied once, the operator run as a real process against
the session's cluster, the way a user runs it outside a cluster."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import kubernetes
import pytest

from harness import REPO, Cluster, wait_for
from operator_process import GROUP, VERSION, Operator


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    for plural in ("backgroundjobs", "recurringjobs", "jobqueues"):
        cluster.kubectl(
            "wait", "--for=condition=Established", f"crd/{plural}.{GROUP}", "--timeout=60s"
        )


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


class Jobs:
    """Create BackgroundJobs and read them back, in one test namespace."""

    def __init__(
        self,
        api: kubernetes.client.CustomObjectsApi,
        core: kubernetes.client.CoreV1Api,
        namespace: str,
    ) -> None:
        self.api, self.core, self.namespace = api, core, namespace

    def create(
        self,
        name: str,
        spec: dict[str, Any] | None = None,
        *,
        sim: dict[str, str] | None = None,
        kind: str = "BackgroundJob",
        plural: str = "backgroundjobs",
        annotations: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "metadata": {"name": name, "annotations": annotations or {}},
            "spec": spec if spec is not None else job_spec(sim=sim),
        }
        result: dict[str, Any] = self.api.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, body
        )
        return result

    def get(self, name: str, plural: str = "backgroundjobs") -> dict[str, Any]:
        result: dict[str, Any] = self.api.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, name
        )
        return result

    def status(self, name: str, plural: str = "backgroundjobs") -> dict[str, Any]:
        return dict(self.get(name, plural).get("status") or {})

    def annotate(self, name: str, key: str, value: str, plural: str = "backgroundjobs") -> None:
        self.api.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            plural,
            name,
            {"metadata": {"annotations": {key: value}}},
        )

    def patch_spec(self, name: str, spec: dict[str, Any], plural: str = "backgroundjobs") -> None:
        self.api.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, name, {"spec": spec}
        )

    def delete(self, name: str, plural: str = "backgroundjobs") -> None:
        self.api.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)

    def list(self, plural: str = "backgroundjobs", selector: str = "") -> list[dict[str, Any]]:
        result = self.api.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, label_selector=selector
        )
        return list(result["items"])

    def pods(self, job: str | None = None) -> list[Any]:
        selector = f"stoker.dev/job-name={job}" if job else "stoker.dev/job-name"
        return list(self.core.list_namespaced_pod(self.namespace, label_selector=selector).items)

    def wait_phase(
        self,
        name: str,
        phases: str | tuple[str, ...],
        timeout: float = 60,
        plural: str = "backgroundjobs",
    ) -> dict[str, Any]:
        wanted = (phases,) if isinstance(phases, str) else phases

        def reached() -> dict[str, Any] | None:
            status = self.status(name, plural)
            return status if status.get("phase") in wanted else None

        return wait_for(reached, timeout, 0.2, f"{self.namespace}/{name} in {wanted}")

    def wait(self, predicate: Callable[[], Any], timeout: float = 60, what: str = "") -> Any:
        return wait_for(predicate, timeout, 0.2, what or None)


def job_spec(sim: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    """A minimal BackgroundJob spec; `sim` sets the simulated-kubelet annotations."""
    annotations = {f"sim.stoker.dev/{k}": v for k, v in (sim or {}).items()}
    return {
        "template": {
            "metadata": {"annotations": annotations},
            "spec": {"containers": [{"name": "main", "image": "ghcr.io/acme/tasks:1.4"}]},
        },
        **extra,
    }


@pytest.fixture
def jobs(
    operator: Operator,
    api: kubernetes.client.CustomObjectsApi,
    core: kubernetes.client.CoreV1Api,
    namespace: str,
) -> Jobs:
    return Jobs(api, core, namespace)
