"""Invoice renderers (PURE): a terminal table and CSV, each returning a string.

METERING.md: "Output as JSON and CSV, and a readable table on the
terminal."  JSON is ``Invoice.to_json_dict()``; these two are for people and
spreadsheets.  Numbers are printed exactly as the invoice holds them
(decimal strings), so a table, a CSV and the JSON of one invoice agree.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from sipcore.rating.invoice import Invoice, Line
from sipcore.rating.money import fmt

CSV_COLUMNS = (
    "period",
    "plan",
    "metric",
    "quantity",
    "included",
    "billable",
    "unit_price",
    "unit",
    "units",
    "amount",
    "currency",
    "days",
    "month_days",
    "note",
)


def render_table(invoice: Invoice) -> str:
    """A fixed-width table: header, one row per line, subtotal/tax/total, notes."""
    many = len(invoice.plans) > 1
    head = ["plan"] * many + ["metric", "quantity", "included", "billable", "unit price", "unit", "amount"]
    rows = [head]
    notes: list[str] = []
    for x in invoice.lines:
        mark = ""
        if x.note:
            notes.append(x.note)
            mark = f" [{len(notes)}]"
        rows.append(
            [x.plan] * many
            + [
                x.metric + mark,
                fmt(x.quantity),
                fmt(x.included),
                fmt(x.billable),
                fmt(x.unit_price),
                x.unit,
                fmt(x.amount),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    # Text columns (plan, metric, unit) left-aligned, numbers right-aligned.
    left = {0, 1, len(head) - 2} if many else {0, len(head) - 2}

    def row(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    tenant = f" for {invoice.tenant}" if invoice.tenant else ""
    plans = ", ".join(f"{p.name} (days {p.first_day}-{p.last_day})" if p.last_day else p.name for p in invoice.plans)
    out = [
        f"Invoice{tenant}: {invoice.period} ({invoice.tz}), revision {invoice.revision}, {invoice.currency}",
        f"Plan: {plans}",
        "",
        row(rows[0]),
        "  ".join("-" * w for w in widths),
    ]
    out += [row(r) for r in rows[1:]]
    total_width = sum(widths) + 2 * (len(widths) - 1)
    for label, value in (
        ("subtotal", invoice.subtotal),
        (f"tax ({fmt(invoice.tax_percent)} %)", invoice.tax),
        ("total", invoice.total),
    ):
        amount = f"{fmt(value)} {invoice.currency}"
        out.append(f"{label}  {amount}".rjust(total_width + 1 + len(invoice.currency)))
    for i, note in enumerate(notes, 1):
        out.append(f"[{i}] {note}")
    if invoice.members:
        out.append("includes the usage of: " + ", ".join(invoice.members))
    if invoice.uncharged:
        out.append("not priced by the plan: " + ", ".join(f"{m}={fmt(q)}" for m, q in invoice.uncharged))
    for w in invoice.warnings:
        out.append(f"warning: {w}")
    return "\n".join(out) + "\n"


def _csv_row(invoice: Invoice, x: Line) -> list[str]:
    return [
        invoice.period,
        x.plan,
        x.metric,
        fmt(x.quantity),
        fmt(x.included),
        fmt(x.billable),
        fmt(x.unit_price),
        x.unit,
        fmt(x.units),
        fmt(x.amount),
        invoice.currency,
        str(x.days),
        str(x.month_days),
        x.note,
    ]


def _csv_rows(invoice: Invoice) -> list[list[str]]:
    rows = [_csv_row(invoice, x) for x in invoice.lines]
    for label, value in (("subtotal", invoice.subtotal), ("tax", invoice.tax), ("total", invoice.total)):
        cells = dict.fromkeys(CSV_COLUMNS, "")
        cells.update(period=invoice.period, metric=label, amount=fmt(value), currency=invoice.currency)
        if label == "tax":
            cells["note"] = f"{fmt(invoice.tax_percent)} %"
        rows.append([cells[c] for c in CSV_COLUMNS])
    return rows


def render_csv(invoice: Invoice) -> str:
    """RFC 4180 CSV: a header, one row per line, then ``subtotal``, ``tax`` and
    ``total`` rows whose metric column names them and whose amount holds them."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    w.writerows(_csv_rows(invoice))
    return buf.getvalue()


def render_csv_many(invoices: Sequence[Invoice]) -> str:
    """Several invoices in one CSV: :func:`render_csv`'s rows with ``tenant`` and
    ``revision`` columns in front, one header for all."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(("tenant", "revision", *CSV_COLUMNS))
    for invoice in invoices:
        w.writerows([invoice.tenant, str(invoice.revision), *row] for row in _csv_rows(invoice))
    return buf.getvalue()
