from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from stoker.wakeups import Wakeups

T0 = datetime(2026, 1, 1, tzinfo=UTC)
S = timedelta(seconds=1)


def heap_size(w: Wakeups[object]) -> int:
    # Memory is the point of these tests, and the heap is where superseded entries would pile up.
    return len(w._heap)


def bound(live: int) -> int:
    """The most entries the heap may hold right after a set() with `live` keys scheduled."""
    return 2 * live + 64


def test_empty() -> None:
    w: Wakeups[str] = Wakeups()
    assert len(w) == 0
    assert w.next_due() is None
    assert w.pop_due(T0 + 1000 * S) == []


def test_a_key_is_due_at_its_time_and_not_before() -> None:
    w: Wakeups[str] = Wakeups()
    w.set("a", T0 + 10 * S)
    assert (len(w), w.next_due()) == (1, T0 + 10 * S)
    assert w.pop_due(T0 + 9 * S) == []
    assert w.pop_due(T0 + 10 * S) == ["a"]  # at its time, inclusive
    assert (len(w), w.next_due()) == (0, None)
    assert w.pop_due(T0 + 20 * S) == []  # popped once only


def test_a_later_set_moves_the_wakeup_earlier() -> None:
    w: Wakeups[str] = Wakeups()
    w.set("a", T0 + 60 * S)
    w.set("a", T0 + 5 * S)
    assert (len(w), w.next_due()) == (1, T0 + 5 * S)
    assert w.pop_due(T0 + 5 * S) == ["a"]
    assert w.pop_due(T0 + 60 * S) == []  # the superseded entry wakes nobody


def test_a_later_set_moves_the_wakeup_later() -> None:
    w: Wakeups[str] = Wakeups()
    w.set("a", T0 + 5 * S)
    w.set("a", T0 + 60 * S)
    assert w.next_due() == T0 + 60 * S
    assert w.pop_due(T0 + 59 * S) == []
    assert w.pop_due(T0 + 60 * S) == ["a"]


def test_returning_to_an_earlier_time_still_pops_the_key_once() -> None:
    w: Wakeups[str] = Wakeups()
    for at in (T0 + 5 * S, T0 + 9 * S, T0 + 5 * S, T0 + 9 * S, T0 + 5 * S):
        w.set("a", at)
    assert w.pop_due(T0 + 100 * S) == ["a"]
    assert (len(w), w.next_due()) == (0, None)


def test_none_cancels() -> None:
    w: Wakeups[str] = Wakeups()
    w.set("a", T0 + 5 * S)
    w.set("b", T0 + 7 * S)
    w.set("a", None)
    w.set("never-set", None)
    assert (len(w), w.next_due()) == (1, T0 + 7 * S)
    assert w.pop_due(T0 + 100 * S) == ["b"]


def test_a_popped_key_can_be_scheduled_again() -> None:
    w: Wakeups[str] = Wakeups()
    w.set("a", T0 + 5 * S)
    assert w.pop_due(T0 + 5 * S) == ["a"]
    w.set("a", T0 + 5 * S)  # the same time as the popped entry: a new wake-up all the same
    assert w.pop_due(T0 + 5 * S) == ["a"]


def test_due_keys_come_in_time_order_and_undue_ones_stay() -> None:
    w: Wakeups[str] = Wakeups()
    for name, secs in [("c", 30), ("a", 10), ("late", 99), ("b", 20)]:
        w.set(name, T0 + secs * S)
    assert w.pop_due(T0 + 30 * S) == ["a", "b", "c"]
    assert (len(w), w.next_due()) == (1, T0 + 99 * S)


def test_keys_need_not_be_orderable() -> None:
    # ObjKeys are tuples today, but equal due times must never compare the keys themselves.
    w: Wakeups[object] = Wakeups()
    keys = [object(), object(), object()]
    for key in keys:
        w.set(key, T0)
    assert sorted(map(id, w.pop_due(T0))) == sorted(map(id, keys))


def test_one_key_rescheduled_100000_times_later_and_later_stays_bounded() -> None:
    w: Wakeups[str] = Wakeups()
    for i in range(100_000):
        w.set("a", T0 + i * S)
        assert heap_size(w) <= bound(1)
    assert w.pop_due(T0 + 100_000 * S) == ["a"]


def test_one_key_rescheduled_100000_times_earlier_and_earlier_stays_bounded() -> None:
    w: Wakeups[str] = Wakeups()
    for i in range(100_000):
        w.set("a", T0 - i * S)
        assert heap_size(w) <= bound(1)
    assert w.pop_due(T0) == ["a"]


def test_one_key_flipping_between_two_times_100000_times_stays_bounded() -> None:
    # e.g. a deadline and a retry time taking turns: superseded entries equal to the current
    # time must not survive compaction, or they pile up forever.
    w: Wakeups[str] = Wakeups()
    for i in range(100_000):
        w.set("a", T0 + (i % 2) * S)
        assert heap_size(w) <= bound(1), i
    assert w.pop_due(T0 + S) == ["a"]


def test_many_keys_rescheduled_many_times_stay_bounded() -> None:
    w: Wakeups[int] = Wakeups()
    for round_ in range(100):
        for key in range(1000):
            w.set(key, T0 + ((key * 7 + round_ * 13) % 50) * S)
        assert heap_size(w) <= bound(1000)
    assert len(w) == 1000
    assert sorted(w.pop_due(T0 + 50 * S)) == list(range(1000))


def test_set_and_cancel_of_fresh_keys_stays_bounded() -> None:
    w: Wakeups[int] = Wakeups()
    for key in range(100_000):
        w.set(key, T0 + S)
        w.set(key, None)
        assert heap_size(w) <= bound(1)  # one key is live during each set
    assert (len(w), w.next_due()) == (0, None)


# ---------------------------------------------------------------- against a dict model

KEYS = st.sampled_from("abcdef")
TIMES = st.integers(min_value=0, max_value=20).map(lambda s: T0 + s * S)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), KEYS, TIMES),
        st.tuples(st.just("cancel"), KEYS, st.none()),
        st.tuples(st.just("pop"), st.none(), TIMES),
    ),
    max_size=300,
)


@settings(max_examples=300)
@given(OPS)
def test_behaves_like_a_dict_of_due_times(
    ops: list[tuple[str, str | None, datetime | None]],
) -> None:
    w: Wakeups[str] = Wakeups()
    model: dict[str, datetime] = {}
    for op, key, at in ops:
        if op == "set":
            assert key is not None and at is not None
            w.set(key, at)
            model[key] = at
            assert heap_size(w) <= bound(len(model))
        elif op == "cancel":
            assert key is not None
            w.set(key, None)
            model.pop(key, None)
        else:
            assert at is not None
            popped = w.pop_due(at)
            due = {k for k, t in model.items() if t <= at}
            assert len(popped) == len(set(popped)), "a key popped twice"
            assert set(popped) == due
            times = [model[k] for k in popped]
            assert times == sorted(times), "not in due-time order"
            for k in due:
                del model[k]
        assert len(w) == len(model)
        assert w.next_due() == min(model.values(), default=None)
