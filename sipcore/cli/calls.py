"""`sipcore trunk ...`, `sipcore calls`: trunks, DIDs and call legs."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from sipcore.cli.common import (
    COMMANDS,
    UsageError,
    _aor,
    _arg,
    _db_opts,
    _domain,
    _group,
    _month,
    _needs_subcommand,
    _table,
    _with_store,
)

if TYPE_CHECKING:
    from sipcore.store import LegRow, Trunk
    from sipcore.store.calls import TrunkRegistration


def _iso_ms(ms: int | None) -> str:
    """UTC ISO 8601 with milliseconds ('' when None)."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


# Argument types: the store's validators, so argparse reports a bad value (exit 2).


def _trunk_name(text: str) -> str:
    from sipcore.store.calls import check_trunk_name

    return check_trunk_name(text)


def _address(text: str) -> str:
    from sipcore.store.calls import format_address, parse_address

    return format_address(*parse_address(text))


def _prefix(text: str) -> str:
    from sipcore.store.calls import check_prefix

    return check_prefix(text)


def _codecs(text: str) -> str:
    from sipcore.store.calls import check_codecs

    return ",".join(check_codecs(text.split(",")))


def _priority(text: str) -> str:
    from sipcore.store.calls import check_priority

    if not text.isascii() or not text.isdigit():
        raise ValueError(f"priority {text!r}: expected a number")
    check_priority(int(text))
    return text


def _number(text: str) -> str:
    from sipcore.store.calls import check_did_number

    return check_did_number(text)


# -- trunk ---------------------------------------------------------------------


def cmd_trunk(args: argparse.Namespace, out: TextIO) -> int:
    """Trunks (carriers, other PBXs) and their inbound numbers: add, list, remove, did."""
    return _needs_subcommand(args, out)


def cmd_trunk_add(args: argparse.Namespace, out: TextIO) -> int:
    """Provision a trunk: its address, dial-plan prefixes, codecs and credentials."""
    from sipcore.store.calls import parse_address
    from sipcore.transport.names import is_ip

    if (args.username is None) != (args.password is None):
        raise UsageError("--username and --password go together")
    if args.register and args.username is None:
        raise UsageError("--register needs --username and --password")
    if args.inbound != "address" and args.username is None:
        raise UsageError(f"--inbound {args.inbound} needs --username and --password")
    password = sys.stdin.readline().rstrip("\r\n") if args.password == "-" else args.password
    if args.password is not None and not password:
        raise UsageError("the password must not be empty")
    host, port = parse_address(args.address)
    t = _with_store(
        args,
        lambda s: s.add_trunk(
            args.name,
            args.tenant,
            host,
            port,
            transport=args.transport,
            prefixes=args.prefix or (),
            codecs=args.codecs.split(",") if args.codecs else (),
            username=args.username,
            password=password,
            register=args.register,
            priority=int(args.priority),
            allow_transit=args.allow_transit,
            inbound=args.inbound,
            account_domain=args.domain,
        ),
    )
    print(f"added trunk {t.name} (id {t.id}) for {t.domain} at {t.transport}:{t.address}", file=out)
    if not is_ip(host):
        print(
            f"note: {host} is looked up when the server loads it and every minute; calls from the addresses it "
            "resolves to (from the trunk's port) are recognised as the trunk's",
            file=sys.stderr,
        )
    return 0


def _trunk_add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME", type=_arg(_trunk_name))
    p.add_argument("--tenant", metavar="DOMAIN", type=_arg(_domain), required=True)
    p.add_argument(
        "--address",
        metavar="HOST:PORT",
        type=_arg(_address),
        required=True,
        help="where calls to it go (with --inbound address|both, also where its calls come from)",
    )
    p.add_argument("--transport", choices=["udp", "tcp"], default="udp")
    p.add_argument("--prefix", metavar="DIGITS", type=_arg(_prefix), action="append", help="dial-plan prefix (repeat)")
    p.add_argument("--codecs", metavar="PCMU,PCMA,...", type=_arg(_codecs), help="codecs it accepts (default: any)")
    p.add_argument(
        "--username", metavar="U", help="user name for the trunk's digest challenge (and, with --inbound, ours)"
    )
    p.add_argument("--password", metavar="P", help="its password; - reads one line from stdin")
    p.add_argument("--register", action="store_true", help="register with the trunk")
    p.add_argument(
        "--domain",
        metavar="DOMAIN",
        type=_arg(_domain),
        help="SIP domain of the account at the trunk (REGISTER sip:DOMAIN, To/From USER@DOMAIN); "
        "default: the address host",
    )
    p.add_argument("--priority", metavar="N", type=_arg(_priority), default="100", help="lower first (default 100)")
    p.add_argument("--allow-transit", action="store_true", help="allow trunk-to-trunk calls through it")
    p.add_argument(
        "--inbound",
        choices=["address", "digest", "both"],
        default="address",
        help="how its calls to us are recognised: address = from HOST:PORT (default); digest = "
        "--username/--password in the tenant's realm, from any address; both = from HOST:PORT with digest",
    )
    _db_opts(p)


