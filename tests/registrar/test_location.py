"""The location table's flow index: whose device a message over a flow goes to."""

from __future__ import annotations

import random

from sipcore.flow import Flow
from sipcore.registrar import Binding, LocationService

A = Flow("udp", "203.0.113.7", 40000, 1)
B = Flow("udp", "203.0.113.7", 40001, 1)


def binding(aor: str, key: str, flow: Flow, tenant_id: int = 1, expires_ms: int = 60_000) -> Binding:
    return Binding(aor, key, f"<{key}>", key, expires_ms, 1000, "c", 1, flow, tenant_id, 10, 0)


def test_a_flow_is_its_tenants_while_a_binding_is_on_it() -> None:
    loc = LocationService()
    assert loc.tenant_of_flow(A) is None
    loc.put(binding("sip:a@x", "sip:a@h", A))
    loc.put(binding("sip:a@x", "sip:a@h", A, expires_ms=90_000))  # refresh
    loc.put(binding("sip:b@x", "sip:b@h", A))  # a second account on the same phone port
    assert loc.tenant_of_flow(A) == 1 and loc.tenant_of_flow(B) is None
    loc.remove("sip:a@x", "sip:a@h")
    assert loc.tenant_of_flow(A) == 1, "b is still registered over it"
    loc.remove("sip:b@x", "sip:b@h")
    assert loc.tenant_of_flow(A) is None and loc.flow_tenants == {} and loc._flow_refs == {}


def test_a_binding_that_moves_to_another_flow_takes_its_tenant_along() -> None:
    loc = LocationService()
    loc.put(binding("sip:a@x", "sip:a@h", A))
    loc.put(binding("sip:a@x", "sip:a@h", B))  # the phone's NAT mapping changed
    assert (loc.tenant_of_flow(A), loc.tenant_of_flow(B)) == (None, 1)


def test_a_flow_shared_by_two_tenants_is_nobodys_until_one_is_left() -> None:
    loc = LocationService()
    loc.put(binding("sip:a@x", "sip:a@h", A, tenant_id=1, expires_ms=1000))
    loc.put(binding("sip:c@y", "sip:c@h", A, tenant_id=2, expires_ms=5000))
    assert loc.tenant_of_flow(A) is None, "an edge proxy (Path) or SBC carrying two tenants: not told apart"
    assert [b.aor for b in loc.expire(2000)] == ["sip:a@x"]
    assert loc.tenant_of_flow(A) == 2
    loc.put(binding("sip:a@x", "sip:a@h", A, tenant_id=1, expires_ms=9000))
    loc.remove("sip:c@y", "sip:c@h")
    assert loc.tenant_of_flow(A) == 1, "the tenant whose binding is left, not the one registered last"
    loc.expire(10_000)
    assert loc.tenant_of_flow(A) is None and len(loc) == 0 and loc._flow_refs == {}


def test_the_index_matches_the_bindings_after_random_changes() -> None:
    rng = random.Random(7)
    loc = LocationService()
    flows = [Flow("udp", "203.0.113.7", 40000 + i, 1) for i in range(4)]
    for step in range(3000):
        aor, key = f"sip:u{rng.randrange(6)}@x", f"sip:k{rng.randrange(3)}@h"
        op = rng.random()
        if op < 0.6:
            loc.put(binding(aor, key, rng.choice(flows), rng.choice((1, 2)), expires_ms=step + rng.randrange(1, 300)))
        elif op < 0.9:
            loc.remove(aor, key)
        else:
            loc.expire(step)
        tenants: dict[Flow, set[int]] = {}
        for b in loc.all():
            tenants.setdefault(b.flow, set()).add(b.tenant_id)
        assert loc.flow_tenants == {f: next(iter(t)) for f, t in tenants.items() if len(t) == 1}, step
        assert set(loc._flow_refs) == set(tenants), step
