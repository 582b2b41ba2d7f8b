"""``signaling.bytes_out`` (METERING.md): bytes the server sent to a tenant's devices and trunks.

A message is the tenant's when, at the moment it is handed to the transport
(once the batch of input that caused it is worked through), it goes over a
flow that only that tenant's devices are registered on, or to the host and
port one of its trunks is configured with.  Counted is the SIP message
(no IP, UDP or TCP headers), responses and requests alike, retransmissions
included.

Not counted, on purpose: traffic to an address with no binding (a phone
before its first successful REGISTER, a scanner), so a stranger's
challenges bill nobody; the answer to an un-REGISTER that removed the
flow's last binding; and a flow that carries bindings of several tenants
(an edge proxy with Path, an SBC), where a message cannot be told apart by
tenant here.  Missed for the same reason: answers to a device over a new
TCP connection until it registers over it.  A trunk added by host name is
known at the addresses the name resolved to (``Directory.set_trunk_addresses``).  Over UDP a source address can
be spoofed: whoever sends in a registered phone's name makes the server
answer the phone, and those answers count (they do reach the tenant's
device; the attacker sends as much as is billed).

Sans-IO: the core hands each batch of outgoing messages to :meth:`count`
(a dict lookup per message, two when the flow is no device's) and turns
:meth:`take`'s per-tenant sums into counter events once per batch, so the
per-packet path never grows with the number of tenants.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sipcore.flow import Flow

BYTES_OUT = "signaling.bytes_out"


class SentBytesMeter:
    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending: dict[int, int] = {}
        """tenant_id -> bytes counted since the last :meth:`take`."""

    def count(
        self,
        out: Iterable[tuple[bytes, Flow]],
        device_tenants: Mapping[Flow, int],
        trunk_tenants: Mapping[tuple[str, int], int],
    ) -> None:
        """Add a batch of outgoing messages (``Outgoing``: data, flow), given
        whose device is registered over each flow and whose trunk is at each
        (host, port)."""
        pending = self.pending
        device_tenant = device_tenants.get
        for data, flow in out:
            tenant_id = device_tenant(flow)
            if tenant_id is None:
                tenant_id = trunk_tenants.get(flow[1:3])  # type: ignore[call-overload]
                if tenant_id is None:
                    continue
            pending[tenant_id] = pending.get(tenant_id, 0) + len(data)

    def take(self) -> dict[int, int]:
        """tenant_id -> bytes counted since the last take."""
        pending, self.pending = self.pending, {}
        return pending
