"""A small HTTP/1.1 server for terminals: keep-alive, hard limits, nothing blocks.

Why not ``http.server``: a thread per connection costs far more than the
work of one position report, and its timeouts do not stop a client that
sends one byte every few seconds (slowloris).  This is an asyncio protocol
that frames requests itself and hands each complete one to a callback:

* request head at most ``max_header`` bytes (431), body at most
  ``max_body`` (413, before reading it), chunked bodies too;
* a request must arrive complete within ``request_timeout`` of its first
  byte (408) and an idle keep-alive connection is closed after
  ``idle_timeout``; a background sweep enforces both;
* one request per connection is handled at a time (later pipelined ones
  wait in a bounded buffer, and reading pauses when it is full), at most
  ``max_connections`` connections (503 beyond), never more than the
  process's open-file limit leaves room for (``ulimit -n``), so a terminal
  over the limit gets its 503 instead of an accept that fails with EMFILE;
* responses are short plain text; no stack trace ever reaches a client;
* optionally TLS (an ``ssl.SSLContext``), the handshake bounded by
  ``request_timeout`` like a request.

The callback gets ``(method, target, headers, body, respond, peer)`` and calls
``respond(status, text)`` exactly once, on the event loop, now or later;
``peer`` is the client's address (``Peer``), parsed once per connection so
that allow-lists cost nothing per request.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import resource
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus

log = logging.getLogger(__name__)

Respond = Callable[[int, str], None]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Peer:
    """Where a connection comes from: ``ip`` (None if unknown) and the text for logs.

    An IPv4 client of a dual-stack (``::``) listener appears as
    ``::ffff:a.b.c.d``; ``ip`` is then the IPv4 address, so an allow-list of
    IPv4 networks means the same on either kind of socket.
    """

    __slots__ = ("ip", "text")

    def __init__(self, peername: object):
        self.ip: IPAddress | None = None
        if isinstance(peername, tuple) and len(peername) >= 2:
            host = str(peername[0]).partition("%")[0]  # drop an IPv6 zone ("fe80::1%eth0")
            try:
                ip = ipaddress.ip_address(host)
            except ValueError:
                ip = None
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            self.ip = ip
            self.text = f"[{host}]:{peername[1]}" if ":" in host else f"{host}:{peername[1]}"
        else:
            self.text = str(peername) if peername else "?"

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Peer({self.text})"


Handler = Callable[[str, bytes, dict[str, str], bytes, Respond, Peer], None]


@dataclass(frozen=True)
class Limits:
    """Bounds that keep one gateway's memory and sockets finite under any client."""

    max_header: int = 8 << 10
    max_body: int = 64 << 10
    request_timeout: float = 10.0
    idle_timeout: float = 30.0
    max_connections: int = 1024


BUSY_TIMEOUT = 60.0
_HEX = b"0123456789abcdefABCDEF"
# Descriptors kept free beyond the connections: the database pool, the queue's
# files, the writer's pipes, and the sockets of terminals being refused.
FD_RESERVE = 48
LINGER_SECONDS = 2.0
_REASONS = {s.value: s.phrase for s in HTTPStatus}


def response_bytes(status: int, text: str, keep_alive: bool, extra: str = "") -> bytes:
    if status == 200 and not text and keep_alive and not extra:
        return _OK_KEEP_ALIVE
    body = text.encode("utf-8")
    conn = "" if keep_alive else "Connection: close\r\n"
    return (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
        f"{extra}{conn}\r\n"
    ).encode("latin-1") + body


_OK_KEEP_ALIVE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 0\r\n\r\n"
)


