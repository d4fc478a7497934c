"""The pod of one attempt, built from the job's template: pure, tested without a cluster."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

from stoker.api.durations import parse_duration
from stoker.api.models import (
    API_VERSION,
    ENV_ARGS,
    ENV_TASK,
    LABEL_ATTEMPT,
    LABEL_JOB_NAME,
    LABEL_JOB_UID,
    LABEL_QUEUE,
)
from stoker.core.lifecycle import JobView, pod_name

ENV_JOB_NAME = "STOKER_JOB_NAME"
ENV_ATTEMPT = "STOKER_ATTEMPT"


def fallback_pod_name(job: JobView, attempt: int) -> str:
    """The attempt's pod name when its usual one is taken by a pod of an earlier job of the
    same name (orphaned by `kubectl delete --cascade=orphan`): still deterministic, so a
    restarted operator finds it by its labels and never makes a second one."""
    return f"{pod_name(job.name, attempt)}-{job.uid[:8]}"


def build_pod(job: JobView, attempt: int, name: str | None = None) -> dict[str, Any]:
    spec = job.spec
    template = spec.template
    if template is None:  # the phase machine keeps such a job waiting (NoPodTemplate)
        raise ValueError(f"job {job.namespace}/{job.name} has no pod template")
    pod_spec: dict[str, Any] = copy.deepcopy(template.spec.model_dump(mode="json", by_alias=True))
    # One pod per attempt: retries are the operator's business, never the kubelet's.
    pod_spec["restartPolicy"] = "Never"
    if spec.timeout:
        pod_spec["activeDeadlineSeconds"] = max(
            1, math.ceil(parse_duration(spec.timeout).total_seconds())
        )

    env: list[dict[str, str]] = [
        {"name": ENV_JOB_NAME, "value": job.name},
        {"name": ENV_ATTEMPT, "value": str(attempt)},
    ]
    if spec.task is not None:
        env += [
            {"name": ENV_TASK, "value": spec.task.name},
            {"name": ENV_ARGS, "value": json.dumps(spec.task.args, separators=(",", ":"))},
        ]
    ours = {e["name"] for e in env}
    for container in pod_spec["containers"]:
        kept = [e for e in container.get("env", []) if e.get("name") not in ours]
        container["env"] = kept + env
        # A crash before the program writes its own message still explains itself in status.
        container.setdefault("terminationMessagePolicy", "FallbackToLogsOnError")

    labels = {
        **template.metadata.labels,
        LABEL_JOB_NAME: job.name,
        LABEL_JOB_UID: job.uid,
        LABEL_ATTEMPT: str(attempt),
        LABEL_QUEUE: spec.queue,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name or pod_name(job.name, attempt),
            "namespace": job.namespace,
            "labels": labels,
            "annotations": dict(template.metadata.annotations),
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "BackgroundJob",
                    "name": job.name,
                    "uid": job.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": pod_spec,
    }
