"""AsyncClient: stoker.client.Client for asyncio code, over kubernetes_asyncio.

    client = await AsyncClient.from_kubeconfig(namespace="shop", image="ghcr.io/acme/tasks:1.4")
    async with client:
        job = await client.enqueue("send_welcome_email", {"user_id": 9})

Kept apart from stoker.client so that blocking users never import aiohttp. Everything but the
sending (manifests, names, validation, the verdict on a failed attempt) is stoker.client's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, Unpack

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

from stoker.api.models import ANNOTATION_REQUEUE, ANNOTATION_RETRY_NOW, ANNOTATION_TRIGGER
from stoker.client import (
    BACKGROUND_JOBS,
    DEFAULT_RETRY_DELAYS,
    RECURRING_JOBS,
    AfterCondition,
    Batch,
    Call,
    JobHandle,
    JobOptions,
    Reply,
    Request,
    RequestBuilder,
    after_error,
    context_namespace,
    load_in_cluster,
    start_fields,
)


class AsyncClient:
    """The methods of stoker.client.Client, as coroutines.

    Without `api`, kubernetes_asyncio's default configuration is used; make the client inside
    a running event loop then, since its HTTP session belongs to that loop.
    """

    def __init__(
        self,
        namespace: str = "default",
        image: str | None = None,
        api: Any = None,
        template: Mapping[str, Any] | None = None,
        *,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
    ) -> None:
        self._requests = RequestBuilder(namespace, image, template)
        self._owns_api = api is None
        self._api: Any = k8s.CustomObjectsApi() if api is None else api
        self._retry_delays = tuple(retry_delays)

    @classmethod
    async def from_kubeconfig(
        cls,
        context: str | None = None,
        namespace: str | None = None,
        *,
        config_file: str | None = None,
        image: str | None = None,
        template: Mapping[str, Any] | None = None,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
    ) -> Self:
        """As stoker.client.Client.from_kubeconfig."""
        configuration = k8s.Configuration()
        try:
            await k8s_config.load_kube_config(
                config_file=config_file,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
            contexts, current = k8s_config.list_kube_config_contexts(config_file)
            found = context_namespace(contexts, current, context)
        except k8s_config.ConfigException as no_kubeconfig:
            if context is not None:
                raise
            found = load_in_cluster(k8s_config.load_incluster_config, configuration, no_kubeconfig)
        api = k8s.CustomObjectsApi(k8s.ApiClient(configuration))
        client = cls(
            namespace or found or "default", image, api, template, retry_delays=retry_delays
        )
        client._owns_api = True
        return client

    @property
    def namespace(self) -> str:
        return self._requests.namespace

    async def enqueue(
        self, task: str, args: Mapping[str, Any] | None = None, **opts: Unpack[JobOptions]
    ) -> JobHandle:
        """As Client.enqueue (Hangfire's Enqueue)."""
        return await self._create(self._requests.job(task, args, opts))

    async def schedule(
        self,
        task: str,
        args: Mapping[str, Any] | None = None,
        *,
        delay: timedelta | str | None = None,
        at: datetime | None = None,
        **opts: Unpack[JobOptions],
    ) -> JobHandle:
        """As Client.schedule (Hangfire's Schedule)."""
        start_at, start_after = start_fields(delay, at)
        request = self._requests.job(task, args, opts, start_at=start_at, start_after=start_after)
        return await self._create(request)

    async def continue_with(
        self,
        parent: str | JobHandle | Sequence[str | JobHandle],
        task: str,
        args: Mapping[str, Any] | None = None,
        *,
        condition: AfterCondition | None = None,
        **opts: Unpack[JobOptions],
    ) -> JobHandle:
        """As Client.continue_with (Hangfire's ContinueJobWith)."""
        return await self._create(self._requests.continuation(parent, task, args, opts, condition))

    async def batch(
        self,
        calls: Sequence[Call],
        *,
        then: Call | None = None,
        condition: AfterCondition | None = None,
    ) -> Batch:
        """As Client.batch: the jobs one after another, then the continuation."""
        jobs, continuation = self._requests.batch(calls, then, condition)
        handles = tuple([await self._create(job) for job in jobs])
        return Batch(handles, None if continuation is None else await self._create(continuation))

    async def requeue(self, job: str | JobHandle, *, token: str | None = None) -> str:
        """As Client.requeue (Hangfire's Requeue)."""
        return await self._annotate(BACKGROUND_JOBS, job, ANNOTATION_REQUEUE, token)

    async def retry_now(self, job: str | JobHandle, *, token: str | None = None) -> str:
        """As Client.retry_now."""
        return await self._annotate(BACKGROUND_JOBS, job, ANNOTATION_RETRY_NOW, token)

    async def trigger(self, recurring_job: str, *, token: str | None = None) -> str:
        """As Client.trigger (Hangfire's Trigger)."""
        return await self._annotate(RECURRING_JOBS, recurring_job, ANNOTATION_TRIGGER, token)

    async def delete(self, job: str | JobHandle) -> bool:
        """As Client.delete."""
        return (await self._send(self._requests.delete(job))).existed

    async def get(self, job: str | JobHandle) -> dict[str, Any]:
        """As Client.get."""
        body: dict[str, Any] = (await self._send(self._requests.get(job))).body
        return body

    async def close(self) -> None:
        """Close the HTTP session, when this client made it."""
        if self._owns_api:
            await self._api.api_client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _create(self, request: Request) -> JobHandle:
        await self._send(request)
        return request.handle

    async def _annotate(
        self, plural: str, ref: str | JobHandle, key: str, token: str | None
    ) -> str:
        request, token = self._requests.annotate(plural, ref, key, token)
        await self._send(request)
        return token

    async def _send(self, request: Request) -> Reply:
        attempt = 0
        while True:
            try:
                return Reply(await request.call(self._api))
            except (k8s.ApiException, aiohttp.ClientError, TimeoutError) as exc:
                status = exc.status if isinstance(exc, k8s.ApiException) else None
                step = after_error(request, status, attempt, self._retry_delays)
                if step is None:
                    raise
                if isinstance(step, Reply):
                    return step
                await asyncio.sleep(step)
            attempt += 1
