"""Composition root (EDGE): Config -> running server.

One pump (ARCHITECTURE.md): a datagram or framed message goes to
``Core.receive``; then outgoing bytes are flushed to the transports, core
events go to the store's batch writer, and one ``loop.call_at`` is re-armed
for the core's next deadline.  Nothing on this path awaits the disk: the
writer commits in the background every ``store.flush_interval_ms``.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
import os
import random
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sipcore import __version__
from sipcore.config import Config
from sipcore.errors import SipcoreError
from sipcore.flow import Flow
from sipcore.message import parse
from sipcore.message.headers import parse_name_addr
from sipcore.message.limits import ParserLimits
from sipcore.proxy.calls import CounterRecorded
from sipcore.proxy.core import BindingsChanged, Core, LegsRecorded, UsageRecorded
from sipcore.proxy.directory import DeviceCredentials, Directory, TenantInfo
from sipcore.proxy.routing import ProxyAddress
from sipcore.proxy.upstream import TrunkRegistrationChanged
from sipcore.rating import PlanLibrary
from sipcore.registrar import Binding, contact_key
from sipcore.store import BatchWriter, BindingRow, NotFound, Store
from sipcore.store.calls import TrunkRegistration
from sipcore.transport.addresses import interface_addresses
from sipcore.transport.listeners import Transports
from sipcore.transport.names import is_ip, resolve_hosts
from sipcore.transport.overload import LoadShedder

if TYPE_CHECKING:
    from sipcore.webhooks import WebhookWorker

log = logging.getLogger("sipcore.server")

TRUNK_NAMES_TTL_S = 60.0
"""How often the addresses of trunks added by host name are looked up again."""

UNREGISTER_WAIT_S = 2.0
"""How long a clean stop waits for the trunks to answer our unregistrations."""


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def new_id_factory() -> Callable[[], str]:
    """Tags and branch suffixes: unguessable per process, unique within it."""
    prefix = secrets.token_hex(4)
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter):x}"


def _storable(text: str) -> str:
    """Header text as SQLite can store it: bytes that were not UTF-8 (kept by
    the parser as surrogate escapes) become backslash escapes instead of an
    encoding error that would stop the writer."""
    if text.isascii():
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def binding_to_row(b: Binding) -> BindingRow:
    return BindingRow(
        aor=_storable(b.aor),
        contact=_storable(b.contact),
        tenant_id=b.tenant_id,
        device_id=b.device_id,
        expires_ms=b.expires_ms,
        q_milli=b.q_milli,
        call_id=_storable(b.call_id),
        cseq=b.cseq,
        flow_transport=b.flow.transport,
        flow_host=b.flow.host,
        flow_port=b.flow.port,
        # A stream connection does not survive a restart, and its id may be
        # reused by another peer's connection then: restored flows carry none.
        flow_conn=b.flow.conn_id if b.flow.transport == "udp" else 0,
        instance=None if b.instance is None else _storable(b.instance),
        reg_id=b.reg_id,
        path=tuple(_storable(x) for x in b.path) or None,
        user_agent=None if b.user_agent is None else _storable(b.user_agent),
        updated_ms=b.updated_ms,
    )


def row_to_binding(r: BindingRow) -> Binding:
    na = parse_name_addr(r.contact, "Contact")
    return Binding(
        aor=r.aor,
        key=contact_key(na.uri, r.instance, r.reg_id),
        contact=r.contact,
        uri=str(na.uri),
        expires_ms=r.expires_ms,
        q_milli=r.q_milli,
        call_id=r.call_id,
        cseq=r.cseq,
        flow=Flow(r.flow_transport, r.flow_host, r.flow_port, r.flow_conn),
        tenant_id=r.tenant_id,
        device_id=r.device_id,
        updated_ms=r.updated_ms,
        instance=r.instance,
        reg_id=r.reg_id,
        path=tuple(r.path or ()),
        user_agent=r.user_agent,
    )


class _RandomBytes:
    """8 random bytes per call from a 4 KiB os.urandom pool: one syscall per
    512 nonces instead of one each."""

    def __init__(self) -> None:
        self._pool = b""
        self._pos = 0

    def __call__(self) -> bytes:
        if self._pos + 8 > len(self._pool):
            self._pool, self._pos = os.urandom(4096), 0
        self._pos += 8
        return self._pool[self._pos - 8 : self._pos]


def _tune_gc() -> None:
    """Keep the cyclic GC off the packet path.

    Messages and transactions are freed by reference counting (the model
    avoids cycles), but CPython's default thresholds still run a young
    collection every 700 allocations and, with hundreds of thousands of live
    transactions, a full one often: measured, that was ~40% of the CPU at
    load.  Startup objects are frozen out of the collector and the young
    generation is collected every 100k allocations instead.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)


