"""stoker.client and stoker.client_async against an in-memory fake of CustomObjectsApi."""

from __future__ import annotations

import copy
import http.server
import inspect
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp
import certifi
import kubernetes.client
import kubernetes.config
import kubernetes.config.incluster_config
import kubernetes_asyncio.client
import kubernetes_asyncio.config
import kubernetes_asyncio.config.incluster_config
import pytest
import urllib3
from hypothesis import given
from hypothesis import strategies as st

from stoker import client as client_module
from stoker.api.durations import parse_duration
from stoker.api.models import TASK_ARGS_MAX_BYTES, RetryPolicy
from stoker.client import (
    SUFFIX_ALPHABET,
    SUFFIX_LENGTH,
    Batch,
    Call,
    Client,
    JobHandle,
    Reply,
    Request,
    after_error,
    exact_duration,
    job_name,
    random_suffix,
)
from stoker.client_async import AsyncClient

IMAGE = "ghcr.io/acme/tasks:1.4"
NS = "shop"
WHERE = {"group": "stoker.dev", "version": "v1alpha1", "namespace": NS}
JOBS = {**WHERE, "plural": "backgroundjobs"}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
NO_WAIT = (0.0, 0.0, 0.0)

# ---------------------------------------------------------------- the fake API server


@dataclass
class Fault:
    """The next `verb` request fails: with `status`, or with no answer at all (None); when
    `applied`, the server did the work before the answer was lost."""

    verb: str
    status: int | None
    applied: bool = False


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict):
            merge_patch(target.setdefault(key, {}), value)
        elif value is None:
            target.pop(key, None)
        else:
            target[key] = value


