"""The host's interface addresses (EDGE, pyroute2).

A listener bound to 0.0.0.0 has no address of its own to put in Via,
Record-Route or Contact; the host's interfaces give one.  `advertise` in the
config overrides this for a server behind NAT.
"""

from __future__ import annotations

import ipaddress
import logging
import socket

log = logging.getLogger("sipcore.transport")


def interface_addresses(family: int = socket.AF_INET) -> list[str]:
    """Addresses of the up interfaces, global ones first, loopback last."""
    addrs: list[str] = []
    try:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            for msg in ipr.get_addr(family=family):
                addr = msg.get_attr("IFA_ADDRESS")
                if addr:
                    addrs.append(addr)
    except Exception as e:  # pyroute2 needs netlink; a container without it still runs
        log.warning("cannot read interface addresses with pyroute2 (%s); using the hostname's", e)
        try:
            addrs = [socket.gethostbyname(socket.gethostname())]
        except OSError:
            addrs = []

    def rank(a: str) -> tuple[int, str]:
        ip = ipaddress.ip_address(a)
        return (2 if ip.is_loopback else 1 if ip.is_link_local else 0, a)

    out = sorted(set(addrs), key=rank)
    return out or ["127.0.0.1"]
