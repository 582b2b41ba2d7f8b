"""Host names as UDP destinations (EDGE): resolved off the packet path.

A trunk may be added by host name (``--address sip.carrier.example:5060``).
uvloop's UDP ``sendto`` takes addresses only (it will not block the loop on
DNS) and raised on such a flow, out of the pump.  So a datagram to a name
waits here while the loop's resolver (getaddrinfo, in a thread) looks the
name up, then leaves for the first address of the sending socket's family
(A for an IPv4 listener, AAAA for an IPv6 one); the answer is kept for
``TTL_S``.  A name that does not resolve is not tried again for
``FAILED_TTL_S``: its datagrams are dropped (logged) and the transactions
that sent them end on their own timers.  A refresh that fails keeps the
last address that worked, so one DNS hiccup does not cut a trunk off.

RFC 3263 §4.2: a target with an explicit port is looked up with A/AAAA,
which is what this does for every trunk (one added without a port has
5060); the SRV and NAPTR lookups §4.1-4.2 ask for when no port is given
would need a DNS client this stack does not have.  Names come only from
provisioned trunks, but the table is bounded all the same.  On the stdlib
loop (uvloop missing, which the package does not allow) ``sendto`` looks a
name up itself, blocking, and never gets here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

log = logging.getLogger("sipcore.transport")

TTL_S = 60.0
FAILED_TTL_S = 10.0
MAX_NAMES = 1024
MAX_QUEUED = 64  # datagrams per name while it is looked up

SendTo = Callable[[bytes, tuple[str, int]], None]
Key = tuple[str, int, int]  # host, port, address family


Resolve = Callable[[str, int, int], Awaitable[list[Any]]]  # host, port, family -> getaddrinfo's list


class UdpNames:
    def __init__(self, resolve_timeout_s: float = 5.0, resolve: Resolve | None = None) -> None:
        self.resolve_timeout_s = resolve_timeout_s
        self._resolve = resolve or _getaddrinfo
        self._known: dict[Key, tuple[tuple[str, int] | None, float]] = {}
        self._waiting: dict[Key, list[tuple[bytes, SendTo]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, data: bytes, host: str, port: int, family: int, sendto: SendTo) -> bool:
        """Send `data` to host:port, now if the name is known, else once it is
        looked up; False when it cannot be sent (the name did not resolve, or
        too much waits for it)."""
        key = (host, port, family)
        known = self._known.get(key)
        if known is not None and known[1] > time.monotonic():
            addr = known[0]
            return addr is not None and _sendto(sendto, data, addr, host)
        waiting = self._waiting.get(key)
        if waiting is not None:
            if len(waiting) >= MAX_QUEUED:
                return False
            waiting.append((data, sendto))
            return True
        if len(self._known) >= MAX_NAMES:
            self._known.clear()
        self._waiting[key] = [(data, sendto)]
        task = asyncio.ensure_future(self._look_up(key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _look_up(self, key: Key) -> None:
        host, port, family = key
        last = self._known.get(key)
        addr: tuple[str, int] | None = None
        ttl = TTL_S
        try:
            infos = await asyncio.wait_for(self._resolve(host, port, family), self.resolve_timeout_s)
            addr = (str(infos[0][4][0]), int(infos[0][4][1]))
        except Exception as e:  # any failure: a name must never stay stuck waiting
            ttl = FAILED_TTL_S
            reason = "timed out" if isinstance(e, TimeoutError) else str(e) or type(e).__name__
            addr = last[0] if last is not None else None
            if addr is not None:
                log.warning("%s:%d does not resolve now (%s): still sending to %s", host, port, reason, addr[0])
            else:
                log.warning("cannot send to %s:%d: the name does not resolve (%s)", host, port, reason)
        finally:
            waiting = self._waiting.pop(key, [])  # also when cancelled at a stop
        self._known[key] = (addr, time.monotonic() + ttl)
        for data, sendto in waiting:
            if addr is not None:
                _sendto(sendto, data, addr, host)

    def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._waiting.clear()


async def _getaddrinfo(host: str, port: int, family: int) -> list[Any]:
    return await asyncio.get_running_loop().getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM)


def _sendto(sendto: SendTo, data: bytes, addr: tuple[str, int], host: str) -> bool:
    try:
        sendto(data, addr)
    except (OSError, ValueError) as e:
        log.warning("cannot send to %s (%s:%d): %s", host, addr[0], addr[1], e)
        return False
    return True


def is_ip(host: str) -> bool:
    """An IP address literal (no brackets), not a name to look up."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def resolve_hosts(
    hosts: Mapping[int, tuple[str, int]],
    previous: Mapping[int, tuple[str, ...]],
    timeout_s: float = 5.0,
    resolve: Resolve | None = None,
) -> dict[int, tuple[str, ...]]:
    """The addresses each named host stands for now (A and AAAA), by key
    (a trunk id), looked up together; a name that does not resolve keeps
    what it resolved to before (logged), so a DNS hiccup does not turn a
    carrier's calls away."""
    look_up = resolve or _getaddrinfo

    async def one(key: int, host: str, port: int) -> tuple[int, tuple[str, ...]]:
        try:
            infos = await asyncio.wait_for(look_up(host, port, socket.AF_UNSPEC), timeout_s)
            return key, tuple(sorted({str(info[4][0]) for info in infos}))
        except Exception as e:
            reason = "timed out" if isinstance(e, TimeoutError) else str(e) or type(e).__name__
            kept = tuple(previous.get(key, ()))
            log.warning("%s does not resolve (%s)%s", host, reason, f"; still using {', '.join(kept)}" if kept else "")
            return key, kept

    found = await asyncio.gather(*(one(k, h, p) for k, (h, p) in hosts.items() if not is_ip(h)))
    return {k: addrs for k, addrs in found if addrs}
