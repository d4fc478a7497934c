"""The operator's in-memory view of the cluster: the latest body of every object it serves.

Fed by a full listing at startup and by watch events after; the reconciler reads only this.
Bodies older than the one held (by resourceVersion) are ignored, so a late watch event never
undoes a status the operator has just written and stored from the API server's answer.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from stoker.api.models import LABEL_ATTEMPT, LABEL_JOB_NAME, LABEL_JOB_UID, LABEL_RECURRING_JOB

Kind = Literal["bgj", "rj", "jq"]
Key = tuple[str, str]  # (namespace, name)
Body = dict[str, Any]


def key_of(body: Mapping[str, Any]) -> Key:
    meta = body["metadata"]
    return meta["namespace"], meta["name"]


def recurring_owner(body: Mapping[str, Any]) -> str | None:
    """The RecurringJob a BackgroundJob is a run of, by its label."""
    return (body["metadata"].get("labels") or {}).get(LABEL_RECURRING_JOB)


def _lean(body: Body) -> Body:
    """The body without metadata.managedFields: never read, and half of a job's memory. A copy,
    because kopf still holds the event's body."""
    meta = body["metadata"]
    if "managedFields" not in meta:
        return body
    return {**body, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


def _rv(body: Mapping[str, Any]) -> int:
    try:
        return int(body["metadata"].get("resourceVersion") or 0)
    except ValueError:  # opaque in theory; etcd-backed servers give integers
        return 0


class Store:
    def __init__(self, namespaces: tuple[str, ...] = ()) -> None:
        self.namespaces = frozenset(namespaces)
        self.objects: dict[Kind, dict[Key, Body]] = {"bgj": {}, "rj": {}, "jq": {}}
        # job uid -> attempt -> pod body
        self.pods: dict[str, dict[int, Body]] = defaultdict(dict)
        # (namespace, parent job name) -> the jobs that wait for it
        self.children: dict[Key, set[Key]] = defaultdict(set)
        # (namespace, RecurringJob name) -> the jobs labelled as its runs
        self.runs: dict[Key, set[Key]] = defaultdict(set)

    def serves(self, namespace: str) -> bool:
        return not self.namespaces or namespace in self.namespaces

    @property
    def jobs(self) -> dict[Key, Body]:
        return self.objects["bgj"]

    def put(self, kind: Kind, body: Body) -> bool:
        """Keep `body` unless an equal or newer version is held; True when it was newer."""
        key = key_of(body)
        if not self.serves(key[0]):
            return False
        held = self.objects[kind].get(key)
        if (
            held is not None
            and _rv(held) >= _rv(body)
            and held["metadata"].get("uid") == body["metadata"].get("uid")
        ):
            return False
        self.objects[kind][key] = _lean(body)
        if kind == "bgj":
            for ref in (body.get("spec") or {}).get("after") or []:
                self.children[key[0], ref["name"]].add(key)
            owner = recurring_owner(body)
            if owner:
                self.runs[key[0], owner].add(key)
        return True

    def remove(self, kind: Kind, body: Body) -> bool:
        key = key_of(body)
        held = self.objects[kind].get(key)
        if held is None or held["metadata"].get("uid") != body["metadata"].get("uid"):
            return False
        del self.objects[kind][key]
        if kind == "bgj":
            self.pods.pop(body["metadata"].get("uid", ""), None)
            for ref in (body.get("spec") or {}).get("after") or []:
                self.children[key[0], ref["name"]].discard(key)
            owner = recurring_owner(body)
            if owner:
                self.runs[key[0], owner].discard(key)
        return True

    def put_pod(self, pod: Body) -> Key | None:
        """Keep a pod of a job's attempt; the job's key when the pod is newer than the one held."""
        labels = pod["metadata"].get("labels") or {}
        uid, name = labels.get(LABEL_JOB_UID), labels.get(LABEL_JOB_NAME)
        if not uid or not name or not self.serves(pod["metadata"]["namespace"]):
            return None
        attempt = int(labels.get(LABEL_ATTEMPT, "0"))
        held = self.pods[uid].get(attempt)
        if held is not None and _rv(held) >= _rv(pod):
            return None
        self.pods[uid][attempt] = _lean(pod)
        return pod["metadata"]["namespace"], name

    def remove_pod(self, pod: Body) -> Key | None:
        labels = pod["metadata"].get("labels") or {}
        uid, name = labels.get(LABEL_JOB_UID), labels.get(LABEL_JOB_NAME)
        attempts = self.pods.get(uid or "")
        if not name or attempts is None:
            return None
        attempt = int(labels.get(LABEL_ATTEMPT, "0"))
        if attempts.get(attempt, {}).get("metadata", {}).get("name") == pod["metadata"]["name"]:
            del attempts[attempt]
        return pod["metadata"]["namespace"], name

    def pods_of(self, uid: str) -> Iterator[Body]:
        yield from self.pods.get(uid, {}).values()
