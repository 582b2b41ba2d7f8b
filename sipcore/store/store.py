"""The store's API (EDGE): provisioning, registrations and usage over SQLite.

Provisioning calls are rare and synchronous-looking (CLI, admin); the server's
registrations and usage go through :class:`~sipcore.store.writer.BatchWriter`,
which calls :meth:`Store.apply_batch`.  Every provisioning change bumps
``meta.provisioning_serial`` in its own transaction so a running server can
poll one row and reload credentials; every change of a tenant's number of
enabled devices appends to ``device_count_log`` in that same transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import aiosqlite

from sipcore.metering.legs import LegRecord
from sipcore.store.billing import BillingStore
from sipcore.store.calls import CallsStore, CounterRow, count_peak
from sipcore.store.credentials import check_domain, check_password, check_username, ha1_function
from sipcore.store.errors import AlreadyExists, ConstraintViolation, ImportRowError, InvalidValue, NotFound
from sipcore.store.models import BindingRow, CredentialRow, Device, Tenant
from sipcore.store.months import check_month, month_bounds_ms, zone

MauRow = tuple[int, str, int, int]
"""(tenant_id, month 'YYYY-MM', device_id, first_ms)."""
GaugeRow = tuple[int, str, str, int, int]
"""(tenant_id, month, metric, value, at_ms)."""

METRIC_DEVICES_PEAK = "devices.provisioned.peak"
METRIC_MAU = "mau"
METRIC_CONNECTIONS_PEAK = "connections.peak"

_TENANT_COLS = "id, domain, plan, timezone, parent_id, webhook_url, created_ms"
_DEVICE_COLS = "d.id, d.tenant_id, t.domain, d.username, d.enabled, d.created_ms, d.updated_ms"
_BINDING_COLS = (
    "aor, contact, tenant_id, device_id, expires_ms, q_milli, call_id, cseq, flow_transport, flow_host, "
    "flow_port, flow_conn, instance, reg_id, path, user_agent, updated_ms"
)
_UPSERT_BINDING = (
    f"INSERT INTO bindings ({_BINDING_COLS}) VALUES ({', '.join('?' * 17)}) ON CONFLICT (aor, contact) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _BINDING_COLS.split(", ")[2:])
)
# Not INSERT OR IGNORE: OR IGNORE also swallows CHECK and type violations
# silently.  The upsert ignores only the duplicate (and keeps the earliest
# first_ms, whatever order batches arrive in).
_UPSERT_MAU = (
    "INSERT INTO usage_mau (tenant_id, month, device_id, first_ms) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (tenant_id, month, device_id) DO UPDATE SET first_ms = excluded.first_ms "
    "WHERE excluded.first_ms < usage_mau.first_ms"
)
_UPSERT_GAUGE = (
    "INSERT INTO usage_gauge (tenant_id, month, metric, value, updated_ms) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (tenant_id, month, metric) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms "
    "WHERE excluded.value > usage_gauge.value"
)


# A trunk with inbound digest authenticates with its username in the tenant's
# realm, so a device of that name would shadow it (the directory asks the
# device first): one realm, one identity per username, whichever came first.
_DIGEST_TRUNK_BY_USERNAME = "SELECT name FROM trunks WHERE tenant_id = ? AND username = ? AND inbound != 'address'"


def _trunk_owns(user: str, domain: str, trunk: str) -> str:
    return f"{user}@{domain} is the inbound username of trunk {trunk}: a device needs a name of its own"


def _tenant(r: Any) -> Tenant:
    return Tenant(r[0], r[1], r[2], r[3], r[4], r[5], r[6])


def _device(r: Any) -> Device:
    return Device(r[0], r[1], r[2], r[3], bool(r[4]), r[5], r[6])


def _binding_params(b: BindingRow) -> tuple[Any, ...]:
    path = json.dumps(list(b.path)) if b.path is not None else None
    return (
        b.aor, b.contact, b.tenant_id, b.device_id, b.expires_ms, b.q_milli, b.call_id, b.cseq, b.flow_transport,
        b.flow_host, b.flow_port, b.flow_conn, b.instance, b.reg_id, path, b.user_agent, b.updated_ms,
    )  # fmt: skip


def _binding(r: Any) -> BindingRow:
    path = tuple(json.loads(r[14])) if r[14] is not None else None
    return BindingRow(*r[:14], path=path, user_agent=r[15], updated_ms=r[16])  # type: ignore[misc]


async def _one(db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    async with db.execute(sql, params) as cur:
        return await cur.fetchone()


async def _all(db: aiosqlite.Connection, sql: str, params: Sequence[Any] = ()) -> list[Any]:
    async with db.execute(sql, params) as cur:
        return list(await cur.fetchall())


class Store(CallsStore, BillingStore):
    """Provisioning, registrations and usage in one SQLite file.  ``await Store.open(path)``."""

    # -- provisioning ------------------------------------------------------

    async def _log_device_count(self, db: aiosqlite.Connection, tenant_id: int, now: int) -> None:
        """Called in the transaction of every change of the tenant's enabled-device count."""
        row = await _one(db, "SELECT count(*) FROM devices WHERE tenant_id = ? AND enabled = 1", (tenant_id,))
        await db.execute(
            "INSERT INTO device_count_log (tenant_id, at_ms, count) VALUES (?, ?, ?)", (tenant_id, now, row[0])
        )

    async def _tenant_in(self, db: aiosqlite.Connection, domain: str) -> Tenant:
        row = await _one(db, f"SELECT {_TENANT_COLS} FROM tenants WHERE domain = ?", (domain,))
        if row is None:
            raise NotFound(f"no tenant {domain}")
        return _tenant(row)

    async def _device_in(self, db: aiosqlite.Connection, user: str, domain: str) -> Device:
        sql = f"SELECT {_DEVICE_COLS} FROM devices d JOIN tenants t ON t.id = d.tenant_id"
        row = await _one(db, sql + " WHERE t.domain = ? AND d.username = ?", (domain, user))
        if row is None:
            raise NotFound(f"no device {user}@{domain}")
        return _device(row)

    async def add_tenant(self, domain: str, plan: str | None = None, timezone: str = "UTC") -> Tenant:
        """Create a tenant; its domain is also the digest realm of its devices."""
        domain = check_domain(domain)
        zone(timezone)
        if plan is not None and not plan.strip():
            raise InvalidValue("the plan name must not be empty")
        now = self.now_ms()
        async with self._tx() as db:
            if await _one(db, "SELECT 1 FROM tenants WHERE domain = ?", (domain,)):
                raise AlreadyExists(f"tenant {domain} already exists")
            cur = await db.execute(
                "INSERT INTO tenants (domain, plan, timezone, created_ms) VALUES (?, ?, ?, ?)",
                (domain, plan, timezone, now),
            )
            await self._bump_serial(db)
        assert cur.lastrowid is not None
        return Tenant(cur.lastrowid, domain, plan, timezone, None, None, now)

    async def get_tenant(self, domain: str) -> Tenant:
        async with self._tx(write=False) as db:
            return await self._tenant_in(db, check_domain(domain))

    async def list_tenants(self) -> list[Tenant]:
        async with self._tx(write=False) as db:
            return [_tenant(r) for r in await _all(db, f"SELECT {_TENANT_COLS} FROM tenants ORDER BY domain")]

    async def add_device(self, user: str, domain: str, password: str) -> Device:
        """Provision ``user@domain`` (enabled); only its MD5 and SHA-256 HA1 are stored."""
        user, domain, password = check_username(user), check_domain(domain), check_password(password)
        ha1 = ha1_function()
        now = self.now_ms()
        async with self._tx() as db:
            tenant = await self._tenant_in(db, domain)
            if await _one(db, "SELECT 1 FROM devices WHERE tenant_id = ? AND username = ?", (tenant.id, user)):
                raise AlreadyExists(f"device {user}@{domain} already exists")
            trunk = await _one(db, _DIGEST_TRUNK_BY_USERNAME, (tenant.id, user))
            if trunk:
                raise AlreadyExists(_trunk_owns(user, domain, trunk[0]))
            cur = await db.execute(
                "INSERT INTO devices (tenant_id, username, ha1_md5, ha1_sha256, enabled, created_ms, updated_ms)"
                " VALUES (?, ?, ?, ?, 1, ?, ?)",
                (tenant.id, user, ha1(user, domain, password, "MD5"), ha1(user, domain, password, "SHA-256"), now, now),
            )
            await self._log_device_count(db, tenant.id, now)
            await self._bump_serial(db)
        assert cur.lastrowid is not None
        return Device(cur.lastrowid, tenant.id, domain, user, True, now, now)

    async def import_devices(self, rows: Iterable[tuple[str, str, str]]) -> int:
        """Provision many devices (user, domain, password) in ONE transaction: all or none.

        Every row is checked before anything is written; the first bad one
        raises :class:`ImportRowError` with its 0-based index.
        """
        ha1 = ha1_function()
        now = self.now_ms()
        async with self._tx() as db:
            tenants = {r[0]: r[1] for r in await _all(db, "SELECT domain, id FROM tenants")}
            existing: dict[int, set[str]] = {}
            trunk_users: dict[int, dict[str, str]] = {}
            params = []
            for i, row in enumerate(rows):
                try:
                    user, domain, password = row
                    user, domain, password = check_username(user), check_domain(domain), check_password(password)
                except (InvalidValue, ValueError, TypeError) as e:
                    raise ImportRowError(i, str(e)) from e
                tid = tenants.get(domain)
                if tid is None:
                    raise ImportRowError(i, f"no tenant {domain}")
                if tid not in existing:
                    existing[tid] = {
                        r[0] for r in await _all(db, "SELECT username FROM devices WHERE tenant_id = ?", (tid,))
                    }
                    trunk_users[tid] = {
                        r[0]: r[1]
                        for r in await _all(
                            db,
                            "SELECT username, name FROM trunks WHERE tenant_id = ? AND inbound != 'address'",
                            (tid,),
                        )
                    }
                if user in existing[tid]:
                    raise ImportRowError(i, f"device {user}@{domain} already exists (or appears twice)")
                if user in trunk_users[tid]:
                    raise ImportRowError(i, _trunk_owns(user, domain, trunk_users[tid][user]))
                existing[tid].add(user)
                params.append(
                    (tid, user, ha1(user, domain, password, "MD5"), ha1(user, domain, password, "SHA-256"), now)
                )
            await db.executemany(
                "INSERT INTO devices (tenant_id, username, ha1_md5, ha1_sha256, enabled, created_ms, updated_ms)"
                " VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5)",
                params,
            )
            for tid in sorted({p[0] for p in params}):
                await self._log_device_count(db, tid, now)
            if params:
                await self._bump_serial(db)
        return len(params)

    async def list_devices(self, domain: str | None = None) -> list[Device]:
        sql = f"SELECT {_DEVICE_COLS} FROM devices d JOIN tenants t ON t.id = d.tenant_id"
        async with self._tx(write=False) as db:
            if domain is None:
                rows = await _all(db, sql + " ORDER BY t.domain, d.username")
            else:
                tenant = await self._tenant_in(db, check_domain(domain))
                rows = await _all(db, sql + " WHERE d.tenant_id = ? ORDER BY d.username", (tenant.id,))
        return [_device(r) for r in rows]

    async def set_device_enabled(self, user: str, domain: str, enabled: bool) -> Device:
        """Enable or disable a device (a disabled device fails authentication but keeps its credentials)."""
        domain = check_domain(domain)
        now = self.now_ms()
        async with self._tx() as db:
            dev = await self._device_in(db, user, domain)
            if dev.enabled == enabled:
                return dev
            await db.execute("UPDATE devices SET enabled = ?, updated_ms = ? WHERE id = ?", (int(enabled), now, dev.id))
            await self._log_device_count(db, dev.tenant_id, now)
            await self._bump_serial(db)
        return Device(dev.id, dev.tenant_id, dev.domain, dev.username, enabled, dev.created_ms, now)

    async def remove_device(self, user: str, domain: str) -> None:
        """Delete a device and its registrations; its usage rows stay (it counted this month)."""
        domain = check_domain(domain)
        now = self.now_ms()
        async with self._tx() as db:
            dev = await self._device_in(db, user, domain)
            await db.execute("DELETE FROM bindings WHERE device_id = ?", (dev.id,))
            await db.execute("DELETE FROM devices WHERE id = ?", (dev.id,))
            if dev.enabled:
                await self._log_device_count(db, dev.tenant_id, now)
            await self._bump_serial(db)

    async def device_count(self, tenant_id: int) -> int:
        """Provisioned (existing and enabled) devices of a tenant now."""
        async with self._tx(write=False) as db:
            row = await _one(db, "SELECT count(*) FROM devices WHERE tenant_id = ? AND enabled = 1", (tenant_id,))
        return int(row[0])

    async def server_secret(self, create: bytes) -> bytes:
        """The server's persistent secret (digest nonces), stored at first use.

        Nonces must stay verifiable across a restart: with a new secret every
        phone's next refresh fails as a bad nonce, and phones behind one NAT
        address then trip the failure block together.  `create` is used only
        when none is stored yet."""
        async with self._tx() as db:
            row = await _one(db, "SELECT value FROM meta WHERE key = 'server_secret'")
            if row is not None:
                return bytes.fromhex(str(row[0]))
            await db.execute("INSERT INTO meta (key, value) VALUES ('server_secret', ?)", (create.hex(),))
        return create

    async def provisioning_serial(self) -> int:
        """Changes with every provisioning change: poll it, reload credentials when it moves."""
        async with self._tx(write=False) as db:
            row = await _one(db, "SELECT value FROM meta WHERE key = 'provisioning_serial'")
        return int(row[0])

    async def load_credentials(self) -> list[CredentialRow]:
        """Every device's digest credentials (disabled ones too, flagged), for the server's in-memory table."""
        sql = (
            "SELECT t.domain, d.username, d.id, d.tenant_id, d.ha1_md5, d.ha1_sha256, d.enabled"
            " FROM devices d JOIN tenants t ON t.id = d.tenant_id ORDER BY t.domain, d.username"
        )
        async with self._tx(write=False) as db:
            rows = await _all(db, sql)
        return [CredentialRow(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6])) for r in rows]

    # -- registrations -----------------------------------------------------

    async def save_bindings(self, upserts: Sequence[BindingRow], deletes: Sequence[tuple[str, str]]) -> None:
        """Insert-or-replace and delete bindings by (aor, contact), in one transaction."""
        await self.apply_batch(upserts, deletes, (), ())

    async def load_bindings(self, now_ms: int) -> list[BindingRow]:
        """Delete the bindings expired at ``now_ms``, then return the rest (the server's start-up load)."""
        async with self._tx() as db:
            await db.execute("DELETE FROM bindings WHERE expires_ms <= ?", (now_ms,))
            rows = await _all(db, f"SELECT {_BINDING_COLS} FROM bindings ORDER BY aor, contact")
        return [_binding(r) for r in rows]

    async def list_bindings(self, domain: str | None = None, now_ms: int | None = None) -> list[BindingRow]:
        """The bindings not expired at ``now_ms`` (default: now), of one tenant or all; read-only."""
        now = self.now_ms() if now_ms is None else now_ms
        sql = f"SELECT {_BINDING_COLS} FROM bindings WHERE expires_ms > ?"
        async with self._tx(write=False) as db:
            if domain is None:
                rows = await _all(db, sql + " ORDER BY aor, contact", (now,))
            else:
                tenant = await self._tenant_in(db, check_domain(domain))
                rows = await _all(db, sql + " AND tenant_id = ? ORDER BY aor, contact", (now, tenant.id))
        return [_binding(r) for r in rows]

    # -- usage -------------------------------------------------------------

    async def record_mau(self, rows: Sequence[MauRow]) -> None:
        """A device counted once per tenant and month, however often it is recorded."""
        await self.apply_batch((), (), rows, ())

    async def record_gauges(self, rows: Sequence[GaugeRow]) -> None:
        """Peak gauges: the stored value only ever rises (max-upsert)."""
        await self.apply_batch((), (), (), rows)

    async def apply_batch(
        self,
        upserts: Sequence[BindingRow],
        deletes: Sequence[tuple[str, str]],
        mau: Sequence[MauRow],
        gauges: Sequence[GaugeRow],
        legs: Sequence[LegRecord] = (),
        counters: Sequence[CounterRow] = (),
        heartbeat_ms: int | None = None,
    ) -> None:
        """Everything a BatchWriter flush holds, in ONE transaction (executemany per kind).

        All or nothing: counter increments are not idempotent, so a batch that
        fails rolls back as a whole and its retry adds each increment once."""
        try:
            binding_params = [_binding_params(b) for b in upserts]
        except (TypeError, ValueError, AttributeError) as e:  # e.g. a path that is not a list of strings
            raise ConstraintViolation(f"{self.path}: a binding cannot be stored: {e}") from e
        async with self._tx() as db:
            if deletes:
                await db.executemany("DELETE FROM bindings WHERE aor = ? AND contact = ?", deletes)
            if binding_params:
                await db.executemany(_UPSERT_BINDING, binding_params)
            if mau:
                await db.executemany(_UPSERT_MAU, mau)
            if gauges:
                await db.executemany(_UPSERT_GAUGE, gauges)
            if legs:
                await self.apply_legs(db, legs)
            if counters:
                await self.apply_counters(db, counters)
            if heartbeat_ms is not None:
                await self.apply_heartbeat(db, heartbeat_ms)

    async def usage(self, domain: str, month: str) -> dict[str, int | str]:
        """The month's metered values of a tenant, by METERING.md name.

        ``devices.provisioned.peak`` (and ``trunks.provisioned.peak``) =
        max(count in force at the month's start, every count logged inside the
        month); months are in the tenant's zone.  Minutes are decimal strings
        with 3 decimals (display; rating rounds per leg from the ``*.ms``
        values); everything else is an int.
        """
        check_month(month)
        async with self._tx(write=False) as db:
            t = await self._tenant_in(db, check_domain(domain))
            start, end = month_bounds_ms(month, t.timezone)
            peak = await count_peak(db, "device_count_log", t.id, start, end)
            mau = await _one(db, "SELECT count(*) FROM usage_mau WHERE tenant_id = ? AND month = ?", (t.id, month))
            gauges = await _all(
                db, "SELECT metric, value FROM usage_gauge WHERE tenant_id = ? AND month = ?", (t.id, month)
            )
            calls = await self._calls_usage(db, t.id, month, start, end)
        out: dict[str, int | str] = {METRIC_DEVICES_PEAK: peak, METRIC_MAU: int(mau[0]), METRIC_CONNECTIONS_PEAK: 0}
        out.update((str(m), int(v)) for m, v in gauges)
        out.update(calls)
        return out
