"""Where a message came from or goes to (PURE: used by every layer).

A :class:`Flow` names one transport-level path: the transport, the remote
address, and for stream transports the connection it rides on.  Requests to a
registered device go back over the flow its REGISTER arrived on (RFC 5626
§5.3, RFC 3581), so the flow is what the registrar stores, not the Contact's
literal address.  A NamedTuple: it is created once per received datagram, so
it must be cheap, hashable and comparable.
"""

from __future__ import annotations

from typing import NamedTuple


class Flow(NamedTuple):
    transport: str
    """Lower-case transport: "udp", "tcp" or "tls"."""
    host: str
    """Remote IP address (no brackets for IPv6)."""
    port: int
    """Remote port."""
    conn_id: int = 0
    """For streams the connection a reply must ride on while it is open; for
    datagrams the listening socket it arrived on (replies leave from the same
    address and port, which NAT bindings and RFC 3581 depend on)."""

    @property
    def reliable(self) -> bool:
        """RFC 3261 §17: timers that retransmit run only on unreliable transports."""
        return self.transport != "udp"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        suffix = f"#{self.conn_id}" if self.conn_id else ""
        return f"{self.transport}:{host}:{self.port}{suffix}"
