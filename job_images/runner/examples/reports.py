"""A long-running task that stops cleanly when the job is deleted."""

from __future__ import annotations

import datetime
import logging
import threading

from stoker_runner import current, task

log = logging.getLogger(__name__)

SECTIONS = ("signups", "orders", "revenue", "refunds")


@task
def nightly_report(cancel: threading.Event, date: str | None = None) -> None:
    """Report on `date` (YYYY-MM-DD, default yesterday in UTC), one section at a time."""
    day = (
        datetime.date.fromisoformat(date)
        if date is not None
        else datetime.datetime.now(datetime.UTC).date() - datetime.timedelta(days=1)
    )
    log.info("nightly report for %s (attempt %s)", day.isoformat(), current.attempt)
    for section in SECTIONS:
        if cancel.is_set():
            log.warning("cancelled before section %s; stopping", section)
            return
        log.info("section %s done", section)
