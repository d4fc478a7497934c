"""Messages to people: one sync task and one async task."""

from __future__ import annotations

import asyncio
import logging

from stoker_runner import Fail, task

log = logging.getLogger(__name__)


@task
def send_welcome_email(user_id: int, email: str) -> None:
    if "@" not in email:
        # Not worth retrying: the same address will be just as wrong next time.
        raise Fail(f"user {user_id} has no valid email address: {email!r}", exit_code=2)
    log.info("sent welcome email to user %s at %s", user_id, email)


@task
async def notify(channel: str, text: str) -> None:
    await asyncio.sleep(0)  # stands in for an HTTP call to a chat service
    log.info("posted to #%s: %s", channel, text)
