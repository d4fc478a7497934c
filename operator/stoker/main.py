"""Kopf entry points only: every event goes to the one reconcile loop (stoker.loop).

kopf watches RecurringJobs and JobQueues; BackgroundJobs and their pods, most of the events,
come through the loop's lean informers (stoker.kube.informer), started once it leads. Only
event handlers are used: they hand the newest body to the loop, which decides from current
state. Kopf therefore writes nothing of its own to the objects (no finalizers, no
diff-base annotations); its bookkeeping, should a handler kind that needs it be added, is set
to live in .status so that GitOps tools see no drift.

The startup handler returns at once, so that kopf serves /healthz on a standby too; the
loop's task waits for the Lease, loads everything, then reconciles. The probe fails when that
task has ended or (while leading) no pass has completed for `stall_after`, so the kubelet
restarts a wedged operator.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import kopf
import uvloop
from kubernetes_asyncio.client import ApiClient
from prometheus_client import start_http_server

from stoker import metrics, views
from stoker.api.models import GROUP, VERSION
from stoker.core.backoff import error_delay
from stoker.kube import informer, relist
from stoker.kube.api import Kube, new_api_client
from stoker.kube.errors import describe
from stoker.kube.leader import Fence, lead, release, renew_deadline
from stoker.loop import Loop
from stoker.settings import Settings
from stoker.state import Kind

log = logging.getLogger("stoker")
# The kinds kopf watches; BackgroundJobs and pods have the loop's own informers.
KOPF_KINDS = (Kind.RECURRING, Kind.QUEUE)
WATCHED = frozenset(kind.plural for kind in KOPF_KINDS)


def configure(settings: kopf.OperatorSettings, config: Settings) -> None:
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(
        field="status.kopf.last-handled-configuration"
    )
    settings.peering.standalone = True  # a Lease elects the leader, see stoker.kube.leader
    settings.posting.level = logging.WARNING
    # Every list in pages.
    settings.watching.chunk_size = 500
    # No request may hang: a watch ends on the server's timeout, or on the client's shortly
    # after when the connection died silently; it then resumes from its resourceVersion.
    settings.watching.server_timeout = informer.SERVER_TIMEOUT
    settings.watching.client_timeout = informer.CLIENT_TIMEOUT
    timeout = config.request_timeout.total_seconds()
    settings.watching.connect_timeout = timeout
    settings.networking.request_timeout = timeout
    settings.networking.connect_timeout = timeout


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config = Settings.from_env()
    configure(settings, config)
    api = await new_api_client(config.identity)
    fence = Fence(renew_deadline(config)) if config.leader_election else None
    loop = Loop(Kube(api, config, fence), config)
    metrics.REGISTRY.register(views.collector(loop))
    metrics.LEADER.set(0)
    start_http_server(config.metrics_port, registry=metrics.REGISTRY)
    memo.loop, memo.fence, memo.api = loop, fence, api
    memo.listed = set()  # the plurals kopf has listed (see _watching)
    memo.task = asyncio.create_task(_serve(loop, api, config, fence, memo.listed))
    memo.task.add_done_callback(_ended)
    relist.on_listed(_resyncer(loop, memo.listed))
    log.info("stoker serving %s", ", ".join(config.namespaces) or "all namespaces")


async def _serve(
    loop: Loop, api: ApiClient, config: Settings, fence: Fence | None, listed: set[str]
) -> None:
    if fence is not None:
        await lead(config, fence)
    else:
        metrics.LEADER.set(1)
    loop.background(_watching(listed, config.stall_after.total_seconds()))
    failures = 0
    while True:
        loop.heartbeat = loop.monotonic()
        try:
            await loop.prime()
            break
        except Exception as error:  # no rights yet, an outage: the loop must not start blind
            failures += 1
            delay = error_delay(failures, "prime")
            log.error(
                "loading the cluster's state failed: %s; retrying in %s", describe(error), delay
            )
            await asyncio.sleep(delay.total_seconds())
    for watch in loop.informers():
        task = asyncio.create_task(watch.run(loop.versions[watch.plural]))
        _INFORMING.add(task)
        task.add_done_callback(_ended)
    await loop.run()


# The informers' tasks (a task nobody references may be collected while it runs).
_INFORMING: set[asyncio.Task[None]] = set()


def _ended(task: asyncio.Task[None]) -> None:
    """The loop and the informers never end on their own: if one does, exit so that the kubelet
    starts a fresh process."""
    if task.cancelled():
        return
    log.critical("the reconcile loop ended: %r; exiting", task.exception())
    logging.shutdown()
    os._exit(1)


def _resyncer(loop: Loop, plurals: set[str]) -> Callable[[str, str | None], None]:
    """After each listing of a kind but the first (the startup list, which the loop's own
    prime covers), resync: a relist with nothing in it sends no event of its own. Listings
    are recorded in `loop.listed` (a relist's objects then mark a relist too) and every listed
    plural in `plurals` (see _watching)."""

    def listed(plural: str, namespace: str | None) -> None:
        if (plural, namespace) in loop.listed:
            loop.relisting()
        loop.listed.add((plural, namespace))
        plurals.add(plural)

    return listed


async def _watching(listed: set[str], grace: float) -> None:
    """Exit unless kopf watches every resource within `grace` of leading: kopf that started
    while the API server was down may decide the CRDs do not exist and never watch them, and
    a leader that sees no events serves nobody (the kubelet, or any supervisor, restarts us)."""
    await asyncio.sleep(grace)
    missing = WATCHED - listed
    if missing:
        log.critical("not watching %s %.0f s after leading; exiting", sorted(missing), grace)
        logging.shutdown()
        os._exit(1)


@kopf.on.probe(id="reconcile-loop")
async def reconcile_loop(memo: kopf.Memo, **_: Any) -> str:
    task, loop, fence = memo.task, memo.loop, memo.fence
    if task.done():
        raise kopf.PermanentError("the reconcile loop has ended")
    if fence is not None and not fence.leading:
        return "standby"
    if loop.stalled():
        raise kopf.PermanentError("the reconcile loop has not completed a pass in time")
    return "leading"


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    task = getattr(memo, "task", None)
    if task is not None:
        task.remove_done_callback(_ended)
        task.cancel()
    fence = getattr(memo, "fence", None)
    if fence is not None:
        await release(memo.api, Settings.from_env(), fence)


def _feed(kind: Kind) -> Any:
    async def handler(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        # The loop keeps (and trims) the body: its own copy, not kopf's.
        body: dict[str, Any] = dict(event["object"])
        body["metadata"] = dict(body["metadata"])
        memo.loop.on_object(kind, event.get("type"), body)

    return handler


for _kind in KOPF_KINDS:
    kopf.on.event(GROUP, VERSION, _kind.plural, id=f"feed-{_kind.plural}")(_feed(_kind))


# The API server accepts objects nested up to 10,000 levels deep, and decoding, copying and
# validating one recurses once per level: with Python's default limit a single such object
# raised RecursionError in the watch and stopped the operator for every namespace. Run in a
# thread whose stack and recursion limit hold any object the API server can store, such an
# object is an ordinary one: refused by its own status (InvalidSpec), nobody else affected.
STACK_BYTES = 512 * 1024 * 1024  # reserved address space; only the pages used are memory
RECURSION_LIMIT = 100_000


def run_operator() -> None:
    """Run the operator until SIGTERM or SIGINT (kopf.run in a thread with a deep stack)."""
    config = Settings.from_env()
    stop = threading.Event()
    # One access-log line per probe, every few seconds per replica, says nothing.
    logging.getLogger("aiohttp.access").setLevel(max(logging.WARNING, logging.root.level))

    def serve() -> None:
        sys.setrecursionlimit(RECURSION_LIMIT)
        kopf.run(
            # libuv's loop and TLS: asyncio's pure-Python ones were a fifth of the CPU per job.
            loop=uvloop.new_event_loop(),
            standalone=True,
            clusterwide=not config.namespaces,
            namespaces=config.namespaces,
            liveness_endpoint=f"http://0.0.0.0:{config.health_port}/healthz",
            stop_flag=stop,
        )

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.stack_size(STACK_BYTES)
    thread = threading.Thread(target=serve, name="stoker-operator", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.5)
