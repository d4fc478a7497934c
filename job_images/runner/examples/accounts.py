"""Account housekeeping against PostgreSQL: the daily purge of expired JWT tokens and the
hourly expiry of idle sessions (RecurringJobs in examples/seeds.yaml)."""

from __future__ import annotations

import logging

from stoker_runner import task

from examples.connections import database

log = logging.getLogger(__name__)


@task("accounts.delete_expired_tokens")
def delete_expired_tokens() -> int:
    db = database()
    try:
        rows = db.run("DELETE FROM jwt_tokens WHERE expires_at < now() RETURNING id")
    finally:
        db.close()
    log.info("deleted %d expired JWT token(s)", len(rows))
    return len(rows)


@task("accounts.expire_sessions")
def expire_sessions(idle_minutes: int = 60) -> int:
    db = database()
    try:
        rows = db.run(
            "UPDATE sessions SET expired = true WHERE NOT expired"
            " AND last_seen < now() - make_interval(mins => :idle) RETURNING id",
            idle=idle_minutes,
        )
    finally:
        db.close()
    log.info("expired %d session(s) idle for over %d minute(s)", len(rows), idle_minutes)
    return len(rows)
