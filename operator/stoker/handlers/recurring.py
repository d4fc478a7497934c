"""RecurringJob glue: store -> recurring.decide -> job creates and deletes, then status.

The jobs due in a pass are created before any RecurringJob status is written: when many
schedules share a slot, their status writes must not queue in front of other schedules' runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from stoker import metrics
from stoker.api.models import RecurringJobSpec, RecurringJobStatus, rfc3339
from stoker.core import recurring
from stoker.handlers.common import parse_time, view, write_status
from stoker.state import Body, Key, Kind

if TYPE_CHECKING:
    from stoker.loop import Loop, ObjKey


class RecurringHandler:
    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.next_run: dict[Key, datetime] = {}
        self._statuses: list[tuple[ObjKey, Awaitable[None]]] = []

    async def reconcile(self, keys: Iterable[ObjKey]) -> None:
        await self.loop.each((key, self._reconcile(key)) for key in keys)
        statuses, self._statuses = self._statuses, []
        await self.loop.each(statuses)

    async def _reconcile(self, okey: ObjKey) -> None:
        loop, key = self.loop, (okey[1], okey[2])
        body = loop.store.objects[Kind.RECURRING].get(key)
        if body is None:
            self.next_run.pop(key, None)
            loop.wakeups.set(okey, None)
            return
        now = loop.clock()
        rj = recurring_view(body)
        plan = recurring.decide(rj, self._children(key, rj.uid, now), now)
        for name in plan.delete:
            await loop.kube.delete_object(Kind.JOB.plural, rj.namespace, name)
        for new in plan.create:
            job = recurring.job_body(body, new.name, new.slot)
            if await loop.kube.create_object(Kind.JOB.plural, rj.namespace, job) and new.slot:
                metrics.RECURRING_LAG.observe(max(0.0, (loop.clock() - new.slot).total_seconds()))
        for reason, count in plan.missed_by.items():
            metrics.RECURRING_MISSED.labels(rj.namespace, reason).inc(count)
        self._statuses.append((okey, self._write_status(body, plan, now)))
        if plan.status.next_schedule_time is not None:
            self.next_run[key] = plan.status.next_schedule_time
        else:
            self.next_run.pop(key, None)
        loop.wakeups.set(okey, plan.wake_at)

    def _children(self, key: Key, uid: str, now: datetime) -> list[recurring.ChildView]:
        children = []
        for child_key in self.loop.store.runs.get(key, ()):
            child = self.loop.store.jobs.get(child_key)
            if child is None or not _owned_by(child, uid):
                continue
            status = child.get("status") or {}
            children.append(
                recurring.ChildView(
                    name=child_key[1],
                    phase=status.get("phase"),
                    created_at=parse_time(child["metadata"].get("creationTimestamp")) or now,
                    finished_at=parse_time(status.get("finishedAt")),
                )
            )
        return children

    async def _write_status(self, body: Body, plan: recurring.RecurringPlan, now: datetime) -> None:
        if await write_status(self.loop, Kind.RECURRING, body, plan.status):
            for event in plan.events:
                await self.loop.kube.post_event(
                    body, event.type, event.reason, event.message, rfc3339(now)
                )


def recurring_view(body: Body) -> recurring.RecurringView:
    return view(body, RecurringJobSpec, RecurringJobStatus)


def _owned_by(body: Body, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in body["metadata"].get("ownerReferences") or [])