class Server:
    def __init__(self, config: Config, addresses: list[str] | None = None) -> None:
        self.config = config
        self.addresses = addresses or ["127.0.0.1"]
        """The host's interface addresses, global first (read before the loop
        starts: pyroute2's netlink socket cannot run on uvloop)."""
        self.directory = Directory()
        self.store: Store | None = None
        self.writer: BatchWriter | None = None
        self.loop = asyncio.get_running_loop()
        self.core: Core  # built in start(), once the stored secret is known
        p = config.parser
        self.transports = Transports(
            self.on_message,
            ParserLimits(p.max_message_bytes, p.max_headers, p.max_line_bytes),
            on_closed=self.on_closed,
            drain=self._work_inbox,
            max_tcp_connections=config.server.max_tcp_connections,
            max_tcp_connections_per_ip=config.server.max_tcp_connections_per_ip,
            tcp_idle_timeout_s=config.server.tcp_idle_timeout_s,
            udp_receive_buffer=config.server.udp_receive_buffer_kb * 1024,
        )
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._tasks: list[asyncio.Task[None]] = []
        self._alert_tasks: set[asyncio.Task[Any]] = set()
        self.webhooks: WebhookWorker | None = None
        self._debug = log.isEnabledFor(logging.DEBUG)
        self._trunk_hosts: dict[int, tuple[str, int]] = {}  # the names last looked up
        self._trunk_names_at = 0.0
        self._trunk_names_task: asyncio.Task[None] | None = None
        self.shedder: LoadShedder | None = None
        self._shed_since = (0.0, 0)
        self._inbox: list[tuple[bytes, Flow]] = []

    # --- lifecycle ------------------------------------------------------------------
    def _advertised(self, bound: list[tuple[str, str, int]]) -> tuple[ProxyAddress, ...]:
        """Where peers reach us, per transport: the `advertise` setting (a NAT'd
        server), else the listener's address, else (a wildcard listener) the
        host's first interface address."""
        out: dict[str, ProxyAddress] = {}
        for transport, host, port in bound:
            shown = self.config.server.advertise or (host if host not in ("0.0.0.0", "::") else self.addresses[0])
            out.setdefault(transport, ProxyAddress(transport, shown, port))
        return tuple(out.values()) or (ProxyAddress("udp", self.addresses[0], 5060),)

    async def start(self) -> None:
        cfg = self.config
        self._timer_at = float("inf")  # a stop() before left it at -inf
        self.store = await Store.open(cfg.store.path)
        recovered = await self.store.recover_open_legs()
        if recovered:
            log.warning("%d call legs left open by the previous run closed at its last heartbeat", recovered)
        self.core = Core(
            cfg,
            self.directory,
            secret=await self.store.server_secret(create=secrets.token_bytes(32)),
            new_id=new_id_factory(),
            random=random.random,
            nonce_salt=_RandomBytes(),
            parse=parse,
            addresses=self._advertised([(lst.transport, lst.host, lst.port) for lst in cfg.server.listeners]),
        )
        if cfg.demo.enabled:
            await self._ensure_demo()
        await self._reload_directory()
        await self._start_billing()
        # "serial N loaded" is written once everything that depends on the
        # provisioning (the directory, the plan guard) has it: tests and
        # operators wait for it.
        log.info("provisioning serial %d loaded: %d devices", self.directory.serial, len(self.directory))
        rows = await self.store.load_bindings(wall_ms())
        self.core.restore_bindings([row_to_binding(r) for r in rows])
        self.writer = BatchWriter(self.store, cfg.store.flush_interval_ms)
        self._tasks.append(asyncio.create_task(self.writer.run()))
        self._tasks.append(asyncio.create_task(self._poll_provisioning()))
        self._tasks.append(asyncio.create_task(self._heartbeat()))
        _tune_gc()
        await self.transports.start(cfg.server.listeners)
        self._start_shedder()
        # The bound ports (a listener may ask for port 0).
        self.core.addresses = self.core.proxy.addresses = self._advertised(
            [(lst.transport, host, port) for lst, (host, port) in self.transports.bound]
        )
        for lst, (host, port) in self.transports.bound:
            shown = cfg.server.advertise or (host if host not in ("0.0.0.0", "::") else self.addresses[0])
            log.info("listening on %s:%s:%s (advertised as %s)", lst.transport, host, port, shown)
        log.info(
            "sipcore %s ready: %d tenants, %d devices, %d bindings restored (db %s)",
            __version__,
            self.directory.tenant_count,
            len(self.directory),
            len(rows),
            cfg.store.path,
        )
        self._pump(self.loop.time())

    def _start_shedder(self) -> None:
        pct = self.config.server.overload_queue_pct
        readers = self.transports.udp_queue_readers()
        if not pct or not readers:
            return
        if any(read() is None for read in readers):
            log.info("overload detection unavailable here (no SO_MEMINFO): new requests are never shed")
            return
        self.shedder = LoadShedder(readers, pct)

    async def stop(self) -> None:
        """Stop listening, close the legs of calls still up, flush pending
        writes, close the store (idempotent)."""
        try:
            if hasattr(self, "core"):
                self._work_inbox()  # answered while the sockets are still open
                try:
                    await self._unregister_trunks()
                except Exception:  # never in the way of flushing the writer and closing the store
                    log.exception("unregistering from the trunks failed")
            await self.transports.stop()
            for t in self._tasks[1:]:
                t.cancel()  # the provisioning poll and the heartbeat: nothing may pump after the last pump
            if self._trunk_names_task is not None:
                self._trunk_names_task.cancel()
            if hasattr(self, "core"):
                self._work_inbox()  # what came in while the trunks were unregistered: before the calls close
                self.core.shutdown(wall_ms())
                self._pump(self.loop.time())
            # The last pump: a timer firing while the webhooks or the writer
            # finish would hand the writer events after its final flush.
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._timer_at = float("-inf")  # _pump arms no timer below this
            if self._alert_tasks:
                await asyncio.gather(*self._alert_tasks, return_exceptions=True)
            if self.webhooks is not None:
                await self.webhooks.stop()
            if self._alert_tasks:  # raised by a connection closed late (its on_closed pumps once more)
                await asyncio.gather(*self._alert_tasks, return_exceptions=True)
            if self.writer is not None:
                await self.writer.stop()  # still self.writer while it flushes: nothing submitted is dropped
                self.writer = None
        finally:
            # Whatever failed above, release the database and the timer.
            if self._timer is not None:
                self._timer.cancel()
            if self.store is not None:
                store, self.store = self.store, None
                await store.close()

    async def _unregister_trunks(self) -> None:
        """Best effort, before the transports close: Expires: 0 to every trunk
        registered with, and a short wait for the answers (and challenges)."""
        now = self.loop.time()
        if not self.core.unregister_trunks(now, wall_ms()):
            return
        self._pump(now)
        deadline = now + UNREGISTER_WAIT_S
        while self.core.proxy.upstream.busy and self.loop.time() < deadline:
            await asyncio.sleep(0.01)

    async def _ensure_demo(self) -> None:
        assert self.store is not None
        demo = self.config.demo
        try:
            await self.store.get_tenant(demo.domain)
        except NotFound:
            await self.store.add_tenant(demo.domain)
        devices = await self.store.list_devices(demo.domain)
        if any(d.username == demo.user for d in devices):
            shown = demo.password or "(printed when it was created; `sipcore device remove` it to get a new one)"
            log.info("demo device %s@%s, password %s", demo.user, demo.domain, shown)
            return
        password = demo.password or secrets.token_urlsafe(9)
        await self.store.add_device(demo.user, demo.domain, password)
        log.warning(
            "demo device created: user %s, domain %s, password %s (only its digest hash is stored; "
            "this is the only time it is shown)",
            demo.user,
            demo.domain,
            password,
        )

    async def _reload_directory(self) -> None:
        assert self.store is not None
        serial = await self.store.provisioning_serial()
        tenants = [TenantInfo(t.id, t.domain, t.timezone, t.plan) for t in await self.store.list_tenants()]
        devices = [
            DeviceCredentials(c.device_id, c.tenant_id, c.realm, c.username, c.ha1_md5, c.ha1_sha256, c.enabled)
            for c in await self.store.load_credentials()
        ]
        trunks = await self.store.load_trunks()
        dids = await self.store.load_dids()
        self.directory.replace(tenants, devices, serial, trunks, dids)
        self._look_up_trunk_names(changed_only=True)

    def _look_up_trunk_names(self, changed_only: bool = False) -> None:
        """Look the trunks' host names up again, in the background: their
        requests come from the addresses the names stand for (inbound by
        address, load shedding's trunk rule, signaling.bytes_out), and a
        slow DNS must hold neither the start nor a provisioning reload.  On a
        reload only when a name was added or changed; every
        TRUNK_NAMES_TTL_S otherwise, since a carrier's addresses change."""
        hosts = {t.id: (t.host, t.port) for t in self.directory.trunks() if not is_ip(t.host)}
        if changed_only and hosts == self._trunk_hosts:
            return
        busy = self._trunk_names_task is not None and not self._trunk_names_task.done()
        if busy:
            return
        self._trunk_names_at = self.loop.time()
        self._trunk_hosts = hosts
        if not hosts and not self.directory.trunk_addresses():
            return
        self._trunk_names_task = self.loop.create_task(self._resolve_trunk_names(hosts))

    async def _resolve_trunk_names(self, hosts: dict[int, tuple[str, int]]) -> None:
        try:
            self.directory.set_trunk_addresses(await resolve_hosts(hosts, self.directory.trunk_addresses()))
        except Exception:
            log.exception("looking the trunks' host names up failed; will retry")
            return
        self.loop.call_soon(self._look_up_trunk_names, True)  # a name provisioned while this one ran

    async def _start_billing(self) -> None:
        """Plan limits and usage alerts (sipcore.metering.limits), and the
        webhook worker that POSTs the alerts from the durable outbox."""
        from sipcore.metering.limits import UsageGuard
        from sipcore.webhooks import WebhookWorker

        assert self.store is not None
        b = self.config.billing
        tenants = await self.store.guard_tenants(PlanLibrary(b.plans_path()))
        guard = UsageGuard(tenants, b.alert_thresholds_pct)
        now = wall_ms()
        for state in await self.store.guard_state(tenants, now):
            guard.restore(state, now)
        self.core.guard = guard
        self.webhooks = WebhookWorker(
            self.store,
            timeout_s=b.webhook_timeout_s,
            stop_grace_s=b.webhook_timeout_s,  # a POST in flight at a stop gets its whole timeout to be answered
            backoff_ms=b.webhook_backoff_ms,
            max_backoff_ms=b.webhook_max_backoff_ms,
            max_attempts=b.webhook_max_attempts,
        )
        self.webhooks.start()

    def _alerts(self) -> None:
        """Alerts the packet path raised go to the store (and the webhook
        outbox) in a task: never awaited here."""
        guard = self.core.guard
        if guard is None:
            return
        alerts = guard.pop_alerts()
        if alerts and self.store is not None:
            task = self.loop.create_task(self.store.record_alerts(alerts))
            self._alert_tasks.add(task)

            def done(t: asyncio.Task[Any]) -> None:
                self._alert_tasks.discard(t)
                if not t.cancelled() and t.exception() is not None:
                    log.error("storing %d usage alerts failed: %s", len(alerts), t.exception())
                elif self.webhooks is not None:
                    self.webhooks.notify()

            task.add_done_callback(done)

    async def _heartbeat(self) -> None:
        """Stamp liveness: after a crash, open legs are closed at the last stamp.

        Through the batch writer, so a stamp commits together with every leg
        snapshot queued before it: a stamp can never be on disk while an
        earlier ended snapshot is not (recovery would then bill past the end)."""
        period = self.config.proxy.heartbeat_s
        while True:
            if self.writer is not None:
                self.writer.submit_heartbeat(wall_ms())
            await asyncio.sleep(period)

    async def _poll_provisioning(self) -> None:
        """Provisioning while running takes effect within a second, no restart."""
        assert self.store is not None
        while True:
            await asyncio.sleep(1.0)
            try:
                if self.loop.time() - self._trunk_names_at >= TRUNK_NAMES_TTL_S:
                    self._look_up_trunk_names()
                if await self.store.provisioning_serial() != self.directory.serial:
                    await self._reload_directory()
                    if self.core.guard is not None:
                        plans = PlanLibrary(self.config.billing.plans_path())
                        self.core.guard.set_tenants(await self.store.guard_tenants(plans))
                    dropped = self.core.provisioning_changed(wall_ms())
                    self._pump(self.loop.time())
                    log.info(
                        "provisioning changed: serial %d loaded: %d devices, %d bindings of removed or disabled"
                        " devices dropped",
                        self.directory.serial,
                        len(self.directory),
                        dropped,
                    )
            except Exception:
                log.exception("reloading provisioning failed; will retry")

    # --- the pump -----------------------------------------------------------------------
    def on_message(self, data: bytes, flow: Flow) -> None:
        """Queue a message; the batch is worked through once this loop
        iteration's reads are done.

        libuv hands over everything a socket has ready (up to 32 datagrams per
        wakeup) one callback at a time.  Working through them together, with
        one pump at the end, keeps the sends out of the reads and the pump's
        fixed costs (timer, shedder, writer) to one per batch, which at
        saturation is where the time goes (bench/register.py).  No message
        waits longer than the batch it came in."""
        inbox = self._inbox
        if not inbox:
            self.loop.call_soon(self._work_inbox)
        inbox.append((data, flow))

    def _work_inbox(self) -> None:
        inbox = self._inbox
        if not inbox:
            return
        self._inbox = []
        now = self.loop.time()
        shedder = self.shedder
        if shedder is not None and (change := shedder.check(now)) is not None:
            self._shedding(change, now)
        receive = self.core.receive
        for data, flow in inbox:
            if self._debug:
                log.debug("recv %s %dB %r", flow, len(data), data.split(b"\r\n", 1)[0][:120])
            try:
                receive(data, flow, now, wall_ms())
            except Exception:
                # A bug must cost that message, not the rest of the batch.
                log.exception("%s: message dropped after an internal error (%d bytes)", flow, len(data))
        self._pump(now)

    def _shedding(self, on: bool, now: float) -> None:
        core = self.core
        core.shedding = on
        assert self.shedder is not None
        pct = round(self.shedder.worst * 100)
        if on:
            self._shed_since = (now, core.shed_count)
            log.warning("overloaded: a receive queue is %d%% full; new requests get 503 until it drains", pct)
        else:
            since, count = self._shed_since
            log.warning(
                "overload over after %.1f s: %d new requests refused with 503 (queues now %d%% full)",
                now - since,
                core.shed_count - count,
                pct,
            )

    def on_closed(self, flow: Flow) -> None:
        self._work_inbox()  # what the connection delivered first is answered (or fails) first
        self.core.layer.transport_error(flow, self.loop.time())
        self._pump(self.loop.time())

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        now = self.loop.time()
        self.core.handle_timer(now, wall_ms())
        self._pump(now)

    def _pump(self, now: float) -> None:
        core = self.core
        send = self.transports.send
        for out in core.messages_to_send():
            if self._debug:
                log.debug("send %s %dB %r", out.flow, len(out.data), out.data.split(b"\r\n", 1)[0][:120])
            try:
                sent = send(out.data, out.flow)
            except Exception:  # one message, not the rest of the pump (its events, the timer)
                log.exception("cannot send to %s", out.flow)
                continue
            if not sent:
                log.info("cannot send to %s: no such socket or connection", out.flow)
        writer = self.writer
        while (ev := core.next_event()) is not None:
            if writer is None:
                continue
            if type(ev) is BindingsChanged:
                writer.submit_bindings(
                    [binding_to_row(b) for b in ev.upserts],
                    [(_storable(b.aor), _storable(b.contact)) for b in ev.removed],
                )
            elif type(ev) is UsageRecorded:
                if ev.mau:
                    writer.submit_mau([(r.tenant_id, r.month, r.device_id, r.first_ms) for r in ev.mau])
                if ev.gauges:
                    writer.submit_gauges([(g.tenant_id, g.month, g.metric, g.value, g.at_ms) for g in ev.gauges])
            elif type(ev) is LegsRecorded:
                writer.submit_legs(ev.legs)
            elif type(ev) is CounterRecorded:
                writer.submit_counter(ev.tenant_id, ev.month, ev.metric, ev.delta)
            elif type(ev) is TrunkRegistrationChanged:
                writer.submit_trunk_registration(
                    TrunkRegistration(
                        ev.trunk_id,
                        ev.state.value,
                        ev.status,
                        _storable(ev.reason),
                        ev.expires_at_ms,
                        ev.next_attempt_ms,
                        ev.at_ms,
                    )
                )
        if core.guard is not None:
            self._alerts()
        nt = core.next_timer()
        if nt is not None and nt < self._timer_at - 0.0005:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = nt
            self._timer = self.loop.call_at(nt, self._on_timer)


async def serve(config: Config, stop: asyncio.Event | None = None, addresses: list[str] | None = None) -> None:
    """Run until `stop` is set (or SIGINT/SIGTERM); always release what was opened."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    handled = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            handled.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
    server = Server(config, addresses)
    try:
        await server.start()
        await stop.wait()
        log.info("shutting down")
    finally:
        # Close the store even when start() failed half-way: its thread would
        # otherwise keep the process alive with SIGTERM still trapped.
        await server.stop()
        for sig in handled:
            loop.remove_signal_handler(sig)


def run_server(config: Config) -> int:
    logging.basicConfig(level=config.server.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    Path(config.store.path).parent.mkdir(parents=True, exist_ok=True)
    addresses = interface_addresses()  # before uvloop: pyroute2 needs a netlink socket uvloop cannot open
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a declared dependency
        log.warning("uvloop not installed; running on the default asyncio loop")
    try:
        asyncio.run(serve(config, addresses=addresses))
    except OSError as e:
        log.error("cannot start: %s", e)
        return 1
    except SipcoreError as e:  # e.g. the database cannot be opened or written at shutdown
        log.error("stopped: %s", e)
        return 1
    return 0