class _Framing(Exception):
    """The bytes are not an HTTP request we can frame: answer ``status`` and close."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Connection(asyncio.Protocol):
    def __init__(self, server: HttpServer):
        self.server = server
        self.limits = server.limits
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.busy = False
        self.closed = False
        self.paused = False
        self.eof = False
        self.sent_continue = False
        self.deadline = 0.0
        self.in_request = False
        self.keep_alive = True
        self.draining = False
        self.peer = Peer(None)

    # --- asyncio callbacks ---------------------------------------------------------

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.peer = Peer(transport.get_extra_info("peername"))
        if len(self.server.connections) >= self.server.max_connections:
            self.server.refused(503, "too many connections", self.peer)
            transport.write(response_bytes(503, "连接过多 / Too many connections\n", False))
            transport.close()
            self.closed = True
            return
        self.server.connections.add(self)
        self.deadline = time.monotonic() + self.limits.request_timeout

    def connection_lost(self, exc) -> None:
        self.closed = True
        self.server.connections.discard(self)

    def eof_received(self) -> bool:
        """The client finished sending: answer what it sent in full, then close."""
        self.eof = True
        if self.draining:
            return False
        if not self.busy and self.buf:
            self._process()  # a complete request is answered; a partial one is closed
        return self.busy and not self.closed

    def data_received(self, data: bytes) -> None:
        if self.closed or self.draining:
            return
        if not self.buf and not self.in_request:
            self.in_request = True
            self.deadline = time.monotonic() + self.limits.request_timeout
        self.buf += data
        if self.busy:
            if len(self.buf) > self.limits.max_header + self.limits.max_body:
                self.transport.pause_reading()
                self.paused = True
            return
        self._process()

    # --- framing -------------------------------------------------------------------

    def _process(self) -> None:
        if self.busy or self.closed:  # one request at a time: answers stay in order
            return
        try:
            request = self._frame()
        except _Framing as exc:
            self.server.refused(exc.status, exc.reason, self.peer)
            self._finish(exc.status, f"{exc.reason}\n", keep_alive=False, linger=True)
            return
        if request is None:
            if self.eof and not self.busy:
                self._close()
            return
        method, target, headers, body, keep_alive = request
        self.busy = True
        self.in_request = False
        self.keep_alive = keep_alive
        self.deadline = time.monotonic() + BUSY_TIMEOUT

        def respond(status: int, text: str) -> None:
            # A client that half-closed after pipelining still gets every answer.
            self._finish(status, text, self.keep_alive and (not self.eof or bool(self.buf)))

        try:
            self.server.handler(method, target, headers, body, respond, self.peer)
        except Exception:  # a bug must cost one request, never the server or a trace
            # The path only: a query string may carry a device key.
            log.exception("handler failed for %s %r", method, target.partition(b"?")[0][:200])
            respond(500, "内部错误 / Internal error\n")

    def _frame(self):
        """A complete request from the buffer (and remove it), or None to wait for more."""
        buf = self.buf
        end = buf.find(b"\r\n\r\n", 0, self.limits.max_header + 4)
        if end < 0:
            if len(buf) > self.limits.max_header:
                raise _Framing(431, "请求头过大 / Request header too large")
            return None
        head = bytes(buf[:end]).decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[0].isalpha() or not parts[1]:
            raise _Framing(400, "请求行无效 / Malformed request line")
        method, target, version = parts
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            raise _Framing(505, "仅支持 HTTP/1.x / HTTP version not supported")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _Framing(400, "请求头无效 / Malformed header")
            name = name.lower()
            value = value.strip()
            if name == "content-length" and name in headers and headers[name] != value:
                raise _Framing(400, "Content-Length 冲突 / Conflicting Content-Length")
            headers[name] = value
        conn = headers.get("connection", "").lower()
        keep_alive = "close" not in conn if version == "HTTP/1.1" else "keep-alive" in conn
        start = end + 4
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if chunked:
            if "content-length" in headers:
                raise _Framing(400, "长度标注冲突 / Both Content-Length and chunked")
            decoded = self._chunked(start)
            if decoded is None:
                self._maybe_continue(headers)
                return None
            body, consumed = decoded
        else:
            raw = headers.get("content-length", "0")
            if not raw.isdigit() or len(raw) > 12:
                raise _Framing(400, "Content-Length 无效 / Invalid Content-Length")
            length = int(raw)
            if length > self.limits.max_body:
                raise _Framing(
                    413,
                    f"请求体超过 {self.limits.max_body} 字节 / Body larger than "
                    f"{self.limits.max_body} bytes",
                )
            if len(buf) - start < length:
                self._maybe_continue(headers)
                return None
            body, consumed = bytes(buf[start : start + length]), start + length
        del buf[:consumed]
        self.sent_continue = False
        return method, target.encode("latin-1"), headers, body, keep_alive

    def _chunked(self, pos: int) -> tuple[bytes, int] | None:
        buf, out, total = self.buf, [], 0
        while True:
            eol = buf.find(b"\r\n", pos, pos + 1024)
            if eol < 0:
                if len(buf) - pos > 1024:
                    raise _Framing(400, "分块长度行无效 / Malformed chunk size")
                return None
            size_text = bytes(buf[pos:eol]).split(b";")[0].strip()
            # Hex digits only: int(…, 16) would also take "0x0", "+1", " 1" and "1_0".
            if not size_text or len(size_text) > 16 or size_text.strip(_HEX):
                raise _Framing(400, "分块长度无效 / Malformed chunk size")
            size = int(size_text, 16)
            total += size
            if total > self.limits.max_body:
                raise _Framing(413, f"请求体过大 / Body larger than {self.limits.max_body} bytes")
            if size == 0:
                trailer_end = buf.find(b"\r\n\r\n", eol)
                if eol + 2 <= len(buf) and buf[eol + 2 : eol + 4] == b"\r\n":
                    return b"".join(out), eol + 4
                if trailer_end < 0:
                    if len(buf) - eol > self.limits.max_header:
                        raise _Framing(431, "尾部过大 / Trailer too large")
                    return None
                return b"".join(out), trailer_end + 4
            data_end = eol + 2 + size
            if len(buf) < data_end + 2:
                return None
            if buf[data_end : data_end + 2] != b"\r\n":
                raise _Framing(400, "分块格式无效 / Malformed chunk")
            out.append(bytes(buf[eol + 2 : data_end]))
            pos = data_end + 2

    def _maybe_continue(self, headers: dict[str, str]) -> None:
        if not self.sent_continue and headers.get("expect", "").lower() == "100-continue":
            self.sent_continue = True
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    # --- answering -----------------------------------------------------------------

    def _finish(self, status: int, text: str, keep_alive: bool, linger: bool = False) -> None:
        if self.closed:
            return
        self.transport.write(response_bytes(status, text, keep_alive))
        self.busy = False
        if not keep_alive:
            if linger:
                self._linger()
            else:
                self._close()
            return
        self.deadline = time.monotonic() + self.limits.idle_timeout
        if self.paused:
            self.paused = False
            self.transport.resume_reading()
        if self.buf:
            self.in_request = True
            self.deadline = time.monotonic() + self.limits.request_timeout
            asyncio.get_running_loop().call_soon(self._process)
        elif self.eof:
            self._close()

    def _linger(self) -> None:
        """Close gently after refusing a request the client may still be sending.

        Closing at once would reset the connection while the client writes
        the rest of its (say, oversized) body, and it would never read the
        answer; instead stop sending, discard what still arrives for a short
        while, and close on its EOF or the deadline.
        """
        if self.closed or self.transport.is_closing():
            return
        self.draining = True
        self.buf.clear()
        self.deadline = time.monotonic() + LINGER_SECONDS
        if self.transport.can_write_eof():
            self.transport.write_eof()
        else:
            self._close()

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self.server.connections.discard(self)
            self.transport.close()

    def expire(self, now: float) -> None:
        """Called by the sweep: enforce the request and idle timeouts."""
        if self.closed or now < self.deadline:
            return
        if self.draining:
            self._close()
            return
        if self.busy:  # our own pipeline never answered: a bug, but never a hung client
            log.error("no answer within %.0f s for %s; answering 503", BUSY_TIMEOUT, self.peer)
            self._finish(503, "暂时无法处理 / Try again later\n", keep_alive=False)
            return
        if self.in_request or self.buf:
            self.server.refused(408, "request not complete in time", self.peer)
            self._finish(408, "请求超时 / Request timeout\n", keep_alive=False)
        else:
            self._close()


class HttpServer:
    """Listens on ``host:port`` in the running event loop; ``port`` is the bound one."""

    def __init__(
        self,
        handler: Handler,
        limits: Limits | None = None,
        on_refused: Callable[[int, str, Peer], None] | None = None,
    ):
        self.handler = handler
        self.limits = limits or Limits()
        self.connections: set[_Connection] = set()
        self._on_refused = on_refused
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task | None = None
        self.port = 0
        self.max_connections = self.limits.max_connections

    def refused(self, status: int, reason: str, peer: Peer) -> None:
        if self._on_refused is not None:
            self._on_refused(status, reason, peer)

    async def start(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> int:
        loop = asyncio.get_running_loop()
        free = descriptor_room(reserve=0)
        room = free - FD_RESERVE
        if room < self.limits.max_connections:
            log.warning(
                "open-file limit leaves room for %d connections (asked %d): answering 503 "
                "beyond that; raise ulimit -n for more",
                max(1, room),
                self.limits.max_connections,
            )
        self.max_connections = max(1, min(self.limits.max_connections, room))
        # asyncio accepts up to ``backlog`` connections in one go before any of them is
        # counted, and a refused one's socket closes only on the loop's next turn: new
        # and closing ones together must fit in the descriptors beyond the connections.
        backlog = max(8, min(1024, (free - self.max_connections) // 4))
        loop.set_exception_handler(_quiet_resource_errors)
        self._server = await loop.create_server(
            lambda: _Connection(self),
            host,
            port,
            backlog=backlog,
            reuse_address=True,
            ssl=tls,
            # A client that opens TLS and stalls is bounded like one that stalls a request.
            ssl_handshake_timeout=self.limits.request_timeout if tls else None,
        )
        if backlog < 1024:
            # The burst is bounded; the kernel's queue of waiting terminals need not be
            # (a short one drops their SYNs and they wait seconds to retry).
            for listening in self._server.sockets:
                with socket.fromfd(listening.fileno(), listening.family, listening.type) as dup:
                    dup.listen(1024)
        self.port = self._server.sockets[0].getsockname()[1]
        self._sweeper = loop.create_task(self._sweep())
        return self.port

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            for conn in list(self.connections):
                conn.expire(now)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn._close()
        if self._server is not None:
            await self._server.wait_closed()


def descriptor_room(reserve: int = FD_RESERVE) -> int:
    """How many connections the open-file limit leaves room for, now."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 30
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 64  # no /proc: assume a typical process
    return soft - in_use - reserve


_last_resource_error = [0.0]


def _quiet_resource_errors(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """Out of descriptors: one line (at most every 10 s), not a traceback per accept.

    asyncio pauses accepting for a second and says so through the exception
    handler with a traceback; under a flood that buries the log.  Anything
    else goes to the default handler.
    """
    exc = context.get("exception")
    if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS):
        now = time.monotonic()
        if now - _last_resource_error[0] >= 10.0:
            _last_resource_error[0] = now
            log.error("%s: %s (raise ulimit -n)", context.get("message", "accept failed"), exc)
        return
    loop.default_exception_handler(context)
