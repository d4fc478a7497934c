"""A long import that stops at a safe point when its job is deleted (SIGTERM): it records
where it stopped, so a later run can resume there."""

from __future__ import annotations

import logging
import threading

from stoker_runner import current, task

from examples.connections import database

log = logging.getLogger(__name__)


@task("imports.import_customers")
def import_customers(cancel: threading.Event, batches: int, seconds_per_batch: float = 1.0) -> None:
    db = database()
    try:
        (run_id,) = db.run(
            "INSERT INTO import_runs (job, state) VALUES (:j, 'running') RETURNING id",
            j=current.job_name,
        )[0]
        for done in range(batches):
            if cancel.wait(seconds_per_batch):  # stands in for importing one batch
                db.run(
                    "UPDATE import_runs SET state = 'stopped', batches = :n,"
                    " stopped_at = now() WHERE id = :id",
                    n=done,
                    id=run_id,
                )
                log.warning("cancelled after %d of %d batch(es); stopped", done, batches)
                return
        db.run(
            "UPDATE import_runs SET state = 'done', batches = :n WHERE id = :id",
            n=batches,
            id=run_id,
        )
    finally:
        db.close()
    log.info("imported %d batch(es)", batches)
