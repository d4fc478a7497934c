"""The seam that tells the operator a kopf watch (re)listed a resource (stoker.kube.relist)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from kopf._cogs.clients import watching

from stoker.kube import relist


class _Resource:
    plural = "backgroundjobs"


async def test_every_listing_end_reaches_the_listener_and_events_pass_through(
    monkeypatch: Any,
) -> None:
    async def fake_stream(**_: Any) -> AsyncIterator[Any]:
        yield {"type": None, "object": {"metadata": {"name": "a"}}}
        yield watching.Bookmark.LISTED
        yield {"type": "ADDED", "object": {"metadata": {"name": "b"}}}

    monkeypatch.setattr(relist, "_original", fake_stream)
    monkeypatch.setattr(relist, "_listeners", [])
    monkeypatch.setattr(watching, "continuous_watch", watching.continuous_watch)
    heard: list[tuple[str, str | None]] = []
    relist.on_listed(lambda plural, ns: heard.append((plural, ns)))
    # kopf's infinite_watch looks the function up by this module attribute on every connect.
    assert watching.continuous_watch is relist._continuous_watch
    stream = watching.continuous_watch(
        settings=None, resource=_Resource(), namespace="shop", operator_pause_waiter=None
    )
    events = [e async for e in stream]
    assert heard == [("backgroundjobs", "shop")]
    assert events[1] is watching.Bookmark.LISTED and len(events) == 3


def test_kopf_still_calls_the_stream_function_by_its_module_name() -> None:
    """If kopf stops looking continuous_watch up on the module, the seam is dead: fail here."""
    import inspect

    source = inspect.getsource(watching.infinite_watch)
    assert "continuous_watch(" in source
    assert "Bookmark.LISTED" in inspect.getsource(relist._original)
    assert asyncio.iscoroutinefunction(relist._continuous_watch) is False  # an async generator
