"""Trunk liveness: an OPTIONS to every trunk each ``[proxy] trunk_probe_s`` (sans-IO).

A trunk whose probe gets no answer (Timer F, or a transport failure) is
marked down and routed to last, so calls fail over to the other routes
without first waiting for an INVITE to time out; any answer (even 404 or
405: the trunk is there) marks it up again.  At most one probe per trunk is
in flight.  Changes are logged at warning, once per change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sipcore.flow import Flow
from sipcore.message import Request
from sipcore.proxy.directory import Directory
from sipcore.proxy.routing import ProxyAddress
from sipcore.transaction import ClientTransaction, TransactionLayer

log = logging.getLogger("sipcore.proxy")


class TrunkProbes:
    def __init__(
        self,
        layer: TransactionLayer,
        directory: Directory,
        period_s: int,
        address: Callable[[str], ProxyAddress],
        new_id: Callable[[], str],
    ) -> None:
        self.layer = layer
        self.directory = directory
        self.period_s = period_s
        self._address = address
        self._new_id = new_id
        self._out: dict[ClientTransaction, int] = {}  # probe -> trunk id
        self._next = 0.0
        self.down: set[int] = set()
        """Trunks whose last probe got no answer: routed to last."""

    def next_timer(self) -> float | None:
        return self._next if self.period_s > 0 and self.directory.trunks() else None

    def handle_timer(self, now: float) -> None:
        if self.period_s <= 0 or now < self._next:
            return
        self._next = now + self.period_s
        busy = set(self._out.values())
        for trunk in self.directory.trunks():
            if trunk.id in busy:
                continue  # the previous probe is still out
            flow = Flow(trunk.transport, trunk.host, trunk.port, 0)
            me = self._address(flow.transport)
            host = f"[{trunk.host}]" if ":" in trunk.host else trunk.host
            uri = f"sip:{host}:{trunk.port}"
            headers = [
                ("Via", f"SIP/2.0/{flow.transport.upper()} {me.hostport()};branch=z9hG4bK{self._new_id()};rport"),
                ("Max-Forwards", "70"),
                ("From", f"<sip:sipcore@{me.hostport()}>;tag={self._new_id()}"),
                ("To", f"<{uri}>"),
                ("Call-ID", f"probe-{self._new_id()}"),
                ("CSeq", "1 OPTIONS"),
                ("Content-Length", "0"),
            ]
            try:
                tx = self.layer.send_request(Request("OPTIONS", uri, headers), flow, now)
            except Exception as e:
                log.warning("cannot probe trunk %s: %s", trunk.name, e)
                continue
            self._out[tx] = trunk.id

    def answered(self, tx: ClientTransaction) -> bool:
        """A final answer to `tx` (False: not a probe)."""
        trunk_id = self._out.pop(tx, None)
        if trunk_id is None:
            return False
        if trunk_id in self.down:
            self.down.discard(trunk_id)
            log.warning("trunk %s is up again (answers OPTIONS)", self._name(trunk_id))
        return True

    def failed(self, tx: ClientTransaction) -> bool:
        """No answer to `tx` (False: not a probe)."""
        trunk_id = self._out.pop(tx, None)
        if trunk_id is None:
            return False
        if trunk_id not in self.down:
            self.down.add(trunk_id)
            log.warning(
                "trunk %s is down (no answer to OPTIONS); calls fail over to other routes", self._name(trunk_id)
            )
        return True

    def forget(self, tx: ClientTransaction) -> None:
        self._out.pop(tx, None)

    def _name(self, trunk_id: int) -> str | int:
        t = self.directory.trunk(trunk_id)
        return t.name if t else trunk_id
