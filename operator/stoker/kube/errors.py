"""What an API error says, for people and for the backoff."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta

from kubernetes_asyncio.client.exceptions import ApiException


def api_message(error: ApiException) -> str:
    """The API server's own message (a Status body), else the HTTP reason."""
    try:
        return str(json.loads(error.body or b"{}").get("message", error.reason))[:1024]
    except (TypeError, ValueError, AttributeError):
        return str(error.reason)


def describe(error: BaseException) -> str:
    """One line for people: the API server's message when it sent one."""
    if isinstance(error, ApiException):
        return f"HTTP {error.status}: {api_message(error)}"
    return str(error) or type(error).__name__


def retry_after(error: BaseException | None) -> timedelta | None:
    """The server's Retry-After on a 429 (or 503), if it gave one."""
    if not isinstance(error, ApiException) or error.status not in (429, 503):
        return None
    headers: Mapping[str, str] = error.headers or {}
    try:
        return timedelta(seconds=float(headers.get("Retry-After", "")))
    except ValueError:
        return None
