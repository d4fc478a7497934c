"""The only place that talks to the API server.

Idempotent by design: AlreadyExists and NotFound are normal outcomes, not errors. Every write
goes through one client-side rate limiter (QPS/burst settings), is counted in
`stoker_api_writes_total` (so the write budget per job can be measured) and passes the leader
fence first. Every request has a timeout. Lists are paged, and cluster-wide only when the
operator serves every namespace (a namespaced install has no cluster-wide read rights).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar, cast

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from stoker import __version__
from stoker.api.models import GROUP, VERSION
from stoker.kube.leader import Fence
from stoker.metrics import API_WRITES
from stoker.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
MERGE_PATCH = "application/merge-patch+json"
USER_AGENT = f"stoker-operator/{__version__}"
PAGE_SIZE = 500


class RateLimiter:
    """A token bucket: `qps` tokens a second, at most `burst` saved up."""

    def __init__(self, qps: float, burst: int) -> None:
        self.qps, self.burst = qps, burst
        self._tokens = float(burst)
        self._last = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
            self._last = now
            if self._tokens < 1:
                await asyncio.sleep((1 - self._tokens) / self.qps)
                self._last = time.monotonic()
                self._tokens = 1
            self._tokens -= 1


def user_agent(identity: str) -> str:
    """Names the replica, so that two operators can be told apart in the audit log."""
    return f"{USER_AGENT} ({identity})"


async def new_api_client(identity: str, kubeconfig: str | None = None) -> client.ApiClient:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        api = client.ApiClient()
    except config.ConfigException:
        api = await config.new_client_from_config(config_file=kubeconfig)
    api.user_agent = user_agent(identity)
    return api


class Listing:
    """The objects of one list (all its pages) and the resourceVersion it was taken at."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.version = 0


