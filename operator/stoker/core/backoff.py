"""Retry decisions: whether a failed attempt is retried, and how long to wait before it.

Pure: the jitter comes from a hash of a caller-given seed (the job UID), not from a random
generator, so an operator that restarts mid-delay recomputes exactly the same retry time.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Final, Literal

from stoker.api.durations import parse_duration
from stoker.api.models import RetryPolicy

NON_RETRYABLE_EXIT_CODE: Final = "NonRetryableExitCode"
ATTEMPTS_EXHAUSTED: Final = "AttemptsExhausted"

StopReason = Literal["NonRetryableExitCode", "AttemptsExhausted"]

# As a float this rounds up to exactly 10**9 days, one microsecond past timedelta.max.
_MAX_SECONDS = timedelta.max.total_seconds()


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    # Set only when retry is False: the job's status.reason and a message for people.
    reason: StopReason | None = None
    message: str | None = None


def retry_decision(
    policy: RetryPolicy, failed_attempts_in_run: int, exit_code: int | None, timed_out: bool
) -> RetryDecision:
    """Decide whether to retry after the `failed_attempts_in_run`-th failed attempt of this run.

    `attempts` counts retries after the first failed attempt, so a run has at most
    attempts + 1 attempts. A timeout (DeadlineExceeded) and a failure without an exit code
    (pod evicted or lost) are always retryable even when onExitCodes is set: onExitCodes
    filters the program's own verdicts, and neither of these is one. A non-retryable exit
    code is reported in preference to an exhausted budget, because it is the real cause.
    """
    if failed_attempts_in_run < 1:
        raise ValueError(f"failed_attempts_in_run must be >= 1, got {failed_attempts_in_run}")
    codes = policy.on_exit_codes
    if codes and not timed_out and exit_code is not None and exit_code not in codes:
        listed = ", ".join(str(c) for c in codes)
        return RetryDecision(
            retry=False,
            reason=NON_RETRYABLE_EXIT_CODE,
            message=f"exit code {exit_code} is not retryable (onExitCodes: {listed})",
        )
    if failed_attempts_in_run > policy.attempts:
        total = policy.attempts + 1
        noun = "attempt" if total == 1 else "attempts"
        return RetryDecision(
            retry=False,
            reason=ATTEMPTS_EXHAUSTED,
            message=f"all {total} {noun} failed",
        )
    return RetryDecision(retry=True)


def retry_delay(policy: RetryPolicy, retry_number: int, seed: str) -> timedelta:
    """The wait before retry `retry_number` (1 = the retry after the run's first failure).

    Explicit `delays` are used as written (the last one repeats) with no jitter: the user
    asked for exact times. Otherwise initial * factor^(n-1), capped at max, then scaled by
    (1 + jitter * u) with u in [-1, 1) derived from `seed` and the retry number.
    """
    if retry_number < 1:
        raise ValueError(f"retry_number must be >= 1, got {retry_number}")
    if policy.delays:
        return parse_duration(policy.delays[min(retry_number, len(policy.delays)) - 1])
    backoff = policy.backoff
    base = _capped_exponential(
        parse_duration(backoff.initial).total_seconds(),
        backoff.factor,
        retry_number - 1,
        parse_duration(backoff.max).total_seconds(),
    )
    seconds = base * (1.0 + backoff.jitter * _unit_interval(seed, retry_number))
    # A max close to timedelta's own limit could overflow it; clamping beats an OverflowError.
    if seconds >= _MAX_SECONDS:
        return timedelta.max
    return timedelta(seconds=seconds)


def _capped_exponential(initial: float, factor: float, exponent: int, cap: float) -> float:
    """min(cap, initial * factor**exponent) without computing a power that overflows a float."""
    if initial <= 0.0:
        return 0.0
    if initial >= cap:
        return cap
    # Compare in log space first: factor**exponent alone overflows for large retry numbers.
    if exponent * math.log(factor) >= math.log(cap / initial):
        return cap
    return min(cap, initial * factor**exponent)


def _unit_interval(seed: str, retry_number: int) -> float:
    """A stable pseudo-random u in [-1, 1) for (seed, retry_number)."""
    digest = hashlib.sha256(f"{seed}/{retry_number}".encode()).digest()
    # 53 bits convert to a float exactly, so the fraction can never round up to 1.0.
    fraction = (int.from_bytes(digest[:8], "big") >> 11) / 2.0**53
    return 2.0 * fraction - 1.0


# Failures of the operator's own work on one object (an API call refused, a timeout): retried
# from about a second up to five minutes, so a persistent fault costs one request per object
# every five minutes instead of a flat loop that eats the write budget of every namespace.
ERROR_INITIAL = timedelta(seconds=1)
ERROR_MAX = timedelta(minutes=5)
ERROR_JITTER = 0.2


def error_delay(failures: int, seed: str, retry_after: timedelta | None = None) -> timedelta:
    """The wait after the `failures`-th consecutive failure of the work on one object:
    exponential from ERROR_INITIAL, capped at ERROR_MAX, +/- ERROR_JITTER; never shorter
    than the server's Retry-After."""
    if failures < 1:
        raise ValueError(f"failures must be >= 1, got {failures}")
    base = _capped_exponential(
        ERROR_INITIAL.total_seconds(), 2.0, failures - 1, ERROR_MAX.total_seconds()
    )
    delay = timedelta(seconds=base * (1.0 + ERROR_JITTER * _unit_interval(seed, failures)))
    return max(delay, retry_after) if retry_after is not None else delay
