"""The store's trunks (EDGE): provisioning, the Directory's view, registration states.

Mixed into :class:`~sipcore.store.calls.CallsStore` (tables from
``migrations/0002_calls.sql``, ``0004_trunk_registrations.sql`` and
``0005_trunk_inbound.sql``).

* Trunks are provisioning: every change bumps ``meta.provisioning_serial``
  (the server reloads its Directory when it moves), and every change of a
  tenant's number of enabled trunks appends to ``trunk_count_log`` in the
  same transaction (``trunks.provisioned.peak``, computed like the device
  peak).
* ``inbound`` says how the trunk's own requests are recognised: by exact
  source address ("address"), by digest with its username/password in the
  tenant's realm from any address ("digest"), or both.  The password is
  kept in clear because sipcore answers the trunk's challenges with it; the
  Directory derives the HA1s at load.
* Trunk registrations: the running server upserts where its registration
  with each trunk stands (one row per trunk, the latest state wins, so a
  replay is harmless).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiosqlite

from sipcore.proxy.directory import INBOUND_MODES, TrunkInfo
from sipcore.store.billing_alerts import fetch_all as _all
from sipcore.store.billing_alerts import fetch_one as _one
from sipcore.store.credentials import check_domain, check_password, check_username
from sipcore.store.db import Database
from sipcore.store.errors import AlreadyExists, ConstraintViolation, InvalidValue, NotFound
from sipcore.store.months import check_month, month_bounds_ms

TRANSPORTS = ("udp", "tcp")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_PREFIX = re.compile(r"[0-9+*#]{1,32}")
# RFC 4566 §6 (a=rtpmap): encoding names are tokens; in practice PCMU, G722, opus, telephone-event.
_CODEC = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,31}")
MAX_PRIORITY = 1_000_000


# -- validation (PURE; also the CLI's argument types) ---------------------------


def check_trunk_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidValue(f"trunk name {name!r}: 1-64 letters, digits, '_', '.', '-', starting with a letter or digit")
    return name


def check_host(host: str) -> str:
    """An IP address (normalized; IPv6 with or without brackets) or a host name (lower-cased)."""
    text = host[1:-1] if isinstance(host, str) and host.startswith("[") and host.endswith("]") else host
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    try:
        return check_domain(text)
    except InvalidValue:
        raise InvalidValue(
            f"host {host!r}: expected an IP address or a host name such as sip.carrier.example"
        ) from None


def check_port(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidValue(f"port {port!r}: expected 1-65535")
    return port


def parse_address(text: str) -> tuple[str, int]:
    """``HOST[:PORT]`` / ``[IPV6][:PORT]`` -> (host, port); the port defaults to 5060."""
    if not isinstance(text, str):
        raise InvalidValue(f"address {text!r}: expected HOST:PORT")
    host, port = text, "5060"
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[: end + 1], text[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            raise InvalidValue(f"address {text!r}: expected [IPV6]:PORT")
        port = rest[1:] if rest else port
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not port.isascii() or not port.isdigit():
        raise InvalidValue(f"address {text!r}: the port must be a number")
    return check_host(host), check_port(int(port))


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
        raise InvalidValue(f"prefix {prefix!r}: 1-32 characters among 0-9 + * #")
    return prefix


def check_codecs(codecs: Iterable[str]) -> tuple[str, ...]:
    """Encoding names, upper-cased, duplicates dropped (order kept: it is the preference)."""
    if isinstance(codecs, str):
        codecs = codecs.split(",")
    out: list[str] = []
    for c in codecs:
        name = c.strip() if isinstance(c, str) else c
        if not isinstance(name, str) or not _CODEC.fullmatch(name):
            raise InvalidValue(f"codec {c!r}: expected an encoding name such as PCMU, PCMA, G722, OPUS")
        if name.upper() not in out:
            out.append(name.upper())
    return tuple(out)


def check_priority(priority: int) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= MAX_PRIORITY:
        raise InvalidValue(f"priority {priority!r}: expected 0-{MAX_PRIORITY} (lower first)")
    return priority


def check_inbound(inbound: str) -> str:
    if inbound not in INBOUND_MODES:
        raise InvalidValue(f"inbound {inbound!r}: expected one of {', '.join(INBOUND_MODES)}")
    return inbound


def split_list(text: str | None) -> tuple[str, ...]:
    return tuple(text.split(",")) if text else ()


async def count_peak(db: aiosqlite.Connection, log_table: str, tenant_id: int, start: int, end: int) -> int:
    """The peak of a count log over [start, end): max(the count in force at the
    start, every count logged inside); rowid orders changes sharing a ms."""
    before = await _one(
        db,
        f"SELECT count FROM {log_table} WHERE tenant_id = ? AND at_ms < ? ORDER BY at_ms DESC, rowid DESC LIMIT 1",
        (tenant_id, start),
    )
    inside = await _one(
        db,
        f"SELECT max(count) FROM {log_table} WHERE tenant_id = ? AND at_ms >= ? AND at_ms < ?",
        (tenant_id, start, end),
    )
    return int(max(before[0] if before else 0, inside[0] if inside[0] is not None else 0))


# -- rows -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Trunk:
    """A trunk as listed: never the password (``has_password`` says whether one is set)."""

    id: int
    tenant_id: int
    domain: str
    name: str
    host: str
    port: int
    transport: str
    prefixes: tuple[str, ...]
    codecs: tuple[str, ...]
    username: str | None
    has_password: bool
    register: bool
    priority: int
    allow_transit: bool
    enabled: bool
    created_ms: int
    updated_ms: int
    inbound: str = "address"
    account_domain: str | None = None
    """The SIP domain of our account at the trunk (None: the address host)."""

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)


REGISTRATION_STATES = ("registering", "registered", "failed", "unregistered")


@dataclass(frozen=True, slots=True)
class TrunkRegistration:
    """Where the server's registration with a trunk stands (``sipcore.proxy.upstream``)."""

    trunk_id: int
    state: str  # one of REGISTRATION_STATES
    status: int | None  # of the last response; None: none (timeout, transport failure, not sent yet)
    reason: str
    expires_at_ms: int | None  # registered: when the trunk's binding of us ends
    next_attempt_ms: int | None  # the next REGISTER: refresh, or retry after a failure
    updated_ms: int


