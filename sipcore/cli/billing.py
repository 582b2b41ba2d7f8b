"""`sipcore rate`, `sipcore invoice ...`, `sipcore alerts`, `sipcore billing ...`: rating from the store.

Plans are files ``NAME.toml`` in the plans directory (``--plans-dir``, else
``[billing] plans_dir`` of ``--config``, else ``config/plans``); a tenant's
plan is a NAME (``sipcore billing plan DOMAIN NAME``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, TextIO

from sipcore.cli.common import (
    COMMANDS,
    CommandFailed,
    UsageError,
    _arg,
    _config,
    _db_opts,
    _domain,
    _group,
    _month,
    _needs_subcommand,
    _table,
    _utc,
    _with_store,
)

if TYPE_CHECKING:
    from sipcore.rating import Invoice, PlanLibrary
    from sipcore.store import Store


def _plans(args: argparse.Namespace) -> PlanLibrary:
    from sipcore.rating import PlanLibrary

    if getattr(args, "plans_dir", None):
        return PlanLibrary(args.plans_dir)
    return PlanLibrary(_config(args).billing.plans_path())


def _print_invoices(out: TextIO, invoices: list[Invoice], fmt: str, many: bool) -> None:
    from sipcore.rating import render_csv, render_csv_many, render_table

    if fmt == "json":
        docs = [i.to_json_dict() for i in invoices]
        out.write(json.dumps(docs if many else docs[0], indent=2) + "\n")
    elif fmt == "csv":
        out.write(render_csv_many(invoices) if many else render_csv(invoices[0]))
    else:
        out.write("\n".join(render_table(i) for i in invoices))


def _note(text: str) -> None:
    print(f"sipcore: note: {text}", file=sys.stderr)


async def _rate_all(store: Store, args: argparse.Namespace) -> list[Invoice]:
    """The accounts' invoices of args.month (one with --tenant), numbered as issuing would."""
    plans = _plans(args)
    if args.tenant:
        domains = [args.tenant]
    else:
        accounts, without = await store.billing_accounts(args.month)
        domains = [t.domain for t in accounts]
        if without:
            _note(f"no plan in {args.month}, not rated: {', '.join(t.domain for t in without)}")
    out = []
    for domain in domains:
        invoice = await store.rate_month(domain, args.month, plans)
        out.append(replace(invoice, revision=await store.next_revision(invoice)))
    return out


def cmd_rate(args: argparse.Namespace, out: TextIO) -> int:
    """Rate a month from the store: each billing account's invoice, not stored."""
    invoices = _with_store(args, lambda s: _rate_all(s, args))
    if invoices:
        _print_invoices(out, invoices, args.format, many=not args.tenant)
    elif args.format == "json":
        out.write("[]\n")
    return 0


