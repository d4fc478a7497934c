"""Invoices in PostgreSQL: the recurring invalidation of unpaid, overdue ones."""

from __future__ import annotations

import logging

from stoker_runner import task

from examples.connections import database

log = logging.getLogger(__name__)


@task("billing.invalidate_overdue_invoices")
def invalidate_overdue_invoices(grace_days: int = 0) -> int:
    db = database()
    try:
        rows = db.run(
            "UPDATE invoices SET status = 'void' WHERE status = 'open'"
            " AND due_date < current_date - CAST(:grace AS integer) RETURNING id",
            grace=grace_days,
        )
    finally:
        db.close()
    log.info("voided %d overdue invoice(s)", len(rows))
    return len(rows)