class FakeCluster:
    def __init__(
        self, api_exception: Callable[..., Exception], disconnect: Callable[[], Exception]
    ):
        self.api_exception = api_exception
        self.disconnect = disconnect
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.faults: list[Fault] = []

    def put(self, plural: str, name: str, obj: dict[str, Any] | None = None) -> None:
        self.objects[(plural, NS, name)] = obj or {"metadata": {"name": name, "namespace": NS}}

    def handle(self, verb: str, kwargs: dict[str, Any]) -> Any:
        self.calls.append((verb, copy.deepcopy(kwargs)))
        fault = next((f for f in self.faults if f.verb == verb), None)
        if fault is not None:
            self.faults.remove(fault)
            if not fault.applied:
                raise self.error(fault.status)
        result = getattr(self, verb)(**kwargs)
        if fault is not None:
            raise self.error(fault.status)
        return result

    def error(self, status: int | None) -> Exception:
        return self.disconnect() if status is None else self.api_exception(status=status)

    def create(self, group: str, version: str, namespace: str, plural: str, body: Any) -> Any:
        key = (plural, namespace, body["metadata"]["name"])
        if key in self.objects:
            raise self.api_exception(status=409, reason="AlreadyExists")
        self.objects[key] = copy.deepcopy(body)
        return copy.deepcopy(body)

    def get(self, group: str, version: str, namespace: str, plural: str, name: str) -> Any:
        return copy.deepcopy(self.find(plural, namespace, name))

    def patch(self, *, namespace: str, plural: str, name: str, body: Any, **_: Any) -> Any:
        obj = self.find(plural, namespace, name)
        merge_patch(obj, body)
        return copy.deepcopy(obj)

    def delete(self, *, namespace: str, plural: str, name: str, **_: Any) -> Any:
        self.find(plural, namespace, name)
        del self.objects[(plural, namespace, name)]
        return {"kind": "Status", "status": "Success"}

    def find(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        if (plural, namespace, name) not in self.objects:
            raise self.api_exception(status=404, reason="NotFound")
        return self.objects[(plural, namespace, name)]


class ApiClientSpy:
    closed = False

    def close(self) -> None:
        self.closed = True


class SyncApi:
    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.api_client = ApiClientSpy()

    def create_namespaced_custom_object(self, **kwargs: Any) -> Any:
        return self.cluster.handle("create", kwargs)

    def get_namespaced_custom_object(self, **kwargs: Any) -> Any:
        return self.cluster.handle("get", kwargs)

    def patch_namespaced_custom_object(self, **kwargs: Any) -> Any:
        return self.cluster.handle("patch", kwargs)

    def delete_namespaced_custom_object(self, **kwargs: Any) -> Any:
        return self.cluster.handle("delete", kwargs)


class AsyncApi:
    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.api_client = ApiClientSpy()

    async def create_namespaced_custom_object(self, **kwargs: Any) -> Any:
        return self.cluster.handle("create", kwargs)

    async def get_namespaced_custom_object(self, **kwargs: Any) -> Any:
        return self.cluster.handle("get", kwargs)

    async def patch_namespaced_custom_object(self, **kwargs: Any) -> Any:
        return self.cluster.handle("patch", kwargs)

    async def delete_namespaced_custom_object(self, **kwargs: Any) -> Any:
        return self.cluster.handle("delete", kwargs)


def sync_cluster() -> FakeCluster:
    return FakeCluster(
        kubernetes.client.ApiException,
        lambda: urllib3.exceptions.ProtocolError("Connection aborted."),
    )


def async_cluster() -> FakeCluster:
    return FakeCluster(kubernetes_asyncio.client.ApiException, aiohttp.ServerDisconnectedError)


@pytest.fixture
def suffixes(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Name suffixes 000000000001, 000000000002, ...; calling the fixture starts over."""

    def restart() -> None:
        counter = itertools.count(1)
        monkeypatch.setattr(client_module, "random_suffix", lambda: f"{next(counter):012d}")

    restart()
    return restart


@pytest.fixture
def cluster(suffixes: Callable[[], None]) -> FakeCluster:
    return sync_cluster()


@pytest.fixture
def client(cluster: FakeCluster) -> Client:
    return Client(NS, IMAGE, SyncApi(cluster), retry_delays=NO_WAIT)


def sfx(n: int) -> str:
    return f"{n:012d}"


def manifest(name: str, spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "stoker.dev/v1alpha1",
        "kind": "BackgroundJob",
        "metadata": {"name": name, "namespace": NS, **metadata},
        "spec": spec,
    }


def plain_spec(task: str = "send_welcome_email", **task_fields: Any) -> dict[str, Any]:
    return {
        "template": {"spec": {"containers": [{"name": "main", "image": IMAGE}]}},
        "task": {"name": task, **task_fields},
    }


def created(cluster: FakeCluster) -> list[dict[str, Any]]:
    return [kwargs["body"] for verb, kwargs in cluster.calls if verb == "create"]


# ---------------------------------------------------------------- enqueue and its options


def test_enqueue_sends_a_minimal_manifest(client: Client, cluster: FakeCluster) -> None:
    handle = client.enqueue("send_welcome_email", {"user_id": 9, "email": "a@example.com"})

    name = f"send-welcome-email-{sfx(1)}"
    assert handle == JobHandle(NS, name)
    body = manifest(name, plain_spec(args={"user_id": 9, "email": "a@example.com"}))
    assert cluster.calls == [("create", {**JOBS, "body": body})]


def test_enqueue_without_args_leaves_them_out(client: Client, cluster: FakeCluster) -> None:
    client.enqueue("nightly_cleanup")
    assert created(cluster) == [
        manifest(f"nightly-cleanup-{sfx(1)}", plain_spec("nightly_cleanup"))
    ]


OTHER_TEMPLATE = {
    "metadata": {"labels": {"tier": "batch"}},
    "spec": {
        "serviceAccountName": "tasks",
        "containers": [{"name": "worker", "image": "ghcr.io/acme/other:2", "args": ["run"]}],
    },
}


@pytest.mark.parametrize(
    ("opts", "path", "expected"),
    [
        ({"queue": "critical"}, ("spec", "queue"), "critical"),
        ({"priority": 5}, ("spec", "priority"), 5),
        ({"retry": 5}, ("spec", "retry"), {"attempts": 5}),
        (
            {"retry": {"delays": ["60s", "5m"], "onExitCodes": [1, 75]}},
            ("spec", "retry"),
            {"delays": ["60s", "5m"], "onExitCodes": [1, 75]},
        ),
        (
            {"retry": RetryPolicy(attempts=0, on_exhausted="Delete")},
            ("spec", "retry"),
            {"attempts": 0, "onExhausted": "Delete"},
        ),
        (
            {"retry": {"backoff": {"initial": "1s"}}},
            ("spec", "retry"),
            {"backoff": {"initial": "1s"}},
        ),
        ({"timeout": timedelta(minutes=30)}, ("spec", "timeout"), "30m"),
        ({"timeout": "1h30m"}, ("spec", "timeout"), "1h30m"),
        ({"concurrency_key": "invoice-42"}, ("spec", "concurrencyKey"), "invoice-42"),
        ({"suspend": True}, ("spec", "suspend"), True),
        ({"ttl_after_finished": timedelta(days=1)}, ("spec", "ttlAfterFinished"), "24h"),
        ({"ttl_after_finished": "90s"}, ("spec", "ttlAfterFinished"), "90s"),
        ({"labels": {"team": "shop"}}, ("metadata", "labels"), {"team": "shop"}),
        ({"annotations": {"owner": "ops"}}, ("metadata", "annotations"), {"owner": "ops"}),
        ({"name": "invoice-42"}, ("metadata", "name"), "invoice-42"),
        (
            {"pod_labels": {"app": "tasks"}},
            ("spec", "template", "metadata"),
            {"labels": {"app": "tasks"}},
        ),
        (
            {"pod_annotations": {"sim.stoker.dev/fail-attempts": "2"}},
            ("spec", "template", "metadata"),
            {"annotations": {"sim.stoker.dev/fail-attempts": "2"}},
        ),
        (
            {"image": "ghcr.io/acme/other:2"},
            ("spec", "template"),
            {"spec": {"containers": [{"name": "main", "image": "ghcr.io/acme/other:2"}]}},
        ),
        ({"template": OTHER_TEMPLATE}, ("spec", "template"), OTHER_TEMPLATE),
        (
            {"template": OTHER_TEMPLATE, "pod_labels": {"app": "tasks"}},
            ("spec", "template"),
            {
                "metadata": {"labels": {"tier": "batch", "app": "tasks"}},
                "spec": OTHER_TEMPLATE["spec"],
            },
        ),
        ({"queue": None, "timeout": None, "labels": None}, (), None),  # None means not set
    ],
)
def test_each_option_lands_in_its_field_and_nothing_else(
    client: Client, cluster: FakeCluster, opts: Any, path: tuple[str, ...], expected: Any
) -> None:
    client.enqueue("send_welcome_email", {"user_id": 9}, **opts)

    want = manifest(f"send-welcome-email-{sfx(1)}", plain_spec(args={"user_id": 9}))
    if path:
        node = want
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = expected
    assert created(cluster) == [want]


def test_the_client_template_is_the_default_and_calls_do_not_change_it(
    cluster: FakeCluster,
) -> None:
    client = Client(NS, api=SyncApi(cluster), template=OTHER_TEMPLATE, retry_delays=NO_WAIT)
    client.enqueue("a", pod_annotations={"x": "1"})
    client.enqueue("b")

    first, second = created(cluster)
    assert first["spec"]["template"] == {
        "metadata": {"labels": {"tier": "batch"}, "annotations": {"x": "1"}},
        "spec": OTHER_TEMPLATE["spec"],
    }
    assert second["spec"]["template"] == OTHER_TEMPLATE
    assert OTHER_TEMPLATE["metadata"] == {"labels": {"tier": "batch"}}


def test_a_call_image_replaces_the_client_template(cluster: FakeCluster) -> None:
    client = Client(NS, api=SyncApi(cluster), template=OTHER_TEMPLATE)
    client.enqueue("a", image=IMAGE)
    assert created(cluster)[0]["spec"]["template"] == plain_spec()["template"]


def too_big_args() -> dict[str, str]:
    return {"s": "x" * (TASK_ARGS_MAX_BYTES - len('{"s":""}') + 1)}


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda c: c.enqueue("t", too_big_args()), ValueError, "at most 32768"),
        # Measured as the operator measures it: non-ASCII is escaped, "é" counts 6 bytes.
        (lambda c: c.enqueue("t", {"s": "é" * (TASK_ARGS_MAX_BYTES // 6)}), ValueError, "bytes"),
        (lambda c: c.enqueue("t", {"at": datetime.now(UTC)}), ValueError, "JSON object"),
        (lambda c: c.enqueue("t", {"x": float("nan")}), ValueError, "JSON object"),
        (lambda c: c.enqueue("t", {1: "one"}), ValueError, "string"),
        (lambda c: c.enqueue("not a task!"), ValueError, "pattern"),
        (lambda c: c.enqueue("t", queue="Not_A_Label"), ValueError, "queue"),
        (lambda c: c.enqueue("t", priority=2**31), ValueError, "priority"),
        (lambda c: c.enqueue("t", retry={"attempts": -1}), ValueError, "attempts"),
        (lambda c: c.enqueue("t", retry={"delays": ["soon"]}), ValueError, "delays"),
        (lambda c: c.enqueue("t", timeout="5 minutes"), ValueError, "timeout: '5 minutes'"),
        (lambda c: c.enqueue("t", timeout=timedelta(seconds=-1)), ValueError, "negative"),
        (lambda c: c.enqueue("t", ttl_after_finished="1d"), ValueError, "ttl_after_finished"),
        (lambda c: c.enqueue("t", name="Bad_Name"), ValueError, "pattern"),
        (lambda c: c.enqueue("t", name="a" * 64), ValueError, "at most 63"),
        (lambda c: c.enqueue("t", labels={"n": 1}), ValueError, "labels"),
        (lambda c: c.enqueue("t", image=IMAGE, template=OTHER_TEMPLATE), ValueError, "not both"),
        (
            lambda c: c.enqueue("t", template={"spec": {"containers": []}}),
            ValueError,
            "containers",
        ),
        (lambda c: c.enqueue("t", colour="red"), TypeError, "colour"),
        (lambda c: c.schedule("t"), ValueError, "exactly one"),
        (
            lambda c: c.schedule("t", delay="1h", at=datetime.now(UTC)),
            ValueError,
            "exactly one",
        ),
        (lambda c: c.schedule("t", at=datetime(2030, 1, 1)), ValueError, "timezone-aware"),
        (lambda c: c.schedule("t", delay="tomorrow"), ValueError, "delay: 'tomorrow'"),
        (lambda c: c.schedule("t", delay=timedelta(hours=-1)), ValueError, "negative"),
        (lambda c: c.continue_with([], "t"), ValueError, "at least one parent"),
        (lambda c: c.continue_with(JobHandle("other", "p"), "t"), ValueError, "namespace"),
        (lambda c: c.continue_with("p", "t", condition="Failed"), ValueError, "after_condition"),
        (lambda c: c.batch([]), ValueError, "at least one call"),
        (lambda c: c.batch([Call("a")], condition="Finished"), ValueError, "then="),
        (lambda c: c.batch([Call("a"), Call("b", opts={"queue": "x_y"})]), ValueError, "queue"),
        (lambda c: c.batch([Call("a")], then=Call("b", {"x": set()})), ValueError, "JSON"),
        (lambda c: c.get(JobHandle("other", "p")), ValueError, "namespace"),
    ],
)
def test_invalid_input_fails_before_any_request(
    client: Client,
    cluster: FakeCluster,
    call: Callable[[Client], object],
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        call(client)
    assert cluster.calls == []


def test_args_of_exactly_the_limit_are_accepted(client: Client, cluster: FakeCluster) -> None:
    args = {"s": "x" * (TASK_ARGS_MAX_BYTES - len('{"s":""}'))}
    assert len(json.dumps(args, separators=(",", ":"))) == TASK_ARGS_MAX_BYTES
    client.enqueue("t", args)
    assert created(cluster)[0]["spec"]["task"]["args"] == args


@pytest.mark.parametrize(
    ("image", "template", "message"),
    [
        (IMAGE, OTHER_TEMPLATE, "not both"),
        (None, {"spec": {"containers": []}}, "containers"),
    ],
)
def test_the_client_takes_at_most_one_valid_pod_source_before_a_job_is_built(
    cluster: FakeCluster, image: str | None, template: dict[str, Any] | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Client(NS, image, SyncApi(cluster), template).enqueue("t")
    assert cluster.calls == []


def test_without_image_or_template_the_job_leaves_the_pod_to_its_queue(
    cluster: FakeCluster,
) -> None:
    # The JobQueue's spec.template runs it (Hangfire: the queue's workers have the code).
    handle = Client(NS, api=SyncApi(cluster)).enqueue("t", {"n": 1}, queue="mail")
    spec = {"task": {"name": "t", "args": {"n": 1}}, "queue": "mail"}
    assert created(cluster) == [manifest(handle.name, spec)]


def test_pod_metadata_without_a_pod_template_is_refused(cluster: FakeCluster) -> None:
    with pytest.raises(ValueError, match="need a pod template"):
        Client(NS, api=SyncApi(cluster)).enqueue("t", pod_annotations={"a": "b"})
    assert cluster.calls == []


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("task", "stem"),
    [
        ("send_welcome_email", "send-welcome-email"),
        ("App.Tasks:Send", "app-tasks-send"),
        ("reports.v2:build__pdf-", "reports-v2-build-pdf"),
        ("_", "job"),
        ("x" * 100, "x" * 50),
        ("a_" * 40, "-".join("a" * 25)),  # cut at 50, then the trailing "-" dropped
    ],
)
def test_job_names_are_the_task_as_a_dns_label_and_a_suffix(task: str, stem: str) -> None:
    name = job_name(task, "k2b4f6h8j9mn")
    assert name == f"{stem}-k2b4f6h8j9mn"
    assert len(name) <= 63


@given(
    task=st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_.:-]{0,252}\Z"),
    suffix=st.text(SUFFIX_ALPHABET, min_size=SUFFIX_LENGTH, max_size=SUFFIX_LENGTH),
)
def test_every_valid_task_name_gives_a_valid_job_name(task: str, suffix: str) -> None:
    name = job_name(task, suffix)
    assert DNS_LABEL.match(name)
    assert len(name) <= 63
    assert name.endswith("-" + suffix)


def test_random_suffixes_are_long_and_distinct() -> None:
    drawn = {random_suffix() for _ in range(1000)}
    assert len(drawn) == 1000
    assert all(len(s) == SUFFIX_LENGTH and set(s) <= set(SUFFIX_ALPHABET) for s in drawn)


def test_a_client_without_fixed_suffixes_names_jobs_apart() -> None:
    cluster = sync_cluster()
    client = Client(NS, IMAGE, SyncApi(cluster))
    first, second = client.enqueue("t"), client.enqueue("t")
    assert first.name != second.name
    assert re.fullmatch(rf"t-[{SUFFIX_ALPHABET}]{{{SUFFIX_LENGTH}}}", first.name)


# ---------------------------------------------------------------- schedule


@pytest.mark.parametrize(
    ("when", "field", "value"),
    [
        ({"delay": timedelta(hours=1, minutes=30)}, "startAfter", "1h30m"),
        ({"delay": timedelta(days=1, milliseconds=400)}, "startAfter", "24h0.4s"),
        ({"delay": timedelta(milliseconds=500)}, "startAfter", "500ms"),
        ({"delay": timedelta(seconds=1.25)}, "startAfter", "1.25s"),
        ({"delay": timedelta(0)}, "startAfter", "0s"),
        ({"delay": "90s"}, "startAfter", "90s"),
        ({"delay": "1.5h"}, "startAfter", "1.5h"),
        (
            {"at": datetime(2026, 11, 22, 11, 0, 0, 999, tzinfo=timezone(timedelta(hours=1)))},
            "startAt",
            "2026-11-22T10:00:00Z",
        ),
    ],
)
def test_schedule_sets_start_after_or_start_at(
    client: Client, cluster: FakeCluster, when: Any, field: str, value: str
) -> None:
    handle = client.schedule("send_reminder", {"user_id": 9}, **when, queue="mail")

    spec = plain_spec("send_reminder", args={"user_id": 9})
    assert created(cluster) == [manifest(handle.name, {**spec, "queue": "mail", field: value})]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(microseconds=20), "20us"),
        (timedelta(microseconds=1500), "1.5ms"),
        (timedelta(milliseconds=250), "250ms"),
        (timedelta(seconds=1, milliseconds=500), "1.5s"),
        (timedelta(minutes=1, microseconds=1), "1m0.000001s"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(days=2), "48h"),
    ],
)
def test_exact_duration_keeps_fractions_of_a_second(value: timedelta, text: str) -> None:
    assert exact_duration(value) == text


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3660)))
def test_exact_duration_reads_back_as_the_same_timedelta(value: timedelta) -> None:
    assert parse_duration(exact_duration(value)) == value


# ---------------------------------------------------------------- continuations and batches


@pytest.mark.parametrize(
    ("parent", "after"),
    [
        ("create-invoice", ["create-invoice"]),
        (JobHandle(NS, "create-invoice"), ["create-invoice"]),
        (["a", JobHandle(NS, "b")], ["a", "b"]),
    ],
)
def test_continue_with_names_its_parents(
    client: Client, cluster: FakeCluster, parent: Any, after: list[str]
) -> None:
    client.continue_with(parent, "email_invoice", {"invoice": 42})

    spec = {
        **plain_spec("email_invoice", args={"invoice": 42}),
        "after": [{"name": name} for name in after],
    }
    assert created(cluster) == [manifest(f"email-invoice-{sfx(1)}", spec)]


def test_continue_with_sends_an_explicit_condition(client: Client, cluster: FakeCluster) -> None:
    client.continue_with("a", "cleanup", condition="Finished", priority=1)
    spec = {
        **plain_spec("cleanup"),
        "after": [{"name": "a"}],
        "afterCondition": "Finished",
        "priority": 1,
    }
    assert created(cluster) == [manifest(f"cleanup-{sfx(1)}", spec)]


def test_continue_with_a_fresh_handle(client: Client, cluster: FakeCluster) -> None:
    parent = client.enqueue("create_invoice")
    client.continue_with(parent, "email_invoice")
    assert created(cluster)[1]["spec"]["after"] == [{"name": parent.name}]


def test_batch_creates_the_jobs_then_one_continuation_after_all_of_them(
    client: Client, cluster: FakeCluster
) -> None:
    batch = client.batch(
        [Call("resize", {"id": 1}), Call("resize", {"id": 2}, {"queue": "images"})],
        then=Call("notify", {"done": True}, {"priority": 3}),
        condition="Finished",
    )

    first, second = f"resize-{sfx(1)}", f"resize-{sfx(2)}"
    assert batch == Batch(
        (JobHandle(NS, first), JobHandle(NS, second)), JobHandle(NS, f"notify-{sfx(3)}")
    )
    assert created(cluster) == [
        manifest(first, plain_spec("resize", args={"id": 1})),
        manifest(second, {**plain_spec("resize", args={"id": 2}), "queue": "images"}),
        manifest(
            f"notify-{sfx(3)}",
            {
                **plain_spec("notify", args={"done": True}),
                "priority": 3,
                "after": [{"name": first}, {"name": second}],
                "afterCondition": "Finished",
            },
        ),
    ]


def test_batch_without_continuation(client: Client, cluster: FakeCluster) -> None:
    batch = client.batch([Call("a")])
    assert batch == Batch((JobHandle(NS, f"a-{sfx(1)}"),), None)
    assert len(cluster.calls) == 1


# ---------------------------------------------------------------- operations by annotation


@pytest.mark.parametrize(
    ("operation", "plural", "annotation"),
    [
        (Client.requeue, "backgroundjobs", "stoker.dev/requeue"),
        (Client.retry_now, "backgroundjobs", "stoker.dev/retry-now"),
        (Client.trigger, "recurringjobs", "stoker.dev/trigger"),
    ],
)
def test_operations_merge_patch_one_annotation_with_a_token(
    client: Client,
    cluster: FakeCluster,
    operation: Callable[..., str],
    plural: str,
    annotation: str,
) -> None:
    cluster.put(plural, "nightly")

    token = operation(client, "nightly")
    again = operation(client, "nightly", token="abc")

    assert re.fullmatch(r"[0-9a-f]{32}", token)
    assert again == "abc"
    assert cluster.calls == [
        (
            "patch",
            {
                **WHERE,
                "plural": plural,
                "name": "nightly",
                "body": {"metadata": {"annotations": {annotation: value}}},
                "_content_type": "application/merge-patch+json",
            },
        )
        for value in (token, "abc")
    ]
    assert cluster.objects[(plural, NS, "nightly")]["metadata"]["annotations"] == {
        annotation: "abc"
    }


def test_fresh_tokens_differ(client: Client, cluster: FakeCluster) -> None:
    cluster.put("backgroundjobs", "j")
    assert len({client.requeue("j") for _ in range(20)}) == 20


def test_an_operation_on_a_missing_job_raises_not_found(client: Client) -> None:
    with pytest.raises(kubernetes.client.ApiException) as raised:
        client.requeue("missing")
    assert raised.value.status == 404


# ---------------------------------------------------------------- delete and get


def test_delete_lets_the_garbage_collector_take_the_pods(
    client: Client, cluster: FakeCluster
) -> None:
    cluster.put("backgroundjobs", "j")
    assert client.delete(JobHandle(NS, "j")) is True
    assert cluster.calls == [("delete", {**JOBS, "name": "j", "propagation_policy": "Background"})]
    assert cluster.objects == {}


def test_delete_of_a_missing_job_is_false(client: Client) -> None:
    assert client.delete("missing") is False


def test_get_returns_the_stored_object(client: Client, cluster: FakeCluster) -> None:
    handle = client.enqueue("t")
    cluster.objects[("backgroundjobs", NS, handle.name)]["status"] = {"phase": "Running"}

    job = client.get(handle)

    assert job["status"] == {"phase": "Running"}
    assert cluster.calls[-1] == ("get", {**JOBS, "name": handle.name})


def test_get_of_a_missing_job_raises_not_found(client: Client) -> None:
    with pytest.raises(kubernetes.client.ApiException, match="404"):
        client.get("missing")


# ---------------------------------------------------------------- retries and idempotency


def test_a_create_whose_answer_was_lost_is_not_made_twice(
    client: Client, cluster: FakeCluster
) -> None:
    cluster.faults = [Fault("create", None, applied=True)]

    handle = client.enqueue("t", {"n": 1})

    first, second = cluster.calls
    assert first == second  # the same name again, so the second create found the first job
    assert list(cluster.objects) == [("backgroundjobs", NS, handle.name)]


@pytest.mark.parametrize("status", [None, 429, 500, 502, 503, 504])
def test_transient_failures_are_retried(
    client: Client, cluster: FakeCluster, status: int | None
) -> None:
    cluster.faults = [Fault("create", status), Fault("create", status)]
    handle = client.enqueue("t")
    assert len(cluster.calls) == 3
    assert ("backgroundjobs", NS, handle.name) in cluster.objects


def test_retries_wait_the_configured_delays(
    cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    client = Client(NS, IMAGE, SyncApi(cluster), retry_delays=(0.5, 2.0))
    cluster.put("backgroundjobs", "j")
    cluster.faults = [Fault("patch", 503), Fault("patch", None)]

    client.requeue("j")

    assert slept == [0.5, 2.0]


def test_retries_stop_when_the_delays_run_out(client: Client, cluster: FakeCluster) -> None:
    cluster.faults = [Fault("create", 503) for _ in range(4)]
    with pytest.raises(kubernetes.client.ApiException, match="503"):
        client.enqueue("t")
    assert len(cluster.calls) == 4
    assert cluster.objects == {}


def test_a_lost_connection_is_raised_when_the_delays_run_out(cluster: FakeCluster) -> None:
    client = Client(NS, IMAGE, SyncApi(cluster), retry_delays=())
    cluster.faults = [Fault("get", None)]
    with pytest.raises(urllib3.exceptions.ProtocolError):
        client.get("j")


@pytest.mark.parametrize("status", [400, 403, 422])
def test_other_failures_are_raised_at_once(
    client: Client, cluster: FakeCluster, status: int
) -> None:
    cluster.faults = [Fault("create", status)]
    with pytest.raises(kubernetes.client.ApiException):
        client.enqueue("t")
    assert len(cluster.calls) == 1


def test_a_generated_name_that_is_taken_is_an_error_not_someone_elses_job(
    client: Client, cluster: FakeCluster
) -> None:
    theirs = {"metadata": {"name": f"t-{sfx(1)}"}, "spec": {"queue": "theirs"}}
    cluster.put("backgroundjobs", f"t-{sfx(1)}", theirs)

    with pytest.raises(kubernetes.client.ApiException) as raised:
        client.enqueue("t")

    assert raised.value.status == 409
    assert cluster.objects[("backgroundjobs", NS, f"t-{sfx(1)}")] == theirs


def test_a_chosen_name_that_exists_returns_the_existing_job(
    client: Client, cluster: FakeCluster
) -> None:
    first = client.enqueue("charge", {"order": 42}, name="charge-order-42")
    second = client.enqueue("charge", {"order": 42}, name="charge-order-42")

    assert first == second == JobHandle(NS, "charge-order-42")
    assert len(cluster.objects) == 1


def test_a_delete_whose_answer_was_lost_still_reports_the_deletion(
    client: Client, cluster: FakeCluster
) -> None:
    cluster.put("backgroundjobs", "j")
    cluster.faults = [Fault("delete", 504, applied=True)]
    assert client.delete("j") is True
    assert len(cluster.calls) == 2


CREATE = Request("create", NS, "backgroundjobs", "j", {})
CREATE_CHOSEN = Request("create", NS, "backgroundjobs", "j", {}, adopt_existing=True)
DELETE = Request("delete", NS, "backgroundjobs", "j")
PATCH = Request("patch", NS, "backgroundjobs", "j", {})


@pytest.mark.parametrize(
    ("request_", "status", "attempt", "expected"),
    [
        (CREATE, 409, 0, None),  # a generated name taken by another job
        (CREATE, 409, 1, Reply()),  # our own earlier attempt made it
        (CREATE_CHOSEN, 409, 0, Reply()),
        (PATCH, 409, 1, None),
        (DELETE, 404, 0, Reply(existed=False)),
        (DELETE, 404, 2, Reply(existed=True)),
        (PATCH, 404, 1, None),
        (PATCH, None, 0, 0.5),
        (PATCH, 429, 1, 1.0),
        (PATCH, 503, 2, 2.0),
        (PATCH, 503, 3, None),  # out of delays
        (PATCH, 0, 0, None),  # the client's own failure (TLS), not the server's
        (CREATE, 403, 0, None),
    ],
)
def test_after_error(request_: Request, status: int | None, attempt: int, expected: Any) -> None:
    assert after_error(request_, status, attempt, (0.5, 1.0, 2.0)) == expected


# ---------------------------------------------------------------- the async client

SyncCall = Callable[[Any], object]

SAME_CALLS: dict[str, SyncCall] = {
    "enqueue": lambda c: c.enqueue("send_welcome_email", {"user_id": 9}, queue="critical"),
    "schedule": lambda c: c.schedule("t", delay=timedelta(minutes=5), retry=2),
    "schedule at": lambda c: c.schedule("t", at=datetime(2030, 1, 1, tzinfo=UTC)),
    "continue_with": lambda c: c.continue_with(["a", "b"], "t", condition="Finished"),
    "batch": lambda c: c.batch([Call("a"), Call("b")], then=Call("c")),
    "requeue": lambda c: c.requeue("j", token="t1"),
    "retry_now": lambda c: c.retry_now(JobHandle(NS, "j"), token="t2"),
    "trigger": lambda c: c.trigger("nightly", token="t3"),
    "delete": lambda c: c.delete("j"),
    "delete missing": lambda c: c.delete("missing"),
    "get": lambda c: c.get("j"),
}


def with_objects(cluster: FakeCluster) -> FakeCluster:
    cluster.put("backgroundjobs", "j")
    cluster.put("recurringjobs", "nightly")
    return cluster


@pytest.mark.parametrize("call", SAME_CALLS.values(), ids=list(SAME_CALLS))
async def test_the_async_client_sends_and_returns_what_the_sync_client_does(
    suffixes: Callable[[], None], call: Callable[[Any], Any]
) -> None:
    sync = with_objects(sync_cluster())
    sync_result = call(Client(NS, IMAGE, SyncApi(sync)))
    suffixes()
    async_ = with_objects(async_cluster())
    async_result = await call(AsyncClient(NS, IMAGE, AsyncApi(async_)))

    assert async_.calls == sync.calls
    assert async_.objects == sync.objects
    assert async_result == sync_result


@pytest.fixture
def acluster(suffixes: Callable[[], None]) -> FakeCluster:
    return async_cluster()


@pytest.fixture
def aclient(acluster: FakeCluster) -> AsyncClient:
    return AsyncClient(NS, IMAGE, AsyncApi(acluster), retry_delays=NO_WAIT)


async def test_async_create_whose_answer_was_lost_is_not_made_twice(
    aclient: AsyncClient, acluster: FakeCluster
) -> None:
    acluster.faults = [Fault("create", None, applied=True), Fault("create", 503)]
    handle = await aclient.enqueue("t")
    assert len(acluster.calls) == 3
    assert list(acluster.objects) == [("backgroundjobs", NS, handle.name)]


async def test_async_timeouts_are_retried(aclient: AsyncClient, acluster: FakeCluster) -> None:
    acluster.disconnect = TimeoutError
    acluster.put("backgroundjobs", "j")
    acluster.faults = [Fault("get", None)]
    assert (await aclient.get("j"))["metadata"]["name"] == "j"


async def test_async_failures_are_raised(aclient: AsyncClient, acluster: FakeCluster) -> None:
    acluster.faults = [Fault("patch", 403)]
    with pytest.raises(kubernetes_asyncio.client.ApiException):
        await aclient.trigger("nightly")
    acluster.faults = [Fault("get", None) for _ in range(4)]
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await aclient.get("j")


async def test_async_validation_happens_before_any_request(
    aclient: AsyncClient, acluster: FakeCluster
) -> None:
    with pytest.raises(ValueError, match="at most 32768"):
        await aclient.batch([Call("a"), Call("b", too_big_args())])
    assert acluster.calls == []


# ---------------------------------------------------------------- connecting and closing

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}
users:
- name: me
  user: {token: secret}
contexts:
- name: dev
  context: {cluster: local, user: me, namespace: shop}
- name: bare
  context: {cluster: local, user: me}
current-context: dev
"""


@pytest.fixture
def kubeconfig(tmp_path: Path) -> str:
    path = tmp_path / "config"
    path.write_text(KUBECONFIG)
    return str(path)


@pytest.fixture
def in_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A pod's service account, as files in tmp_path."""
    for name, content in (("token", "pod-token"), ("namespace", "jobs")):
        (tmp_path / name).write_text(content)
    for module in (kubernetes.config.incluster_config, kubernetes_asyncio.config.incluster_config):
        monkeypatch.setattr(module, "SERVICE_TOKEN_FILENAME", str(tmp_path / "token"))
        # Any valid PEM bundle: aiohttp loads it when the session is made.
        monkeypatch.setattr(module, "SERVICE_CERT_FILENAME", certifi.where())
    monkeypatch.setattr(client_module, "SERVICE_NAMESPACE_FILE", str(tmp_path / "namespace"))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.2")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    yield


@pytest.fixture
def outside_a_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


def host(client: Client | AsyncClient) -> str:
    return str(client._api.api_client.configuration.host)


@pytest.mark.parametrize(
    ("context", "namespace", "expected"),
    [(None, None, "shop"), ("bare", None, "default"), ("dev", "other", "other")],
)
def test_from_kubeconfig_uses_the_context_and_its_namespace(
    kubeconfig: str, context: str | None, namespace: str | None, expected: str
) -> None:
    with Client.from_kubeconfig(context, namespace, config_file=kubeconfig, image=IMAGE) as client:
        assert client.namespace == expected
        assert host(client) == "https://127.0.0.1:6443"


def test_from_kubeconfig_with_an_unknown_context_fails(kubeconfig: str, in_cluster: None) -> None:
    with pytest.raises(kubernetes.config.ConfigException):
        Client.from_kubeconfig("nope", config_file=kubeconfig)


def test_without_a_kubeconfig_the_pod_service_account_is_used(
    tmp_path: Path, in_cluster: None
) -> None:
    client = Client.from_kubeconfig(config_file=str(tmp_path / "absent"), image=IMAGE)
    assert client.namespace == "jobs"
    assert host(client) == "https://127.0.0.2:443"


def test_without_a_kubeconfig_outside_a_cluster_both_causes_are_named(
    tmp_path: Path, outside_a_cluster: None
) -> None:
    with pytest.raises(kubernetes.config.ConfigException, match=r"no usable kubeconfig.*cluster"):
        Client.from_kubeconfig(config_file=str(tmp_path / "absent"))


async def test_async_from_kubeconfig_uses_the_context_and_its_namespace(kubeconfig: str) -> None:
    async with await AsyncClient.from_kubeconfig(config_file=kubeconfig) as client:
        assert client.namespace == "shop"
        assert host(client) == "https://127.0.0.1:6443"


async def test_async_without_a_kubeconfig_the_pod_service_account_is_used(
    tmp_path: Path, in_cluster: None
) -> None:
    async with await AsyncClient.from_kubeconfig(config_file=str(tmp_path / "absent")) as client:
        assert client.namespace == "jobs"
        assert host(client) == "https://127.0.0.2:443"


async def test_async_without_a_kubeconfig_outside_a_cluster_both_causes_are_named(
    tmp_path: Path, outside_a_cluster: None
) -> None:
    with pytest.raises(kubernetes_asyncio.config.ConfigException, match="no usable kubeconfig"):
        await AsyncClient.from_kubeconfig(config_file=str(tmp_path / "absent"))


def test_close_releases_only_a_connection_the_client_made(
    kubeconfig: str, cluster: FakeCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[object] = []
    monkeypatch.setattr(kubernetes.client.ApiClient, "close", lambda self: closed.append(self))
    given_api = SyncApi(cluster)

    with Client(NS, IMAGE, given_api):
        pass
    with Client.from_kubeconfig(config_file=kubeconfig) as made:
        pass
    with Client(NS, IMAGE) as default:
        pass

    assert not given_api.api_client.closed
    assert closed == [made._api.api_client, default._api.api_client]


async def test_async_close_releases_only_a_session_the_client_made(
    kubeconfig: str, acluster: FakeCluster
) -> None:
    given_api = AsyncApi(acluster)
    async with AsyncClient(NS, IMAGE, given_api):
        pass
    made = await AsyncClient.from_kubeconfig(config_file=kubeconfig)
    async with made:
        pass

    assert not given_api.api_client.closed
    assert made._api.api_client.rest_client.pool_manager.closed


def test_parity_of_public_methods() -> None:
    """Every public method of Client exists on AsyncClient as a coroutine function."""
    public = {n for n in vars(Client) if not n.startswith("_")}
    assert public == {n for n in vars(AsyncClient) if not n.startswith("_")}
    for name in public - {"namespace"}:
        method = getattr(AsyncClient, name)
        assert inspect.iscoroutinefunction(method), name
        sync_params = inspect.signature(getattr(Client, name)).parameters
        assert inspect.signature(method).parameters.keys() == sync_params.keys(), name


def test_in_a_cluster_without_a_namespace_file_the_namespace_is_default(
    tmp_path: Path, in_cluster: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "SERVICE_NAMESPACE_FILE", str(tmp_path / "absent"))
    client = Client.from_kubeconfig(config_file=str(tmp_path / "absent"))
    assert client.namespace == "default"


# ---------------------------------------------------------------- the real client packages


@dataclass
class Seen:
    method: str
    path: str
    content_type: str | None
    body: Any


class Recorder(http.server.BaseHTTPRequestHandler):
    """Records each request and answers 200 with a JSON object (the body it was sent)."""

    seen: list[Seen]

    def answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        # Only a patch's content type matters: it says which kind of patch the body is.
        content_type = self.headers.get("Content-Type") if self.command == "PATCH" else None
        self.seen.append(Seen(self.command, self.path, content_type, body))
        reply = json.dumps(body or {"kind": "Status"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST = do_PATCH = do_DELETE = answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[Seen]]]:
    seen: list[Seen] = []
    handler = type("Handler", (Recorder,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    thread.join()
    server.server_close()


def expected_wire(job: str) -> list[Seen]:
    path = f"/apis/stoker.dev/v1alpha1/namespaces/{NS}/backgroundjobs"
    patch = {"metadata": {"annotations": {"stoker.dev/requeue": "t1"}}}
    return [
        Seen("POST", path, None, manifest(job, plain_spec("t"))),
        Seen("PATCH", f"{path}/{job}", "application/merge-patch+json", patch),
        Seen("DELETE", f"{path}/{job}?propagationPolicy=Background", None, None),
    ]


def test_the_kubernetes_package_sends_the_intended_requests(
    recorder: tuple[str, list[Seen]], suffixes: Callable[[], None]
) -> None:
    url, seen = recorder
    api = kubernetes.client.CustomObjectsApi(
        kubernetes.client.ApiClient(kubernetes.client.Configuration(host=url))
    )
    client = Client(NS, IMAGE, api)
    job = client.enqueue("t")
    client.requeue(job, token="t1")
    client.delete(job)
    assert seen == expected_wire(job.name)


async def test_kubernetes_asyncio_sends_the_intended_requests(
    recorder: tuple[str, list[Seen]], suffixes: Callable[[], None]
) -> None:
    url, seen = recorder
    configuration = kubernetes_asyncio.client.Configuration(host=url)
    async with kubernetes_asyncio.client.ApiClient(configuration) as api_client:
        client = AsyncClient(NS, IMAGE, kubernetes_asyncio.client.CustomObjectsApi(api_client))
        job = await client.enqueue("t")
        await client.requeue(job, token="t1")
        await client.delete(job)
    assert seen == expected_wire(job.name)
