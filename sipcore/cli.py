"""The `sipcore` command line (EDGE): argparse subcommands, each a thin call
into the library.  ``main(argv) -> int``; bad arguments print one line and
exit 2, a failed operation exits 1."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn, TextIO

from sipcore import __version__
from sipcore.errors import RemoteProtocolError, SipcoreError


class UsageError(Exception):
    """A bad command-line argument (exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


Handler = Callable[[argparse.Namespace, TextIO], int]


def _describe_error(e: SipcoreError) -> str:
    if isinstance(e, RemoteProtocolError):
        wire = f"{e.status} {e.reason}" if e.status else "dropped"
        return f"{type(e).__name__} ({wire}): {e}"
    return f"{type(e).__name__}: {e}"


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


COMMANDS: dict[str, tuple[Handler, Callable[[argparse.ArgumentParser], None]]] = {}


def _parse_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="message file, or - for standard input")
    p.add_argument("--impl", choices=["auto", "py", "c"], default="auto", help="parser implementation")


COMMANDS["parse"] = (cmd_parse, _parse_args)


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="sipcore", description="Embedded SIP proxy and registrar with usage metering.")
    ap.add_argument("--version", action="version", version=f"sipcore {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    for name, (handler, add_args) in COMMANDS.items():
        sp = sub.add_parser(name, help=(handler.__doc__ or "").strip().splitlines()[0])
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


def run() -> None:
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `sipcore parse x | head`: not an error worth a traceback
        code = 0
    sys.exit(code)
