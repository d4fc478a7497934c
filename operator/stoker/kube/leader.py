"""Leader election on a coordination.k8s.io Lease (the client library's LeaseLock), fenced.

Peering is not leader election: with two replicas only the Lease holder may write. The library
renews the Lease, but a renewal that hangs or fails with a connection error would never reach
its renew deadline. So every renewal here has a timeout, and a `Fence` remembers when the last
renewal succeeded: every write checks it, and a watchdog ends the process the moment the renew
deadline passes, before the Lease expires for the standby. A replica that is not leading
serves /healthz and /metrics (stoker_leader 0) while it waits.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable

from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.leaderelection import electionconfig, leaderelection
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock

from stoker import metrics
from stoker.settings import Settings

log = logging.getLogger(__name__)
RETRY_PERIOD = 2.0  # client-go's default: a renewal attempt every 2 s
# The renewal and watchdog tasks, held for the life of the process.
_tasks: set[asyncio.Task[None]] = set()


class NotLeader(RuntimeError):
    """A write was refused because this replica can no longer be sure it leads."""


class Fence:
    """When this replica last proved it holds the Lease; writes are allowed only within the
    renew deadline of that proof."""

    def __init__(self, renew_deadline: float, clock: Callable[[], float] = time.monotonic):
        self.renew_deadline = renew_deadline
        self.clock = clock
        self.renewed_at: float | None = None  # None: not leading

    @property
    def leading(self) -> bool:
        return self.renewed_at is not None

    def renewed(self, at: float) -> None:
        self.renewed_at = at

    def expired(self) -> bool:
        return self.renewed_at is not None and self.clock() - self.renewed_at >= self.renew_deadline

    def check(self) -> None:
        """Raise NotLeader unless a write may go out now."""
        if self.renewed_at is None or self.expired():
            raise NotLeader("this replica is not (or no longer surely) the leader")


class _Election(leaderelection.LeaderElection):
    """The library's election with a timeout on every attempt, any error counted as a failed
    attempt, and each success recorded in the fence (as of when the attempt started)."""

    def __init__(self, config: electionconfig.Config, fence: Fence, timeout: float) -> None:
        super().__init__(config)
        self.fence, self.timeout = fence, timeout

    async def try_acquire_or_renew(self) -> bool:
        started = self.fence.clock()
        try:
            ok = bool(await asyncio.wait_for(super().try_acquire_or_renew(), self.timeout))
        except Exception as e:  # a timeout, a dropped connection, an API error
            log.warning("lease renewal failed: %s", e or type(e).__name__)
            ok = False
        if ok:  # True only when this replica holds the Lease now
            self.fence.renewed(started)
        return ok


def _exit(reason: str) -> None:
    log.error("%s; exiting so that the standby takes over", reason)
    logging.shutdown()
    os._exit(1)


async def lead(api: ApiClient, settings: Settings, fence: Fence) -> None:
    """Return once this replica holds the Lease. Renewal goes on in the background; when it
    fails for the renew deadline, or its task ends, the process exits at once."""
    leading = asyncio.Event()

    async def started() -> None:
        log.info(
            "%s leads (lease %s/%s)",
            settings.identity,
            settings.lease_namespace,
            settings.lease_name,
        )
        metrics.LEADER.set(1)
        leading.set()
        await asyncio.Event().wait()  # hold the lead until renewal fails

    async def stopped() -> None:
        _exit(f"{settings.identity} lost the lease")

    # Whole seconds: the Lease's leaseDurationSeconds is an integer.
    duration = max(3, int(settings.lease_duration.total_seconds()))
    election = _Election(
        electionconfig.Config(
            LeaseLock(settings.lease_name, settings.lease_namespace, settings.identity, api),
            lease_duration=duration,
            renew_deadline=fence.renew_deadline,
            retry_period=RETRY_PERIOD,
            onstarted_leading=started,
            onstopped_leading=stopped,
        ),
        fence,
        timeout=min(settings.request_timeout.total_seconds(), fence.renew_deadline / 2),
    )
    task = asyncio.create_task(election.run())
    task.add_done_callback(lambda _: _exit("the leader election ended"))
    _tasks.add(task)
    await leading.wait()
    _tasks.add(asyncio.create_task(_watch(fence)))


async def _watch(fence: Fence) -> None:
    """End the process the moment the renew deadline passes without a renewal."""
    while True:
        if fence.expired():
            _exit("the lease was not renewed within the renew deadline")
        await asyncio.sleep(0.25)


def renew_deadline(settings: Settings) -> float:
    """Two thirds of the lease duration (client-go's 10 s of 15 s)."""
    return max(2.5, int(settings.lease_duration.total_seconds()) * 2 / 3)
