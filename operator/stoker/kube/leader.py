"""Leader election on a coordination.k8s.io Lease (the client library's LeaseLock).

Peering is not leader election: with two replicas only the Lease holder may reconcile. A
replica that loses the Lease exits, so Kubernetes restarts it as a standby; nothing it still
had in flight can race the new leader's decisions.
"""

from __future__ import annotations

import asyncio
import logging
import os

from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.leaderelection import electionconfig, leaderelection
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock

from stoker.settings import Settings

log = logging.getLogger(__name__)


async def become_leader(api: ApiClient, settings: Settings) -> asyncio.Task[None]:
    """Return once this replica holds the Lease; the returned task keeps renewing it."""
    leading = asyncio.Event()

    async def started() -> None:
        log.info(
            "%s leads (lease %s/%s)",
            settings.identity,
            settings.lease_namespace,
            settings.lease_name,
        )
        leading.set()
        await asyncio.Event().wait()  # hold the lead until renewal fails

    async def stopped() -> None:
        log.error("%s lost the lease; exiting so that a standby takes over", settings.identity)
        os._exit(1)

    # Whole seconds: the Lease's leaseDurationSeconds is an integer.
    duration = max(3, int(settings.lease_duration.total_seconds()))
    election = leaderelection.LeaderElection(
        electionconfig.Config(
            LeaseLock(settings.lease_name, settings.lease_namespace, settings.identity, api),
            lease_duration=duration,
            renew_deadline=max(3, duration * 2 // 3),
            retry_period=2,  # client-go's default: a renewal every 2 s
            onstarted_leading=started,
            onstopped_leading=stopped,
        )
    )
    task = asyncio.create_task(election.run())
    waiter = asyncio.create_task(leading.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if not leading.is_set():
        waiter.cancel()
        # The election ended without ever leading: surface why instead of waiting forever.
        task.result()
        raise RuntimeError("leader election ended without acquiring the lease")
    return task
