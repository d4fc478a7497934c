from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from stoker.api.models import JobQueueSpec
from stoker.core.dispatch import (
    CONCURRENCY_KEY_HELD,
    MAX_RUNNING,
    QUEUE_FULL,
    QUEUE_NOT_FOUND,
    QUEUE_SUSPENDED,
    Candidate,
    Dispatch,
    Key,
    QueueState,
    Waiting,
    queue_for,
    queue_states,
    select,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NS = "shop"


def job(
    name: str,
    queue: str = "default",
    priority: int = 0,
    ready: int = 0,
    key: str | None = None,
    namespace: str = NS,
) -> Candidate:
    return Candidate(namespace, name, queue, priority, T0 + timedelta(seconds=ready), key)


def queue(
    name: str,
    concurrency: int | None = None,
    priority: int = 0,
    suspend: bool = False,
    running: int = 0,
    namespace: str = NS,
    exists: bool = True,
) -> QueueState:
    return QueueState(namespace, name, exists, concurrency, priority, suspend, running)


def by_key(*states: QueueState) -> dict[Key, QueueState]:
    return {(s.namespace, s.name): s for s in states}


def run(
    jobs: list[Candidate],
    queues: Mapping[Key, QueueState] | None = None,
    running_total: int = 0,
    max_running: int | None = None,
    held: frozenset[Key] = frozenset(),
) -> Dispatch:
    return select(jobs, queues or {}, running_total, max_running, held)


def started(result: Dispatch) -> list[str]:
    return [c.name for c in result.start]


def reasons(result: Dispatch) -> dict[str, str]:
    return {name: w.reason for (_, name), w in result.waiting.items()}


# ---------------------------------------------------------------- ordering


@pytest.mark.parametrize(
    ("jobs", "queues", "expected"),
    [
        # FIFO by ready time, whatever the input order.
        ([job("c", ready=3), job("a", ready=1), job("b", ready=2)], {}, ["a", "b", "c"]),
        # Job priority beats ready time.
        ([job("old", ready=0), job("urgent", priority=5, ready=9)], {}, ["urgent", "old"]),
        # Negative priorities go after the default 0.
        ([job("low", priority=-1), job("normal", ready=5)], {}, ["normal", "low"]),
        # Queue priority beats job priority.
        (
            [job("big", priority=100), job("crit", queue="critical", ready=9)],
            by_key(queue("critical", priority=10)),
            ["crit", "big"],
        ),
        # Name breaks the last tie.
        ([job("b"), job("a"), job("c")], {}, ["a", "b", "c"]),
        # Equal-priority queues interleave by ready time.
        (
            [job("x1", "x", ready=1), job("y1", "y", ready=2), job("x2", "x", ready=3)],
            by_key(queue("x"), queue("y")),
            ["x1", "y1", "x2"],
        ),
    ],
)
def test_dispatch_order(
    jobs: list[Candidate], queues: dict[Key, QueueState], expected: list[str]
) -> None:
    assert started(run(jobs, queues)) == expected


def test_free_slots_start_that_many_jobs_in_one_call() -> None:
    jobs = [job(f"j{i}", ready=i) for i in range(10)]
    result = run(jobs, running_total=3, max_running=7)
    assert started(result) == ["j0", "j1", "j2", "j3"]
    assert set(reasons(result).values()) == {MAX_RUNNING}


# ---------------------------------------------------------------- reasons


@pytest.mark.parametrize(
    ("jobs", "queues", "running_total", "max_running", "held", "expected"),
    [
        (
            [job("a", "critical")],
            {},
            0,
            None,
            frozenset(),
            Waiting(QUEUE_NOT_FOUND, "queue critical does not exist in namespace shop"),
        ),
        (
            [job("a", "critical")],
            by_key(queue("critical", exists=False, running=2)),
            2,
            None,
            frozenset(),
            Waiting(QUEUE_NOT_FOUND, "queue critical does not exist in namespace shop"),
        ),
        (
            [job("a", "critical")],
            by_key(queue("critical", suspend=True)),
            0,
            None,
            frozenset(),
            Waiting(QUEUE_SUSPENDED, "queue critical is suspended"),
        ),
        (
            [job("a", "critical")],
            by_key(queue("critical", concurrency=10, running=10)),
            10,
            None,
            frozenset(),
            Waiting(QUEUE_FULL, "queue critical is full (concurrency 10)"),
        ),
        (
            # The limit was lowered below what already runs.
            [job("a", "critical")],
            by_key(queue("critical", concurrency=10, running=12)),
            12,
            None,
            frozenset(),
            Waiting(QUEUE_FULL, "queue critical is full (concurrency 10)"),
        ),
        (
            [job("a", "critical")],
            by_key(queue("critical", concurrency=0)),
            0,
            None,
            frozenset(),
            Waiting(QUEUE_FULL, "queue critical is full (concurrency 0)"),
        ),
        (
            [job("a", key="invoice-42")],
            {},
            1,
            None,
            frozenset({(NS, "invoice-42")}),
            Waiting(CONCURRENCY_KEY_HELD, "another job with concurrencyKey invoice-42 is running"),
        ),
        (
            [job("a")],
            {},
            5,
            5,
            frozenset(),
            Waiting(MAX_RUNNING, "the operator-wide limit is reached (maxRunning 5)"),
        ),
        (
            [job("a")],
            {},
            0,
            0,
            frozenset(),
            Waiting(MAX_RUNNING, "the operator-wide limit is reached (maxRunning 0)"),
        ),
    ],
)
def test_each_wait_reason(
    jobs: list[Candidate],
    queues: dict[Key, QueueState],
    running_total: int,
    max_running: int | None,
    held: frozenset[Key],
    expected: Waiting,
) -> None:
    result = run(jobs, queues, running_total, max_running, held)
    assert result.start == []
    assert result.waiting == {(NS, "a"): expected}


def test_queue_fills_up_within_one_pass() -> None:
    queues = by_key(queue("critical", concurrency=3, running=1))
    result = run([job(f"j{i}", "critical", ready=i) for i in range(4)], queues, running_total=1)
    assert started(result) == ["j0", "j1"]
    assert result.waiting[NS, "j2"] == Waiting(QUEUE_FULL, "queue critical is full (concurrency 3)")
    assert reasons(result)["j3"] == QUEUE_FULL


def test_concurrency_key_taken_in_the_same_pass_blocks_later_jobs() -> None:
    result = run([job("first", key="k", ready=1), job("second", key="k", ready=2), job("free")])
    assert started(result) == ["free", "first"]
    assert reasons(result) == {"second": CONCURRENCY_KEY_HELD}


def test_concurrency_keys_are_per_namespace() -> None:
    jobs = [job("a", key="k", namespace="ns1"), job("b", key="k", namespace="ns2")]
    result = run(jobs, held=frozenset({("ns3", "k")}))
    assert started(result) == ["a", "b"]


def test_a_key_blocked_job_does_not_hold_back_its_queue() -> None:
    jobs = [job("held", key="k", ready=1), job("next", ready=2)]
    result = run(jobs, max_running=1, held=frozenset({(NS, "k")}))
    assert started(result) == ["next"]
    assert reasons(result) == {"held": CONCURRENCY_KEY_HELD}


def test_job_in_a_full_queue_does_not_take_its_key() -> None:
    queues = by_key(queue("full", concurrency=0, priority=10), queue("open"))
    result = run([job("a", "full", key="k"), job("b", "open", key="k")], queues)
    assert started(result) == ["b"]
    assert reasons(result) == {"a": QUEUE_FULL}


@pytest.mark.parametrize(
    "blocked",
    [
        queue("critical", concurrency=2, priority=100, running=2),
        queue("critical", priority=100, suspend=True),
    ],
)
def test_blocked_high_priority_queue_does_not_starve_lower_queues(blocked: QueueState) -> None:
    jobs = [job(f"c{i}", "critical", ready=i) for i in range(5)] + [job("d1"), job("d2")]
    result = run(jobs, by_key(blocked), running_total=blocked.running, max_running=10)
    assert started(result) == ["d1", "d2"]


def test_high_priority_key_blocked_jobs_do_not_starve_lower_queues() -> None:
    jobs = [job(f"c{i}", "critical", key="k") for i in range(5)] + [job("d1")]
    queues = by_key(queue("critical", priority=100))
    result = run(jobs, queues, running_total=1, max_running=2, held=frozenset({(NS, "k")}))
    assert started(result) == ["d1"]


def test_own_blocks_are_reported_even_after_the_global_limit_is_reached() -> None:
    queues = by_key(queue("paused", suspend=True))
    result = run([job("a", ready=1), job("b", ready=2), job("p", "paused")], queues, max_running=1)
    assert started(result) == ["a"]
    assert reasons(result) == {"b": MAX_RUNNING, "p": QUEUE_SUSPENDED}


def test_a_candidate_listed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="shop/a is a candidate twice"):
        run([job("a"), job("a", ready=1)])


