"""Real-time plan limits and usage alerts (sans-IO): METERING.md "Enforcement and alerts".

A plan whose metric says ``over = "block"`` (Voximplant's free tier, seed
001: "New user logins are blocked", "Messages stop sending") is enforced
here, synchronously, from counters in memory: no disk wait on the packet
path.  And at 50 %, 75 % and 100 % of every fixed included quantity the
guard hands back one :class:`UsageAlert` per threshold, tenant and month
(seed 003: "we ... inform your backend using webhook when your app usage
exceeds 50% and 75% of the free limits").

Who is counted: usage rolls up to the *billing account*, the root of a
tenant's parent chain (METERING.md: "a child's usage rolls up to the
parent's invoice"; seed 001: "Active users of child accounts are billed to
the parent account"), so a child's logins count against its parent's plan,
and the month is the account's calendar month in the account's time zone.

How the edge (server / proxy core) drives it -- the exact wiring:

1. At start, after the store is open::

       plans = PlanLibrary(cfg.billing.plans_path())                  # sipcore.rating
       tenants = await store.guard_tenants(plans)                     # {tenant_id: TenantPolicy}
       guard = UsageGuard(tenants, thresholds=cfg.billing.alert_thresholds_pct)
       for state in await store.guard_state(tenants, now_ms):         # MAU devices, counters and
           guard.restore(state, now_ms)                               # alerts already stored this month
       worker = WebhookWorker(store, timeout_s=cfg.billing.webhook_timeout_s,
                              backoff_ms=cfg.billing.webhook_backoff_ms,
                              max_backoff_ms=cfg.billing.webhook_max_backoff_ms,
                              max_attempts=cfg.billing.webhook_max_attempts)
       worker.start()                                                 # sipcore.webhooks; stop() at shutdown

   When provisioning changes (the server already polls
   ``provisioning_serial``; ``sipcore billing plan|parent`` bumps it):
   ``guard.set_tenants(await store.guard_tenants(PlanLibrary(...)))`` (a fresh
   library re-reads edited plan files) -- counters stay.

2. On every successful digest authentication of a device (REGISTER, and
   any other authenticated request), *before* answering::

       reason = guard.mau_admit(tenant_id, device_id, now_ms)
       if reason is not None:
           respond 403 with reason phrase `reason`  ("Monthly Active User Limit Reached");
           do not call RegistrationMeter.authenticated() (the device is not counted)
       else:
           carry on (meter.authenticated(...) -> MauRecord as today)

   A device already counted this month always gets ``None``: what was
   allowed keeps working.

3. On every MESSAGE request from an authenticated device of a tenant,
   before forwarding (and before counting it into ``usage_counter``)::

       reason = guard.message_admit(tenant_id, now_ms)
       if reason is not None: respond 403 with reason phrase `reason`  ("Monthly Message Limit Reached")
       else: count it (messages counter +1) and forward

   Optional, alerts only (never blocks): ``guard.record(tenant_id,
   "signaling.bytes_out", n, now_ms)`` for bytes sent, and the same for
   minute metrics in minutes, so their included quantities alert too.

4. After each of those calls (or once per pump turn), drain the alerts and
   hand them off the packet path -- never await on the packet path::

       alerts = guard.pop_alerts()
       if alerts:
           task = loop.create_task(store.record_alerts(alerts))  # stored + outbox row in ONE tx,
           task.add_done_callback(lambda t: worker.notify())     # exactly once (UNIQUE key); logged
                                                                  # after the commit

   ``record_alerts`` writes the alert and, when the account has a webhook
   URL, its ``webhook_outbox`` row in the same transaction; the worker
   POSTs it with retries.  A lost alert (crash before the write) comes back
   at the next start: :meth:`UsageGuard.restore` re-emits every threshold
   already crossed that the store has no alert for.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from sipcore.metering.months import MonthClock
from sipcore.rating.plan import Over, Plan

MAU = "mau"
MESSAGES = "messages"

REASON_MAU = "Monthly Active User Limit Reached"
"""403 reason phrase for a device whose first login of the month would exceed a ``block`` MAU limit."""
REASON_MESSAGES = "Monthly Message Limit Reached"
"""403 reason phrase for a MESSAGE above a ``block`` messages limit."""

THRESHOLDS_PCT = (50, 75, 100)
"""Alert thresholds, percent of an included quantity (METERING.md)."""


@dataclass(frozen=True, slots=True)
class TenantPolicy:
    """What the guard needs to know of one tenant (the edge loads it from the store)."""

    plan: Plan | None
    """The plan in force now; None = no limits and no alerts."""
    timezone: str = "UTC"
    """The tenant's billing time zone (IANA)."""
    parent_id: int | None = None
    """The parent tenant: usage rolls up to the root of the chain."""