# -- SQL ------------------------------------------------------------------------

_REG_COLS = "trunk_id, state, last_status, last_reason, expires_at_ms, next_attempt_ms, updated_ms"
# Only for a trunk that still exists (a state can be written just after its trunk was removed).
_UPSERT_TRUNK_REGISTRATION = (
    f"INSERT INTO trunk_registrations ({_REG_COLS}) SELECT ?, ?, ?, ?, ?, ?, ? WHERE EXISTS "
    "(SELECT 1 FROM trunks WHERE id = ?) ON CONFLICT (trunk_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _REG_COLS.split(", ")[1:])
)

_TRUNK_COLS = (
    "tr.id, tr.tenant_id, t.domain, tr.name, tr.host, tr.port, tr.transport, "
    "(SELECT group_concat(prefix, ',') FROM (SELECT prefix FROM trunk_prefixes p WHERE p.trunk_id = tr.id "
    "ORDER BY prefix)), tr.codecs, tr.username, tr.password, tr.register, tr.priority, tr.allow_transit, "
    "tr.enabled, tr.created_ms, tr.updated_ms, tr.inbound, tr.account_domain"
)
_TRUNK_FROM = " FROM trunks tr JOIN tenants t ON t.id = tr.tenant_id"


def _trunk(r: Any) -> Trunk:
    return Trunk(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], split_list(r[7]), split_list(r[8]), r[9], r[10] is not None,
        bool(r[11]), r[12], bool(r[13]), bool(r[14]), r[15], r[16], r[17], r[18],
    )  # fmt: skip


