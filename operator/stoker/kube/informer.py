"""Lean list-and-watch for the two kinds that carry most events: BackgroundJobs and their pods.

kopf processes every event it delivers (a deep copy, a diff base, cause detection, handler
invocation): for each job, its own changes and its pod's four or five, that was most of the
operator's CPU. These watches hand each decoded body straight to the loop instead, which
decides from current state anyway. They start from the resourceVersion of the loop's startup
list, so nothing is listed twice; a watch the server ends is resumed from the last version
seen (bookmarks included); when the server's history no longer reaches back (410 Gone), the
kind is listed again and the relist reported, so the loop resyncs as after kopf's relists.
Errors are retried with backoff forever: a watch never gives up on its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientError
from kubernetes_asyncio.client.exceptions import ApiException

from stoker.core.backoff import error_delay
from stoker.kube.api import Kube, path
from stoker.kube.errors import describe

log = logging.getLogger(__name__)

Body = dict[str, Any]
# (event type, body); the type is None for objects of a relist.
Sink = Callable[[str | None, Body], None]
# The server ends each watch after this long; the client gives up a while later when the
# connection died silently. Either way the watch resumes from its last version.
SERVER_TIMEOUT = 60
CLIENT_TIMEOUT = 75.0


class Gone(Exception):
    """The watch's resourceVersion is older than the server's history (HTTP 410)."""


@dataclass
class Informer:
    kube: Kube
    plural: str
    namespace: str | None
    sink: Sink
    on_relist: Callable[[], None]
    label_selector: str = ""
    connect_timeout: float = 30.0

    @property
    def name(self) -> str:
        return f"{self.plural} in {self.namespace or 'all namespaces'}"

    async def run(self, version: int) -> None:
        """Watch from `version` for ever."""
        failures = 0
        while True:
            try:
                version = await self.watch(version)
                failures = 0
            except Gone:
                log.info("the watch of %s expired; listing again", self.name)
                try:
                    version = await self.relist()
                    failures = 0
                except (ApiException, ClientError, OSError, TimeoutError) as error:
                    failures = await self._backoff(failures, error)
            except (ApiException, ClientError, OSError, TimeoutError) as error:
                failures = await self._backoff(failures, error)

    async def _backoff(self, failures: int, error: BaseException) -> int:
        failures += 1
        delay = error_delay(failures, f"watch/{self.name}")
        log.warning("watching %s failed: %s; again in %s", self.name, describe(error), delay)
        await asyncio.sleep(delay.total_seconds())
        return failures

    async def watch(self, version: int) -> int:
        """One watch request; the last resourceVersion seen when the server ends it."""
        query = {
            "resourceVersion": str(version),
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(SERVER_TIMEOUT),
        }
        if self.label_selector:
            query["labelSelector"] = self.label_selector
        try:
            async for event in self.kube.http.watch(
                path(self.plural, self.namespace),
                query,
                seconds=CLIENT_TIMEOUT,
                connect_seconds=self.connect_timeout,
            ):
                kind, body = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if body.get("code") == 410:
                        raise Gone()
                    raise ApiException(status=body.get("code"), reason=body.get("message"))
                version = _version(body) or version
                if kind != "BOOKMARK":
                    self.sink(kind, body)
        except ApiException as error:
            if error.status == 410:
                raise Gone() from error
            raise
        return version

    async def relist(self) -> int:
        """List the kind again; its objects go to the sink as listed (type None)."""
        items: list[Body] = []
        version = await self.kube.list_into(self.plural, self.label_selector, self.namespace, items)
        self.on_relist()
        for body in items:
            self.sink(None, body)
        return version


def _version(body: Body) -> int:
    try:
        return int((body.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0
