"""Where the example tasks find their services: PostgreSQL and SMTP, from the pod's env (the
JobQueue's template sets it once for every job of the queue).

  DATABASE_URL   postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME
  SMTP_HOST      the mail relay (SMTP_PORT, default 25)
  MAIL_FROM      the sender address (default noreply@shop.example)
"""

from __future__ import annotations

import os
import smtplib
import urllib.parse
from email.message import EmailMessage
from typing import Any

from stoker_runner import Fail

# A relay or database that does not answer is worth another attempt (exit 75), not a crash.
CONNECT_TIMEOUT = 10.0


def database() -> Any:
    """A pg8000 connection from DATABASE_URL (autocommit: each statement is its own
    transaction unless the task opens one)."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise Fail("DATABASE_URL is not set", exit_code=2)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise Fail(f"DATABASE_URL is not a postgresql:// URL: {parts.scheme!r}", exit_code=2)
    import pg8000.exceptions  # imported here: tasks without a database need no driver
    import pg8000.native

    try:
        return pg8000.native.Connection(
            user=urllib.parse.unquote(parts.username or "postgres"),
            password=urllib.parse.unquote(parts.password) if parts.password else None,
            host=parts.hostname or "localhost",
            port=parts.port or 5432,
            database=parts.path.lstrip("/") or None,
            timeout=CONNECT_TIMEOUT,
        )
    except (OSError, pg8000.exceptions.InterfaceError) as e:
        raise Fail(f"database unreachable: {e}") from e


def send_mail(to: str, subject: str, body: str) -> None:
    host = os.environ.get("SMTP_HOST")
    if not host:
        raise Fail("SMTP_HOST is not set", exit_code=2)
    message = EmailMessage()
    message["From"] = os.environ.get("MAIL_FROM", "noreply@shop.example")
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    port = int(os.environ.get("SMTP_PORT", "25"))
    try:
        with smtplib.SMTP(host, port, timeout=CONNECT_TIMEOUT) as s:
            s.send_message(message)
    except (OSError, smtplib.SMTPException) as e:
        raise Fail(f"mail relay {host} refused or unreachable: {e}") from e
