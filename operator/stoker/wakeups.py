"""One scheduler for every delay: a heap keyed by due time.

10,000 Scheduled jobs cost 10,000 heap entries, not 10,000 sleeping tasks or polling timers:
the loop sleeps until the earliest due time and then wakes exactly the objects that are due.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from datetime import datetime
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Wakeups(Generic[K]):
    def __init__(self) -> None:
        self._heap: list[tuple[datetime, int, K]] = []
        self._due: dict[K, datetime] = {}
        self._seq = 0  # tie-break: keys need not be orderable

    def __len__(self) -> int:
        return len(self._due)

    def set(self, key: K, at: datetime | None) -> None:
        """Wake `key` at `at`; None cancels. A key has one wake-up: the latest call wins."""
        if at is None:
            self._due.pop(key, None)
            return
        if self._due.get(key) == at:
            return
        self._due[key] = at
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, key))
        # Superseded entries stay in the heap until popped; compact when they dominate.
        if len(self._heap) > 2 * len(self._due) + 64:
            self._heap = [(t, s, k) for t, s, k in self._heap if self._due.get(k) == t]
            heapq.heapify(self._heap)

    def next_due(self) -> datetime | None:
        while self._heap:
            at, _, key = self._heap[0]
            if self._due.get(key) == at:
                return at
            heapq.heappop(self._heap)
        return None

    def pop_due(self, now: datetime) -> list[K]:
        """Every key whose wake-up is at or before `now`, each once."""
        keys: list[K] = []
        while self._heap and self._heap[0][0] <= now:
            at, _, key = heapq.heappop(self._heap)
            if self._due.get(key) == at:
                del self._due[key]
                keys.append(key)
        return keys
