"""The fault proxy itself, against a local echo server: what cut(), blackhole() and restore()
do to connections (the fault tests rely on exactly this)."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest
from proxy import TcpProxy


class Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    p = TcpProxy("127.0.0.1", server.server_address[1])
    try:
        yield p
    finally:
        p.stop()
        server.shutdown()
        server.server_close()


def connect(p: TcpProxy) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", p.port), timeout=2)
    s.settimeout(2)
    return s


def echoes(s: socket.socket) -> bool:
    s.sendall(b"ping")
    return s.recv(4) == b"ping"


def test_bytes_pass_both_ways(proxy: TcpProxy) -> None:
    with connect(proxy) as s:
        assert echoes(s)


def test_cut_resets_live_connections_and_refuses_new_ones_until_restored(
    proxy: TcpProxy,
) -> None:
    live = connect(proxy)
    assert echoes(live)
    proxy.cut()
    with pytest.raises(OSError):
        live.sendall(b"ping")
        if not live.recv(4):
            raise ConnectionResetError("closed")
    with pytest.raises(ConnectionRefusedError):
        connect(proxy)
    proxy.restore()
    with connect(proxy) as s:
        assert echoes(s)
    live.close()


def test_blackhole_keeps_connections_but_nothing_arrives(proxy: TcpProxy) -> None:
    live = connect(proxy)
    assert echoes(live)
    proxy.blackhole()
    live.settimeout(0.5)
    live.sendall(b"ping")
    with pytest.raises(TimeoutError):
        live.recv(4)
    with connect(proxy) as fresh:  # accepted, then silence
        fresh.settimeout(0.5)
        fresh.sendall(b"ping")
        with pytest.raises(TimeoutError):
            fresh.recv(4)
    proxy.restore()
    with connect(proxy) as s:
        assert echoes(s)
    live.close()
