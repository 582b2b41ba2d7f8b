"""Tenants and device credentials held in memory for the packet path (sans-IO).

The edge fills it from the store at start and again whenever the store's
provisioning serial changes, so provisioning while the server runs takes
effect without a restart; the packet path only does dict lookups.  It is
the :class:`~sipcore.auth.CredentialSource` the digest authenticator reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


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
    password: str | None = None
    register: bool = False
    priority: int = 100
    allow_transit: bool = False


@dataclass(frozen=True, slots=True)
class DidInfo:
    """An inbound number: a call from a trunk to `number` rings the device."""

    number: str
    tenant_id: int
    device_id: int
    trunk_id: int | None = None  # None: from any trunk of the tenant


class Directory:
    __slots__ = ("_tenants", "_tenant_ids", "_devices", "_by_id", "_trunks", "_by_source", "_dids", "serial")

    def __init__(self) -> None:
        self._tenants: dict[str, TenantInfo] = {}
        self._tenant_ids: dict[int, TenantInfo] = {}
        self._devices: dict[tuple[str, str], DeviceCredentials] = {}
        self._by_id: dict[int, DeviceCredentials] = {}
        self._trunks: dict[int, TrunkInfo] = {}
        self._by_source: dict[str, list[TrunkInfo]] = {}
        self._dids: dict[str, DidInfo] = {}
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
        by_source: dict[str, list[TrunkInfo]] = {}
        for t in self._trunks.values():
            by_source.setdefault(t.host.lower(), []).append(t)
        self._by_source = by_source
        self._dids = {d.number: d for d in dids}
        self.serial = serial

    # -- trunks --------------------------------------------------------------
    def trunk(self, trunk_id: int) -> TrunkInfo | None:
        return self._trunks.get(trunk_id)

    def trunks(self) -> list[TrunkInfo]:
        return list(self._trunks.values())

    def trunk_by_source(self, host: str, port: int) -> TrunkInfo | None:
        """The trunk a request came from, recognised by its exact source address.

        Host alone is not enough: phones behind the same NAT as a PBX trunk
        share its address, and taking them for the trunk would skip their
        authentication.  A carrier that sends from several ports is added
        once per port."""
        for t in self._by_source.get(host.lower(), ()):
            if t.port == port:
                return t
        return None

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
        d = self.device(realm, username)
        if d is None:
            return None
        return d.ha1_sha256 if algorithm.upper() == "SHA-256" else d.ha1_md5 if algorithm.upper() == "MD5" else None

    def __len__(self) -> int:
        return len(self._devices)

    @property
    def tenant_count(self) -> int:
        return len(self._tenants)
