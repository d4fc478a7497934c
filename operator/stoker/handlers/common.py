"""What every kind's glue shares: parsing a watched object, writing its status."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from stoker.api.models import Model, now_utc, status_patch
from stoker.core.objects import ObjectView
from stoker.state import Body, Kind, key_of

if TYPE_CHECKING:
    from stoker.loop import Loop

SpecT = TypeVar("SpecT", bound=Model)
StatusT = TypeVar("StatusT", bound=Model)


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def view(body: Body, spec: type[SpecT], status: type[StatusT]) -> ObjectView[SpecT, StatusT]:
    """Parse a watched object for the decision code (defaults applied by the models)."""
    meta = body["metadata"]
    return ObjectView(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        generation=meta.get("generation") or 1,
        created_at=parse_time(meta.get("creationTimestamp")) or now_utc(),
        annotations=meta.get("annotations") or {},
        spec=spec.model_validate(body.get("spec") or {}),
        status=status.model_validate(body.get("status") or {}),
    )


async def write_status(loop: Loop, kind: Kind, body: Body, new: Model) -> bool:
    """Patch what changed of .status; True when a write happened (False: nothing changed or
    the object is gone). The answer is stored, and wakes whatever depends on the object."""
    current = loop.store.objects[kind].get(key_of(body)) or body
    patch = status_patch(current.get("status") or {}, new)
    if not patch:
        return False
    meta = body["metadata"]
    answer = await loop.kube.patch_status(kind.plural, meta["namespace"], meta["name"], patch)
    if answer is None:
        return False
    if loop.store.put(kind, answer):
        loop.wake_dependents(kind, answer)
    return True
