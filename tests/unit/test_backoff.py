from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stoker.api.durations import parse_duration
from stoker.api.models import Backoff, RetryPolicy
from stoker.core.backoff import (
    ATTEMPTS_EXHAUSTED,
    NON_RETRYABLE_EXIT_CODE,
    RetryDecision,
    retry_decision,
    retry_delay,
)

S = timedelta(seconds=1)


def exponential(
    initial: str = "15s", factor: float = 2.0, max: str = "1h", jitter: float = 0.0
) -> RetryPolicy:
    return RetryPolicy(backoff=Backoff(initial=initial, factor=factor, max=max, jitter=jitter))


# ---------------------------------------------------------------- retry_delay


@pytest.mark.parametrize(
    ("delays", "retry_number", "expected"),
    [
        (["60s", "5m", "15m"], 1, 60 * S),
        (["60s", "5m", "15m"], 2, 300 * S),
        (["60s", "5m", "15m"], 3, 900 * S),
        (["60s", "5m", "15m"], 4, 900 * S),  # the last one repeats
        (["60s", "5m", "15m"], 500, 900 * S),
        (["0"], 7, timedelta(0)),
        (["1h30m"], 1, 5400 * S),
    ],
)
def test_explicit_delays_with_last_repeating(
    delays: list[str], retry_number: int, expected: timedelta
) -> None:
    assert retry_delay(RetryPolicy(delays=delays), retry_number, "uid") == expected


def test_explicit_delays_ignore_jitter() -> None:
    policy = RetryPolicy(delays=["60s"], backoff=Backoff(jitter=1.0))
    assert {retry_delay(policy, 1, f"uid-{i}") for i in range(20)} == {60 * S}


@pytest.mark.parametrize(
    ("retry_number", "expected"),
    [(1, 15), (2, 30), (3, 60), (4, 120), (8, 1920), (9, 3600), (10, 3600), (1000, 3600)],
)
def test_exponential_doubles_then_caps_at_max(retry_number: int, expected: int) -> None:
    assert retry_delay(exponential(), retry_number, "uid") == expected * S


@pytest.mark.parametrize(
    ("policy", "retry_number", "expected"),
    [
        (exponential(factor=1.0), 50, 15 * S),
        (exponential(initial="10s", factor=3.0, max="24h"), 3, 90 * S),
        (exponential(initial="2h", max="1h"), 1, 3600 * S),  # initial above max is capped
        (exponential(initial="0"), 10, timedelta(0)),
        (exponential(max="0"), 3, timedelta(0)),
        (exponential(initial="500ms", factor=1.5, max="1m"), 3, timedelta(seconds=1.125)),
    ],
)
def test_exponential_table(policy: RetryPolicy, retry_number: int, expected: timedelta) -> None:
    assert retry_delay(policy, retry_number, "uid") == expected


def test_huge_exponent_does_not_overflow() -> None:
    policy = exponential(factor=100.0, max="24h")
    assert retry_delay(policy, 10**9, "uid") == timedelta(hours=24)


def test_durations_over_ten_years_are_refused_before_any_delay_is_computed() -> None:
    with pytest.raises(ValueError, match="at most 10 years"):
        exponential(initial="23999999000h", max="23999999000h")


def test_the_longest_allowed_backoff_with_full_jitter_stays_finite() -> None:
    policy = exponential(initial="87648h", max="87648h", jitter=1.0, factor=100.0)
    delays = [retry_delay(policy, 50, f"uid-{i}") for i in range(64)]
    assert max(delays) <= 2 * timedelta(hours=87648)


def test_jitter_spreads_delays_around_the_base() -> None:
    policy = exponential(jitter=0.5)
    delays = [retry_delay(policy, 1, f"uid-{i}") for i in range(200)]
    assert all(7.5 * S <= d < 22.5 * S for d in delays)
    assert min(delays) < 10 * S and max(delays) > 20 * S
    assert len(set(delays)) > 150


def test_jitter_differs_per_retry_number_for_one_seed() -> None:
    policy = exponential(factor=1.0, jitter=0.5)
    assert len({retry_delay(policy, n, "uid") for n in range(1, 20)}) > 15


@pytest.mark.parametrize("retry_number", [0, -1])
def test_retry_numbers_start_at_one(retry_number: int) -> None:
    with pytest.raises(ValueError, match="retry_number"):
        retry_delay(RetryPolicy(), retry_number, "uid")


durations = st.builds(
    lambda n, unit: f"{n}{unit}", st.integers(0, 10_000), st.sampled_from(["ms", "s", "m", "h"])
)
backoffs = st.builds(
    Backoff,
    initial=durations,
    factor=st.floats(1.0, 100.0),
    max=durations,
    jitter=st.floats(0.0, 1.0),
)
seeds = st.text(max_size=40)
retry_numbers = st.integers(1, 10**6)


@given(backoffs, retry_numbers, seeds)
def test_delay_is_within_zero_and_max_plus_jitter(
    backoff: Backoff, retry_number: int, seed: str
) -> None:
    delay = retry_delay(RetryPolicy(backoff=backoff), retry_number, seed)
    ceiling = timedelta(seconds=parse_duration(backoff.max).total_seconds() * (1 + backoff.jitter))
    assert timedelta(0) <= delay <= ceiling