# ---------------------------------------------------------------- default queue and queue_states


@pytest.mark.parametrize(
    ("queues", "expected"),
    [
        ({}, queue("default")),
        # Running jobs but no object: still the implicit default, with its running count.
        (by_key(queue("default", exists=False, running=4)), queue("default", running=4)),
        # A JobQueue named "default" overrides the implicit one.
        (
            by_key(queue("default", concurrency=1, priority=-5, running=1)),
            queue("default", concurrency=1, priority=-5, running=1),
        ),
        # The implicit default of another namespace does not leak.
        (by_key(queue("default", concurrency=1, namespace="other")), queue("default")),
    ],
)
def test_queue_for_default(queues: dict[Key, QueueState], expected: QueueState) -> None:
    assert queue_for(NS, "default", queues) == expected


@pytest.mark.parametrize(
    ("queues", "expected"),
    [
        ({}, queue("critical", exists=False)),
        (
            by_key(queue("critical", exists=False, running=2)),
            queue("critical", exists=False, running=2),
        ),
        (by_key(queue("critical", concurrency=3)), queue("critical", concurrency=3)),
    ],
)
def test_queue_for_named_queue(queues: dict[Key, QueueState], expected: QueueState) -> None:
    assert queue_for(NS, "critical", queues) == expected


