"""A payment against a gateway that is down for the first attempts: the charge is written
once, keyed by order, so however often the job is retried the customer pays once."""

from __future__ import annotations

import logging

from stoker_runner import Fail, current, task

from examples.connections import database

log = logging.getLogger(__name__)


@task("payments.charge")
def charge(order_id: int, amount_cents: int, gateway_down_attempts: int = 0) -> None:
    attempt = current.attempt or 1
    db = database()
    try:
        db.run(
            "INSERT INTO payment_attempts (order_id, attempt) VALUES (:o, :a)",
            o=order_id,
            a=attempt,
        )
        if attempt <= gateway_down_attempts:
            raise Fail(f"payment gateway unavailable (attempt {attempt})")
        # ON CONFLICT: a retry after a charge that was written but not reported is a no-op.
        written = db.run(
            "INSERT INTO charges (order_id, amount_cents, attempt) VALUES (:o, :c, :a)"
            " ON CONFLICT (order_id) DO NOTHING RETURNING order_id",
            o=order_id,
            c=amount_cents,
            a=attempt,
        )
    finally:
        db.close()
    log.info(
        "order %s: %s %d cent(s) on attempt %s",
        order_id,
        "charged" if written else "already charged",
        amount_cents,
        attempt,
    )
