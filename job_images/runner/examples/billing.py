"""A billing chain, the shape of a continuation: create_invoice, then update_ledger."""

from __future__ import annotations

import logging

from stoker_runner import task

log = logging.getLogger(__name__)


@task
def create_invoice(order_id: int) -> str:
    invoice_id = f"INV-{order_id:06d}"
    log.info("created invoice %s for order %s", invoice_id, order_id)
    return invoice_id


@task
def update_ledger(invoice_id: str) -> None:
    log.info("posted invoice %s to the ledger", invoice_id)