@dataclass(frozen=True, slots=True)
class UsageAlert:
    """A metric of a billing account reached ``threshold_pct`` % of its included quantity."""

    tenant_id: int
    """The billing account (root tenant) whose plan includes the quantity."""
    month: str
    """'YYYY-MM' in the account's time zone."""
    metric: str
    """METERING.md name."""
    threshold_pct: int
    """50, 75 or 100 (or the configured thresholds)."""
    value: int
    """The metric's value when the threshold was reached."""
    included: Decimal
    """The plan's included quantity."""
    at_ms: int
    """When (ms UTC)."""


@dataclass(frozen=True, slots=True)
class GuardState:
    """What the store knows of one billing account's current month, loaded at start."""

    tenant_id: int
    """The billing account (root tenant)."""
    month: str
    """'YYYY-MM' in the account's time zone; ignored once that month is over."""
    devices: Iterable[int] = ()
    """Devices already counted in ``mau`` this month (the account's and its children's)."""
    counts: Mapping[str, int] = field(default_factory=dict)
    """Counted metrics so far (``messages``, ``signaling.bytes_out``...)."""
    alerted: Iterable[tuple[str, int]] = ()
    """(metric, threshold_pct) of the alerts already stored this month."""


@dataclass(slots=True)
class _Limits:
    """One account's plan, precomputed for the packet path."""

    clock: MonthClock
    mau_limit: int | None  # block: the most devices admitted per month
    message_limit: int | None  # block: the most messages admitted per month
    thresholds: dict[str, tuple[tuple[int, int], ...]]  # metric -> ((pct, value that reaches it), ...)
    included: dict[str, Decimal]


@dataclass(slots=True)
class _Month:
    """One account's counters for one month (mutable; never escapes)."""

    month: str
    devices: set[int] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)
    alerted: set[tuple[str, int]] = field(default_factory=set)


