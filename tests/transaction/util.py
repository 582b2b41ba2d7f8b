"""Helpers for the transaction tests: hand-written SIP text, a deterministic
branch source, and drains for the layer's outputs."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from sipcore.flow import Flow
from sipcore.message import Request, Response, make_response, parse
from sipcore.transaction import Event, Outgoing, TimerConfig, TransactionLayer

UDP = Flow("udp", "192.0.2.10", 5060)
UDP2 = Flow("udp", "192.0.2.20", 5060)
TCP = Flow("tcp", "192.0.2.10", 40000, 7)

T1 = 0.5
T2 = 4.0
T4 = 5.0
T64 = 64 * T1


class Ids:
    """Deterministic branch source: z9hG4bK-test-1, -2, ..."""

    def __init__(self) -> None:
        self._n = itertools.count(1)

    def __call__(self) -> str:
        return f"z9hG4bK-test-{next(self._n)}"


def new_layer(timers: TimerConfig | None = None, **kw: int) -> TransactionLayer:
    return TransactionLayer(timers or TimerConfig(), new_branch=Ids(), **kw)


def request(
    method: str = "INVITE",
    *,
    branch: str | None = "z9hG4bKc1",
    via_host: str = "client.example.com",
    via_port: int | None = 5060,
    transport: str = "UDP",
    more_vias: Iterable[str] = (),
    ruri: str = "sip:bob@example.com",
    from_tag: str = "ftag1",
    to_tag: str | None = None,
    call_id: str = "call-1@client.example.com",
    cseq: int = 1,
    cseq_method: str | None = None,
    routes: Iterable[str] = (),
    extra: Iterable[str] = (),
) -> Request:
    """Parse a hand-written request (the way the edge would deliver it)."""
    via = f"SIP/2.0/{transport} {via_host}"
    if via_port is not None:
        via += f":{via_port}"
    if branch is not None:
        via += f";branch={branch}"
    lines = [f"{method} {ruri} SIP/2.0", f"Via: {via}"]
    lines += [f"Via: {v}" for v in more_vias]
    lines += [
        "Max-Forwards: 69",
        f"From: Alice <sip:alice@example.com>;tag={from_tag}",
        "To: Bob <sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
    ]
    lines += [f"Route: {r}" for r in routes]
    lines += list(extra)
    lines += ["Content-Length: 0", "", ""]
    msg = parse("\r\n".join(lines).encode())
    assert isinstance(msg, Request)
    return msg


def reply(req: Request, status: int, to_tag: str | None = "uas-tag") -> Response:
    """A response to `req` as it would arrive from the network (parsed bytes)."""
    msg = parse(make_response(req, status, to_tag=to_tag).to_bytes())
    assert isinstance(msg, Response)
    return msg


def events(layer: TransactionLayer) -> list[Event]:
    out = []
    while (e := layer.next_event()) is not None:
        out.append(e)
    return out


def sent(layer: TransactionLayer) -> list[Outgoing]:
    return layer.messages_to_send()


def run_timers(layer: TransactionLayer, until: float) -> list[tuple[float, list[Outgoing], list[Event]]]:
    """Step the layer from deadline to deadline (as the edge's pump does) up to
    `until`; record what each firing produced."""
    out = []
    while (t := layer.next_timer()) is not None and t <= until:
        layer.handle_timer(t)
        out.append((t, sent(layer), events(layer)))
    return out


def intervals(times: list[float], start: float) -> list[float]:
    prev = start
    out = []
    for t in times:
        out.append(round(t - prev, 9))
        prev = t
    return out
