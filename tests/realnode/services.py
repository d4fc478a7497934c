"""Services the example tasks use, started on this machine for the real-node tests: a private
PostgreSQL cluster (Debian's package) and an SMTP sink that keeps every message it receives.

Both listen on 127.0.0.1 (where the tests read them) and on the pod bridge's gateway address
(where the pods on the real node reach this machine); nothing listens anywhere else. Both die
with the test process."""

from __future__ import annotations

import asyncio
import ctypes
import email
import email.policy
import glob
import ipaddress
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from harness import wait_for

PR_SET_PDEATHSIG = 1
PG_USER = "postgres"  # the OS user Debian's package creates; the cluster's superuser too


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------ PostgreSQL


def pg_bin() -> Path:
    """The newest installed server's bin dir; apt-get installs the package when it is missing."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if not found:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "postgresql"],
            check=True,
            env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    return Path(found[-1]).parent


@dataclass
class Postgres:
    gateway: str
    port: int
    bin_dir: Path

    def url(self, host: str) -> str:
        return f"postgresql://{PG_USER}@{host}:{self.port}/postgres"

    @property
    def pod_url(self) -> str:
        """DATABASE_URL for the pods on the real node."""
        return self.url(self.gateway)

    def sql(self, statement: str) -> list[list[str]]:
        """Rows of `statement` as psql prints them (unaligned, tab-separated), from here."""
        out = subprocess.run(
            [
                str(self.bin_dir / "psql"), "--no-psqlrc", "-X", "-q", "-At", "-F", "\t",
                "-v", "ON_ERROR_STOP=1", "-d", self.url("127.0.0.1"), "-c", statement,
            ],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        return [line.split("\t") for line in out.splitlines() if line]


@contextmanager
def postgres(gateway: str, schema: Path) -> Iterator[Postgres]:
    """A throwaway cluster owned by the `postgres` user, trusting only this machine and the pod
    subnet (the gateway's /24), with `schema` loaded; deleted when done."""
    bin_dir = pg_bin()
    account = pwd.getpwnam(PG_USER)
    data = Path(tempfile.mkdtemp(prefix="stoker-pg-"))
    shutil.chown(data, account.pw_uid, account.pw_gid)
    as_pg = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    subnet = ipaddress.ip_network(f"{gateway}/24", strict=False)
    port = free_port("127.0.0.1")
    proc = None
    try:
        subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(data / "db"), "-U", PG_USER, "--auth=trust",
             "--encoding=UTF8", "--no-instructions"],
            check=True, capture_output=True, cwd=data, **as_pg,
        )  # fmt: skip
        (data / "db" / "pg_hba.conf").write_text(
            f"local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all {subnet} trust\n"
        )
        proc = subprocess.Popen(
            [str(bin_dir / "postgres"), "-D", str(data / "db"), "-p", str(port),
             "-c", f"listen_addresses=127.0.0.1,{gateway}", "-c", f"unix_socket_directories={data}",
             "-c", "fsync=off", "-c", "max_connections=50"],
            stdout=(data / "postgres.log").open("ab"), stderr=subprocess.STDOUT, cwd=data,
            preexec_fn=_die_with_parent, **as_pg,
        )  # fmt: skip
        db = Postgres(gateway, port, bin_dir)

        def ready() -> bool:
            assert proc is not None and proc.poll() is None, (data / "postgres.log").read_text()
            try:
                db.sql("SELECT 1")
                return True
            except subprocess.CalledProcessError:
                return False

        wait_for(ready, timeout=60, interval=0.3, description="PostgreSQL accepting connections")
        subprocess.run(
            [str(bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d",
             db.url("127.0.0.1"), "-f", str(schema)],
            check=True, capture_output=True,
        )  # fmt: skip
        yield db
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)  # fast shutdown: disconnect clients, stop
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(data, ignore_errors=True)


# ------------------------------------------------------------------------------ SMTP


@dataclass
class Inbox:
    """What the sink received: (envelope recipients, message), oldest first."""

    host: str
    port: int
    messages: list[tuple[list[str], EmailMessage]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for rcpts, m in self.messages if address in rcpts]


class _SmtpSession:
    """The part of RFC 5321 smtplib's sendmail needs: EHLO/HELO, MAIL, RCPT, DATA, RSET,
    NOOP, QUIT. No relaying, no auth, no extensions beyond 8BITMIME."""

    def __init__(self, inbox: Inbox, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.inbox, self.reader, self.writer = inbox, reader, writer
        self.sender: str | None = None
        self.rcpts: list[str] = []

    async def reply(self, line: str) -> None:
        self.writer.write(line.encode() + b"\r\n")
        await self.writer.drain()

    async def run(self) -> None:
        await self.reply("220 stoker-test SMTP sink")
        while raw := await self.reader.readline():
            verb, _, arg = raw.decode("utf-8", "replace").rstrip("\r\n").partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                await self.reply("250-stoker-test\r\n250 8BITMIME")
            elif verb == "HELO":
                await self.reply("250 stoker-test")
            elif verb == "MAIL":
                self.sender, self.rcpts = _address(arg), []
                await self.reply("250 OK")
            elif verb == "RCPT":
                if self.sender is None:
                    await self.reply("503 MAIL first")
                    continue
                self.rcpts.append(_address(arg))
                await self.reply("250 OK")
            elif verb == "DATA":
                if not self.rcpts:
                    await self.reply("503 RCPT first")
                    continue
                await self.reply("354 End data with <CR><LF>.<CR><LF>")
                await self.data()
            elif verb in ("RSET", "NOOP"):
                if verb == "RSET":
                    self.sender, self.rcpts = None, []
                await self.reply("250 OK")
            elif verb == "QUIT":
                await self.reply("221 Bye")
                break
            else:
                await self.reply("502 Command not implemented")
        self.writer.close()

    async def data(self) -> None:
        lines = []
        while (line := await self.reader.readline()) not in (b".\r\n", b".\n", b""):
            lines.append(line[1:] if line.startswith(b"..") else line)  # dot-unstuffing
        message = email.message_from_bytes(b"".join(lines), policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.inbox.lock:
            self.inbox.messages.append((self.rcpts, message))
        self.sender, self.rcpts = None, []
        await self.reply("250 OK: queued")


def _address(arg: str) -> str:
    # "FROM:<a@b> SIZE=10" / "TO:<a@b>"
    return arg.partition(":")[2].strip().split(" ")[0].strip("<>")


@contextmanager
def smtp_sink(hosts: list[str]) -> Iterator[Inbox]:
    """An SMTP server on one free port of every address in `hosts`, in a daemon thread."""
    port = free_port(hosts[0])
    inbox = Inbox(hosts[0], port)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    servers: list[asyncio.Server] = []

    async def serve() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _SmtpSession(inbox, reader, writer).run()

        for host in hosts:
            servers.append(await asyncio.start_server(handle, host, port))
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True, name="smtp-sink")
    thread.start()
    asyncio.run_coroutine_threadsafe(serve(), loop).result(timeout=10)
    try:
        yield inbox
    finally:

        async def close() -> None:
            for server in servers:
                server.close()

        asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
