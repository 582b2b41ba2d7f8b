"""The location service (RFC 3261 §10): bindings of an address-of-record.

Sans-IO and bounded.  A binding is identified within its AOR by the key of
RFC 5626 §6 when the Contact carries ``+sip.instance`` (with ``reg-id``:
one binding per flow of that instance; without: one per instance, as RFC
5627 does), so a phone that reboots with a new Call-ID replaces its old
binding instead of piling up another.  Otherwise the key is the Contact URI
compared on scheme, user, host (case-insensitive), port and transport: the
parts of RFC 3261 §19.1.4 equality that matter for routing.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from sipcore.flow import Flow
from sipcore.message.uri import URI


def contact_key(uri: URI, instance: str | None, reg_id: int | None) -> str:
    if instance:
        return f"instance:{instance}:{reg_id}" if reg_id is not None else f"instance:{instance}"
    if not uri.is_sip:
        return str(uri)
    port = uri.port if uri.port is not None else ""
    return f"{uri.scheme}:{uri.user_unescaped or ''}@{uri.host_lower}:{port};{uri.transport or ''}"


@dataclass(slots=True)
class Binding:
    aor: str
    key: str
    contact: str
    """The Contact value as it will be returned: name-addr without expires."""
    uri: str
    """The Contact URI (where requests for the AOR are sent, over `flow`)."""
    expires_ms: int
    q_milli: int
    call_id: str
    cseq: int
    flow: Flow
    tenant_id: int
    device_id: int
    updated_ms: int
    instance: str | None = None
    reg_id: int | None = None
    path: tuple[str, ...] = ()
    user_agent: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def remaining_s(self, now_ms: int) -> int:
        return max(0, (self.expires_ms - now_ms + 999) // 1000)


class LocationService:
    """AOR -> bindings, with lazy expiry through a heap of deadlines."""

    __slots__ = ("_by_aor", "_heap", "_count", "_per_tenant", "flow_tenants", "_flow_refs", "max_bindings")

    def __init__(self, max_bindings: int = 1_000_000) -> None:
        self._by_aor: dict[str, dict[str, Binding]] = {}
        self._heap: list[tuple[int, str, str]] = []
        self._count = 0
        self._per_tenant: dict[int, int] = {}
        self.flow_tenants: dict[Flow, int] = {}
        """flow -> the tenant whose devices are registered over it, for flows
        that carry bindings of one tenant only: whose device a message sent
        over the flow goes to (signaling.bytes_out).  A flow shared by several
        tenants' bindings (an edge proxy with Path, an SBC) is nobody's: a
        message over it cannot be told apart by tenant here.  Read-only
        outside; a plain dict so the per-message lookup is one C call."""
        self._flow_refs: dict[Flow, dict[int, int]] = {}  # flow -> tenant -> bindings
        self.max_bindings = max_bindings

    def __len__(self) -> int:
        return self._count

    def get(self, aor: str) -> dict[str, Binding]:
        return self._by_aor.get(aor, {})

    def lookup(self, aor: str, now_ms: int) -> list[Binding]:
        """Live bindings, highest q first (RFC 3261 §16.6 target order)."""
        live = [b for b in self._by_aor.get(aor, {}).values() if b.expires_ms > now_ms]
        live.sort(key=lambda b: -b.q_milli)
        return live

    def put(self, b: Binding) -> None:
        table = self._by_aor.setdefault(b.aor, {})
        old = table.get(b.key)
        if old is None:
            self._count += 1
            self._inflow(b.flow, b.tenant_id)
        else:
            self._per_tenant[old.tenant_id] -= 1
            if old.flow != b.flow or old.tenant_id != b.tenant_id:  # else a refresh: the index stands
                self._unflow(old.flow, old.tenant_id)
                self._inflow(b.flow, b.tenant_id)
        self._per_tenant[b.tenant_id] = self._per_tenant.get(b.tenant_id, 0) + 1
        table[b.key] = b
        heapq.heappush(self._heap, (b.expires_ms, b.aor, b.key))

    def remove(self, aor: str, key: str) -> Binding | None:
        table = self._by_aor.get(aor)
        if not table or key not in table:
            return None
        b = table.pop(key)
        self._count -= 1
        self._per_tenant[b.tenant_id] -= 1
        self._unflow(b.flow, b.tenant_id)
        if not table:
            del self._by_aor[aor]
        return b

    def _inflow(self, flow: Flow, tenant_id: int) -> None:
        refs = self._flow_refs.get(flow)
        if refs is None:
            self._flow_refs[flow] = {tenant_id: 1}
            self.flow_tenants[flow] = tenant_id
            return
        refs[tenant_id] = refs.get(tenant_id, 0) + 1
        if len(refs) > 1:
            self.flow_tenants.pop(flow, None)

    def _unflow(self, flow: Flow, tenant_id: int) -> None:
        refs = self._flow_refs[flow]
        left = refs[tenant_id] - 1
        if left:
            refs[tenant_id] = left
            return
        del refs[tenant_id]
        if not refs:
            del self._flow_refs[flow]
            self.flow_tenants.pop(flow, None)
        elif len(refs) == 1:
            self.flow_tenants[flow] = next(iter(refs))

    def tenant_of_flow(self, flow: Flow) -> int | None:
        """The tenant whose devices are registered over `flow`, or None (no
        binding on it, or bindings of several tenants)."""
        return self.flow_tenants.get(flow)

    def expire(self, now_ms: int) -> list[Binding]:
        """Remove every binding whose expiry has passed; returns them."""
        out = []
        heap = self._heap
        while heap and heap[0][0] <= now_ms:
            deadline, aor, key = heapq.heappop(heap)
            b = self._by_aor.get(aor, {}).get(key)
            if b is not None and b.expires_ms == deadline:  # else refreshed since: a stale entry
                self.remove(aor, key)
                out.append(b)
        if len(heap) > 4 * self._count + 1024:  # refreshes leave stale entries: compact now and then
            self._heap = [(b.expires_ms, b.aor, b.key) for t in self._by_aor.values() for b in t.values()]
            heapq.heapify(self._heap)
        return out

    def next_expiry(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def all(self) -> list[Binding]:
        return [b for t in self._by_aor.values() for b in t.values()]

    def count_for_tenant(self, tenant_id: int) -> int:
        """Concurrent bindings of a tenant (the connections.peak gauge's input)."""
        return self._per_tenant.get(tenant_id, 0)
