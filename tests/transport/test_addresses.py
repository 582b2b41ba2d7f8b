"""Interface addresses from pyroute2 (read before the event loop starts)."""

from __future__ import annotations

import ipaddress

from sipcore.transport.addresses import interface_addresses


def test_addresses_are_ips_with_loopback_last() -> None:
    addrs = interface_addresses()
    assert addrs, "at least loopback"
    ips = [ipaddress.ip_address(a) for a in addrs]
    assert all(ip.version == 4 for ip in ips)
    loop = [ip.is_loopback for ip in ips]
    assert loop == sorted(loop)  # global and link-local first, loopback last