def test_default_queue_limit_applies_when_a_jobqueue_named_default_exists() -> None:
    queues = by_key(queue("default", concurrency=1))
    assert started(run([job("a"), job("b", ready=1)], queues)) == ["a"]


def test_queue_states_cover_objects_and_queues_with_running_jobs() -> None:
    specs = {
        (NS, "critical"): JobQueueSpec(concurrency=10, priority=100),
        (NS, "idle"): JobQueueSpec(suspend=True),
    }
    running = [(NS, "critical"), (NS, "critical"), (NS, "default"), (NS, "gone"), ("b", "default")]
    assert queue_states(specs, running) == by_key(
        queue("critical", concurrency=10, priority=100, running=2),
        queue("idle", suspend=True),
        queue("default", exists=False, running=1),
        queue("gone", exists=False, running=1),
        queue("default", exists=False, running=1, namespace="b"),
    )


# ---------------------------------------------------------------- properties

NAMESPACES = ["a", "b"]
QUEUE_NAMES = ["default", "q1", "q2", "q3"]
KEYS = ["k1", "k2", "k3"]


@st.composite
def worlds(
    draw: st.DrawFn,
) -> tuple[list[Candidate], dict[Key, QueueState], int, int | None, frozenset[Key]]:
    queues: dict[Key, QueueState] = {}
    for ns in NAMESPACES:
        for name in QUEUE_NAMES:
            if draw(st.booleans()):
                queues[ns, name] = QueueState(
                    ns,
                    name,
                    exists=draw(st.booleans()),
                    concurrency=draw(st.none() | st.integers(0, 4)),
                    priority=draw(st.integers(-2, 2)),
                    suspend=draw(st.booleans() if draw(st.booleans()) else st.just(False)),
                    running=draw(st.integers(0, 5)),
                )
    names = draw(
        st.lists(
            st.tuples(st.sampled_from(NAMESPACES), st.text("xyz", min_size=1, max_size=4)),
            unique=True,
            max_size=25,
        )
    )
    candidates = [
        Candidate(
            ns,
            name,
            draw(st.sampled_from(QUEUE_NAMES)),
            draw(st.integers(-1, 1)),
            T0 + timedelta(seconds=draw(st.integers(0, 3))),
            draw(st.none() | st.sampled_from(KEYS)),
        )
        for ns, name in names
    ]
    running_total = sum(q.running for q in queues.values()) + draw(st.integers(0, 3))
    max_running = draw(st.none() | st.integers(0, running_total + 8))
    held = draw(st.frozensets(st.tuples(st.sampled_from(NAMESPACES), st.sampled_from(KEYS))))
    return candidates, queues, running_total, max_running, held


World = tuple[list[Candidate], dict[Key, QueueState], int, int | None, frozenset[Key]]


