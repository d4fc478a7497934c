"""Turning SIGTERM into cancellation: the event tasks poll, and cancelling a running coroutine.

Kubernetes sends SIGTERM when the pod is deleted (the BackgroundJob was deleted, or the
attempt's deadline passed), then SIGKILL after terminationGracePeriodSeconds.
"""

from __future__ import annotations

import asyncio
import queue
import signal
import threading
from types import FrameType
from typing import Final

# Set once SIGTERM arrives: the equivalent of Hangfire's CancellationToken.
cancelled: Final = threading.Event()


class Signalled:
    """Put on the runner's wake-up queue when SIGTERM arrives."""


SIGNALLED: Final = Signalled()


class Canceller:
    """Installs the SIGTERM handler and knows the coroutine to cancel, if the task is async.

    The handler runs in the main thread, which only waits on `wakeups` while the task runs in a
    worker thread; so the handler never contends for a lock the interrupted code holds.
    queue.SimpleQueue.put is documented as reentrant, hence safe from a signal handler.
    """

    def __init__(self, wakeups: queue.SimpleQueue[object]) -> None:
        self._wakeups = wakeups
        self._lock = threading.Lock()
        self._running: tuple[asyncio.AbstractEventLoop, asyncio.Task[object]] | None = None

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def attach(self, loop: asyncio.AbstractEventLoop, running: asyncio.Task[object]) -> None:
        """Called from the worker's event loop when an async task starts."""
        with self._lock:
            self._running = (loop, running)
            if cancelled.is_set():
                running.cancel()

    def detach(self) -> None:
        with self._lock:
            self._running = None

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        if cancelled.is_set():
            return
        cancelled.set()
        with self._lock:
            if self._running is not None:
                loop, running = self._running
                loop.call_soon_threadsafe(running.cancel)
        self._wakeups.put(SIGNALLED)
