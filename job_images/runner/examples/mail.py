"""Mail through the SMTP relay: the welcome email an API enqueues after a signup, and the
daily summary a RecurringJob sends."""

from __future__ import annotations

import logging

from stoker_runner import Fail, task

from examples.connections import database, send_mail

log = logging.getLogger(__name__)


@task("mail.send_welcome")
def send_welcome(user_id: int, email: str) -> None:
    if "@" not in email:
        raise Fail(f"user {user_id} has no valid email address: {email!r}", exit_code=2)
    send_mail(email, "Welcome to the shop", f"Hello! Your account number is {user_id}.\n")
    log.info("mailed welcome to user %s at %s", user_id, email)


@task("mail.daily_summary")
def daily_summary(to: str) -> None:
    """Counts of yesterday's state of the shop, mailed to `to`."""
    db = database()
    try:
        ((tokens, sessions, open_invoices, void_invoices),) = db.run(
            "SELECT (SELECT count(*) FROM jwt_tokens),"
            " (SELECT count(*) FROM sessions WHERE NOT expired),"
            " (SELECT count(*) FROM invoices WHERE status = 'open'),"
            " (SELECT count(*) FROM invoices WHERE status = 'void')"
        )
    finally:
        db.close()
    body = (
        f"JWT tokens: {tokens}\nActive sessions: {sessions}\n"
        f"Open invoices: {open_invoices}\nVoid invoices: {void_invoices}\n"
    )
    send_mail(to, "Daily summary", body)
    log.info("mailed the daily summary to %s", to)