def order_key(
    c: Candidate, queues: Mapping[Key, QueueState]
) -> tuple[int, int, datetime, str, str, str]:
    q = queue_for(c.namespace, c.queue, queues)
    return (-q.priority, -c.priority, c.ready_at, c.namespace, c.queue, c.name)


@given(worlds())
def test_every_candidate_either_starts_or_waits(world: World) -> None:
    candidates, *_ = world
    result = select(*world)
    names = [(c.namespace, c.name) for c in result.start]
    assert len(names) == len(set(names))
    assert set(names).isdisjoint(result.waiting)
    assert set(names) | set(result.waiting) == {(c.namespace, c.name) for c in candidates}


@given(worlds())
def test_limits_are_never_exceeded(world: World) -> None:
    _, queues, running_total, max_running, _ = world
    result = select(*world)
    per_queue = Counter((c.namespace, c.queue) for c in result.start)
    for (ns, name), count in per_queue.items():
        q = queue_for(ns, name, queues)
        assert q.exists and not q.suspend
        if q.concurrency is not None:
            assert q.running + count <= q.concurrency
    if max_running is not None and result.start:
        assert running_total + len(result.start) <= max_running


@given(worlds())
def test_at_most_one_running_job_per_concurrency_key(world: World) -> None:
    held = world[4]
    result = select(*world)
    keys = [(c.namespace, c.concurrency_key) for c in result.start if c.concurrency_key]
    assert len(keys) == len(set(keys))
    assert held.isdisjoint(keys)


@given(worlds())
def test_fifo_within_queue_and_priority(world: World) -> None:
    """An earlier job of the same queue and priority only waits on its own concurrency key."""
    result = select(*world)
    for s in result.start:
        for (ns, name), waiting in result.waiting.items():
            w = next(c for c in world[0] if (c.namespace, c.name) == (ns, name))
            same_lane = (w.namespace, w.queue, w.priority) == (s.namespace, s.queue, s.priority)
            if same_lane and (w.ready_at, w.name) < (s.ready_at, s.name):
                assert waiting.reason == CONCURRENCY_KEY_HELD


@given(worlds())
def test_start_list_is_in_dispatch_order_within_each_namespace(world: World) -> None:
    result = select(*world)
    for ns in {c.namespace for c in result.start}:
        keys = [order_key(c, world[1]) for c in result.start if c.namespace == ns]
        assert keys == sorted(keys)


@given(worlds())
def test_no_namespace_gets_more_than_its_fair_share_of_the_global_limit(world: World) -> None:
    """Max-min fairness: a namespace that started a job ends with at most one Running job
    more than any namespace left waiting for the operator-wide limit, whatever priorities
    either gives its jobs."""
    _, queues, _, _, _ = world
    result = select(*world)
    after: Counter[str] = Counter()
    for state in queues.values():
        after[state.namespace] += state.running
    for c in result.start:
        after[c.namespace] += 1
    starved = {ns for (ns, _), w in result.waiting.items() if w.reason == MAX_RUNNING}
    for ns in {c.namespace for c in result.start}:
        for other in starved:
            assert after[ns] <= after[other] + 1, (ns, other, after)


def test_a_namespace_with_top_priority_jobs_cannot_starve_another() -> None:
    greedy = [
        Candidate("a", f"a{i}", "default", 2**31 - 1, T0 + timedelta(seconds=i)) for i in range(10)
    ]
    modest = Candidate("b", "b0", "default", 0, T0 + timedelta(minutes=5))
    queues = {("a", "default"): QueueState("a", "default", exists=False, running=1)}
    result = select([*greedy, modest], queues, 1, 2, frozenset())
    assert [(c.namespace, c.name) for c in result.start] == [("b", "b0")]
    assert result.waiting["a", "a0"].reason == MAX_RUNNING


# Namespace b has one Running job left in a queue whose JobQueue was deleted: it still
# counts toward b's share, so b0 takes the third free slot although a2 is ahead of it in
# the cross-namespace order (namespace breaks the tie).
DELETED_QUEUE_WORLD: World = (
    [
        *(Candidate("a", f"a{i}", "default", 0, T0) for i in range(3)),
        Candidate("b", "b0", "default", 0, T0),
    ],
    {("b", "q1"): QueueState("b", "q1", exists=False, running=1)},
    1,
    4,
    frozenset(),
)


