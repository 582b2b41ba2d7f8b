"""Tenants and device credentials held in memory for the packet path (sans-IO).

The edge fills it from the store at start and again whenever the store's
provisioning serial changes, so provisioning while the server runs takes
effect without a restart; the packet path only does dict lookups.  It is
the :class:`~sipcore.auth.CredentialSource` the digest authenticator reads.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sipcore.auth import compute_ha1

log = logging.getLogger("sipcore.proxy")

INBOUND_MODES = ("address", "digest", "both")
"""How a trunk's own requests are recognised: by exact source address (no
digest), by digest with its username/password from any address, or both."""


@dataclass(frozen=True, slots=True)
class TenantInfo:
    id: int
    domain: str
    timezone: str = "UTC"
    plan: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceCredentials:
    device_id: int
    tenant_id: int
    realm: str
    username: str
    ha1_md5: str
    ha1_sha256: str
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class TrunkInfo:
    """A connection to a carrier or another PBX (METERING.md "Trunk")."""

    id: int
    tenant_id: int
    name: str
    host: str
    port: int
    transport: str = "udp"
    prefixes: tuple[str, ...] = ()
    codecs: tuple[str, ...] = ()  # encoding names, upper case; () = any
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    register: bool = False
    priority: int = 100
    allow_transit: bool = False
    inbound: str = "address"  # one of INBOUND_MODES
    account_domain: str | None = None  # of our account at the trunk (REGISTER); None: the host


@dataclass(frozen=True, slots=True)
class TrunkCredentials:
    """What a trunk with inbound digest proves: its username in its tenant's realm
    (the password it answers our challenge with is the one we answer its with)."""

    trunk: TrunkInfo
    realm: str
    ha1_md5: str = field(repr=False)
    ha1_sha256: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class DidInfo:
    """An inbound number: a call from a trunk to `number` rings the device."""

    number: str
    tenant_id: int
    device_id: int
    trunk_id: int | None = None  # None: from any trunk of the tenant


class Directory:
    __slots__ = (
        "_tenants",
        "_tenant_ids",
        "_devices",
        "_by_id",
        "_trunks",
        "_by_source",
        "_trunk_creds",
        "_dids",
        "trunk_tenants",
        "_trunk_addresses",
        "serial",
    )

    def __init__(self) -> None:
        self._tenants: dict[str, TenantInfo] = {}
        self._tenant_ids: dict[int, TenantInfo] = {}
        self._devices: dict[tuple[str, str], DeviceCredentials] = {}
        self._by_id: dict[int, DeviceCredentials] = {}
        self._trunks: dict[int, TrunkInfo] = {}
        self._by_source: dict[str, list[TrunkInfo]] = {}
        self._trunk_creds: dict[tuple[str, str], TrunkCredentials] = {}
        self._dids: dict[str, DidInfo] = {}
        self._trunk_addresses: dict[int, tuple[str, ...]] = {}
        self.trunk_tenants: dict[tuple[str, int], int] = {}
        """(host, port) -> the tenant of the trunk there, as trunk_by_source finds it
        (signaling.bytes_out: one dict lookup per message sent)."""
        self.serial = -1

    def replace(
        self,
        tenants: Iterable[TenantInfo],
        devices: Iterable[DeviceCredentials],
        serial: int,
        trunks: Iterable[TrunkInfo] = (),
        dids: Iterable[DidInfo] = (),
    ) -> None:
        """Swap in a fresh snapshot (built off the packet path, installed in one step)."""
        by_domain = {t.domain.lower(): t for t in tenants}
        self._tenants = by_domain
        self._tenant_ids = {t.id: t for t in by_domain.values()}
        self._devices = {(d.realm.lower(), d.username): d for d in devices}
        self._by_id = {d.device_id: d for d in self._devices.values() if d.enabled}
        self._trunks = {t.id: t for t in trunks}
        self._index_sources()
        self._trunk_creds = self._digest_trunks()
        self._dids = {d.number: d for d in dids}
        self.serial = serial

    def _digest_trunks(self) -> dict[tuple[str, str], TrunkCredentials]:
        """HA1s of the trunks whose requests authenticate by digest, by (realm, username).

        A device of the tenant with the same username wins (its credentials
        are checked as before), and of two such trunks the lower id; the other
        gets no inbound digest and a warning says so."""
        out: dict[tuple[str, str], TrunkCredentials] = {}
        for t in sorted(self._trunks.values(), key=lambda t: t.id):
            if t.inbound == "address" or t.username is None or t.password is None:
                continue
            tenant = self._tenant_ids.get(t.tenant_id)
            if tenant is None:
                continue
            key = (tenant.domain.lower(), t.username)
            if key in self._devices or key in out:
                owner = out[key].trunk.name if key in out else None
                other = f"trunk {owner}" if owner else f"device {t.username}@{tenant.domain}"
                log.warning("trunk %s: its username is also that of %s; no inbound digest", t.name, other)
                continue
            out[key] = TrunkCredentials(
                t,
                tenant.domain,
                compute_ha1(t.username, tenant.domain, t.password, "MD5"),
                compute_ha1(t.username, tenant.domain, t.password, "SHA-256"),
            )
        return out

    def trunk_addresses(self) -> dict[int, tuple[str, ...]]:
        """What the trunks added by host name resolved to, by trunk id (a copy)."""
        return dict(self._trunk_addresses)

    def set_trunk_addresses(self, addresses: Mapping[int, tuple[str, ...]]) -> None:
        """The addresses the trunks added by host name resolve to (by trunk
        id), looked up by the edge: their requests arrive from these, so
        inbound-by-address and signaling.bytes_out recognise them there."""
        self._trunk_addresses = {k: tuple(v) for k, v in addresses.items()}
        self._index_sources()

    def _index_sources(self) -> None:
        by_source: dict[str, list[TrunkInfo]] = {}
        trunks = sorted(self._trunks.values(), key=lambda t: t.id)
        for t in trunks:
            by_source.setdefault(t.host.lower(), []).append(t)
        # What a name resolves to comes after every trunk added by that address:
        # DNS must not take a trunk's address (and its tenant) over.
        for t in trunks:
            for addr in self._trunk_addresses.get(t.id, ()):
                at = by_source.setdefault(addr.lower(), [])
                other = next((o for o in at if o.port == t.port and o.id != t.id), None)
                if other is not None:
                    log.warning(
                        "trunk %s: %s resolves to %s:%d, which is trunk %s's; requests from there stay %s's",
                        t.name, t.host, addr, t.port, other.name, other.name,
                    )  # fmt: skip
                elif t not in at:
                    at.append(t)
        trunk_tenants: dict[tuple[str, int], int] = {}
        for host, at in by_source.items():
            for t in at:
                trunk_tenants.setdefault((host, t.port), t.tenant_id)
        self._by_source = by_source
        self.trunk_tenants = trunk_tenants

    # -- trunks --------------------------------------------------------------
    def trunk(self, trunk_id: int) -> TrunkInfo | None:
        return self._trunks.get(trunk_id)

    def trunks(self) -> list[TrunkInfo]:
        return list(self._trunks.values())

    def trunk_by_source(self, host: str, port: int) -> TrunkInfo | None:
        """The trunk at this exact source address (whatever its ``inbound``:
        the proxy lets it in unauthenticated only when that is "address").

        Host alone is not enough: phones behind the same NAT as a PBX trunk
        share its address, and taking them for the trunk would skip their
        authentication.  A carrier that sends from several ports is added
        once per port."""
        for t in self._by_source.get(host.lower(), ()):
            if t.port == port:
                return t
        return None

    def trunk_by_credentials(self, realm: str, username: str) -> TrunkInfo | None:
        """The trunk with inbound digest whose username this is in `realm`."""
        c = self._trunk_creds.get((realm.lower(), username))
        return c.trunk if c is not None else None

    def routes(self, tenant_id: int, number: str) -> list[TrunkInfo]:
        """The tenant's trunks whose prefix matches `number`, best first:
        longest matching prefix, then lowest priority value, then id."""
        ranked = []
        for t in self._trunks.values():
            if t.tenant_id != tenant_id:
                continue
            best = max((len(p) for p in t.prefixes if number.startswith(p)), default=-1)
            if best >= 0:
                ranked.append((-best, t.priority, t.id, t))
        ranked.sort(key=lambda r: r[:3])
        return [r[3] for r in ranked]

    def did(self, number: str) -> DidInfo | None:
        return self._dids.get(number)

    def tenant_by_domain(self, domain: str) -> TenantInfo | None:
        return self._tenants.get(domain.lower())

    def tenant(self, tenant_id: int) -> TenantInfo | None:
        return self._tenant_ids.get(tenant_id)

    def timezone_of(self, tenant_id: int) -> str:
        t = self._tenant_ids.get(tenant_id)
        return t.timezone if t else "UTC"

    def device(self, realm: str, username: str) -> DeviceCredentials | None:
        d = self._devices.get((realm.lower(), username))
        return d if d is not None and d.enabled else None

    def device_by_id(self, device_id: int) -> DeviceCredentials | None:
        """An enabled device by id (None when removed or disabled)."""
        return self._by_id.get(device_id)

    def ha1(self, realm: str, username: str, algorithm: str) -> str | None:
        """A device's HA1, else that of a trunk with inbound digest (the device wins)."""
        c: DeviceCredentials | TrunkCredentials | None = self.device(realm, username)
        if c is None:
            c = self._trunk_creds.get((realm.lower(), username))
            if c is None:
                return None
        alg = algorithm.upper()
        return c.ha1_sha256 if alg == "SHA-256" else c.ha1_md5 if alg == "MD5" else None

    def __len__(self) -> int:
        return len(self._devices)

    @property
    def tenant_count(self) -> int:
        return len(self._tenants)
