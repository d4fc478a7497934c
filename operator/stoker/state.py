"""The operator's in-memory view of the cluster: the latest body of every object it serves.

Fed by a full listing at startup and by watch events after; the reconcile loop reads only this.
Bodies older than the one held (by resourceVersion) are ignored, so a late watch event never
undoes a status the operator has just written and stored from the API server's answer. After a
relist, objects the list no longer has are dropped as deleted (`resync`), as client-go's
informers do: a watch that was away across a deletion never delivers its DELETED event.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from stoker.api.models import (
    ANNOTATION_REQUEUE,
    DEFAULT_QUEUE,
    LABEL_ATTEMPT,
    LABEL_JOB_NAME,
    LABEL_JOB_UID,
    LABEL_RECURRING_JOB,
)

Key = tuple[str, str]  # (namespace, name)
FINISHED = frozenset({"Succeeded", "Failed"})
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
Body = dict[str, Any]


class Kind(enum.Enum):
    """The three custom resources, with their plural (API paths) and kind name (Events)."""

    JOB = ("backgroundjobs", "BackgroundJob")
    RECURRING = ("recurringjobs", "RecurringJob")
    QUEUE = ("jobqueues", "JobQueue")

    def __init__(self, plural: str, kind_name: str) -> None:
        self.plural = plural
        self.kind_name = kind_name


def key_of(body: Mapping[str, Any]) -> Key:
    meta = body["metadata"]
    return meta["namespace"], meta["name"]


def recurring_owner(body: Mapping[str, Any]) -> str | None:
    """The RecurringJob a BackgroundJob is a run of, by its label."""
    return (body["metadata"].get("labels") or {}).get(LABEL_RECURRING_JOB)


def queue_of(body: Mapping[str, Any]) -> str:
    return str((body.get("spec") or {}).get("queue") or DEFAULT_QUEUE)


def parents_of(body: Mapping[str, Any]) -> list[str]:
    """The names a job waits for (`spec.after`)."""
    return [str(ref.get("name")) for ref in (body.get("spec") or {}).get("after") or []]


def _lean(body: Body) -> Body:
    """The body without metadata.managedFields: never read, and half of a job's memory. In
    place: every body the store gets is the operator's own (kopf's are copied when fed)."""
    body["metadata"].pop("managedFields", None)
    return body


def _lean_job(body: Body) -> Body:
    """A job, and for a finished one only what its decisions still read (TTL, continuations,
    its RecurringJob's history, metrics, a requeue): its pod template, task arguments and
    kubectl's copy of the manifest go. The store may hold tens of thousands of finished jobs.
    A requeue brings the whole body back with the event that carries its token."""
    _lean(body)
    status = body.get("status") or {}
    if status.get("phase") not in FINISHED:
        return body
    meta, spec = body["metadata"], body.get("spec") or {}
    annotations = meta.get("annotations") or {}
    if annotations.get(ANNOTATION_REQUEUE, status.get("requeueToken")) != status.get(
        "requeueToken"
    ):
        return body  # a requeue to act on: its next attempt needs everything
    annotations.pop(LAST_APPLIED, None)
    spec.pop("template", None)
    task = spec.get("task")
    if isinstance(task, dict):
        task.pop("args", None)
    return body


# What decisions read of a pod (lifecycle.pod_view, the pod's uid for deletes); a pod is kept
# for every attempt of every job, so the rest (spec, image ids, most of its status) is dropped.
POD_META = ("name", "namespace", "uid", "labels", "creationTimestamp", "resourceVersion")
POD_STATUS = ("phase", "reason", "message", "startTime")


def lean_pod(pod: Body) -> Body:
    meta, status = pod["metadata"], pod.get("status") or {}
    kept: Body = {k: status[k] for k in POD_STATUS if k in status}
    unscheduled = [
        c
        for c in status.get("conditions") or []
        if c.get("type") == "PodScheduled" and c.get("status") == "False"
    ]
    if unscheduled:
        kept["conditions"] = unscheduled
    if status.get("containerStatuses"):
        kept["containerStatuses"] = [
            {"name": cs.get("name"), "state": {"terminated": cs["state"]["terminated"]}}
            for cs in status["containerStatuses"]
            if (cs.get("state") or {}).get("terminated")
        ]
    return {"metadata": {k: meta[k] for k in POD_META if k in meta}, "status": kept}


def _same_but_version(a: Body, b: Body) -> bool:
    return a["status"] == b["status"] and {**a["metadata"], "resourceVersion": None} == {
        **b["metadata"],
        "resourceVersion": None,
    }


def resource_version(body: Mapping[str, Any]) -> int:
    try:
        return int(body["metadata"].get("resourceVersion") or 0)
    except ValueError:  # opaque in theory; etcd-backed servers give integers
        return 0


class Store:
    def __init__(self, namespaces: Iterable[str] = ()) -> None:
        self.namespaces = frozenset(namespaces)
        self.objects: dict[Kind, dict[Key, Body]] = {kind: {} for kind in Kind}
        # job uid -> attempt -> pod body
        self.pods: dict[str, dict[int, Body]] = defaultdict(dict)
        # (namespace, parent job name) -> the jobs that wait for it
        self.children: dict[Key, set[Key]] = defaultdict(set)
        # (namespace, RecurringJob name) -> the jobs labelled as its runs
        self.runs: dict[Key, set[Key]] = defaultdict(set)
        # (namespace, queue name) -> the jobs in that queue
        self.by_queue: dict[Key, set[Key]] = defaultdict(set)

    def serves(self, namespace: str) -> bool:
        return not self.namespaces or namespace in self.namespaces

    @property
    def jobs(self) -> dict[Key, Body]:
        return self.objects[Kind.JOB]

    def put(self, kind: Kind, body: Body) -> bool:
        """Keep `body` unless an equal or newer version is held; True when it was newer."""
        key = key_of(body)
        if not self.serves(key[0]):
            return False
        held = self.objects[kind].get(key)
        if (
            held is not None
            and held["metadata"].get("uid") == body["metadata"].get("uid")
            and resource_version(held) >= resource_version(body)
        ):
            return False
        if held is not None and kind is Kind.JOB:
            self._unindex(key, held)
        self.objects[kind][key] = _lean_job(body) if kind is Kind.JOB else _lean(body)
        if kind is Kind.JOB:
            self._index(key, body)
        return True

    def remove(self, kind: Kind, body: Mapping[str, Any]) -> bool:
        key = key_of(body)
        held = self.objects[kind].get(key)
        if held is None or held["metadata"].get("uid") != body["metadata"].get("uid"):
            return False
        self._drop(kind, key)
        return True

    def _drop(self, kind: Kind, key: Key) -> None:
        held = self.objects[kind].pop(key)
        if kind is Kind.JOB:
            self.pods.pop(held["metadata"].get("uid", ""), None)
            self._unindex(key, held)

    def _index(self, key: Key, body: Mapping[str, Any]) -> None:
        for parent in parents_of(body):
            self.children[key[0], parent].add(key)
        owner = recurring_owner(body)
        if owner:
            self.runs[key[0], owner].add(key)
        self.by_queue[key[0], queue_of(body)].add(key)

    def _unindex(self, key: Key, body: Mapping[str, Any]) -> None:
        for parent in parents_of(body):
            self.children[key[0], parent].discard(key)
        owner = recurring_owner(body)
        if owner:
            self.runs[key[0], owner].discard(key)
        self.by_queue[key[0], queue_of(body)].discard(key)

    def finished(self, key: Key) -> bool:
        """Whether the job `key` has a final status (Succeeded or Failed)."""
        body = self.jobs.get(key)
        return body is not None and (body.get("status") or {}).get("phase") in FINISHED

    def after_of(self, namespace: str, name: str) -> list[str] | None:
        """The parents of job `name`, None when there is no such job (cycle detection)."""
        body = self.jobs.get((namespace, name))
        return None if body is None else parents_of(body)

    def resync(self, kind: Kind, listed: Iterable[Key], list_version: int) -> list[Key]:
        """Drop the objects of `kind` a fresh list did not return although they are older than
        it: they were deleted while no watch delivered the DELETED event. Returns their keys."""
        seen = set(listed)
        gone = [
            key
            for key, body in self.objects[kind].items()
            if key not in seen and resource_version(body) <= list_version
        ]
        for key in gone:
            self._drop(kind, key)
        return gone

    def put_pod(self, pod: Body) -> Key | None:
        """Keep a pod of a job's attempt; the job's key when the pod is newer than the one held."""
        labels = pod["metadata"].get("labels") or {}
        uid, name = labels.get(LABEL_JOB_UID), labels.get(LABEL_JOB_NAME)
        if not uid or not name or not self.serves(pod["metadata"]["namespace"]):
            return None
        attempt = int(labels.get(LABEL_ATTEMPT, "0"))
        held = self.pods[uid].get(attempt)
        if held is not None and resource_version(held) >= resource_version(pod):
            return None
        kept = self.pods[uid][attempt] = lean_pod(pod)
        if held is not None and _same_but_version(held, kept):
            return None  # a change no decision reads (its binding, an IP, a probe): no pass
        return pod["metadata"]["namespace"], name

    def remove_pod(self, pod: Mapping[str, Any]) -> Key | None:
        labels = pod["metadata"].get("labels") or {}
        uid, name = labels.get(LABEL_JOB_UID), labels.get(LABEL_JOB_NAME)
        attempts = self.pods.get(uid or "")
        if not name or attempts is None:
            return None
        attempt = int(labels.get(LABEL_ATTEMPT, "0"))
        if attempts.get(attempt, {}).get("metadata", {}).get("name") == pod["metadata"]["name"]:
            del attempts[attempt]
        return pod["metadata"]["namespace"], name

    def resync_pods(self, listed: Iterable[Key], list_version: int) -> list[Key]:
        """As `resync`, for pods: the jobs whose pods vanished unseen."""
        seen = set(listed)
        jobs: list[Key] = []
        for attempts in self.pods.values():
            for attempt, pod in list(attempts.items()):
                meta = pod["metadata"]
                if key_of(pod) not in seen and resource_version(pod) <= list_version:
                    del attempts[attempt]
                    labels = meta.get("labels") or {}
                    jobs.append((meta["namespace"], labels.get(LABEL_JOB_NAME, "")))
        return jobs

    def pods_of(self, uid: str) -> Iterator[Body]:
        yield from self.pods.get(uid, {}).values()
