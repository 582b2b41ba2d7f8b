"""The `sipcore` command line (EDGE): argparse subcommands, each a thin call
into the library.  ``main(argv) -> int``; bad arguments print one line and
exit 2, a failed operation exits 1.

Commands are registered in :data:`COMMANDS` (name -> handler, argument
builder); a command with subcommands (``db``, ``tenant``, ``device``,
``config``) registers its own table with :func:`_group`.  A handler's
docstring's first line is its help.  Store commands take ``--db PATH``
(default: ``[store] path`` of ``--config PATH``, else of the embedded default
configuration) and run their coroutine with ``asyncio.run``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from sipcore import __version__
from sipcore.config import config_to_toml, load_config, parse_listener
from sipcore.errors import SipcoreError

if TYPE_CHECKING:
    from sipcore.store import Store

from sipcore.cli.common import (
    COMMANDS,
    CommandFailed,
    UsageError,
    _aor,
    _arg,
    _config,
    _db_opts,
    _db_path,
    _describe_error,
    _domain,
    _group,
    _help,
    _month,
    _needs_subcommand,
    _Parser,
    _table,
    _utc,
    _with_store,
    _zone,
)


def cmd_parse(args: argparse.Namespace, out: TextIO) -> int:
    """Parse a SIP message file and print its start line, headers and any error."""
    from sipcore import message

    try:
        data = sys.stdin.buffer.read() if args.file == "-" else open(args.file, "rb").read()
    except OSError as e:
        raise UsageError(f"cannot read {args.file}: {e.strerror}") from e
    parse = message.py_parse if args.impl == "py" else message.parse
    impl = "py" if args.impl == "py" else message.IMPLEMENTATION
    if args.impl == "c" and impl != "c":
        raise UsageError("the Cython parser is not built (or SIPCORE_NO_EXTENSIONS=1)")
    print(f"parser: {impl}", file=out)
    try:
        msg = parse(data)
    except SipcoreError as e:
        print(f"error: {_describe_error(e)}", file=out)
        return 1
    first = msg.to_bytes().split(b"\n", 1)[0].rstrip(b"\r")
    print(f"start-line: {first.decode('utf-8', 'replace')}", file=out)
    for name, value in msg.headers:
        print(f"header: {name}: {value}", file=out)
    print(f"body: {len(msg.body)} bytes" + (f" ({msg.content_type})" if msg.content_type else ""), file=out)
    print(
        f"transaction: branch={msg.branch} sent-by={msg.via_host}:{msg.via_port or ''} "
        f"transport={msg.via_transport} call-id={msg.call_id} cseq={msg.cseq} {msg.cseq_method} "
        f"from-tag={msg.from_tag} to-tag={msg.to_tag} max-forwards={msg.max_forwards}",
        file=out,
    )
    try:
        msg.validate()
    except SipcoreError as e:
        print(f"error: {_describe_error(e)} (found when the header is used)", file=out)
        return 1
    return 0


def _parse_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="message file, or - for standard input")
    p.add_argument("--impl", choices=["auto", "py", "c"], default="auto", help="parser implementation")


COMMANDS["parse"] = (cmd_parse, _parse_args)


# -- db ----------------------------------------------------------------------


def cmd_db(args: argparse.Namespace, out: TextIO) -> int:
    """Database schema: apply migrations (migrate) or list them (status)."""
    return _needs_subcommand(args, out)


def cmd_db_migrate(args: argparse.Namespace, out: TextIO) -> int:
    """Apply the pending schema migrations (each in one transaction)."""

    async def go(store: Store) -> list[Any]:
        done = await store.migrate()
        newer = [s.version for s in await store.migration_status() if not s.known]
        if newer:
            raise CommandFailed(f"{store.path}: schema version {newer[-1]} comes from a newer sipcore")
        return done

    done = _with_store(args, go, migrate=False)
    for m in done:
        print(f"applied {m.version:04d}_{m.name}", file=out)
    print(f"{_db_path(args)}: schema up to date ({len(done)} migration(s) applied)", file=out)
    return 0


def cmd_db_status(args: argparse.Namespace, out: TextIO) -> int:
    """List the schema migrations, applied and pending."""
    from pathlib import Path

    from sipcore.store import MigrationState, available_migrations

    path = _db_path(args)
    if Path(path).exists():

        async def go(store: Store) -> list[MigrationState]:
            return await store.migration_status()

        states = _with_store(args, go, migrate=False)
    else:  # do not create a database just to say it is empty
        print(f"{path}: does not exist yet", file=out)
        states = [MigrationState(m.version, m.name, None) for m in available_migrations()]
    rows = [
        (
            f"{s.version:04d}_{s.name}",
            ("applied " + _utc(s.applied_ms) if s.applied_ms is not None else "pending")
            + ("" if s.known else " (unknown to this sipcore)"),
        )
        for s in states
    ]
    _table(out, ("MIGRATION", "STATE"), rows)
    return 0


COMMANDS["db"] = (
    cmd_db,
    _group({"migrate": (cmd_db_migrate, _db_opts), "status": (cmd_db_status, _db_opts)}),
)


# -- tenant ------------------------------------------------------------------


def cmd_tenant(args: argparse.Namespace, out: TextIO) -> int:
    """Tenants (SIP domains): add, list."""
    return _needs_subcommand(args, out)


def cmd_tenant_add(args: argparse.Namespace, out: TextIO) -> int:
    """Create a tenant: a SIP domain, also the digest realm of its devices."""
    t = _with_store(args, lambda s: s.add_tenant(args.domain, plan=args.plan, timezone=args.timezone))
    print(f"added tenant {t.domain} (id {t.id}, plan {t.plan or '-'}, time zone {t.timezone})", file=out)
    return 0


def _tenant_add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("domain", metavar="DOMAIN", type=_arg(_domain), help="SIP domain, e.g. example.com")
    p.add_argument("--plan", metavar="NAME", help="rating plan (a file under config/plans/)")
    p.add_argument("--timezone", metavar="TZ", type=_arg(_zone), default="UTC", help="billing time zone (IANA name)")
    _db_opts(p)


def cmd_tenant_list(args: argparse.Namespace, out: TextIO) -> int:
    """List tenants with their plan, time zone and number of enabled devices."""

    async def go(store: Store) -> list[tuple[object, ...]]:
        return [
            (t.domain, t.plan or "-", t.timezone, await store.device_count(t.id), _utc(t.created_ms))
            for t in await store.list_tenants()
        ]

    _table(out, ("DOMAIN", "PLAN", "TIMEZONE", "DEVICES", "CREATED"), _with_store(args, go))
    return 0


COMMANDS["tenant"] = (
    cmd_tenant,
    _group({"add": (cmd_tenant_add, _tenant_add_args), "list": (cmd_tenant_list, _db_opts)}),
)


# -- device ------------------------------------------------------------------


def cmd_device(args: argparse.Namespace, out: TextIO) -> int:
    """Devices (SIP credentials user@domain): add, import, list, enable, disable, remove."""
    return _needs_subcommand(args, out)


def cmd_device_add(args: argparse.Namespace, out: TextIO) -> int:
    """Provision a device; only the digest HA1 of its password is stored."""
    user, _, domain = args.aor.rpartition("@")
    password = sys.stdin.readline().rstrip("\r\n") if args.password == "-" else args.password
    if not password:
        raise UsageError("the password must not be empty")
    d = _with_store(args, lambda s: s.add_device(user, domain, password))
    print(f"added device {d.aor} (id {d.id})", file=out)
    return 0


def _device_add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("aor", metavar="USER@DOMAIN", type=_arg(_aor))
    p.add_argument("--password", metavar="PW", required=True, help="the SIP password; - reads one line from stdin")
    _db_opts(p)


def _read_device_csv(path: str) -> tuple[list[tuple[str, str, str]], list[int]]:
    """Rows (user, domain, password) of a CSV file and the line number of each.

    A first row ``user,domain,password`` is a header; blank lines are skipped;
    spaces around user and domain are dropped, the password is taken verbatim.
    """
    rows: list[tuple[str, str, str]] = []
    lines: list[int] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            try:
                for rec in reader:
                    if not any(x.strip() for x in rec):
                        continue
                    if not rows and [x.strip().lower() for x in rec] == ["user", "domain", "password"]:
                        continue
                    if len(rec) != 3:
                        raise CommandFailed(
                            f"{path}:{reader.line_num}: expected user,domain,password, got {len(rec)} field(s)"
                        )
                    rows.append((rec[0].strip(), rec[1].strip(), rec[2]))
                    lines.append(reader.line_num)
            except (csv.Error, UnicodeDecodeError) as e:
                raise CommandFailed(f"{path}:{reader.line_num + 1}: {e}") from e
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from e
    return rows, lines


def cmd_device_import(args: argparse.Namespace, out: TextIO) -> int:
    """Provision devices from a CSV file (user,domain,password), all or none."""
    from sipcore.store import ImportRowError

    rows, lines = _read_device_csv(args.file)
    try:
        n = _with_store(args, lambda s: s.import_devices(rows))
    except ImportRowError as e:
        raise CommandFailed(f"{args.file}:{lines[e.index]}: {e.reason}; nothing imported") from e
    print(f"imported {n} device(s) from {args.file}", file=out)
    return 0


def _device_import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE.csv", help="rows user,domain,password (header row optional)")
    _db_opts(p)


def cmd_device_list(args: argparse.Namespace, out: TextIO) -> int:
    """List devices, of one tenant or all."""
    devices = _with_store(args, lambda s: s.list_devices(args.tenant))
    rows = [(d.aor, "yes" if d.enabled else "no", _utc(d.created_ms)) for d in devices]
    _table(out, ("DEVICE", "ENABLED", "CREATED"), rows)
    return 0


def _tenant_filter_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tenant", metavar="DOMAIN", type=_arg(_domain), help="only this tenant")
    _db_opts(p)


def _set_enabled(args: argparse.Namespace, out: TextIO, enabled: bool) -> int:
    user, _, domain = args.aor.rpartition("@")
    d = _with_store(args, lambda s: s.set_device_enabled(user, domain, enabled))
    print(f"device {d.aor} {'enabled' if d.enabled else 'disabled'}", file=out)
    return 0


def cmd_device_enable(args: argparse.Namespace, out: TextIO) -> int:
    """Enable a device: it can authenticate again."""
    return _set_enabled(args, out, True)


def cmd_device_disable(args: argparse.Namespace, out: TextIO) -> int:
    """Disable a device: its credentials stay, but authentication fails."""
    return _set_enabled(args, out, False)


def cmd_device_remove(args: argparse.Namespace, out: TextIO) -> int:
    """Delete a device and its registrations (its usage this month stays counted)."""
    user, _, domain = args.aor.rpartition("@")
    _with_store(args, lambda s: s.remove_device(user, domain))
    print(f"removed device {args.aor}", file=out)
    return 0


def _aor_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("aor", metavar="USER@DOMAIN", type=_arg(_aor))
    _db_opts(p)


COMMANDS["device"] = (
    cmd_device,
    _group(
        {
            "add": (cmd_device_add, _device_add_args),
            "import": (cmd_device_import, _device_import_args),
            "list": (cmd_device_list, _tenant_filter_args),
            "enable": (cmd_device_enable, _aor_args),
            "disable": (cmd_device_disable, _aor_args),
            "remove": (cmd_device_remove, _aor_args),
        }
    ),
)


# -- registrations, usage ------------------------------------------------------


def cmd_registrations(args: argparse.Namespace, out: TextIO) -> int:
    """List current registrations (Contact bindings) as last written by the server."""
    now = time.time_ns() // 1_000_000
    bindings = _with_store(args, lambda s: s.list_bindings(args.tenant, now_ms=now))
    rows = []
    for b in bindings:
        host = f"[{b.flow_host}]" if ":" in b.flow_host else b.flow_host
        flow = f"{b.flow_transport}:{host}:{b.flow_port}" + (f"#{b.flow_conn}" if b.flow_conn else "")
        rows.append((b.aor, b.contact, -(-(b.expires_ms - now) // 1000), flow, b.user_agent or "-"))
    _table(out, ("AOR", "CONTACT", "EXPIRES_S", "FLOW", "USER_AGENT"), rows)
    return 0


COMMANDS["registrations"] = (cmd_registrations, _tenant_filter_args)


def cmd_usage(args: argparse.Namespace, out: TextIO) -> int:
    """Show a tenant's metered usage for a month (in the tenant's time zone)."""
    metrics = _with_store(args, lambda s: s.usage(args.tenant, args.month))
    if args.format == "json":
        print(json.dumps({"tenant": args.tenant, "month": args.month, "metrics": metrics}, indent=2), file=out)
    else:
        print(f"tenant {args.tenant}, month {args.month}", file=out)
        _table(out, ("METRIC", "VALUE"), list(metrics.items()))
    return 0


def _usage_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tenant", metavar="DOMAIN", type=_arg(_domain), required=True)
    p.add_argument("--month", metavar="YYYY-MM", type=_arg(_month), required=True)
    p.add_argument("--format", choices=["table", "json"], default="table")
    _db_opts(p)


COMMANDS["usage"] = (cmd_usage, _usage_args)


# -- config, serve -------------------------------------------------------------


def cmd_config(args: argparse.Namespace, out: TextIO) -> int:
    """Configuration files: check."""
    return _needs_subcommand(args, out)


def cmd_config_check(args: argparse.Namespace, out: TextIO) -> int:
    """Check a configuration file and print the effective configuration."""
    cfg = load_config(args.path)  # a ConfigError names file, key and reason: exit 1
    print(f"# {cfg.source}: OK; effective configuration:", file=out)
    out.write(config_to_toml(cfg))
    return 0


def _config_check_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="PATH", help="TOML configuration file")


COMMANDS["config"] = (cmd_config, _group({"check": (cmd_config_check, _config_check_args)}))


def cmd_quote(args: argparse.Namespace, out: TextIO) -> int:
    """Price quantities under a plan file: the invoice they would produce."""
    import json

    from sipcore.rating import RatingError, load_plan, parse_quantity_args, quote, render_csv, render_table

    try:
        quantities = parse_quantity_args(args.quantities)
    except RatingError as e:
        raise UsageError(str(e)) from e
    invoice = quote(load_plan(args.plan), quantities)  # a bad plan file: ConfigError, exit 1
    if args.format == "json":
        out.write(json.dumps(invoice.to_json_dict(), indent=2) + "\n")
    elif args.format == "csv":
        out.write(render_csv(invoice))
    else:
        out.write(render_table(invoice))
    return 0


def _quote_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--plan", required=True, metavar="FILE", help="plan file (config/plans/*.toml)")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p.add_argument("quantities", nargs="+", metavar="METRIC=QUANTITY", help="e.g. mau=100000 voice.minutes=1200")


COMMANDS["quote"] = (cmd_quote, _quote_args)


def _listener(text: str) -> str:
    return str(parse_listener(text))


def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    """Run the SIP server (registrar, proxy, metering) until interrupted."""
    cfg = _config(args)
    if args.listen:
        cfg = dataclasses.replace(cfg, server=dataclasses.replace(cfg.server, listen=tuple(args.listen)))
    if args.db:
        cfg = dataclasses.replace(cfg, store=dataclasses.replace(cfg.store, path=args.db))
    try:
        from sipcore.server import run_server
    except ImportError as e:
        if e.name != "sipcore.server":
            raise
        raise CommandFailed("this build of sipcore has no server (sipcore.server is missing)") from e
    return int(run_server(cfg))


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="PATH", help="configuration file (default: the embedded example)")
    p.add_argument(
        "--listen", metavar="udp:HOST:PORT", action="append", type=_arg(_listener), help="replaces server.listen"
    )
    p.add_argument("--db", metavar="PATH", help="replaces store.path")


COMMANDS["serve"] = (cmd_serve, _serve_args)


# Command modules register themselves in COMMANDS when imported.
from sipcore.cli import billing, calls  # noqa: E402, F401


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="sipcore", description="Embedded SIP proxy and registrar with usage metering.")
    ap.add_argument("--version", action="version", version=f"sipcore {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    for name, (handler, add_args) in COMMANDS.items():
        sp = sub.add_parser(name, help=_help(handler), description=_help(handler))
        add_args(sp)
        sp.set_defaults(handler=handler)
    return ap


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    ap = build_parser()
    try:
        args = ap.parse_args(argv)
        if not getattr(args, "handler", None):
            raise UsageError("a command is required (see sipcore --help)")
        return args.handler(args, out)
    except UsageError as e:
        print(f"sipcore: error: {e}", file=sys.stderr)
        return 2
    except SipcoreError as e:  # a failed operation: tenant exists, no such device, bad config...
        print(f"sipcore: {' '.join(str(e).split())}", file=sys.stderr)
        return 1


def run() -> None:
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `sipcore parse x | head`: not an error worth a traceback
        code = 0
    sys.exit(code)
