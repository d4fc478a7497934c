"""What the decisions need of any watched object: identity, metadata, parsed spec and status."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

SpecT = TypeVar("SpecT")
StatusT = TypeVar("StatusT")


@dataclass(frozen=True)
class ObjectView(Generic[SpecT, StatusT]):
    namespace: str
    name: str
    uid: str
    generation: int
    created_at: datetime
    annotations: Mapping[str, str]
    spec: SpecT
    status: StatusT
