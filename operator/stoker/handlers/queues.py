"""JobQueue glue: each queue's figures (enqueued, running, oldest) into its status, at most
once a second per queue, and only when they changed."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from stoker.api.models import JobQueueSpec, JobQueueStatus, status_patch
from stoker.core import lifecycle
from stoker.handlers.common import write_status
from stoker.state import Body, Key, Kind

if TYPE_CHECKING:
    from stoker.loop import Loop, ObjKey

STATUS_INTERVAL = timedelta(seconds=1)


class QueueHandler:
    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.written: dict[Key, datetime] = {}

    async def sync(self, marked: set[Key]) -> None:
        loop = self.loop
        now = loop.clock()
        queues = loop.store.objects[Kind.QUEUE]
        due = [
            key
            for key in queues
            if not loop.held_back((Kind.QUEUE, *key))
            and (
                key in marked
                or (last := self.written.get(key)) is None
                or now - last >= STATUS_INTERVAL
            )
        ]
        for key in queues.keys() - set(due):
            if key in self.written and not loop.held_back((Kind.QUEUE, *key)):
                # Written less than a second ago: look again when it may be written.
                loop.wakeups.set((Kind.QUEUE, *key), self.written[key] + STATUS_INTERVAL)
        if not due:
            return
        enqueued: Counter[Key] = Counter()
        oldest: dict[Key, datetime] = {}
        for r in loop.jobs.ready.values():
            qk = (r.job.namespace, r.job.spec.queue)
            enqueued[qk] += 1
            oldest[qk] = min(oldest.get(qk, r.candidate.ready_at), r.candidate.ready_at)
        running = Counter((k[0], s.queue) for k, s in loop.jobs.running.items())
        writes: list[tuple[ObjKey, Awaitable[None]]] = []
        for key in due:
            body = queues[key]
            spec = loop.jobs.queue_spec(key) or JobQueueSpec()
            old = JobQueueStatus.model_validate(body.get("status") or {})
            new = JobQueueStatus(
                enqueued=enqueued[key],
                running=running[key],
                oldest_enqueued_at=oldest.get(key),
                conditions=old.conditions,
                observed_generation=body["metadata"].get("generation"),
            )
            lifecycle.set_condition(
                new.conditions,
                "Active",
                not spec.suspend,
                "Suspended" if spec.suspend else "Dispatching",
                "spec.suspend is true: nothing is dispatched"
                if spec.suspend
                else "jobs are dispatched as capacity allows",
                now,
                always=True,
            )
            if not status_patch(body.get("status") or {}, new):
                continue
            self.written[key] = now
            writes.append(((Kind.QUEUE, *key), self._write(body, new)))
        await loop.each(writes)

    async def _write(self, body: Body, new: JobQueueStatus) -> None:
        await write_status(self.loop, Kind.QUEUE, body, new)
