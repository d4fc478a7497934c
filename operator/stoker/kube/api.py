"""The only place that talks to the API server.

Idempotent by design: AlreadyExists and NotFound are normal outcomes, not errors. Every write
goes through one client-side rate limiter (QPS/burst settings), is counted in
`stoker_api_writes_total` (so the write budget per job can be measured) and passes the leader
fence first. Every request has a timeout. Lists are paged, and cluster-wide only when the
operator serves every namespace (a namespaced install has no cluster-wide read rights).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any, TypeVar

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from stoker import __version__
from stoker.api.models import GROUP, VERSION
from stoker.kube.http import JSON, MERGE_PATCH, Http
from stoker.kube.leader import Fence
from stoker.metrics import API_WRITES
from stoker.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
USER_AGENT = f"stoker-operator/{__version__}"
PAGE_SIZE = 500
Body = dict[str, Any]
CORE = frozenset({"pods", "events"})


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

    def refund(self) -> None:
        """Give back a token taken for a write that was not sent."""
        self._tokens = min(self.burst, self._tokens + 1)


# Set in a task that took its next write's token from the limiter already (Loop.send).
prepaid: ContextVar[bool] = ContextVar("prepaid", default=False)


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


def path(plural: str, namespace: str | None = None, name: str | None = None) -> str:
    """The API path of a collection or an object (pods and events are core, the rest ours)."""
    base = "/api/v1" if plural in CORE else f"/apis/{GROUP}/{VERSION}"
    if namespace is not None:
        base += f"/namespaces/{namespace}"
    base += f"/{plural.split('/')[0]}"
    if name is not None:
        base += f"/{name}"
        if "/" in plural:
            base += "/" + plural.split("/", 1)[1]
    return base


class Kube:
    def __init__(self, api: client.ApiClient, settings: Settings, fence: Fence | None = None):
        self.api = api
        self.http = Http(api)
        self.limiter = RateLimiter(settings.api_qps, settings.api_burst)
        self.namespaces = settings.namespaces
        self.timeout = settings.request_timeout.total_seconds()
        # None: no leader election (a single replica by configuration).
        self.fence = fence

    async def _write(self, verb: str, resource: str, call: Callable[[], Awaitable[T]]) -> T:
        if prepaid.get():
            prepaid.set(False)
        else:
            await self.limiter.acquire()
        if self.fence is not None:
            self.fence.check()  # after the limiter's wait: the lease may have lapsed meanwhile
        API_WRITES.labels(verb=verb, resource=resource).inc()
        return await call()

    async def _send(
        self,
        verb: str,
        plural: str,
        namespace: str,
        name: str | None = None,
        body: Any = None,
        content_type: str = JSON,
    ) -> Any:
        """One write: limited, fenced, counted."""
        method = {"create": "POST", "patch": "PATCH", "delete": "DELETE"}[verb]
        return await self._write(
            verb,
            plural,
            lambda: self.http.request(
                method,
                path(plural, namespace, name),
                body=body,
                content_type=content_type,
                seconds=self.timeout,
            ),
        )

    # ------------------------------------------------------------------ reads

    async def list_all(
        self, plural: str, label_selector: str = "", each: Callable[[Body], object] | None = None
    ) -> Listing:
        """Every object of a kind (pods when plural == "pods") the operator serves, paged: one
        list across namespaces, or one per served namespace. With `each`, every object goes
        to it as its page arrives and none is kept: a startup list of 50,000 objects then
        never sits in memory whole beside the store it fills."""
        listing = Listing()
        for namespace in self.namespaces or (None,):
            version = await self.list_into(plural, label_selector, namespace, listing.items, each)
            # Compared with held objects to find deletions the watch missed: the oldest wins.
            listing.version = version if not listing.version else min(listing.version, version)
        return listing

    async def list_into(
        self,
        plural: str,
        label_selector: str,
        namespace: str | None,
        into: list[Body],
        each: Callable[[Body], object] | None = None,
    ) -> int:
        """Append the objects of one namespace (None: all), page by page, to `into` (or hand
        each to `each`); the list's resourceVersion."""
        query = {"limit": str(PAGE_SIZE)}
        if label_selector:
            query["labelSelector"] = label_selector
        while True:
            page = await self.http.request(
                "GET", path(plural, namespace), query=query, seconds=self.timeout
            )
            meta = page.get("metadata") or {}
            items = page.get("items") or []
            if each is None:
                into.extend(items)
            else:
                for item in items:
                    each(item)
            if not meta.get("continue"):
                return int(meta.get("resourceVersion") or 0)
            query["continue"] = meta["continue"]

    # ------------------------------------------------------------------ writes

    async def patch_status(
        self, plural: str, namespace: str, name: str, status: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Merge-patch .status (CRDs take no strategic merge); None when the object is gone."""
        try:
            result: dict[str, Any] = await self._send(
                "patch", f"{plural}/status", namespace, name, {"status": status}, MERGE_PATCH
            )
            return result
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def create_object(self, plural: str, namespace: str, body: Mapping[str, Any]) -> bool:
        """Create a custom object; False when one of that name already exists."""
        try:
            await self._send("create", plural, namespace, body=body)
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
        try:
            await self._send("delete", plural, namespace, name, _delete_options(uid, "Background"))
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
            return await self._send("create", "pods", namespace, body=body), True
        except ApiException as e:
            if e.status != 409:
                raise
        existing = await self.http.request(
            "GET", path("pods", namespace, name), seconds=self.timeout
        )
        return existing, False

    async def delete_pod(self, namespace: str, name: str, uid: str) -> None:
        """Delete one attempt's pod (gone already is fine); the uid precondition spares a
        newer pod of the same name."""
        try:
            await self._send("delete", "pods", namespace, name, _delete_options(uid))
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
            await self._send("create", "events", meta["namespace"], body=event)
        except (ApiException, OSError, TimeoutError, aiohttp.ClientError) as e:
            # An Event is a courtesy: losing one must never stall a job.
            log.warning(
                "event %s on %s/%s not posted: %s",
                reason,
                meta["namespace"],
                meta["name"],
                getattr(e, "reason", None) or e,
            )


def _delete_options(uid: str | None, propagation: str | None = None) -> dict[str, Any]:
    options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
    if uid:
        options["preconditions"] = {"uid": uid}
    if propagation:
        options["propagationPolicy"] = propagation
    return options
