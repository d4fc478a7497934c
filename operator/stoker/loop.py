"""The reconcile loop: which objects to look at now, and the bookkeeping around their writes.

One loop serves every object. Events mark objects dirty; the wake-up heap marks objects whose
delay is due. Each pass (`step`) hands RecurringJobs, BackgroundJobs and JobQueues to their
handlers (stoker.handlers), which decide without awaiting and send their writes through `send`;
the next pass may start while writes are in flight, but an object with a write in flight is
decided again only once that write is done, so one object's writes never overtake each other.

Isolation: whatever fails while handling one object (an API error, a timeout, a bug that one
object's content triggers) is caught for that object alone, counted, logged, reported on the
object as a Warning Event, and retried with exponential backoff (about 1 s up to 5 min,
Retry-After honoured). The loop itself cannot die of it; `stalled` tells the health probe when
it has not completed a pass for too long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from aiohttp import ClientError
from kubernetes_asyncio.client.exceptions import ApiException

from stoker import __version__, metrics
from stoker.api.models import API_VERSION, LABEL_JOB_UID, now_utc, rfc3339
from stoker.core.backoff import error_delay
from stoker.handlers.jobs import JobHandler
from stoker.handlers.queues import QueueHandler
from stoker.handlers.recurring import RecurringHandler
from stoker.kube.api import Kube, prepaid
from stoker.kube.errors import describe, retry_after
from stoker.kube.informer import Informer
from stoker.kube.leader import NotLeader
from stoker.settings import Settings
from stoker.state import Body, Key, Kind, Store, key_of, recurring_owner
from stoker.wakeups import Wakeups

log = logging.getLogger(__name__)

ObjKey = tuple[Kind, str, str]
PARALLEL_WRITES = 32
# A pass over many objects (the first, after startup) yields to the event loop this often.
YIELD_EVERY = 200
# The loop completes an (empty) pass at least this often, so its heartbeat says it is alive.
IDLE_TICK = 5.0
# A relist is taken as over (and the state resynced) after this long without relist events.
RESYNC_QUIET = 2.0
# The event type of objects the loop lists itself (kopf's listings have type None).
RESYNCED = "RESYNCED"


class Loop:
    def __init__(
        self,
        kube: Kube,
        settings: Settings,
        clock: Callable[[], datetime] = now_utc,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube, self.settings, self.clock, self.monotonic = kube, settings, clock, monotonic
        self.store = Store(settings.namespaces)
        self.wakeups: Wakeups[ObjKey] = Wakeups()
        self.dirty: set[ObjKey] = set()
        self.heartbeat = monotonic()
        # Consecutive failures per object, for the backoff; objects whose failure was handled
        # (retried later) by the work itself rather than raised.
        self.failures: dict[ObjKey, int] = {}
        self._retrying: set[ObjKey] = set()
        # Objects whose work raised, and until when their backoff holds back new events.
        self._backoff_until: dict[ObjKey, datetime] = {}
        # Set once prime() has loaded everything; a relist after that pauses dispatch.
        self.primed = False
        self._resync_timer: asyncio.TimerHandle | None = None
        # (plural, namespace or None) of every listing completed by a watch (see on_object).
        self.listed: set[tuple[str, str | None]] = set()
        # The resourceVersion of each startup list (plural -> version): the informers' start.
        self.versions: dict[str, int] = {}
        self._relists = 0  # relist events seen: a resync lifts the pause only if none came since
        self._resync_failures = 0
        self._kick = asyncio.Event()
        self._limit = asyncio.Semaphore(PARALLEL_WRITES)
        self._tasks: set[asyncio.Task[None]] = set()
        # Writes in flight, the objects they write, and objects to decide again once done.
        self._writes: set[asyncio.Task[None]] = set()
        self._busy: set[ObjKey] = set()
        self._deferred: set[ObjKey] = set()
        self.jobs = JobHandler(self)
        self.recurring = RecurringHandler(self)
        self.queues = QueueHandler(self)

    # ------------------------------------------------------------------ events in

    def mark(self, key: ObjKey) -> None:
        self.dirty.add(key)
        self._kick.set()

    def on_object(self, kind: Kind, event_type: str | None, body: Body) -> None:
        """A body seen on a watch or a list (`event_type` None: a listed object; kopf's first
        listing of a kind follows the loop's own, so only a later one is a relist)."""
        if event_type is None and self._listed_before(kind.plural, body):
            self.relisting()
        body.setdefault("apiVersion", API_VERSION)  # list items carry neither
        body.setdefault("kind", kind.kind_name)
        key = key_of(body)
        held = self.store.objects[kind].get(key)
        stored = (self.store.remove if event_type == "DELETED" else self.store.put)(kind, body)
        if not stored:
            return
        self.mark((kind, *key))
        self.wake_dependents(kind, body)
        if kind is Kind.QUEUE:
            self.jobs.queue_changed(key, held, None if event_type == "DELETED" else body)

    def wake_dependents(self, kind: Kind, body: Body) -> None:
        """A job's continuations and its RecurringJob decide on its status: wake them on every
        change, whether it came from a watch event or from the answer to our own write."""
        if kind is not Kind.JOB:
            return
        key = key_of(body)
        for child in self.store.children.get(key, ()):
            self.mark((Kind.JOB, *child))
        owner = recurring_owner(body)
        if owner:
            self.mark((Kind.RECURRING, key[0], owner))

    def _listed_before(self, plural: str, body: Body) -> bool:
        namespace = body["metadata"].get("namespace")
        return (plural, None) in self.listed or (plural, namespace) in self.listed

    def on_pod(self, event_type: str | None, pod: Body) -> None:
        job = self.store.remove_pod(pod) if event_type == "DELETED" else self.store.put_pod(pod)
        if job is not None:
            self.mark((Kind.JOB, *job))

    async def prime(self) -> None:
        """Load everything before the first pass, so no decision is made on a partial view."""
        for kind in Kind:
            listing = await self.kube.list_all(
                kind.plural, each=partial(self.on_object, kind, None)
            )
            self.versions[kind.plural] = listing.version
        listing = await self.kube.list_all(
            "pods", label_selector=LABEL_JOB_UID, each=self.store.put_pod
        )
        self.versions["pods"] = listing.version
        self.primed = True

    def informers(self) -> list[Informer]:
        """The lean watches of jobs and pods (one per served namespace), to be run from the
        versions of the startup list (`versions`)."""
        connect = self.settings.request_timeout.total_seconds()
        made = []
        for ns in self.settings.namespaces or (None,):
            made.append(Informer(self.kube, Kind.JOB.plural, ns, self._on_job, self.relisting))
            made.append(Informer(self.kube, "pods", ns, self.on_pod, self.relisting, LABEL_JOB_UID))
        for watch in made:
            watch.connect_timeout = connect
        return made

    def _on_job(self, event_type: str | None, body: Body) -> None:
        self.on_object(Kind.JOB, event_type, body)

    def relisting(self) -> None:
        """A watch is listing again (a 410 after an outage): what it lists is current, but
        objects deleted meanwhile get no DELETED event and the watches of other kinds may not
        have caught up. Until every kind is resynced, no pod is created: a job deleted behind
        the watch's back must not get a pod because its queue's relist came first."""
        if not self.primed:
            return  # the startup list; prime() covers it
        if not self.jobs.paused:
            log.info("a watch is relisting: no pod is created until every kind is resynced")
        self.jobs.paused = True
        self._relists += 1
        if self._resync_timer is not None:
            self._resync_timer.cancel()
        self._resync_timer = asyncio.get_running_loop().call_later(
            RESYNC_QUIET, lambda: self.background(self._resync_all())
        )

    async def _resync_all(self) -> None:
        relists = self._relists
        if self._resync_timer is not None:
            self._resync_timer.cancel()  # this run covers whatever it was scheduled for
            self._resync_timer = None
        try:
            for kind in (*Kind, None):
                await self.resync(kind)
        except Exception as error:
            self._resync_failures += 1
            delay = error_delay(self._resync_failures, "resync")
            log.warning("resync after a relist failed: %s; retrying in %s", describe(error), delay)
            self._resync_timer = asyncio.get_running_loop().call_later(
                delay.total_seconds(), lambda: self.background(self._resync_all())
            )
            return
        self._resync_failures = 0
        if self._relists != relists:
            return  # another relist began meanwhile: its resync lifts the pause
        log.info("resynced every kind after a relist; creating pods again")
        self.jobs.paused = False
        self.jobs.dispatch_due = True
        self._kick.set()

    async def resync(self, kind: Kind | None) -> None:
        """After a watch relisted `kind` (None: pods): list it again and drop what is gone, so
        a job deleted while the watch was away frees its slot instead of haunting the loop."""
        if kind is None:
            pods = await self.kube.list_all("pods", label_selector=LABEL_JOB_UID)
            for pod in pods.items:
                self.on_pod(RESYNCED, pod)
            for job in self.store.resync_pods((key_of(p) for p in pods.items), pods.version):
                self.mark((Kind.JOB, *job))
            return
        listing = await self.kube.list_all(kind.plural)
        for body in listing.items:
            self.on_object(kind, RESYNCED, body)
        held = dict(self.store.objects[kind])
        gone = self.store.resync(kind, (key_of(b) for b in listing.items), listing.version)
        for key in gone:
            log.info("%s %s/%s was deleted while the watch was away", kind.kind_name, *key)
            self.mark((kind, *key))
            self.wake_dependents(kind, held[key])
            if kind is Kind.QUEUE:
                self.jobs.queue_changed(key, held[key], None)

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        metrics.BUILD_INFO.labels(version=__version__).set(1)
        while True:
            keys = self.dirty | set(self.wakeups.pop_due(self.clock()))
            self.dirty = set()
            # Dispatch may have work with no object dirty: slots freed, a relist resynced.
            if keys or self.jobs.dispatchable():
                try:
                    await self.step(keys, wait=False)
                except Exception as error:  # a bug outside any one object's guard
                    log.exception("a reconcile pass failed; its objects are retried")
                    for key in keys:
                        self.failed(key, error)
                continue
            self._kick.clear()
            self.heartbeat = self.monotonic()
            nxt = self.wakeups.next_due()
            timeout = IDLE_TICK
            if nxt is not None:
                timeout = min(timeout, max(0.0, (nxt - self.clock()).total_seconds()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout)

    async def step(self, keys: Iterable[ObjKey], wait: bool = True) -> None:
        """One pass over `keys`: RecurringJobs first (their new jobs are decided in this pass
        when their watch events are in), then every job and one dispatch before any job write
        is awaited, then JobQueue figures. With `wait`, return once every write is done."""
        by_kind: dict[Kind, list[ObjKey]] = {kind: [] for kind in Kind}
        finished: list[ObjKey] = []
        for key in keys:
            if self.held_back(key):
                continue
            if key[0] is Kind.JOB and self.store.finished((key[1], key[2])):
                finished.append(key)  # after dispatch: they hold no slot (a requeued one is
                # dispatched in the next pass)
            else:
                by_kind[key[0]].append(key)
        await self.recurring.reconcile(by_kind[Kind.RECURRING])
        for n, key in enumerate(by_kind[Kind.JOB], 1):
            self.jobs.decide(key)
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let events, probes and writes through a long pass
        self.jobs.dispatch()
        for n, key in enumerate(finished, 1):
            self.jobs.decide(key)
            if n % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        if wait:
            await self.drain()
        await self.queues.sync({(ns, name) for _, ns, name in by_kind[Kind.QUEUE]})
        self.heartbeat = self.monotonic()

    def held_back(self, key: ObjKey) -> bool:
        """Whether events for `key` wait for its backoff: its last work raised and the backoff
        has not passed (its wake-up comes then). A deletion is never held back."""
        until = self._backoff_until.get(key)
        if until is None:
            return False
        if until <= self.clock() or (key[1], key[2]) not in self.store.objects[key[0]]:
            del self._backoff_until[key]
            return False
        # Whatever cleared or moved its wake-up meanwhile, it is retried when the backoff ends.
        self.wakeups.set(key, until)
        return True

    def stalled(self) -> bool:
        """True when no pass has completed for longer than the settings allow."""
        return self.monotonic() - self.heartbeat > self.settings.stall_after.total_seconds()

    # ------------------------------------------------------------------ writes

    def busy(self, key: ObjKey) -> bool:
        """Whether `key` has a write in flight; it is then decided again once that is done."""
        if key in self._busy:
            self._deferred.add(key)
            return True
        return False

    def decide_again(self, key: ObjKey) -> None:
        """Decide `key` again once its write in flight is done (from the work itself)."""
        self._deferred.add(key)

    def send(self, key: ObjKey, work: Coroutine[Any, Any, None], supersede: bool = False) -> None:
        """Run `work` (the writes of one decision on `key`) without holding up the pass.

        With `supersede` (work decided from current state alone), its first write's token is
        taken from the rate limiter first; if events came for `key` meanwhile, the work is
        dropped and the token handed back: `key` is decided again from what those events
        brought (a pod that ended while its start waited for a token: one write, not two)."""

        async def limited() -> None:
            async with self._limit:
                if supersede:
                    await self.kube.limiter.acquire()
                    if key in self._deferred:
                        self.kube.limiter.refund()
                        work.close()
                        metrics.SUPERSEDED.inc()
                        return
                    prepaid.set(True)
                await self.guard(key, work)
                if prepaid.get():  # the decision wrote nothing (no change): the token goes back
                    prepaid.set(False)
                    self.kube.limiter.refund()

        self._busy.add(key)
        task = asyncio.create_task(limited())
        self._writes.add(task)
        task.add_done_callback(lambda t: self._sent(key, t))

    def _sent(self, key: ObjKey, task: asyncio.Task[None]) -> None:
        self._writes.discard(task)
        self._busy.discard(key)
        if key in self._deferred:
            self._deferred.discard(key)
            self.mark(key)
        self._kick.set()  # queue figures may have changed

    async def drain(self) -> None:
        """Wait until every write sent so far is done."""
        while self._writes:
            await asyncio.gather(*list(self._writes))

    async def each(self, work: Iterable[tuple[ObjKey, Awaitable[None]]]) -> None:
        """Run each object's work concurrently (bounded), each under its own guard."""

        async def one(key: ObjKey, w: Awaitable[None]) -> None:
            async with self._limit:
                await self.guard(key, w)

        await asyncio.gather(*(one(k, w) for k, w in work))

    async def guard(self, key: ObjKey, work: Awaitable[None]) -> None:
        """Whatever goes wrong in `work` is confined to `key`: retried later with backoff."""
        try:
            await work
        except Exception as error:
            self.failed(key, error)
            return
        if key in self._retrying:
            self._retrying.discard(key)
        else:
            self.failures.pop(key, None)
            self._backoff_until.pop(key, None)

    def failed(self, key: ObjKey, error: BaseException) -> timedelta:
        """Count a failure of the work on `key` and wake it again after its backoff."""
        delay = self.retry_later(key, error)
        self._retrying.discard(key)
        self._backoff_until[key] = self.clock() + delay
        kind, namespace, name = key
        metrics.RECONCILE_ERRORS.labels(kind=kind.kind_name).inc()
        what = describe(error)
        if isinstance(error, ApiException | NotLeader | TimeoutError | OSError | ClientError):
            log.warning(
                "%s %s/%s: %s; retrying in %s", kind.kind_name, namespace, name, what, delay
            )
        else:  # not the API's doing: keep the traceback for the bug report
            log.exception("%s %s/%s failed; retrying in %s", kind.kind_name, namespace, name, delay)
        failures = self.failures[key]
        body = self.store.objects[kind].get((namespace, name))
        # An Event on the 1st, 2nd, 4th, 8th... failure in a row: visible, never a storm.
        if body is not None and failures & (failures - 1) == 0 and not isinstance(error, NotLeader):
            message = f"reconciling failed ({failures} in a row): {what}; retrying in {delay}"
            when = rfc3339(self.clock())
            self.background(self.kube.post_event(body, "Warning", "ReconcileFailed", message, when))
        return delay

    def retry_later(self, key: ObjKey, error: BaseException | None) -> timedelta:
        """Wake `key` after the backoff of its consecutive failures; for work that handled its
        own failure (e.g. wrote a waiting status) and must be retried all the same."""
        failures = self.failures[key] = self.failures.get(key, 0) + 1
        self._retrying.add(key)
        delay = error_delay(failures, "/".join((key[0].plural, key[1], key[2])), retry_after(error))
        self.wakeups.set(key, self.clock() + delay)
        return delay

    def background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` without holding up the pass (Events: a courtesy, not state)."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def slots(self) -> dict[Key, str]:
        """Running jobs and their queues (for the metrics views)."""
        return {key: slot.queue for key, slot in self.jobs.running.items()}
