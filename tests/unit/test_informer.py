"""The lean HTTP layer and informers (stoker.kube.http, stoker.kube.informer) against a small
fake API server on 127.0.0.1: what is sent, how watches resume and relist, how errors read."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.client.exceptions import ApiException

from stoker.core.lifecycle import pod_view
from stoker.kube.api import Kube
from stoker.kube.http import loads
from stoker.kube.informer import Informer
from stoker.settings import Settings
from stoker.state import lean_pod


class FakeAPI:
    """Answers lists and watches of pods from scripts, and records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], Mapping[str, str], bytes]] = []
        self.watches: list[list[dict[str, Any]]] = []  # one list of events per watch request
        self.listed: dict[str, Any] = {"metadata": {"resourceVersion": "0"}, "items": []}
        self.closing = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            (request.method, request.path, dict(request.query), request.headers, body)
        )
        if request.method == "GET" and request.query.get("watch") == "true":
            response = web.StreamResponse()
            await response.prepare(request)
            for event in self.watches.pop(0) if self.watches else []:
                await response.write(orjson.dumps(event) + b"\n")
            if not self.watches:
                await self.closing.wait()  # the last scripted watch stays open
            return response
        if request.method == "GET":
            return web.json_response(self.listed)
        if request.path.endswith("/pods") and b'"taken"' in body:
            status = {"kind": "Status", "message": 'pods "taken" already exists', "code": 409}
            return web.json_response(status, status=409)
        return web.Response(body=body or b"{}", content_type="application/json")


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeAPI, Kube]]:
    api = FakeAPI()
    runner = web.AppRunner(api.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    config = Configuration(host=f"http://127.0.0.1:{port}")
    config.api_key = {"BearerToken": "s3cret"}
    config.api_key_prefix = {"BearerToken": "Bearer"}
    client = ApiClient(config)
    kube = Kube(client, Settings())
    try:
        yield api, kube
    finally:
        api.closing.set()
        await kube.http.close()
        await client.close()
        await runner.cleanup()


def pod(name: str, version: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "resourceVersion": str(version)}}


async def until(condition: Any) -> None:
    async with asyncio.timeout(10):
        while not condition():  # noqa: ASYNC110  (set by callbacks that know no Event)
            await asyncio.sleep(0.01)


def informer(kube: Kube, seen: list[tuple[str | None, str]], relists: list[int]) -> Informer:
    return Informer(
        kube,
        "pods",
        None,
        lambda kind, body: seen.append((kind, body["metadata"]["name"])),
        lambda: relists.append(1),
        "stoker.dev/job-uid",
    )


async def test_a_watch_resumes_from_the_last_version_seen_bookmarks_included(
    fake: tuple[FakeAPI, Kube],
) -> None:
    api, kube = fake
    api.watches = [
        [{"type": "ADDED", "object": pod("a", 11)}, {"type": "BOOKMARK", "object": pod("", 15)}],
        [{"type": "MODIFIED", "object": pod("a", 16)}],
    ]
    seen: list[tuple[str | None, str]] = []
    task = asyncio.create_task(informer(kube, seen, []).run(10))
    try:
        await until(lambda: len(seen) == 2)
    finally:
        task.cancel()
    assert seen == [("ADDED", "a"), ("MODIFIED", "a")]  # a bookmark is no event
    watches = [query for method, _, query, _, _ in api.requests if query.get("watch")]
    assert [w["resourceVersion"] for w in watches] == ["10", "15"]
    assert all(w["labelSelector"] == "stoker.dev/job-uid" for w in watches)
    assert all(w["allowWatchBookmarks"] == "true" for w in watches)


async def test_an_expired_watch_lists_again_reports_the_relist_and_watches_from_the_list(
    fake: tuple[FakeAPI, Kube],
) -> None:
    api, kube = fake
    api.watches = [[{"type": "ERROR", "object": {"kind": "Status", "code": 410}}], []]
    api.listed = {"metadata": {"resourceVersion": "20"}, "items": [pod("b", 19)]}
    seen: list[tuple[str | None, str]] = []
    relists: list[int] = []
    task = asyncio.create_task(informer(kube, seen, relists).run(10))
    try:
        await until(lambda: sum(1 for r in api.requests if r[2].get("watch")) == 2)
    finally:
        task.cancel()
    assert relists == [1]
    assert seen == [(None, "b")]  # a relist's objects come without an event type
    lists = [query for method, _, query, _, _ in api.requests if not query.get("watch")]
    assert lists == [{"limit": "500", "labelSelector": "stoker.dev/job-uid"}]
    watches = [query for method, _, query, _, _ in api.requests if query.get("watch")]
    assert [w["resourceVersion"] for w in watches] == ["10", "20"]


