"""Tell the operator when a kopf watch has (re)listed a resource.

Kopf lists a resource, then watches it; when the watch's resourceVersion is too old (410 Gone,
e.g. after an outage or an API server restart) it lists again. Objects deleted meanwhile get no
DELETED event, and kopf hands its handlers no sign of the new listing. Its watch stream does
mark the end of every listing (Bookmark.LISTED) but keeps the mark to itself: this module wraps
that stream function (looked up by name on every (re)connect) to pass the mark on, so the
operator can resync the resource and drop what is gone. A unit test pins the seam, so a kopf
upgrade that moves it fails a test instead of silently bringing ghosts back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from kopf._cogs.clients import watching

Listener = Callable[[str, str | None], None]  # (plural, namespace or None)

_listeners: list[Listener] = []
_original = watching.continuous_watch


async def _continuous_watch(**kwargs: Any) -> AsyncIterator[Any]:
    resource, namespace = kwargs["resource"], kwargs.get("namespace")
    async for event in _original(**kwargs):
        if event is watching.Bookmark.LISTED:
            for listener in _listeners:
                listener(resource.plural, namespace)
        yield event


def on_listed(listener: Listener) -> None:
    """Call `listener(plural, namespace)` each time a watch finishes a listing."""
    _listeners.append(listener)
    watching.continuous_watch = _continuous_watch
