"""UDP and TCP listeners (EDGE): bytes and flows to a handler, bytes back out.

Datagrams and framed stream messages go to ``handler(data, flow)``; replies
are sent with :meth:`Transports.send` by flow.  UDP replies leave from the
socket the request came in on (``flow.conn_id`` names it); TCP replies ride
the connection the request came on while it is open.  RFC 5626 CRLF
keepalives on TCP are answered with a single CRLF.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import socket
import sys
import time
from collections.abc import Callable

from sipcore.config import Listener
from sipcore.flow import Flow
from sipcore.message.framing import FramingError, KeepAlivePing, MessageFramed, StreamFramer
from sipcore.message.limits import ParserLimits
from sipcore.transport.names import UdpNames
from sipcore.transport.overload import receive_queue

log = logging.getLogger("sipcore.transport")

Handler = Callable[[bytes, Flow], None]
MAX_WRITE_BUFFER = 1 << 20


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, transports: Transports, listener_id: int) -> None:
        self._t = transports
        self._id = listener_id
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self._t.deliver(data, Flow("udp", addr[0], addr[1], self._id))

    def error_received(self, exc: Exception) -> None:
        log.debug("udp listener %d: %s", self._id, exc)


class _Tcp(asyncio.Protocol):
    def __init__(self, transports: Transports, limits: ParserLimits) -> None:
        self._t = transports
        self._framer = StreamFramer(limits)
        self.transport: asyncio.Transport | None = None
        self.flow: Flow | None = None
        self.dialled: tuple[str, int] | None = None
        """The (host, port) this side connected to, when that was a host name
        (a trunk's): the flow has the address, the trunk's sends the name."""
        self.last_active = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        host, port = transport.get_extra_info("peername")[:2]
        t = self._t
        if len(t.connections) >= t.max_tcp_connections or t.per_ip.get(host, 0) >= t.max_tcp_connections_per_ip:
            log.warning(
                "tcp connection from %s:%s refused: %d open, %d from that address",
                host,
                port,
                len(t.connections),
                t.per_ip.get(host, 0),
            )
            transport.close()
            return
        self.flow = Flow("tcp", host, port, next(t.conn_ids))
        t.connections[self.flow.conn_id] = self
        t.per_ip[host] = t.per_ip.get(host, 0) + 1

    def data_received(self, data: bytes) -> None:
        if self.flow is None or self.transport is None:
            return
        self.last_active = time.monotonic()
        self._framer.receive_data(data)
        while (ev := self._framer.next_event()) is not None:
            if type(ev) is MessageFramed:
                self._t.deliver(ev.data, self.flow)
            elif type(ev) is KeepAlivePing:
                self.transport.write(b"\r\n")  # RFC 5626 §4.4.1 pong
            elif type(ev) is FramingError:
                log.info("%s closed: %s", self.flow, ev.error)
                self._t.drain()  # what came before the error is answered on this connection first
                self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.flow is not None:
            t = self._t
            if t.connections.pop(self.flow.conn_id, None) is not None:
                left = t.per_ip.get(self.flow.host, 1) - 1
                if left > 0:
                    t.per_ip[self.flow.host] = left
                else:
                    t.per_ip.pop(self.flow.host, None)
            try:
                t.on_closed(self.flow)
            except Exception:
                log.exception("%s: error while handling the closed connection", self.flow)


_LINUX = sys.platform == "linux"
_SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # 33: Linux's generic socket.h


def _grow_receive_buffer(sock: socket.socket, size: int, lst: Listener) -> int:
    """Set a UDP socket's receive buffer to `size` bytes: past net.core.rmem_max
    when the process may (CAP_NET_ADMIN), else up to it.  Returns what the
    kernel granted (it reports twice the usable size)."""
    for opt in (_SO_RCVBUFFORCE, socket.SO_RCVBUF) if _LINUX else (socket.SO_RCVBUF,):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, size)
            break
        except OSError:
            continue
    granted = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    if _LINUX:
        granted //= 2  # Linux reports twice the size, the bookkeeping overhead included
    if granted < size:
        log.warning(
            "udp:%s:%s receive buffer is %d KB, not the %d KB asked (udp_receive_buffer_kb): raise the "
            "sysctl net.core.rmem_max, or run with CAP_NET_ADMIN",
            lst.host,
            lst.port,
            granted // 1024,
            size // 1024,
        )
    return granted


class Transports:
    """The listening sockets and open connections of one server."""

    def __init__(
        self,
        handler: Handler,
        limits: ParserLimits,
        *,
        on_closed: Callable[[Flow], None] = lambda flow: None,
        drain: Callable[[], None] = lambda: None,
        max_tcp_connections: int = 10000,
        max_tcp_connections_per_ip: int = 200,
        tcp_idle_timeout_s: int = 600,
        udp_receive_buffer: int = 0,
    ) -> None:
        self.handler = handler
        self.on_closed = on_closed
        self.drain = drain
        """Has the handler finish the messages it was handed (it may batch
        them): called before a connection is closed from this side."""
        self.limits = limits
        self.max_tcp_connections = max_tcp_connections
        self.max_tcp_connections_per_ip = max_tcp_connections_per_ip
        self.per_ip: dict[str, int] = {}
        self.tcp_idle_timeout_s = tcp_idle_timeout_s
        self.udp_receive_buffer = udp_receive_buffer
        self.udp: dict[int, _Udp] = {}
        self.servers: list[asyncio.base_events.Server] = []
        self.connections: dict[int, _Tcp] = {}
        self.conn_ids = itertools.count(1_000_000)  # above listener ids, so a flow names one thing
        self.bound: list[tuple[Listener, tuple[str, int]]] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._connecting: dict[tuple[str, int], list[bytes]] = {}  # outbound connects in progress
        self._connect_tasks: set[asyncio.Task[None]] = set()
        self.names = UdpNames()

    def deliver(self, data: bytes, flow: Flow) -> None:
        """Hand one message to the handler.  A bug there must cost that message,
        not the listener: asyncio closes a transport whose protocol callback
        raises, which would silently end all service on that socket."""
        try:
            self.handler(data, flow)
        except Exception:
            log.exception("%s: message dropped after an internal error (%d bytes)", flow, len(data))

    async def start(self, listeners: tuple[Listener, ...]) -> None:
        loop = asyncio.get_running_loop()
        for i, lst in enumerate(listeners, start=1):
            if lst.transport == "udp":
                transport, proto = await loop.create_datagram_endpoint(
                    functools.partial(_Udp, self, i), local_addr=(lst.host, lst.port)
                )
                if self.udp_receive_buffer:
                    _grow_receive_buffer(transport.get_extra_info("socket"), self.udp_receive_buffer, lst)
                self.udp[i] = proto
                self.bound.append((lst, transport.get_extra_info("sockname")[:2]))
            else:
                server = await loop.create_server(
                    lambda: _Tcp(self, self.limits), lst.host, lst.port, reuse_address=True
                )
                self.servers.append(server)
                self.bound.append((lst, server.sockets[0].getsockname()[:2]))
        self._sweeper = asyncio.create_task(self._sweep_idle())

    def udp_queue_readers(self) -> list[Callable[[], tuple[int, int] | None]]:
        """One reader of (bytes queued, capacity) per UDP listener socket."""
        readers: list[Callable[[], tuple[int, int] | None]] = []
        for proto in self.udp.values():
            sock = proto.transport.get_extra_info("socket") if proto.transport is not None else None
            if sock is not None:
                readers.append(functools.partial(receive_queue, sock))
        return readers

    def send(self, data: bytes, flow: Flow) -> bool:
        if flow.transport == "udp":
            proto = self.udp.get(flow.conn_id) or next(iter(self.udp.values()), None)
            if proto is None or proto.transport is None:
                return False
            try:
                proto.transport.sendto(data, (flow.host, flow.port))
            except ValueError:  # uvloop takes addresses only: a host name (a trunk's), or the wrong family
                family = proto.transport.get_extra_info("socket").family
                return self.names.send(data, flow.host, flow.port, family, proto.transport.sendto)
            return True
        conn = self.connections.get(flow.conn_id)
        if conn is not None and (conn.flow is None or (conn.flow.host, conn.flow.port) != (flow.host, flow.port)):
            conn = None  # a stale flow whose id now names another peer's connection
        if conn is None or conn.transport is None or conn.transport.is_closing():
            # No such connection (a trunk not yet connected, a flow from before
            # a restart): reuse another one to the same address, else open one.
            conn = self._open_to(flow.host, flow.port)
            if conn is None or conn.transport is None:
                return self._connect(data, flow)
        transport = conn.transport
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            # A peer that sends but never reads would make us buffer without
            # bound: it loses its connection instead.
            log.warning("%s closed: more than %d bytes unread", conn.flow, MAX_WRITE_BUFFER)
            transport.abort()
            return False
        transport.write(data)
        return True

    def _open_to(self, host: str, port: int) -> _Tcp | None:
        for c in self.connections.values():
            if c.flow is None or c.transport is None or c.transport.is_closing():
                continue
            if (c.flow.host == host and c.flow.port == port) or c.dialled == (host, port):
                return c
        return None

    def _connect(self, data: bytes, flow: Flow) -> bool:
        """Queue `data` and open a TCP connection to the flow's address (one
        per address at a time); a failed connect is reported as the flow
        closing, which fails the transactions waiting on it (§18.4)."""
        key = (flow.host, flow.port)
        queued = self._connecting.get(key)
        if queued is not None:
            if sum(len(d) for d in queued) + len(data) > MAX_WRITE_BUFFER:
                return False
            queued.append(data)
            return True
        if len(self.connections) >= self.max_tcp_connections:
            return False
        self._connecting[key] = [data]
        task = asyncio.ensure_future(self._do_connect(flow))
        self._connect_tasks.add(task)
        task.add_done_callback(self._connect_tasks.discard)
        return True

    async def _do_connect(self, flow: Flow) -> None:
        key = (flow.host, flow.port)
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: _Tcp(self, self.limits), flow.host, flow.port), timeout=10
            )
        except (OSError, TimeoutError) as e:
            self._connecting.pop(key, None)
            log.info("tcp connection to %s:%s failed: %s", flow.host, flow.port, e)
            try:
                self.on_closed(flow)
            except Exception:
                log.exception("%s: error while handling the failed connection", flow)
            return
        if proto.flow is not None and proto.flow.host != flow.host:
            proto.dialled = key  # reused by the next send to the name, not one connection per message
        for data in self._connecting.pop(key, []):
            if proto.transport is not None and not proto.transport.is_closing():
                proto.transport.write(data)

    async def _sweep_idle(self) -> None:
        while True:
            await asyncio.sleep(min(10, max(1, self.tcp_idle_timeout_s / 4)))
            cutoff = time.monotonic() - self.tcp_idle_timeout_s
            for conn in list(self.connections.values()):
                if conn.last_active < cutoff and conn.transport is not None:
                    log.info("%s idle for %ds: closed", conn.flow, self.tcp_idle_timeout_s)
                    conn.transport.close()

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for task in list(self._connect_tasks):
            task.cancel()
        self.names.stop()
        for proto in self.udp.values():
            if proto.transport is not None:
                proto.transport.close()
        for server in self.servers:
            server.close()
        for conn in list(self.connections.values()):
            if conn.transport is not None:
                conn.transport.close()
        for server in self.servers:
            await server.wait_closed()
