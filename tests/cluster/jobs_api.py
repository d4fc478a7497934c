"""Create BackgroundJobs (and the other kinds) through the API and read them back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kubernetes

from harness import wait_for
from operator_process import GROUP, VERSION


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
