"""Host names as UDP destinations (EDGE): resolved off the packet path.

A trunk may be added by host name (``--address sip.carrier.example:5060``).
uvloop's UDP ``sendto`` takes addresses only (it will not block the loop on
DNS) and raised on such a flow, out of the pump.  So a datagram to a name
waits here while the loop's resolver (getaddrinfo, in a thread) looks the
name up, then leaves for the first address of the socket's family; the
answer is kept for ``TTL_S`` and a failure for ``FAILED_TTL_S`` (sends to
the name fail at once meanwhile, so the transaction fails over to the next
route instead of waiting for its timer on every try).

RFC 3263 §4.2: a target with an explicit port is looked up with A/AAAA,
which is what this does for every trunk (one added without a port has
5060); the SRV and NAPTR lookups §4.1-4.2 ask for when no port is given
would need a DNS client this stack does not have.  Names come only from provisioned trunks, but the
table is bounded all the same.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable

log = logging.getLogger("sipcore.transport")

TTL_S = 60.0
FAILED_TTL_S = 10.0
MAX_NAMES = 1024
MAX_QUEUED = 64  # datagrams per name while it is looked up

SendTo = Callable[[bytes, tuple[str, int]], None]
Key = tuple[str, int, int]  # host, port, address family


class UdpNames:
    def __init__(self, resolve_timeout_s: float = 5.0) -> None:
        self.resolve_timeout_s = resolve_timeout_s
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
        addr: tuple[str, int] | None = None
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM),
                self.resolve_timeout_s,
            )
            addr = (str(infos[0][4][0]), int(infos[0][4][1]))
        except (OSError, TimeoutError, IndexError) as e:
            log.warning("cannot send to %s:%d: the name does not resolve (%s)", host, port, e or "timeout")
        self._known[key] = (addr, time.monotonic() + (TTL_S if addr is not None else FAILED_TTL_S))
        for data, sendto in self._waiting.pop(key, []):
            if addr is not None:
                _sendto(sendto, data, addr, host)

    def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self._waiting.clear()


def _sendto(sendto: SendTo, data: bytes, addr: tuple[str, int], host: str) -> bool:
    try:
        sendto(data, addr)
    except (OSError, ValueError) as e:
        log.warning("cannot send to %s (%s:%d): %s", host, addr[0], addr[1], e)
        return False
    return True
