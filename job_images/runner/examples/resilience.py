"""A task that fails its first attempts, to watch retries work."""

from __future__ import annotations

import logging

from stoker_runner import Fail, current, task

log = logging.getLogger(__name__)


@task
def flaky(fail_times: int) -> None:
    """Fail attempts 1..fail_times with exit code 75, then succeed."""
    attempt = current.attempt or 1
    if attempt <= fail_times:
        raise Fail(f"attempt {attempt} of a task that fails {fail_times} time(s)")
    log.info("attempt %s succeeded after %s failure(s)", attempt, fail_times)
