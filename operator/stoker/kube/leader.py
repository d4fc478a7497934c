"""Leader election on a coordination.k8s.io Lease (the client library's LeaseLock), fenced.

Peering is not leader election: with two replicas only the Lease holder may write. The library
renews the Lease, but a renewal that hangs or fails with a connection error would never reach
its renew deadline. So every renewal here has a timeout, and a `Fence` remembers when the last
renewal succeeded: every write checks it, and a watchdog ends the process the moment the renew
deadline passes, before the Lease expires for the standby. A replica that is not leading
serves /healthz and /metrics (stoker_leader 0) while it waits.

The election runs on a thread of its own, with its own event loop and API client: a burst of
reconcile work (thousands of events, a startup list of 50,000 objects) on the operator's loop
can then never hold a renewal back past its deadline.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable

from kubernetes_asyncio.client import ApiClient, CoordinationV1Api
from kubernetes_asyncio.leaderelection import electionconfig, leaderelection
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock

from stoker import metrics
from stoker.settings import Settings

log = logging.getLogger(__name__)
RETRY_PERIOD = 2.0  # client-go's default: a renewal attempt every 2 s
# Set by release(): no renewal may put our name back on the Lease after that. A renewal in
# flight holds the lock, so release() waits for it.
_released = threading.Event()
_renewing = threading.Lock()


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
        if _released.is_set():
            await asyncio.Event().wait()  # released: never renew again (the process is ending)
        started = self.fence.clock()
        with _renewing:
            if _released.is_set():  # released while this attempt waited for the lock
                return False
            try:
                ok = bool(await asyncio.wait_for(super().try_acquire_or_renew(), self.timeout))
            except Exception as e:  # a timeout, a dropped connection, an API error
                log.warning("lease renewal failed: %s", e or type(e).__name__)
                ok = False
        if ok and not _released.is_set():  # True only when this replica holds the Lease now
            self.fence.renewed(started)
        return ok


def _exit(reason: str) -> None:
    log.error("%s; exiting so that the standby takes over", reason)
    logging.shutdown()
    os._exit(1)


async def lead(settings: Settings, fence: Fence) -> None:
    """Return once this replica holds the Lease. The election goes on on its own thread; when
    renewal fails for the renew deadline, or the election ends, the process exits at once."""
    loop = asyncio.get_running_loop()
    leading = asyncio.Event()

    def elect() -> None:
        try:
            asyncio.run(_elect(settings, fence, lambda: loop.call_soon_threadsafe(leading.set)))
        except Exception:
            log.exception("the leader election failed")
        finally:
            if not _released.is_set():
                _exit("the leader election ended")

    threading.Thread(target=elect, name="stoker-lease", daemon=True).start()
    await leading.wait()


async def _elect(settings: Settings, fence: Fence, notify: Callable[[], object]) -> None:
    # Imported here: stoker.kube.api imports this module (the fence).
    from stoker.kube.api import new_api_client

    api = await new_api_client(settings.identity)

    async def started() -> None:
        log.info(
            "%s leads (lease %s/%s)",
            settings.identity,
            settings.lease_namespace,
            settings.lease_name,
        )
        metrics.LEADER.set(1)
        notify()
        await _watch(fence)  # hold the lead until the renew deadline passes

    async def stopped() -> None:
        if not _released.is_set():
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
    await election.run()


async def _watch(fence: Fence) -> None:
    """End the process the moment the renew deadline passes without a renewal."""
    while True:
        if fence.expired() and not _released.is_set():
            _exit("the lease was not renewed within the renew deadline")
        await asyncio.sleep(0.25)


async def release(api: ApiClient, settings: Settings, fence: Fence) -> None:
    """Give the Lease up on a clean shutdown (client-go's ReleaseOnCancel), so the standby
    takes over at its next attempt instead of waiting for the Lease to expire. Writes stop
    first: from here on this replica is no leader."""
    if not fence.leading:
        return
    fence.renewed_at = None
    metrics.LEADER.set(0)
    _released.set()
    await asyncio.to_thread(_wait_for_renewal)
    leases = CoordinationV1Api(api)
    timeout = settings.request_timeout.total_seconds()
    try:
        lease = await leases.read_namespaced_lease(
            settings.lease_name, settings.lease_namespace, _request_timeout=timeout
        )
        if lease.spec.holder_identity != settings.identity:
            return
        lease.spec.holder_identity = ""
        lease.spec.lease_duration_seconds = 1
        await leases.replace_namespaced_lease(
            settings.lease_name, settings.lease_namespace, lease, _request_timeout=timeout
        )
        log.info("%s released the lease", settings.identity)
    except Exception as e:  # the standby still takes over when the Lease expires
        log.warning("releasing the lease failed: %s", e)


def _wait_for_renewal() -> None:
    """Wait until no renewal is in flight (none starts after `_released`)."""
    with _renewing:
        pass


def renew_deadline(settings: Settings) -> float:
    """Two thirds of the lease duration (client-go's 10 s of 15 s)."""
    return max(2.5, int(settings.lease_duration.total_seconds()) * 2 / 3)
