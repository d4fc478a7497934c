"""Kopf entry points only: every event goes to the one Reconciler.

Only event handlers are used: they hand the newest body to the reconciler, which decides from
current state. Kopf therefore writes nothing of its own to the objects (no finalizers, no
diff-base annotations); its bookkeeping, should a handler kind that needs it be added, is set
to live in .status so that GitOps tools see no drift.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
from prometheus_client import start_http_server

from stoker import metrics
from stoker.api.models import GROUP, LABEL_JOB_UID, VERSION
from stoker.kube.api import Kube, new_api_client
from stoker.kube.leader import become_leader
from stoker.reconciler import Reconciler
from stoker.settings import Settings
from stoker.state import Kind

log = logging.getLogger("stoker")


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(
        field="status.kopf.last-handled-configuration"
    )
    settings.peering.standalone = True  # a Lease elects the leader, see stoker.kube.leader
    settings.posting.level = logging.WARNING
    # Per-object event batching adds its window to every reaction; ours are idempotent anyway.
    settings.batching.batch_window = 0.02
    settings.watching.server_timeout = 300

    config = Settings.from_env()
    api = await new_api_client()
    if config.leader_election:
        memo.lease = await become_leader(api, config)
    reconciler = Reconciler(Kube(api, config), config)
    await reconciler.prime()
    metrics.REGISTRY.register(
        metrics.StateCollector(
            reconciler.job_counts, reconciler.queue_figures, reconciler.next_runs
        )
    )
    start_http_server(config.metrics_port, registry=metrics.REGISTRY)
    memo.reconciler = reconciler
    memo.loop = asyncio.create_task(reconciler.run())
    log.info("stoker serving %s", ", ".join(config.namespaces) or "all namespaces")


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    for name in ("loop", "lease"):
        task = getattr(memo, name, None)
        if task is not None:
            task.cancel()


def _feed(kind: Kind) -> Any:
    async def handler(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        memo.reconciler.on_object(kind, event.get("type"), dict(event["object"]))

    return handler


kopf.on.event(GROUP, VERSION, "backgroundjobs", id="feed-backgroundjobs")(_feed("bgj"))
kopf.on.event(GROUP, VERSION, "recurringjobs", id="feed-recurringjobs")(_feed("rj"))
kopf.on.event(GROUP, VERSION, "jobqueues", id="feed-jobqueues")(_feed("jq"))


@kopf.on.event("", "v1", "pods", labels={LABEL_JOB_UID: kopf.PRESENT})
async def pod_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    memo.reconciler.on_pod(event.get("type"), dict(event["object"]))
