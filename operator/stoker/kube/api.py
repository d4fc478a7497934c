"""The only place that talks to the API server.

Idempotent by design: AlreadyExists and NotFound are normal outcomes, not errors. Every write
goes through one client-side rate limiter (QPS/burst settings) and is counted in
`stoker_api_writes_total`, so the write budget per job can be measured.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar, cast

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from stoker import __version__
from stoker.api.models import GROUP, VERSION
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


async def new_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        api = client.ApiClient()
    except config.ConfigException:
        api = await config.new_client_from_config(config_file=kubeconfig)
    api.user_agent = USER_AGENT
    return api


class Kube:
    def __init__(self, api: client.ApiClient, settings: Settings) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.limiter = RateLimiter(settings.api_qps, settings.api_burst)

    async def _write(self, verb: str, resource: str, call: Callable[[], Awaitable[T]]) -> T:
        await self.limiter.acquire()
        API_WRITES.labels(verb=verb, resource=resource).inc()
        return await call()

    # ------------------------------------------------------------------ reads

    async def list_all(
        self, plural: str, label_selector: str = ""
    ) -> AsyncIterator[dict[str, Any]]:
        """Every object of a kind (pods when plural == "pods"), paged, across namespaces."""
        cont: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": PAGE_SIZE, "label_selector": label_selector}
            if cont:
                kwargs["_continue"] = cont
            if plural == "pods":
                raw = self.core.list_pod_for_all_namespaces(**kwargs, _preload_content=False)
                page = await _json(raw)
            else:
                page = await self.custom.list_cluster_custom_object(
                    GROUP, VERSION, plural, **kwargs
                )
            for item in page.get("items", []):
                yield item
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                return

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
                    GROUP, VERSION, namespace, plural, dict(body)
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
                    GROUP, VERSION, namespace, plural, name, body=body
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
                        namespace, cast(Any, dict(body)), _preload_content=False
                    )
                ),
            )
            return pod, True
        except ApiException as e:
            if e.status != 409:
                raise
        existing = self.core.read_namespaced_pod(name, namespace, _preload_content=False)
        return await _json(existing), False

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
                lambda: self.core.create_namespaced_event(meta["namespace"], cast(Any, event)),
            )
        except ApiException as e:
            # An Event is a courtesy: losing one must never stall a job.
            log.warning(
                "event %s on %s/%s not posted: %s",
                reason,
                meta["namespace"],
                meta["name"],
                e.reason,
            )


async def _json(call: Awaitable[Any]) -> dict[str, Any]:
    """The body of a core API call made with _preload_content=False, as plain JSON.

    The generated client would build typed model objects from every pod and the reconciler
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
