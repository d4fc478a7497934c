"""The operator's in-memory store: newest version wins, lean bodies, indexes."""

from __future__ import annotations

from typing import Any

from stoker.state import Body, Kind, Store


def body(name: str, rv: str, uid: str = "u1", **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": uid,
            "resourceVersion": rv,
            "managedFields": [{"manager": "kubectl"}],
            **extra,
        },
        "spec": {"after": [{"name": "parent"}]},
    }


def test_an_older_version_never_replaces_a_newer_one() -> None:
    store = Store()
    assert store.put(Kind.JOB, body("a", "5"))
    assert not store.put(Kind.JOB, body("a", "4"))
    assert not store.put(Kind.JOB, body("a", "5"))
    assert store.put(Kind.JOB, body("a", "6"))
    assert store.jobs["ns", "a"]["metadata"]["resourceVersion"] == "6"


def test_a_recreated_object_replaces_the_old_one_whatever_its_version() -> None:
    store = Store()
    store.put(Kind.JOB, body("a", "9", uid="old"))
    assert store.put(Kind.JOB, body("a", "3", uid="new"))


def test_managed_fields_are_not_kept() -> None:
    store = Store()
    store.put(Kind.JOB, body("a", "1"))
    assert "managedFields" not in store.jobs["ns", "a"]["metadata"]


def test_continuations_are_indexed_by_parent_and_forgotten_on_delete() -> None:
    store = Store()
    store.put(Kind.JOB, body("child", "1"))
    assert store.children["ns", "parent"] == {("ns", "child")}
    assert store.remove(Kind.JOB, body("child", "2"))
    assert store.children["ns", "parent"] == set()


def test_namespaces_outside_the_served_set_are_ignored() -> None:
    assert not Store(namespaces=("shop",)).put(Kind.JOB, body("a", "1"))


def _job(phase: str | None, annotations: dict[str, str], token: str | None = None) -> Body:
    status: dict[str, object] = {"phase": phase}
    if token:
        status["requeueToken"] = token
    return {
        "metadata": {
            "name": "j", "namespace": "ns", "uid": "u", "resourceVersion": "1",
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{...}", **annotations
            },
        },
        "spec": {
            "queue": "q",
            "after": [{"name": "p"}],
            "task": {"name": "mail.send", "args": {"to": "a@b"}},
            "template": {"spec": {"containers": [{"name": "main", "image": "x"}]}},
        },
        "status": status,
    }  # fmt: skip


def test_a_finished_job_keeps_only_what_its_decisions_read() -> None:
    store = Store()
    store.put(Kind.JOB, _job("Succeeded", {}))
    kept = store.jobs["ns", "j"]
    assert "template" not in kept["spec"] and kept["spec"]["task"] == {"name": "mail.send"}
    assert kept["metadata"]["annotations"] == {}
    assert (kept["spec"]["queue"], kept["spec"]["after"]) == ("q", [{"name": "p"}])
    assert store.children["ns", "p"] == {("ns", "j")}


def test_a_running_job_and_a_requeued_finished_one_keep_everything() -> None:
    for body in (
        _job("Running", {}),
        _job("Succeeded", {"stoker.dev/requeue": "2"}, token="1"),
    ):
        store = Store()
        store.put(Kind.JOB, body)
        kept = store.jobs["ns", "j"]
        assert "template" in kept["spec"] and "args" in kept["spec"]["task"]


def _pod(rv: str, **status: Any) -> Body:
    labels = {"stoker.dev/job-uid": "u", "stoker.dev/job-name": "j", "stoker.dev/attempt": "1"}
    return {
        "metadata": {"name": "j-1", "namespace": "ns", "uid": "p", "resourceVersion": rv,
                     "labels": labels},
        "spec": {"nodeName": status.pop("node", None)},
        "status": status,
    }  # fmt: skip


def test_a_pod_change_no_decision_reads_wakes_no_job() -> None:
    store = Store()
    assert store.put_pod(_pod("1", phase="Pending")) == ("ns", "j")
    bound = _pod("2", phase="Pending", node="n1", podIP="10.0.0.9",
                 conditions=[{"type": "PodScheduled", "status": "True"}])  # fmt: skip
    assert store.put_pod(bound) is None
    assert store.pods["u"][1]["metadata"]["resourceVersion"] == "2"
    unschedulable = _pod(
        "3",
        phase="Pending",
        conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}],
    )
    assert store.put_pod(unschedulable) == ("ns", "j")
    assert store.put_pod(_pod("4", phase="Running", startTime="2026-01-01T00:00:00Z")) == (
        "ns",
        "j",
    )
