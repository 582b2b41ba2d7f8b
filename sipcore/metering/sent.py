"""``signaling.bytes_out`` (METERING.md): bytes the server sent to a tenant's devices and trunks.

A message is the tenant's when it leaves over a flow one of the tenant's
devices is registered on, or to the address of one of its trunks.  Counted
is the SIP message as written to the socket (no IP, UDP or TCP headers),
responses and requests alike, retransmissions included: that is what the
server sent.  Traffic to an address that is neither is nobody's: a
challenge to a phone that has not registered yet, or to whoever claims to
be one, bills no tenant (an outsider cannot run up a tenant's bill), and
the answer to an un-REGISTER that removed a device's last binding on the
flow is the first message that is no longer counted.

Sans-IO: the core hands each batch of outgoing messages to :meth:`count`
(one dict lookup per message) and turns :meth:`drain`'s per-tenant sums
into counter events once per batch, so the per-packet path never grows
with the number of tenants.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from sipcore.flow import Flow

BYTES_OUT = "signaling.bytes_out"


class SentBytesMeter:
    __slots__ = ("_device_tenant", "_trunk_tenant", "_pending")

    def __init__(
        self,
        device_tenant: Callable[[Flow], int | None],
        trunk_tenant: Callable[[str, int], int | None],
    ) -> None:
        self._device_tenant = device_tenant
        self._trunk_tenant = trunk_tenant
        self._pending: dict[int, int] = {}

    def count(self, out: Iterable[tuple[bytes, Flow]]) -> None:
        """Add a batch of outgoing messages (``Outgoing``: data, flow)."""
        device_tenant = self._device_tenant
        pending = self._pending
        for data, flow in out:
            tenant_id = device_tenant(flow)
            if tenant_id is None:
                tenant_id = self._trunk_tenant(flow.host, flow.port)
                if tenant_id is None:
                    continue
            pending[tenant_id] = pending.get(tenant_id, 0) + len(data)

    def __bool__(self) -> bool:
        return bool(self._pending)

    def drain(self) -> Iterator[tuple[int, int]]:
        """(tenant_id, bytes) counted since the last drain."""
        pending, self._pending = self._pending, {}
        return iter(pending.items())
