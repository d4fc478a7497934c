"""A loopback TCP proxy that a test can cut: the operator's only way to the API server.

Plain byte forwarding on an asyncio loop in a daemon thread; TLS passes through untouched
(the API server's certificate names 127.0.0.1, whatever the port). Two ways to fail:

- cut(): live connections are closed and new ones refused (the listening socket is closed), as
  when a network partition resets connections or a node loses its route;
- blackhole(): connections are accepted and kept, but no byte goes anywhere, as when packets
  are silently dropped: only the client's own timeouts notice.

restore() undoes either; stop() closes everything for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
CHUNK = 64 * 1024


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port: int = s.getsockname()[1]
        self.connections = 0  # accepted so far, for tests that want to see traffic
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._dropping = False
        # Time (monotonic) of the last cut or blackhole, None when passing traffic.
        self.failed_at: float | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._call(self._listen())

    # ------------------------------------------------------------------ the test's controls

    def cut(self) -> None:
        """Close every live connection and refuse new ones."""
        self.failed_at = time.monotonic()
        self._call(self._cut())

    def blackhole(self) -> None:
        """Keep (and accept) connections, forward nothing either way."""
        self.failed_at = time.monotonic()
        self._dropping = True

    def restore(self) -> None:
        """Forward again: listen if cut, pass bytes if blackholed. Connections held while
        blackholed are closed: the bytes they dropped cannot be replayed."""
        self._dropping = False
        self._call(self._restore())
        self.failed_at = None

    def stop(self) -> None:
        if self._loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            self._call(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # ------------------------------------------------------------------ on the proxy's loop

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _listen(self) -> None:
        # reuse_address: restore() binds the same port while old sockets sit in TIME_WAIT.
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        self._close_all()

    async def _restore(self) -> None:
        self._close_all()
        if self._server is None:
            await self._listen()

    def _close_all(self) -> None:
        for writer in list(self._writers):
            # abort: an RST at once, as a broken network does; close() would wait for buffers.
            writer.transport.abort()
        self._writers.clear()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(client_w)
        if self._dropping:
            await self._swallow(client_r)
            return
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.transport.abort()
            self._writers.discard(client_w)
            return
        self._writers.add(up_w)
        await asyncio.gather(self._pump(client_r, up_w), self._pump(up_r, client_w))
        self._writers.discard(client_w)
        self._writers.discard(up_w)

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(CHUNK):
                pass

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                if self._dropping:
                    continue  # blackholed: read and discard, so the sender sees no error
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            # One direction ended: end both, as a plain TCP relay would.
            writer.transport.abort()