class Kube:
    def __init__(self, api: client.ApiClient, settings: Settings, fence: Fence | None = None):
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.limiter = RateLimiter(settings.api_qps, settings.api_burst)
        self.namespaces = settings.namespaces
        self.timeout = settings.request_timeout.total_seconds()
        # None: no leader election (a single replica by configuration).
        self.fence = fence

    async def _write(self, verb: str, resource: str, call: Callable[[], Awaitable[T]]) -> T:
        await self.limiter.acquire()
        if self.fence is not None:
            self.fence.check()  # after the limiter's wait: the lease may have lapsed meanwhile
        API_WRITES.labels(verb=verb, resource=resource).inc()
        return await call()

    # ------------------------------------------------------------------ reads

    async def list_all(self, plural: str, label_selector: str = "") -> Listing:
        """Every object of a kind (pods when plural == "pods") the operator serves, paged: one
        list across namespaces, or one per served namespace."""
        listing = Listing()
        for namespace in self.namespaces or (None,):
            version = await self._list(plural, label_selector, namespace, listing.items)
            # Compared with held objects to find deletions the watch missed: the oldest wins.
            listing.version = version if not listing.version else min(listing.version, version)
        return listing

    async def _list(
        self, plural: str, label_selector: str, namespace: str | None, into: list[dict[str, Any]]
    ) -> int:
        cont: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "limit": PAGE_SIZE,
                "label_selector": label_selector,
                "_request_timeout": self.timeout,
                "_preload_content": False,
            }
            if cont:
                kwargs["_continue"] = cont
            if plural == "pods" and namespace is None:
                call = self.core.list_pod_for_all_namespaces(**kwargs)
            elif namespace is None:
                call = self.custom.list_cluster_custom_object(GROUP, VERSION, plural, **kwargs)
            elif plural == "pods":
                call = self.core.list_namespaced_pod(namespace, **kwargs)
            else:
                call = self.custom.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural, **kwargs
                )
            page = await _json(call)
            into.extend(page.get("items", []))
            meta = page.get("metadata") or {}
            cont = meta.get("continue")
            if not cont:
                return int(meta.get("resourceVersion") or 0)

    # ------------------------------------------------------------------ writes

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Merge-patch .status; None when the object is gone."""
        try:
            result: dict[str, Any] = await self._write(
                "patch",
                f"{plural}/status",
                lambda: self.custom.patch_namespaced_custom_object_status(
                    GROUP,
                    VERSION,
                    namespace,
                    plural,
                    name,
                    {"status": dict(status)},
                    _content_type=MERGE_PATCH,  # type: ignore[call-arg]  # CRDs take no SMP
                    _request_timeout=self.timeout,
                ),
            )
            return result
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def create_object(self, plural: str, namespace: str, body: Mapping[str, Any]) -> bool:
        """Create a custom object; False when one of that name already exists."""
        try:
            await self._write(
                "create",
                plural,
                lambda: self.custom.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural, dict(body), _request_timeout=self.timeout
                ),
            )
            return True
        except ApiException as e:
            if e.status == 409:
                return False
            raise

    async def delete_object(
        self, plural: str, namespace: str, name: str, uid: str | None = None
    ) -> None:
        """Delete a custom object (its pods follow by garbage collection). The uid
        precondition keeps a stale decision from deleting a newer object of the same name."""
        body = client.V1DeleteOptions(
            propagation_policy="Background",
            preconditions=client.V1Preconditions(uid=uid) if uid else None,
        )
        try:
            await self._write(
                "delete",
                plural,
                lambda: self.custom.delete_namespaced_custom_object(
                    GROUP,
                    VERSION,
                    namespace,
                    plural,
                    name,
                    body=body,
                    _request_timeout=self.timeout,
                ),
            )
        except ApiException as e:
            if e.status not in (404, 409):
                raise

    async def create_pod(
        self, namespace: str, body: Mapping[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """Create the pod of an attempt; (pod, created). An existing pod of that name is
        returned instead, so a restarted operator adopts its pod rather than making another."""
        name = body["metadata"]["name"]
        try:
            pod = await self._write(
                "create",
                "pods",
                lambda: _json(
                    self.core.create_namespaced_pod(
                        namespace,
                        cast(Any, dict(body)),
                        _preload_content=False,
                        _request_timeout=self.timeout,
                    )
                ),
            )
            return pod, True
        except ApiException as e:
            if e.status != 409:
                raise
        existing = self.core.read_namespaced_pod(
            name, namespace, _preload_content=False, _request_timeout=self.timeout
        )
        return await _json(existing), False

    async def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        """Delete one attempt's pod (gone already is fine); the uid precondition spares a
        newer pod of the same name."""
        body = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid))
        try:
            await self._write(
                "delete",
                "pods",
                lambda: self.core.delete_namespaced_pod(
                    name, namespace, body=body, _request_timeout=self.timeout
                ),
            )
        except ApiException as e:
            if e.status not in (404, 409):
                raise

    async def post_event(
        self, involved: Mapping[str, Any], type_: str, reason: str, message: str, now_text: str
    ) -> None:
        meta = involved["metadata"]
        event = {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": now_text,
            "lastTimestamp": now_text,
            "count": 1,
            "source": {"component": "stoker-operator"},
            "reportingComponent": "stoker.dev/operator",
            "reportingInstance": USER_AGENT,
        }
        try:
            await self._write(
                "create",
                "events",
                lambda: self.core.create_namespaced_event(
                    meta["namespace"], cast(Any, event), _request_timeout=self.timeout
                ),
            )
        except (ApiException, OSError, TimeoutError, aiohttp.ClientError) as e:
            # An Event is a courtesy: losing one must never stall a job.
            log.warning(
                "event %s on %s/%s not posted: %s",
                reason,
                meta["namespace"],
                meta["name"],
                getattr(e, "reason", None) or e,
            )


async def _json(call: Awaitable[Any]) -> dict[str, Any]:
    """The body of a core API call made with _preload_content=False, as plain JSON.

    The generated client would build typed model objects from every pod and the loop
    would turn them back into dicts: pure-Python work on the event loop for each attempt.
    Without preloading, the client also leaves the status check to us.
    """
    response = await call
    try:
        data = await response.read()
    finally:
        response.release()
    if not 200 <= response.status <= 299:
        error = ApiException(status=response.status, reason=response.reason)
        error.body = data.decode("utf-8", "replace")
        raise error
    result: dict[str, Any] = json.loads(data)
    return result