def _plans_dir_opt(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plans-dir", metavar="DIR", help="plan files NAME.toml (default: [billing] plans_dir)")


def _rate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--month", metavar="YYYY-MM", type=_arg(_month), required=True, help="in each tenant's time zone")
    p.add_argument("--tenant", metavar="DOMAIN", type=_arg(_domain), help="only this billing account")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    _plans_dir_opt(p)
    _db_opts(p)


COMMANDS["rate"] = (cmd_rate, _rate_args)


# -- invoice -------------------------------------------------------------------


def cmd_invoice(args: argparse.Namespace, out: TextIO) -> int:
    """Issued invoices: issue, show, list."""
    return _needs_subcommand(args, out)


def cmd_invoice_issue(args: argparse.Namespace, out: TextIO) -> int:
    """Rate a month and freeze the result as the next revision (unchanged: nothing new)."""
    from sipcore.store.months import month_bounds_ms

    async def go(store: Store) -> list[str]:
        invoices = await _rate_all(store, args)  # every account rated and checked before anything is issued
        for invoice in invoices:
            if not args.force and store.now_ms() < month_bounds_ms(invoice.period, invoice.tz)[1]:
                raise CommandFailed(
                    f"{invoice.tenant}: {invoice.period} is not over yet in {invoice.tz} (--force issues it anyway)"
                )
        lines = []
        for invoice in invoices:
            r = await store.issue_invoice(invoice)
            i = r.issued.invoice
            what = "issued" if r.created else "unchanged"
            lines.append(f"{what} {i.tenant} {i.period} revision {i.revision}: total {i.total} {i.currency}")
        return lines

    for line in _with_store(args, go):
        print(line, file=out)
    return 0


def _invoice_issue_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--month", metavar="YYYY-MM", type=_arg(_month), required=True, help="in each tenant's time zone")
    p.add_argument("--tenant", metavar="DOMAIN", type=_arg(_domain), help="only this billing account")
    p.add_argument("--force", action="store_true", help="issue a month that is not over yet")
    _plans_dir_opt(p)
    _db_opts(p)


def cmd_invoice_show(args: argparse.Namespace, out: TextIO) -> int:
    """Show an issued invoice (default: its latest revision)."""
    issued = _with_store(args, lambda s: s.invoice(args.tenant, args.month, args.revision))
    if args.format == "table":
        print(f"issued {_utc(issued.issued_ms)}", file=out)
    _print_invoices(out, [issued.invoice], args.format, many=False)
    return 0


def _revision(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"revision {text!r}: expected a positive integer")
    return int(text)


def _invoice_show_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tenant", metavar="DOMAIN", type=_arg(_domain), required=True)
    p.add_argument("--month", metavar="YYYY-MM", type=_arg(_month), required=True)
    p.add_argument("--revision", metavar="N", type=_revision, help="default: the latest")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    _db_opts(p)


def cmd_invoice_list(args: argparse.Namespace, out: TextIO) -> int:
    """List issued invoices and their revisions."""
    issued = _with_store(args, lambda s: s.invoices(args.tenant, args.month))
    rows = [
        (
            i.domain,
            i.month,
            i.revision,
            _utc(i.issued_ms),
            ",".join(p.name for p in i.invoice.plans),
            i.invoice.total,
            i.invoice.currency,
        )
        for i in issued
    ]
    _table(out, ("TENANT", "MONTH", "REVISION", "ISSUED", "PLANS", "TOTAL", "CURRENCY"), rows)
    return 0


def _filter_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tenant", metavar="DOMAIN", type=_arg(_domain), help="only this tenant")
    p.add_argument("--month", metavar="YYYY-MM", type=_arg(_month), help="only this month")
    _db_opts(p)


COMMANDS["invoice"] = (
    cmd_invoice,
    _group(
        {
            "issue": (cmd_invoice_issue, _invoice_issue_args),
            "show": (cmd_invoice_show, _invoice_show_args),
            "list": (cmd_invoice_list, _filter_args),
        }
    ),
)


# -- alerts --------------------------------------------------------------------


def cmd_alerts(args: argparse.Namespace, out: TextIO) -> int:
    """List usage alerts (50/75/100 % of an included quantity) and their webhook state."""
    alerts = _with_store(args, lambda s: s.alerts(args.tenant, args.month))
    rows = [
        (a.domain, a.month, a.metric, f"{a.threshold_pct}%", a.value, a.included, _utc(a.at_ms), a.webhook)
        for a in alerts
    ]
    _table(out, ("TENANT", "MONTH", "METRIC", "THRESHOLD", "VALUE", "INCLUDED", "AT", "WEBHOOK"), rows)
    return 0


COMMANDS["alerts"] = (cmd_alerts, _filter_args)


# -- billing settings ----------------------------------------------------------


def cmd_billing(args: argparse.Namespace, out: TextIO) -> int:
    """A tenant's billing settings: plan, webhook, tax, parent, show."""
    return _needs_subcommand(args, out)


def cmd_billing_plan(args: argparse.Namespace, out: TextIO) -> int:
    """Put a tenant on a plan from a day (mid-month: prorated by days)."""
    plan = _plans(args).get(args.plan)  # a missing or broken plan file: exit 1, nothing changed
    change = _with_store(args, lambda s: s.set_plan(args.domain, args.plan, args.from_day))
    print(f"tenant {args.domain}: plan {plan.name} from {_utc(change.from_ms)}", file=out)
    return 0


def _date(text: str) -> str:
    from datetime import date

    date.fromisoformat(text)
    if len(text) != 10:
        raise ValueError(f"{text!r}: expected YYYY-MM-DD")
    return text


def _billing_plan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("domain", metavar="DOMAIN", type=_arg(_domain))
    p.add_argument("plan", metavar="PLAN", help="a plan file's name without .toml, e.g. sip-core")
    p.add_argument(
        "--from",
        dest="from_day",
        metavar="YYYY-MM-DD",
        type=_arg(_date),
        help="first day (tenant's zone; default today)",
    )
    _plans_dir_opt(p)
    _db_opts(p)


def cmd_billing_webhook(args: argparse.Namespace, out: TextIO) -> int:
    """Set the URL a tenant's usage alerts are POSTed to as JSON (or --clear it)."""
    if (args.url is None) == (not args.clear):
        raise UsageError("give either URL or --clear")
    t = _with_store(args, lambda s: s.set_webhook(args.domain, None if args.clear else args.url))
    print(f"tenant {t.domain}: webhook {t.webhook_url or 'cleared'}", file=out)
    return 0


def _billing_webhook_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("domain", metavar="DOMAIN", type=_arg(_domain))
    p.add_argument("url", metavar="URL", nargs="?", help="http://HOST[:PORT]/PATH or https://...")
    p.add_argument("--clear", action="store_true", help="remove the webhook")
    _db_opts(p)


def cmd_billing_tax(args: argparse.Namespace, out: TextIO) -> int:
    """Set a tenant's own tax rate in percent (or --clear it: the plan's applies)."""
    if (args.percent is None) == (not args.clear):
        raise UsageError("give either PERCENT or --clear")
    try:
        rate = None if args.clear else Decimal(args.percent)
    except InvalidOperation as e:
        raise UsageError(f"tax rate {args.percent!r}: expected a decimal such as 19.6") from e
    _with_store(args, lambda s: s.set_tax(args.domain, rate))
    print(f"tenant {args.domain}: tax rate {'of the plan' if rate is None else f'{rate} %'}", file=out)
    return 0


def _billing_tax_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("domain", metavar="DOMAIN", type=_arg(_domain))
    p.add_argument("percent", metavar="PERCENT", nargs="?", help="e.g. 20 or 19.6")
    p.add_argument("--clear", action="store_true", help="use the plan's tax rate")
    _db_opts(p)


def cmd_billing_parent(args: argparse.Namespace, out: TextIO) -> int:
    """Make a tenant the child of another: its usage rolls up to the parent's invoice."""
    if (args.parent is None) == (not args.clear):
        raise UsageError("give either PARENT or --clear")
    t = _with_store(args, lambda s: s.set_parent(args.domain, None if args.clear else args.parent))
    print(f"tenant {t.domain}: " + (f"child of {args.parent}" if t.parent_id else "its own account"), file=out)
    return 0


def _billing_parent_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("domain", metavar="DOMAIN", type=_arg(_domain))
    p.add_argument("parent", metavar="PARENT", nargs="?", type=_arg(_domain), help="the parent tenant's domain")
    p.add_argument("--clear", action="store_true", help="make the tenant its own billing account again")
    _db_opts(p)


def cmd_billing_show(args: argparse.Namespace, out: TextIO) -> int:
    """Show a tenant's plan history, tax rate, webhook and parent."""

    async def go(store: Store) -> list[str]:
        t = await store.get_tenant(args.domain)
        tenants = {x.id: x.domain for x in await store.list_tenants()}
        tax = await store.tax_percent(t.domain)
        lines = [
            f"tenant {t.domain} (time zone {t.timezone})",
            f"plan now: {t.plan or '-'}",
            f"tax rate: {f'{tax} %' if tax is not None else 'of the plan'}",
            f"webhook: {t.webhook_url or '-'}",
            f"parent: {tenants.get(t.parent_id, '-') if t.parent_id else '-'}",
        ]
        lines += [f"plan {c.plan} from {_utc(c.from_ms)}" for c in await store.plan_history(t.domain)]
        return lines

    for line in _with_store(args, go):
        print(line, file=out)
    return 0


def _domain_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("domain", metavar="DOMAIN", type=_arg(_domain))
    _db_opts(p)


COMMANDS["billing"] = (
    cmd_billing,
    _group(
        {
            "plan": (cmd_billing_plan, _billing_plan_args),
            "webhook": (cmd_billing_webhook, _billing_webhook_args),
            "tax": (cmd_billing_tax, _billing_tax_args),
            "parent": (cmd_billing_parent, _billing_parent_args),
            "show": (cmd_billing_show, _domain_args),
        }
    ),
)
