"""Dispatch: which Enqueued jobs start now, and why each of the others waits.

One pure call over a snapshot: the Enqueued jobs, the queues with their running counts, the
operator-wide running count and limit (Hangfire's WorkerCount) and the concurrency keys held
by Running jobs. Order: queue priority (desc), job priority (desc), ready time (FIFO), then
namespace, queue and name so that the result never depends on input order.

A job blocked by something of its own (its queue is missing, suspended or full, its key is
held) is passed over without taking a slot, so it holds back neither later jobs of its queue
nor lower-priority queues. Only the operator-wide limit stops everything after it.

Fairness between namespaces: priorities order jobs only within their namespace. The next
start goes to the namespace with the fewest Running jobs (ties: the one whose next job has
waited longest), so under `maxRunning` no namespace can starve another, whatever priorities
it gives its jobs: max-min fair shares of the operator-wide limit, with no state to keep.

Running counts: the caller builds `queues` with `queue_states`, which gives an entry to every
JobQueue object and to every queue that has Running jobs, object or not. A queue without an
entry therefore has no object and nothing running; `queue_for` turns a missing or object-less
"default" into the implicit default queue (unlimited, priority 0, never suspended).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal, NamedTuple

from stoker.api.models import DEFAULT_QUEUE, JobQueueSpec

QUEUE_NOT_FOUND: Final = "QueueNotFound"
QUEUE_SUSPENDED: Final = "QueueSuspended"
QUEUE_FULL: Final = "QueueFull"
CONCURRENCY_KEY_HELD: Final = "ConcurrencyKeyHeld"
MAX_RUNNING: Final = "MaxRunning"

WaitReason = Literal[
    "QueueNotFound", "QueueSuspended", "QueueFull", "ConcurrencyKeyHeld", "MaxRunning"
]

# (namespace, name) of a job or a queue; (namespace, concurrencyKey) of a key.
Key = tuple[str, str]


@dataclass(frozen=True)
class Candidate:
    """A BackgroundJob in phase Enqueued: ready to run as soon as dispatch allows."""

    namespace: str
    name: str
    queue: str
    priority: int
    ready_at: datetime
    concurrency_key: str | None = None


@dataclass(frozen=True)
class QueueState:
    """A queue as dispatch sees it; `exists` is False when no JobQueue object has this name."""

    namespace: str
    name: str
    exists: bool
    concurrency: int | None = None
    priority: int = 0
    suspend: bool = False
    running: int = 0


class Waiting(NamedTuple):
    """Why a candidate does not start: its status.reason and a message for people."""

    reason: WaitReason
    message: str


@dataclass(frozen=True)
class Dispatch:
    start: list[Candidate] = field(default_factory=list)  # in dispatch order
    waiting: dict[Key, Waiting] = field(default_factory=dict)  # by (namespace, job name)


def queue_states(
    specs: Mapping[Key, JobQueueSpec], running_queues: Iterable[Key]
) -> dict[Key, QueueState]:
    """Queue states from the JobQueue specs by (namespace, name) and the (namespace, queue)
    of every Running job: one entry per queue object and per queue with anything running."""
    running = Counter(running_queues)
    states = {
        (ns, name): QueueState(
            namespace=ns,
            name=name,
            exists=True,
            concurrency=spec.concurrency,
            priority=spec.priority,
            suspend=spec.suspend,
            running=running[ns, name],
        )
        for (ns, name), spec in specs.items()
    }
    for (ns, name), count in running.items():
        states.setdefault((ns, name), QueueState(ns, name, exists=False, running=count))
    return states


def queue_for(namespace: str, name: str, queues: Mapping[Key, QueueState]) -> QueueState:
    """The state of queue `name` in `namespace`: the implicit default when "default" has no
    object, exists=False for any other queue without one."""
    state = queues.get((namespace, name))
    if state is not None and state.exists:
        return state
    running = state.running if state is not None else 0
    return QueueState(namespace, name, exists=name == DEFAULT_QUEUE, running=running)


def select(
    candidates: Iterable[Candidate],
    queues: Mapping[Key, QueueState],
    running_total: int,
    max_running: int | None,
    held_keys: AbstractSet[Key],
) -> Dispatch:
    """Start as many candidates as the limits allow, in dispatch order; explain the rest.

    `running_total` counts every Running job the operator serves; `max_running` None means
    unlimited. `held_keys` are the (namespace, concurrencyKey) pairs of Running jobs.
    O(n log n) in the number of candidates.
    """
    resolved: dict[Key, QueueState] = {}
    lines: dict[str, list[tuple[tuple[int, int, datetime, str, str], Candidate]]] = {}
    seen: set[Key] = set()
    for job in candidates:
        job_key = (job.namespace, job.name)
        if job_key in seen:
            raise ValueError(f"job {job.namespace}/{job.name} is a candidate twice")
        seen.add(job_key)
        queue_key = (job.namespace, job.queue)
        if queue_key not in resolved:
            resolved[queue_key] = queue_for(job.namespace, job.queue, queues)
        queue = resolved[queue_key]
        order = (-queue.priority, -job.priority, job.ready_at, job.queue, job.name)
        lines.setdefault(job.namespace, []).append((order, job))
    running_in_namespace: Counter[str] = Counter()
    for state in queues.values():
        running_in_namespace[state.namespace] += state.running
    # Each namespace's line in its own order, consumed from the end.
    for line in lines.values():
        line.sort(key=lambda entry: entry[0], reverse=True)
    # (running in the namespace, ready time of its next job, namespace): the fewest first.
    turns = [(running_in_namespace[ns], line[-1][0][2], ns) for ns, line in lines.items()]
    heapq.heapify(turns)

    started_in_queue: Counter[Key] = Counter()
    taken_keys: set[Key] = set()
    result = Dispatch()
    # The same queue gives every waiting job the same message: build each one once.
    queue_waiting = {key: _queue_waiting(queue) for key, queue in resolved.items()}
    max_waiting = Waiting(
        MAX_RUNNING, f"the operator-wide limit is reached (maxRunning {max_running})"
    )
    while turns:
        running, _, ns = heapq.heappop(turns)
        line = lines[ns]
        # The namespace's next job that can start; those blocked by their own queue or key
        # are explained and passed over without using the namespace's turn.
        while line:
            _, job = line.pop()
            waiting = _own_block(job, resolved, queue_waiting, started_in_queue, held_keys)
            if waiting is None and concurrency_taken(job, taken_keys):
                waiting = _key_waiting(job)
            if waiting is not None:
                result.waiting[job.namespace, job.name] = waiting
                continue
            if max_running is not None and running_total + len(result.start) >= max_running:
                result.waiting[job.namespace, job.name] = max_waiting
                continue
            result.start.append(job)
            started_in_queue[job.namespace, job.queue] += 1
            if job.concurrency_key is not None:
                taken_keys.add((job.namespace, job.concurrency_key))
            if line:
                heapq.heappush(turns, (running + 1, line[-1][0][2], ns))
            break
    return result


def concurrency_taken(job: Candidate, taken_keys: AbstractSet[Key]) -> bool:
    return job.concurrency_key is not None and (job.namespace, job.concurrency_key) in taken_keys


def _key_waiting(job: Candidate) -> Waiting:
    return Waiting(
        CONCURRENCY_KEY_HELD, f"another job with concurrencyKey {job.concurrency_key} is running"
    )


def _own_block(
    job: Candidate,
    resolved: Mapping[Key, QueueState],
    queue_waiting: Mapping[Key, Waiting | None],
    started_in_queue: Mapping[Key, int],
    held_keys: AbstractSet[Key],
) -> Waiting | None:
    """What of the job's own holds it back: its queue (missing, suspended, full) or its
    concurrency key held by a Running job."""
    queue_key = (job.namespace, job.queue)
    queue = resolved[queue_key]
    blocked = queue_waiting[queue_key]
    running_in_queue = queue.running + started_in_queue.get(queue_key, 0)
    if blocked is not None and (
        blocked.reason != QUEUE_FULL or running_in_queue >= (queue.concurrency or 0)
    ):
        return blocked
    if job.concurrency_key is not None and (job.namespace, job.concurrency_key) in held_keys:
        return _key_waiting(job)
    return None


def _queue_waiting(queue: QueueState) -> Waiting | None:
    """What holds back every job of `queue`, if anything: missing, suspended, or (when its
    running count reaches it) its concurrency limit."""
    if not queue.exists:
        return Waiting(
            QUEUE_NOT_FOUND, f"queue {queue.name} does not exist in namespace {queue.namespace}"
        )
    if queue.suspend:
        return Waiting(QUEUE_SUSPENDED, f"queue {queue.name} is suspended")
    if queue.concurrency is not None:
        return Waiting(QUEUE_FULL, f"queue {queue.name} is full (concurrency {queue.concurrency})")
    return None