def _minute(ms: int, now_ms: int) -> str:
    """UTC to the minute, the date only when not today: '14:03Z', '2026-11-22 14:05Z'."""
    t = datetime.fromtimestamp(ms // 1000, UTC)
    same_day = t.date() == datetime.fromtimestamp(now_ms // 1000, UTC).date()
    return t.strftime("%H:%MZ" if same_day else "%Y-%m-%d %H:%MZ")


def _registration(t: Trunk, reg: TrunkRegistration | None, now_ms: int) -> str:
    """The REGISTRATION cell: '-' when the trunk does not register."""
    if not t.register:
        return "-"
    if reg is None:
        return "pending"  # no server has run since it was added
    if reg.state == "registered" and reg.expires_at_ms is not None:
        word = "expires" if reg.expires_at_ms > now_ms else "expired"
        return f"registered ({word} {_minute(reg.expires_at_ms, now_ms)})"
    if reg.state == "failed":
        what = f"{reg.status} {reg.reason}" if reg.status is not None else reg.reason
        retry = f", retry {_minute(reg.next_attempt_ms, now_ms)}" if reg.next_attempt_ms is not None else ""
        return f"failed: {what}{retry}"
    return reg.state


def _registration_json(t: Trunk, reg: TrunkRegistration | None) -> dict[str, Any] | None:
    if not t.register or reg is None:
        return None
    return {
        "state": reg.state,
        "status": reg.status,
        "reason": reg.reason,
        "expires_at": _iso_ms(reg.expires_at_ms) or None,
        "next_attempt": _iso_ms(reg.next_attempt_ms) or None,
        "updated": _iso_ms(reg.updated_ms),
    }


def cmd_trunk_list(args: argparse.Namespace, out: TextIO) -> int:
    """List trunks, of one tenant or all, with their registration state (never their passwords)."""

    async def load(s: Any) -> tuple[list[Trunk], dict[int, TrunkRegistration]]:
        return await s.list_trunks(args.tenant), await s.trunk_registrations()

    trunks, regs = _with_store(args, load)
    now_ms = time.time_ns() // 1_000_000
    if args.format == "json":
        items = [
            {
                "name": t.name,
                "tenant": t.domain,
                "transport": t.transport,
                "address": t.address,
                "prefixes": list(t.prefixes),
                "codecs": list(t.codecs),
                "username": t.username,
                "domain": t.account_domain,
                "register": t.register,
                "priority": t.priority,
                "allow_transit": t.allow_transit,
                "inbound": t.inbound,
                "enabled": t.enabled,
                "registration": _registration_json(t, regs.get(t.id)),
            }
            for t in trunks
        ]
        print(json.dumps({"trunks": items}, indent=2), file=out)
        return 0
    rows = [
        (
            t.name,
            t.domain,
            f"{t.transport}:{t.address}",
            ",".join(t.prefixes) or "-",
            ",".join(t.codecs) or "any",
            (f"{t.username}@{t.account_domain}" if t.username and t.account_domain else t.username) or "-",
            "yes" if t.register else "no",
            t.priority,
            "yes" if t.allow_transit else "no",
            t.inbound,
            "yes" if t.enabled else "no",
            _registration(t, regs.get(t.id), now_ms),
        )  # fmt: skip
        for t in trunks
    ]
    headers = ("NAME", "TENANT", "ADDRESS", "PREFIXES", "CODECS", "USERNAME", "REGISTER", "PRIORITY", "TRANSIT")
    _table(out, (*headers, "INBOUND", "ENABLED", "REGISTRATION"), rows)
    return 0


def _trunk_list_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tenant", metavar="DOMAIN", type=_arg(_domain), help="only this tenant")
    p.add_argument("--format", choices=["table", "json"], default="table")
    _db_opts(p)


def _tenant_filter(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tenant", metavar="DOMAIN", type=_arg(_domain), help="only this tenant")
    _db_opts(p)


def cmd_trunk_remove(args: argparse.Namespace, out: TextIO) -> int:
    """Delete a trunk and its prefixes (its call legs stay)."""
    _with_store(args, lambda s: s.remove_trunk(args.name))
    print(f"removed trunk {args.name}", file=out)
    return 0


def _trunk_name_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME", type=_arg(_trunk_name))
    _db_opts(p)


def cmd_trunk_did(args: argparse.Namespace, out: TextIO) -> int:
    """Inbound numbers (DIDs) that ring a device: add, list, remove."""
    raise UsageError("trunk did: a subcommand is required (see sipcore trunk did --help)")


def cmd_trunk_did_add(args: argparse.Namespace, out: TextIO) -> int:
    """Route calls from a trunk to NUMBER to a device."""
    d = _with_store(args, lambda s: s.add_did(args.number, args.aor, args.trunk))
    print(
        f"added number {d.number} -> {d.aor}" + (f" (from trunk {d.trunk_name} only)" if d.trunk_name else ""), file=out
    )
    return 0


def _did_add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("number", metavar="NUMBER", type=_arg(_number))
    p.add_argument("aor", metavar="USER@DOMAIN", type=_arg(_aor))
    p.add_argument("--trunk", metavar="NAME", type=_arg(_trunk_name), help="only from this trunk (default: any)")
    _db_opts(p)


def cmd_trunk_did_list(args: argparse.Namespace, out: TextIO) -> int:
    """List inbound numbers, of one tenant or all."""
    dids = _with_store(args, lambda s: s.list_dids(args.tenant))
    _table(out, ("NUMBER", "DEVICE", "TRUNK"), [(d.number, d.aor, d.trunk_name or "any") for d in dids])
    return 0


def cmd_trunk_did_remove(args: argparse.Namespace, out: TextIO) -> int:
    """Delete an inbound number."""
    _with_store(args, lambda s: s.remove_did(args.number))
    print(f"removed number {args.number}", file=out)
    return 0


def _did_number_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("number", metavar="NUMBER", type=_arg(_number))
    _db_opts(p)


COMMANDS["trunk"] = (
    cmd_trunk,
    _group(
        {
            "add": (cmd_trunk_add, _trunk_add_args),
            "list": (cmd_trunk_list, _trunk_list_args),
            "remove": (cmd_trunk_remove, _trunk_name_args),
            "did": (
                cmd_trunk_did,
                _group(
                    {
                        "add": (cmd_trunk_did_add, _did_add_args),
                        "list": (cmd_trunk_did_list, _tenant_filter),
                        "remove": (cmd_trunk_did_remove, _did_number_args),
                    }
                ),
            ),
        }
    ),
)


# -- calls ---------------------------------------------------------------------

LEG_FIELDS = (
    "leg_id", "direction", "endpoint", "caller", "callee", "setup", "answer", "end", "duration_ms", "voice_ms",
    "video_ms", "transcoding_ms", "end_reason", "final_status", "codecs",
)  # fmt: skip


def _leg_fields(leg: LegRow) -> dict[str, Any]:
    codecs = leg.codecs_local + (f"/{leg.codecs_remote}" if leg.codecs_remote != leg.codecs_local else "")
    return {
        "leg_id": leg.leg_id,
        "direction": leg.direction + (" transit" if leg.transit else ""),
        "endpoint": leg.endpoint,
        "caller": leg.caller,
        "callee": leg.callee,
        "setup": _iso_ms(leg.setup_ms),
        "answer": _iso_ms(leg.answer_ms),
        "end": _iso_ms(leg.end_ms),
        "duration_ms": leg.duration_ms,
        "voice_ms": leg.voice_ms,
        "video_ms": leg.video_ms,
        "transcoding_ms": leg.transcoding_ms,
        "end_reason": leg.end_reason or "",
        "final_status": leg.final_status,
        "codecs": codecs,
    }


def cmd_calls(args: argparse.Namespace, out: TextIO) -> int:
    """List a tenant's call legs of a month (in the tenant's time zone)."""
    legs = [_leg_fields(leg) for leg in _with_store(args, lambda s: s.list_legs(args.tenant, args.month))]
    if args.format == "json":
        print(json.dumps({"tenant": args.tenant, "month": args.month, "legs": legs}, indent=2), file=out)
    elif args.format == "csv":
        w = csv.DictWriter(out, fieldnames=LEG_FIELDS, lineterminator="\n")
        w.writeheader()
        w.writerows({k: "" if v is None else v for k, v in leg.items()} for leg in legs)
    else:
        rows = [[("-" if v in (None, "") else v) for v in leg.values()] for leg in legs]
        _table(out, [f.upper() for f in LEG_FIELDS], rows)
    return 0


def _calls_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tenant", metavar="DOMAIN", type=_arg(_domain), required=True)
    p.add_argument("--month", metavar="YYYY-MM", type=_arg(_month), required=True)
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    _db_opts(p)


COMMANDS["calls"] = (cmd_calls, _calls_args)
