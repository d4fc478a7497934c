"""An order's fulfilment in PostgreSQL, for continuations: each step appends a row to
order_events, so the table shows the order the jobs ran in. `ship` refuses an order whose
items are not all packed, the check a batch continuation exists for."""

from __future__ import annotations

import logging

from stoker_runner import Fail, current, task

from examples.connections import database

log = logging.getLogger(__name__)


@task("orders.record_step")
def record_step(order_id: int, step: str) -> None:
    db = database()
    try:
        db.run(
            "INSERT INTO order_events (order_id, step, job) VALUES (:o, :s, :j)",
            o=order_id,
            s=step,
            j=current.job_name,
        )
    finally:
        db.close()
    log.info("order %s: %s", order_id, step)


@task("orders.ship")
def ship(order_id: int, items: list[str]) -> None:
    db = database()
    try:
        rows = db.run(
            "SELECT step FROM order_events WHERE order_id = :o AND step LIKE 'packed %'",
            o=order_id,
        )
        missing = {f"packed {i}" for i in items} - {step for (step,) in rows}
        if missing:
            raise Fail(f"order {order_id} is not fully packed: {sorted(missing)}")
        db.run(
            "INSERT INTO order_events (order_id, step, job) VALUES (:o, 'shipped', :j)",
            o=order_id,
            j=current.job_name,
        )
    finally:
        db.close()
    log.info("order %s shipped with %d item(s)", order_id, len(items))