def test_running_jobs_of_a_deleted_queue_count_toward_their_namespace_share() -> None:
    result = select(*DELETED_QUEUE_WORLD)
    assert [(c.namespace, c.name) for c in result.start] == [("a", "a0"), ("a", "a1"), ("b", "b0")]
    assert result.waiting == {
        ("a", "a2"): Waiting(MAX_RUNNING, "the operator-wide limit is reached (maxRunning 4)")
    }


@given(worlds(), st.randoms())
def test_result_does_not_depend_on_input_order(world: World, rnd: random.Random) -> None:
    candidates, queues, running_total, max_running, held = world
    shuffled = list(candidates)
    rnd.shuffle(shuffled)
    assert select(shuffled, queues, running_total, max_running, held) == select(*world)


@given(worlds())
@example(DELETED_QUEUE_WORLD)
def test_every_wait_reason_is_true_after_the_pass(world: World) -> None:
    """No capacity is left unused: each waiting job is still blocked once the starts are counted."""
    candidates, queues, running_total, max_running, held = world
    result = select(*world)
    per_queue = Counter((c.namespace, c.queue) for c in result.start)
    taken = held | {(c.namespace, c.concurrency_key) for c in result.start if c.concurrency_key}
    for c in candidates:
        waiting = result.waiting.get((c.namespace, c.name))
        if waiting is None:
            continue
        q = queue_for(c.namespace, c.queue, queues)
        if waiting.reason == QUEUE_NOT_FOUND:
            assert not q.exists
        elif waiting.reason == QUEUE_SUSPENDED:
            assert q.suspend
        elif waiting.reason == QUEUE_FULL:
            assert q.concurrency is not None
            assert q.running + per_queue[c.namespace, c.queue] >= q.concurrency
        elif waiting.reason == CONCURRENCY_KEY_HELD:
            assert (c.namespace, c.concurrency_key) in taken
        else:
            assert waiting.reason == MAX_RUNNING
            assert max_running is not None
            assert running_total + len(result.start) >= max_running
            # Only jobs of its namespace ahead of it in dispatch order took its namespace's
            # slots. Priorities order jobs within a namespace only: a later job of another
            # namespace may take a slot by max-min fairness (checked by the fair-share test).
            assert all(
                order_key(s, queues) < order_key(c, queues)
                for s in result.start
                if s.namespace == c.namespace
            )


@given(st.data())
def test_every_candidate_eventually_starts(data: st.DataObject) -> None:
    """Liveness: with every queue present and open, finishing running jobs lets all start."""
    specs: dict[Key, JobQueueSpec] = {
        (ns, name): JobQueueSpec(
            concurrency=data.draw(st.none() | st.integers(1, 3)),
            priority=data.draw(st.integers(-2, 2)),
        )
        for ns in NAMESPACES
        for name in QUEUE_NAMES[1:]
    }
    max_running = data.draw(st.none() | st.integers(1, 4))
    pending = {
        (c.namespace, c.name): c
        for c in data.draw(
            st.lists(
                st.builds(
                    Candidate,
                    namespace=st.sampled_from(NAMESPACES),
                    name=st.text("xyz", min_size=1, max_size=4),
                    queue=st.sampled_from(QUEUE_NAMES),
                    priority=st.integers(-1, 1),
                    ready_at=st.integers(0, 3).map(lambda s: T0 + timedelta(seconds=s)),
                    concurrency_key=st.none() | st.sampled_from(KEYS),
                ),
                max_size=20,
                unique_by=lambda c: (c.namespace, c.name),
            )
        )
    }
    running: list[Candidate] = []
    # Each round starts or finishes at least one job, so 2n rounds always suffice.
    budget = 2 * len(pending)
    while pending:
        assert budget > 0, f"stalled with {sorted(pending)} pending and {running} running"
        budget -= 1
        queues = queue_states(specs, [(c.namespace, c.queue) for c in running])
        held = frozenset((c.namespace, c.concurrency_key) for c in running if c.concurrency_key)
        result = select(pending.values(), queues, len(running), max_running, held)
        if not running:
            assert result.start, "nothing runs, yet nothing starts"
        for c in result.start:
            del pending[c.namespace, c.name]
        running.extend(result.start)
        if not result.start:
            finished = data.draw(st.sets(st.sampled_from(range(len(running))), min_size=1))
        else:
            finished = data.draw(st.sets(st.sampled_from(range(len(running)))))
        running = [c for i, c in enumerate(running) if i not in finished]
