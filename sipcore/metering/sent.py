"""``signaling.bytes_out`` (METERING.md): bytes the server sent to a tenant's devices and trunks.

A message is the tenant's when, at the moment it is sent (once the batch of
input that caused it is worked through), it leaves over a flow one of the
tenant's devices is registered on, or to the address of one of its trunks.  Counted
is the SIP message as written to the socket (no IP, UDP or TCP headers),
responses and requests alike, retransmissions included: that is what the
server sent.  Traffic to an address that is neither is nobody's: a
challenge to a phone that has not registered yet, or to whoever claims to
be one, bills no tenant (an outsider cannot run up a tenant's bill), and
the answer to an un-REGISTER that removed a device's last binding on the
flow is the first message that is no longer counted.

Sans-IO: the core hands each batch of outgoing messages to :meth:`count`
(one dict lookup per message) and turns :meth:`take`'s per-tenant sums
into counter events once per batch, so the per-packet path never grows
with the number of tenants.
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