class TrunksStore(Database):
    """Trunks and their registration states (see the module docstring)."""

    # -- helpers ------------------------------------------------------------

    async def _tenant_row(self, db: aiosqlite.Connection, domain: str) -> tuple[int, str]:
        """(id, timezone) of a tenant by domain."""
        row = await _one(db, "SELECT id, timezone FROM tenants WHERE domain = ?", (check_domain(domain),))
        if row is None:
            raise NotFound(f"no tenant {check_domain(domain)}")
        return int(row[0]), str(row[1])

    async def _log_trunk_count(self, db: aiosqlite.Connection, tenant_id: int, now: int) -> None:
        """In the transaction of every change of the tenant's enabled-trunk count."""
        row = await _one(db, "SELECT count(*) FROM trunks WHERE tenant_id = ? AND enabled = 1", (tenant_id,))
        await db.execute(
            "INSERT INTO trunk_count_log (tenant_id, at_ms, count) VALUES (?, ?, ?)", (tenant_id, now, row[0])
        )

    async def _trunk_in(self, db: aiosqlite.Connection, name: str) -> Trunk:
        row = await _one(db, f"SELECT {_TRUNK_COLS}{_TRUNK_FROM} WHERE tr.name = ?", (name,))
        if row is None:
            raise NotFound(f"no trunk {name}")
        return _trunk(row)

    # -- trunks -------------------------------------------------------------

    async def add_trunk(
        self,
        name: str,
        tenant_domain: str,
        host: str,
        port: int,
        transport: str = "udp",
        prefixes: Iterable[str] = (),
        codecs: Iterable[str] = (),
        username: str | None = None,
        password: str | None = None,
        register: bool = False,
        priority: int = 100,
        allow_transit: bool = False,
        inbound: str = "address",
        account_domain: str | None = None,
    ) -> Trunk:
        """Provision a trunk (enabled).  Inbound calls are recognised by source
        ``host:port`` (``inbound`` "address"), so no two trunks share one;
        outbound calls matching a prefix go to it.  ``username``/``password``
        answer the trunk's digest challenge (and ``register`` registers with
        it); with ``inbound`` "digest" or "both" they also authenticate the
        trunk's requests, so the username must not be a device's or another
        such trunk's in the tenant (one realm, one identity per username).
        ``account_domain`` is the SIP domain of that account at the trunk
        (REGISTER's Request-URI, To and From; None: the address host)."""
        name, host, port = check_trunk_name(name), check_host(host), check_port(port)
        if transport not in TRANSPORTS:
            raise InvalidValue(f"transport {transport!r}: expected udp or tcp")
        pfx = sorted({check_prefix(p) for p in ([prefixes] if isinstance(prefixes, str) else prefixes)})
        codec_names = check_codecs(codecs)
        if (username is None) != (password is None):
            raise InvalidValue("a trunk's username and password go together: give both or neither")
        if username is not None and password is not None:
            username, password = check_username(username), check_password(password)
        if register and username is None:
            raise InvalidValue("registering with a trunk needs a username and password")
        if check_inbound(inbound) != "address" and username is None:
            raise InvalidValue(f"inbound {inbound} needs the trunk's username and password")
        priority = check_priority(priority)
        if account_domain is not None:
            account_domain = check_domain(account_domain)
        now = self.now_ms()
        async with self._tx() as db:
            tenant_id, _ = await self._tenant_row(db, tenant_domain)
            same = await _one(db, "SELECT name FROM trunks WHERE name = ?", (name,))  # NOCASE
            if same:
                raise AlreadyExists(f"trunk {same[0]} already exists")
            other = await _one(db, "SELECT name FROM trunks WHERE host = ? AND port = ?", (host, port))
            if other:
                raise AlreadyExists(
                    f"trunk {other[0]} already has the address {format_address(host, port)}"
                    " (inbound calls are told apart by source address)"
                )
            if inbound != "address":
                await self._check_inbound_username(db, tenant_id, tenant_domain, username)
            cur = await db.execute(
                "INSERT INTO trunks (tenant_id, name, host, port, transport, codecs, username, password, register,"
                " priority, allow_transit, inbound, account_domain, enabled, created_ms, updated_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
                (tenant_id, name, host, port, transport, ",".join(codec_names), username, password, int(register),
                 priority, int(allow_transit), inbound, account_domain, now, now),
            )  # fmt: skip
            assert cur.lastrowid is not None
            await db.executemany(
                "INSERT INTO trunk_prefixes (trunk_id, prefix) VALUES (?, ?)", [(cur.lastrowid, p) for p in pfx]
            )
            await self._log_trunk_count(db, tenant_id, now)
            await self._bump_serial(db)
            return await self._trunk_in(db, name)

    async def _check_inbound_username(
        self, db: aiosqlite.Connection, tenant_id: int, domain: str, username: str | None
    ) -> None:
        """A trunk's inbound digest username is its identity in the tenant's realm."""
        if await _one(db, "SELECT 1 FROM devices WHERE tenant_id = ? AND username = ?", (tenant_id, username)):
            raise AlreadyExists(f"{username}@{check_domain(domain)} is a device: a trunk's inbound username is its own")
        other = await _one(
            db,
            "SELECT name FROM trunks WHERE tenant_id = ? AND username = ? AND inbound != 'address'",
            (tenant_id, username),
        )
        if other:
            raise AlreadyExists(f"trunk {other[0]} already authenticates inbound as {username}")

    async def list_trunks(self, tenant_domain: str | None = None) -> list[Trunk]:
        async with self._tx(write=False) as db:
            if tenant_domain is None:
                rows = await _all(db, f"SELECT {_TRUNK_COLS}{_TRUNK_FROM} ORDER BY t.domain, tr.name")
            else:
                tenant_id, _ = await self._tenant_row(db, tenant_domain)
                rows = await _all(
                    db, f"SELECT {_TRUNK_COLS}{_TRUNK_FROM} WHERE tr.tenant_id = ? ORDER BY tr.name", (tenant_id,)
                )
        return [_trunk(r) for r in rows]

    async def remove_trunk(self, name: str) -> None:
        """Delete a trunk and its prefixes; its legs stay.  A DID bound to it
        then rings from any trunk of the tenant (``trunk_id`` NULL)."""
        now = self.now_ms()
        async with self._tx() as db:
            tr = await self._trunk_in(db, name)
            await db.execute("DELETE FROM trunks WHERE id = ?", (tr.id,))
            if tr.enabled:
                await self._log_trunk_count(db, tr.tenant_id, now)
            await self._bump_serial(db)

    async def trunk_count(self, tenant_id: int) -> int:
        """Provisioned (existing and enabled) trunks of a tenant now."""
        async with self._tx(write=False) as db:
            row = await _one(db, "SELECT count(*) FROM trunks WHERE tenant_id = ? AND enabled = 1", (tenant_id,))
        return int(row[0])

    async def trunks_peak(self, tenant_id: int, month: str) -> int:
        """``trunks.provisioned.peak`` of a month (in the tenant's time zone)."""
        check_month(month)
        async with self._tx(write=False) as db:
            row = await _one(db, "SELECT timezone FROM tenants WHERE id = ?", (tenant_id,))
            if row is None:
                raise NotFound(f"no tenant with id {tenant_id}")
            start, end = month_bounds_ms(month, str(row[0]))
            return await count_peak(db, "trunk_count_log", tenant_id, start, end)

    async def load_trunks(self) -> list[TrunkInfo]:
        """The enabled trunks, for the server's Directory (with the password: the proxy answers challenges)."""
        async with self._tx(write=False) as db:
            rows = await _all(db, f"SELECT {_TRUNK_COLS}{_TRUNK_FROM} WHERE tr.enabled = 1 ORDER BY tr.id")
        return [
            TrunkInfo(
                id=r[0],
                tenant_id=r[1],
                name=r[3],
                host=r[4],
                port=r[5],
                transport=r[6],
                prefixes=split_list(r[7]),
                codecs=tuple(c.upper() for c in split_list(r[8])),
                username=r[9],
                password=r[10],
                register=bool(r[11]),
                priority=r[12],
                allow_transit=bool(r[13]),
                inbound=r[17],
                account_domain=r[18],
            )  # fmt: skip
            for r in rows
        ]

    # -- trunk registrations (written by the batch) -------------------------

    async def record_trunk_registrations(self, rows: Iterable[TrunkRegistration]) -> None:
        """Upsert registration states by trunk in one transaction (the latest wins;
        a row for a trunk that no longer exists is skipped)."""
        params = []
        for r in rows:
            if r.state not in REGISTRATION_STATES:
                raise ConstraintViolation(f"trunk registration {r!r}: state must be one of {REGISTRATION_STATES}")
            params.append(
                (r.trunk_id, r.state, r.status, r.reason, r.expires_at_ms, r.next_attempt_ms, r.updated_ms, r.trunk_id)
            )
        async with self._tx() as db:
            await db.executemany(_UPSERT_TRUNK_REGISTRATION, params)

    async def trunk_registrations(self) -> dict[int, TrunkRegistration]:
        """Every stored registration state, by trunk id."""
        async with self._tx(write=False) as db:
            rows = await _all(db, f"SELECT {_REG_COLS} FROM trunk_registrations")
        return {r[0]: TrunkRegistration(*r) for r in rows}