def _ceil(x: Decimal) -> int:
    return int(-((-x) // 1))


class UsageGuard:
    """Limits and alert thresholds of every tenant, answered from memory.

    Not thread-safe; owned by the pump like the other sans-IO layers.  All
    times are ``now_ms`` parameters (ms UTC); the guard reads no clock.
    """

    def __init__(self, tenants: Mapping[int, TenantPolicy], thresholds: Sequence[int] = THRESHOLDS_PCT) -> None:
        if not thresholds or any(not 0 < t <= 100 for t in thresholds) or list(thresholds) != sorted(set(thresholds)):
            raise ValueError("thresholds must be increasing percentages in 1-100")
        self._thresholds = tuple(thresholds)
        self._root: dict[int, int] = {}
        self._limits: dict[int, _Limits] = {}
        self._months: dict[int, _Month] = {}
        self._alerts: list[UsageAlert] = []
        self.set_tenants(tenants)

    # -- configuration -----------------------------------------------------

    def set_tenants(self, tenants: Mapping[int, TenantPolicy]) -> None:
        """(Re)load tenants and plans, e.g. after a provisioning change; counters are kept."""
        root: dict[int, int] = {}
        for tid in tenants:
            seen, cur = {tid}, tid
            while (parent := tenants[cur].parent_id) is not None and parent in tenants and parent not in seen:
                seen.add(parent)
                cur = parent
            root[tid] = cur
        limits: dict[int, _Limits] = {}
        for tid in set(root.values()):
            policy = tenants[tid]
            old = self._limits.get(tid)
            clock = old.clock if old is not None and old.clock.tz == policy.timezone else MonthClock(policy.timezone)
            limits[tid] = self._compile(policy.plan, clock)
        self._root, self._limits = root, limits

    def _compile(self, plan: Plan | None, clock: MonthClock) -> _Limits:
        mau_limit = message_limit = None
        thresholds: dict[str, tuple[tuple[int, int], ...]] = {}
        included: dict[str, Decimal] = {}
        for r in plan.metrics if plan is not None else ():
            if r.over is Over.BLOCK:
                # Admitted while the count after admission stays within the included quantity.
                limit = int(r.included // 1)
                if r.metric == MAU:
                    mau_limit = limit
                elif r.metric == MESSAGES:
                    message_limit = limit
            if r.allowance is None and r.included > 0:
                included[r.metric] = r.included
                thresholds[r.metric] = tuple((pct, _ceil(r.included * pct / 100)) for pct in self._thresholds)
        return _Limits(clock, mau_limit, message_limit, thresholds, included)

    def restore(self, state: GuardState, now_ms: int) -> None:
        """Counters and stored alerts of an account's month, loaded from the store at start.

        Thresholds already reached that have no stored alert (the server
        stopped before writing it) are emitted again now, so each alert is
        recorded once even across a crash (the store's UNIQUE key drops a
        repeat)."""
        acc = self._root.get(state.tenant_id, state.tenant_id)
        limits = self._limits.get(acc)
        if limits is None or limits.clock.month(now_ms) != state.month:
            return  # an unknown tenant, or a month that is over: nothing to enforce
        m = _Month(state.month, set(state.devices), dict(state.counts), set(state.alerted))
        self._months[acc] = m
        self._check(acc, limits, m, MAU, len(m.devices), now_ms)
        for metric, value in m.counts.items():
            self._check(acc, limits, m, metric, value, now_ms)

    # -- the packet path ---------------------------------------------------

    def account_of(self, tenant_id: int) -> int:
        """The billing account a tenant's usage rolls up to (itself when it has no parent)."""
        return self._root.get(tenant_id, tenant_id)

    def _month(self, acc: int, limits: _Limits, now_ms: int) -> _Month:
        month = limits.clock.month(now_ms)
        m = self._months.get(acc)
        if m is None or m.month != month:
            m = self._months[acc] = _Month(month)
        return m

    def mau_admit(self, tenant_id: int, device_id: int, now_ms: int) -> str | None:
        """A device authenticated: None to let it in (it now counts in this month's MAU),
        or the 403 reason phrase when its first login of the month would exceed a
        ``block`` MAU limit.  A device already counted this month is always let in."""
        acc = self._root.get(tenant_id, tenant_id)
        limits = self._limits.get(acc)
        if limits is None:
            return None
        m = self._month(acc, limits, now_ms)
        if device_id in m.devices:
            return None
        if limits.mau_limit is not None and len(m.devices) >= limits.mau_limit:
            return REASON_MAU
        m.devices.add(device_id)
        if MAU in limits.thresholds:
            self._check(acc, limits, m, MAU, len(m.devices), now_ms)
        return None

    def message_admit(self, tenant_id: int, now_ms: int) -> str | None:
        """A MESSAGE from a tenant's device: None to accept it (it now counts), or the
        403 reason phrase when it would exceed a ``block`` messages limit."""
        acc = self._root.get(tenant_id, tenant_id)
        limits = self._limits.get(acc)
        if limits is None:
            return None
        m = self._month(acc, limits, now_ms)
        n = m.counts.get(MESSAGES, 0)
        if limits.message_limit is not None and n >= limits.message_limit:
            return REASON_MESSAGES
        m.counts[MESSAGES] = n + 1
        if MESSAGES in limits.thresholds:
            self._check(acc, limits, m, MESSAGES, n + 1, now_ms)
        return None

    def record(self, tenant_id: int, metric: str, amount: int, now_ms: int) -> None:
        """Add ``amount`` to a counted metric that is never blocked in real time
        (``signaling.bytes_out``, minute metrics in minutes): for its alerts only."""
        if metric in (MAU, MESSAGES):
            raise ValueError(f"{metric} goes through mau_admit / message_admit")
        acc = self._root.get(tenant_id, tenant_id)
        limits = self._limits.get(acc)
        if limits is None:
            return
        m = self._month(acc, limits, now_ms)
        value = m.counts[metric] = m.counts.get(metric, 0) + amount
        if metric in limits.thresholds:
            self._check(acc, limits, m, metric, value, now_ms)

    def used(self, tenant_id: int, metric: str, now_ms: int) -> int:
        """The account's value of ``metric`` this month as the guard counts it."""
        acc = self._root.get(tenant_id, tenant_id)
        limits = self._limits.get(acc)
        if limits is None:
            return 0
        m = self._month(acc, limits, now_ms)
        return len(m.devices) if metric == MAU else m.counts.get(metric, 0)

    def _check(self, acc: int, limits: _Limits, m: _Month, metric: str, value: int, now_ms: int) -> None:
        for pct, reach in limits.thresholds.get(metric, ()):
            if value < reach:
                break
            if (metric, pct) not in m.alerted:
                m.alerted.add((metric, pct))
                self._alerts.append(UsageAlert(acc, m.month, metric, pct, value, limits.included[metric], now_ms))

    def pop_alerts(self) -> list[UsageAlert]:
        """The alerts raised since the last call, oldest first (the edge stores them)."""
        out, self._alerts = self._alerts, []
        return out
