"""Helpers shared by the command modules: errors, the command registry,
argument types, store access and table output."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, TypeVar

from sipcore.config import Config, default_config, load_config
from sipcore.errors import RemoteProtocolError, SipcoreError

if TYPE_CHECKING:
    from sipcore.store import Store

T = TypeVar("T")


class UsageError(Exception):
    """A bad command-line argument (exit 2)."""


class CommandFailed(SipcoreError):
    """An operation the command line could not carry out (exit 1), e.g. a bad CSV row."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


Handler = Callable[[argparse.Namespace, TextIO], int]
AddArgs = Callable[[argparse.ArgumentParser], None]


def _describe_error(e: SipcoreError) -> str:
    if isinstance(e, RemoteProtocolError):
        wire = f"{e.status} {e.reason}" if e.status else "dropped"
        return f"{type(e).__name__} ({wire}): {e}"
    return f"{type(e).__name__}: {e}"


COMMANDS: dict[str, tuple[Handler, AddArgs]] = {}


# -- helpers shared by the store commands --------------------------------------


def _help(handler: Handler) -> str:
    return (handler.__doc__ or "").strip().splitlines()[0]


def _group(commands: dict[str, tuple[Handler, AddArgs]]) -> AddArgs:
    """Argument builder of a command that has subcommands (``sipcore db migrate``)."""

    def add(p: argparse.ArgumentParser) -> None:
        sub = p.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
        for name, (handler, add_args) in commands.items():
            sp = sub.add_parser(name, help=_help(handler), description=_help(handler))
            add_args(sp)
            sp.set_defaults(handler=handler)

    return add


def _needs_subcommand(args: argparse.Namespace, out: TextIO) -> int:
    raise UsageError(f"{args.command}: a subcommand is required (see sipcore {args.command} --help)")


def _arg(check: Callable[[str], Any]) -> Callable[[str], str]:
    """An argparse ``type`` from a store validator: a bad value is a usage error (exit 2)."""

    def convert(text: str) -> str:
        from sipcore.store import InvalidValue

        try:
            out = check(text)
        except (InvalidValue, ValueError) as e:
            raise argparse.ArgumentTypeError(str(e)) from e
        return out if isinstance(out, str) else text

    return convert


def _domain(text: str) -> str:
    from sipcore.store.credentials import check_domain

    return check_domain(text)


def _aor(text: str) -> str:
    user, at, domain = text.rpartition("@")
    if not at or not user or not domain:
        raise ValueError(f"{text!r}: expected USER@DOMAIN")
    from sipcore.store.credentials import check_domain, check_username

    return f"{check_username(user)}@{check_domain(domain)}"


def _zone(text: str) -> str:
    from sipcore.store.months import zone

    zone(text)
    return text


def _month(text: str) -> str:
    from sipcore.store.months import check_month

    check_month(text)
    return text


def _db_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", metavar="PATH", help="SQLite database (default: [store] path of the configuration)")
    p.add_argument("--config", metavar="PATH", help="configuration file whose [store] path is used")


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config) if getattr(args, "config", None) else default_config()


def _db_path(args: argparse.Namespace) -> str:
    return str(args.db) if args.db else _config(args).store.path


def _with_store(args: argparse.Namespace, fn: Callable[[Store], Coroutine[Any, Any, T]], migrate: bool = True) -> T:
    """Open the database (migrating it), run ``fn(store)``, close."""
    from sipcore.store import Store

    async def go() -> T:
        async with await Store.open(_db_path(args), migrate=migrate) as store:
            return await fn(store)

    return asyncio.run(go())


def _utc(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _table(out: TextIO, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in r] for r in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip(), file=out)