async def test_writes_are_json_with_the_credentials_and_errors_keep_the_servers_message(
    fake: tuple[FakeAPI, Kube], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, kube = fake
    # aiohttp's trust_env would add these credentials (and refuse to combine them with the
    # bearer token); the operator's session reads no environment per request.
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password other\n")
    monkeypatch.setenv("NETRC", str(netrc))

    answer = await kube.patch_status("backgroundjobs", "ns", "j", {"phase": "Running"})
    method, path, _, headers, body = api.requests[-1]
    assert (method, path) == (
        "PATCH",
        "/apis/stoker.dev/v1alpha1/namespaces/ns/backgroundjobs/j/status",
    )
    assert headers["Content-Type"] == "application/merge-patch+json"
    assert headers["authorization"] == "Bearer s3cret"
    assert json.loads(body) == {"status": {"phase": "Running"}} == answer

    with pytest.raises(ApiException) as error:
        await kube.http.request(
            "POST", "/api/v1/namespaces/ns/pods", body={"metadata": {"name": "taken"}}, seconds=5
        )
    assert error.value.status == 409
    assert json.loads(error.value.body or b"")["message"] == 'pods "taken" already exists'


async def test_an_existing_pod_is_read_back_instead_of_created_twice(
    fake: tuple[FakeAPI, Kube],
) -> None:
    api, kube = fake
    api.listed = {"metadata": {"name": "taken", "uid": "u1"}}
    found, created = await kube.create_pod("ns", {"metadata": {"name": "taken"}})
    assert (found, created) == ({"metadata": {"name": "taken", "uid": "u1"}}, False)
    assert [(m, p) for m, p, *_ in api.requests] == [
        ("POST", "/api/v1/namespaces/ns/pods"),
        ("GET", "/api/v1/namespaces/ns/pods/taken"),
    ]


@pytest.fixture
def deep_stack() -> Iterator[None]:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    yield
    sys.setrecursionlimit(limit)


def test_json_deeper_than_orjson_allows_is_decoded_all_the_same(deep_stack: None) -> None:
    depth = 3_000
    text = '{"a":' * depth + "1" + "}" * depth
    value = loads(text.encode())
    for _ in range(depth):
        value = value["a"]
    assert value == 1


def test_a_kept_pod_holds_what_decisions_read_and_nothing_else() -> None:
    full = {
        "metadata": {
            "name": "j-1",
            "namespace": "ns",
            "uid": "p1",
            "resourceVersion": "9",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"stoker.dev/job-uid": "u", "stoker.dev/attempt": "1"},
            "managedFields": [{"manager": "kubelet"}],
            "ownerReferences": [{"uid": "u"}],
        },
        "spec": {"containers": [{"name": "main", "image": "x", "env": [{"name": "A"}] * 20}]},
        "status": {
            "phase": "Failed",
            "startTime": "2026-01-01T00:00:01Z",
            "podIP": "10.0.0.1",
            "conditions": [{"type": "PodScheduled", "status": "True"}],
            "containerStatuses": [
                {
                    "name": "main",
                    "imageID": "sha256:abc",
                    "state": {
                        "terminated": {
                            "exitCode": 3,
                            "reason": "Error",
                            "startedAt": "2026-01-01T00:00:02Z",
                            "finishedAt": "2026-01-01T00:00:05Z",
                        }
                    },
                }
            ],
        },
    }
    kept = lean_pod(json.loads(json.dumps(full)))
    assert pod_view(kept) == pod_view(full)
    assert set(kept) == {"metadata", "status"}
    assert set(kept["metadata"]) == {
        "name", "namespace", "uid", "resourceVersion", "creationTimestamp", "labels"
    }  # fmt: skip
    assert set(kept["status"]) == {"phase", "startTime", "containerStatuses"}
    assert kept["status"]["containerStatuses"][0].keys() == {"name", "state"}


async def test_writes_and_watches_never_take_the_lease_clients_connections(
    fake: tuple[FakeAPI, Kube],
) -> None:
    _, kube = fake
    # The Lease is renewed through the generated client: a pool of writes and watches in
    # flight must not leave its renewal waiting for a connection past the renew deadline.
    assert kube.http.session.connector is not kube.api.rest_client.pool_manager.connector
    assert kube.http.session.connector is not None
    assert kube.http.session.connector.limit >= 32


def test_the_environments_proxy_is_read_once_and_no_proxy_is_honoured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from stoker.kube.http import env_proxy

    monkeypatch.setenv("HTTPS_PROXY", "http://user:pw@proxy.internal:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert env_proxy("https://api.cluster.internal:6443") == "http://user:pw@proxy.internal:3128"
    monkeypatch.setenv("NO_PROXY", "cluster.internal")
    assert env_proxy("https://api.cluster.internal:6443") is None
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.delenv("NO_PROXY")
    assert env_proxy("https://api.cluster.internal:6443") is None