@given(backoffs, retry_numbers, seeds)
def test_same_seed_gives_the_same_delay(backoff: Backoff, retry_number: int, seed: str) -> None:
    # Two policies parsed separately stand for two operator processes.
    first = retry_delay(RetryPolicy(backoff=backoff), retry_number, seed)
    second = retry_delay(RetryPolicy(backoff=backoff.model_copy()), retry_number, seed)
    assert first == second


@given(backoffs.map(lambda b: b.model_copy(update={"jitter": 0.0})), st.integers(1, 200))
def test_without_jitter_delays_never_decrease(backoff: Backoff, retry_number: int) -> None:
    policy = RetryPolicy(backoff=backoff)
    assert retry_delay(policy, retry_number, "s") <= retry_delay(policy, retry_number + 1, "s")


# ---------------------------------------------------------------- retry_decision

RETRY = RetryDecision(retry=True)


@pytest.mark.parametrize(
    ("policy", "failed", "exit_code", "timed_out", "expected"),
    [
        (RetryPolicy(attempts=3), 1, 1, False, RETRY),
        (RetryPolicy(attempts=3), 3, 1, False, RETRY),
        (RetryPolicy(attempts=3), 4, 1, False, ATTEMPTS_EXHAUSTED),
        (RetryPolicy(attempts=0), 1, 1, False, ATTEMPTS_EXHAUSTED),
        (RetryPolicy(attempts=0), 1, None, True, ATTEMPTS_EXHAUSTED),
        (RetryPolicy(attempts=3, on_exit_codes=[1, 75]), 1, 75, False, RETRY),
        (RetryPolicy(attempts=3, on_exit_codes=[1, 75]), 1, 2, False, NON_RETRYABLE_EXIT_CODE),
        (RetryPolicy(attempts=3, on_exit_codes=[1, 75]), 1, 0, False, NON_RETRYABLE_EXIT_CODE),
        # A timeout is retryable whatever onExitCodes says (the kill's exit code is ours).
        (RetryPolicy(attempts=3, on_exit_codes=[1]), 1, 137, True, RETRY),
        (RetryPolicy(attempts=3, on_exit_codes=[1]), 1, None, True, RETRY),
        # No exit code (pod evicted or lost): not the program's verdict, so retryable.
        (RetryPolicy(attempts=3, on_exit_codes=[1]), 1, None, False, RETRY),
        # Both apply: the exit code is the real cause.
        (RetryPolicy(attempts=0, on_exit_codes=[1]), 1, 2, False, NON_RETRYABLE_EXIT_CODE),
        (RetryPolicy(attempts=1, on_exit_codes=[1]), 2, 1, False, ATTEMPTS_EXHAUSTED),
    ],
)
def test_retry_decision_table(
    policy: RetryPolicy,
    failed: int,
    exit_code: int | None,
    timed_out: bool,
    expected: RetryDecision | str,
) -> None:
    decision = retry_decision(policy, failed, exit_code, timed_out)
    if isinstance(expected, RetryDecision):
        assert decision == expected
    else:
        assert (decision.retry, decision.reason) == (False, expected)
        assert decision.message


@pytest.mark.parametrize(
    ("policy", "failed", "exit_code", "message"),
    [
        (RetryPolicy(attempts=3), 4, 1, "all 4 attempts failed"),
        (RetryPolicy(attempts=0), 1, 1, "all 1 attempt failed"),
        (
            RetryPolicy(on_exit_codes=[1, 75]),
            1,
            2,
            "exit code 2 is not retryable (onExitCodes: 1, 75)",
        ),
    ],
)
def test_retry_decision_messages(
    policy: RetryPolicy, failed: int, exit_code: int, message: str
) -> None:
    assert retry_decision(policy, failed, exit_code, False).message == message


def test_failed_attempts_start_at_one() -> None:
    with pytest.raises(ValueError, match="failed_attempts_in_run"):
        retry_decision(RetryPolicy(), 0, 1, False)


@given(
    attempts=st.integers(0, 1000),
    outcomes=st.lists(
        st.tuples(st.one_of(st.none(), st.integers(0, 255)), st.booleans()), min_size=1
    ),
    on_exit_codes=st.lists(st.integers(0, 255), max_size=5),
)
def test_a_run_never_exceeds_attempts_plus_one(
    attempts: int, outcomes: list[tuple[int | None, bool]], on_exit_codes: list[int]
) -> None:
    """Simulate a run in which every attempt fails, each with an arbitrary exit code/timeout."""
    policy = RetryPolicy(attempts=attempts, on_exit_codes=on_exit_codes)
    failed = 0
    while True:
        exit_code, timed_out = outcomes[failed % len(outcomes)]
        failed += 1
        decision = retry_decision(policy, failed, exit_code, timed_out)
        if not decision.retry:
            break
    assert failed <= attempts + 1
    if decision.reason == ATTEMPTS_EXHAUSTED:
        assert failed == attempts + 1
    else:
        assert decision.reason == NON_RETRYABLE_EXIT_CODE
