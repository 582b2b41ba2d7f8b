"""The transaction layer: matching (RFC 3261 §17.1.3, §17.2.3, §9.2), the
transaction table, timers and the sans-IO surface the edge pumps.

Theory of operation
-------------------
The layer owns two dicts: server transactions keyed per §17.2.3 and client
transactions keyed per §17.1.3.  Every input (``receive_request``,
``receive_response``, ``transport_error``, ``handle_timer`` and the TU's
``respond`` / ``send_request``) is matched to one transaction and handed to
its state machine (``server.py``, ``client.py``), which answers by queueing
bytes (``messages_to_send``), events (``next_event``) and timers
(``next_timer``).  Nothing here reads the clock: `now` is passed in, and it is
clamped so it never runs backwards (the timer queues rely on that).

Server key (§17.2.3).  When the top Via branch starts with the magic cookie:
``(branch, sent-by host, sent-by port, method)`` with ACK mapped to INVITE, so
the ACK of a non-2xx response and a retransmitted INVITE find the INVITE's
transaction, while a CANCEL (same branch) gets its own.  Otherwise (RFC 2543
peers) the key is built from Request-URI, To tag, From tag, Call-ID, CSeq
number, method and the top Via; an ACK is matched against the INVITE's key
and must carry the To tag of the response the transaction sent.

Client key (§17.1.3): ``(branch, CSeq method)``.  An ACK never has a client
transaction, so a response naming ACK is stray.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from sipcore.errors import LocalProtocolError
from sipcore.flow import Flow
from sipcore.message import Request, Response, make_response
from sipcore.transaction.base import MAGIC_COOKIE, TERMINATED, Transaction
from sipcore.transaction.client import ClientInviteTransaction, ClientNonInviteTransaction, ClientTransaction
from sipcore.transaction.events import (
    AckReceived,
    Event,
    Outgoing,
    Overloaded,
    RequestReceived,
    StrayResponse,
    TransactionTerminated,
)
from sipcore.transaction.server import ServerInviteTransaction, ServerNonInviteTransaction, ServerTransaction
from sipcore.transaction.timers import TimerConfig, TimerEntry, TimerQueues

_log = logging.getLogger("sipcore.transaction")

ServerKey = tuple[Any, ...]
ClientKey = tuple[str, str]

_DEFAULT_TIMERS = TimerConfig()


def _sent_by_port(port: int | None, transport: str) -> int:
    # Lenient on purpose: §17.2.3 asks for an equal sent-by; a sent-by without
    # a port means the transport's default port (§18.2.1, §19.1.2), so
    # "host" and "host:5060" are treated as the same sender.
    if port is not None:
        return port
    return 5061 if transport.upper() in ("TLS", "WSS") else 5060


def _server_key(req: Request, method: str) -> ServerKey:
    """§17.2.3 key of the server transaction `req` belongs to (an ACK: the INVITE's)."""
    branch = req.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        port = req.via_port
        if port is None:
            port = _sent_by_port(port, req.via_transport)
        return (branch, req.via_host.lower(), port, "INVITE" if method == "ACK" else method)
    return _key_2543(req, method, req.to_tag)


def _key_2543(req: Request, method: str, to_tag: str | None) -> ServerKey:
    """§17.2.3 matching for requests without a magic-cookie branch (RFC 2543).

    Lenient on purpose: the Request-URI is compared as a string (a client
    retransmits the same bytes), and "top Via header field match" compares
    transport, sent-by and branch, not unknown Via parameters."""
    port = _sent_by_port(req.via_port, req.via_transport)
    via = (req.via_transport.upper(), req.via_host.lower(), port, req.branch)
    return ("2543", req.ruri, to_tag, req.from_tag, req.call_id, req.cseq, method, via)


class TransactionLayer:
    """RFC 3261 §17 (with RFC 6026) for one SIP element, sans-IO.

    `new_branch` is the injected id source (a branch, with or without the
    magic cookie); the layer itself never needs a fresh branch (the ACK of a
    non-2xx reuses the INVITE's, §17.1.1.3), it offers ``make_branch()`` to its
    TU.  `max_transactions` bounds the table: a new request arriving when it
    is full creates no transaction and yields ``Overloaded`` instead."""

    def __init__(
        self,
        timers: TimerConfig = _DEFAULT_TIMERS,
        *,
        new_branch: Callable[[], str],
        max_transactions: int = 100_000,
    ) -> None:
        self.timers = timers
        self._new_branch = new_branch
        self.max_transactions = max_transactions
        self._t1 = timers.t1
        self._t2 = timers.t2
        self._t4 = timers.t4
        self._t64 = 64 * timers.t1
        # §17.1.1.2: Timer D is "at least 32 seconds for unreliable transports".
        self._timer_d = max(32.0, self._t64)
        self._server: dict[ServerKey, ServerTransaction] = {}
        self._client: dict[ClientKey, ClientTransaction] = {}
        # Transactions per flow, for transport_error (dicts: ordered sets).
        self._by_flow: dict[Flow, dict[Transaction, None]] = {}
        self._queues = TimerQueues()
        self._out: list[Outgoing] = []
        self._events: deque[Event] = deque()
        self._now = float("-inf")

    # --- input ---------------------------------------------------------------
    def receive_request(self, req: Request, flow: Flow, now: float) -> None:
        """A request arrived on `flow` (§17.2.3 matching)."""
        if now < self._now:
            now = self._now
        else:
            self._now = now
        method = req.method
        tx: ServerTransaction | None
        if method == "ACK" and not (req.branch or "").startswith(MAGIC_COOKIE):
            key: ServerKey = ()
            tx = self._match_ack_2543(req)
        else:
            key = _server_key(req, method)
            tx = self._server.get(key)
        if tx is not None:
            tx.on_request(self, req, flow, now)
            return
        if method == "ACK":
            # No transaction: the ACK of a 2xx, which is a transaction of its
            # own that the TU (UA core or proxy) handles (§17.1.1.3, §16.6).
            self._events.append(AckReceived(req, flow))
            return
        if len(self._server) + len(self._client) >= self.max_transactions:
            self._events.append(Overloaded(req, flow))
            return
        if method == "INVITE":
            tx = ServerInviteTransaction(key, req, flow)
        else:
            tx = ServerNonInviteTransaction(key, req, flow)
        self._server[key] = tx
        self._add_to_flow(tx)
        self._events.append(RequestReceived(tx, req, flow))

    def has_server_transaction(self, req: Request) -> bool:
        """True when `req` (not an ACK) matches a server transaction (§17.2.3):
        a TU that answers some requests without a transaction (§8.2.7) asks
        first, so that a retransmission still gets the transaction's answer."""
        return _server_key(req, req.method) in self._server

    def _match_ack_2543(self, ack: Request) -> ServerTransaction | None:
        # §17.2.3: the ACK matches if Request-URI, From tag, Call-ID, CSeq
        # number and top Via match the INVITE "and the To tag of the ACK
        # matches the To tag of the response sent by the server transaction".
        # The INVITE had either no To tag (initial) or the ACK's (re-INVITE).
        to_tag = ack.to_tag
        for invite_tag in (to_tag, None) if to_tag is not None else (None,):
            tx = self._server.get(_key_2543(ack, "INVITE", invite_tag))
            if tx is not None:
                sent = tx.last_response
                if sent is not None and sent.to_tag == to_tag:
                    return tx
        return None

    def receive_response(self, resp: Response, flow: Flow, now: float) -> None:
        """A response arrived (§17.1.3 matching; the transport already checked
        that the top Via's sent-by is ours, §18.1.2)."""
        if now < self._now:
            now = self._now
        else:
            self._now = now
        branch = resp.branch
        tx = self._client.get((branch, resp.cseq_method)) if branch is not None else None
        if tx is None:
            self._events.append(StrayResponse(resp, flow))
            return
        tx.on_response(self, resp, now)

    def transport_error(self, flow: Flow, now: float) -> None:
        """The transport could not deliver on `flow` (send failed after the
        §18.2.2 fallbacks, ICMP error, connection closed): every transaction
        using the flow reacts as its figure says (§17.1.4, §17.2.4)."""
        now = max(now, self._now)
        self._now = now
        txs = self._by_flow.get(flow)
        if txs:
            for tx in list(txs):
                tx.on_transport_error(self, now)

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at or before `now`, earliest first."""
        now = max(now, self._now)
        self._now = now
        for tx, letter in self._queues.due(now):
            tx._timer_fired(self, letter, now)

    def next_timer(self) -> float | None:
        """The earliest deadline of a live timer, None when none is armed."""
        return self._queues.next_deadline()

    # --- output ----------------------------------------------------------------
    def messages_to_send(self) -> list[Outgoing]:
        """Drain the queued outgoing messages, in the order they were produced."""
        out = self._out
        self._out = []
        return out

    def next_event(self) -> Event | None:
        """Pop the oldest event, None when there is none."""
        events = self._events
        return events.popleft() if events else None

    # --- TU actions ------------------------------------------------------------
    def respond(self, tx: ServerTransaction, resp: Response, now: float) -> None:
        """Send `resp` through server transaction `tx` (§17.2.1, §17.2.2)."""
        if not tx.is_server:
            raise LocalProtocolError(f"respond() on a client transaction {tx!r}")
        if now < self._now:
            now = self._now
        else:
            self._now = now
        tx.on_response(self, resp, now)

    def respond_wire(self, tx: ServerTransaction, status: int, data: bytes, now: float) -> None:
        """:meth:`respond` with the response already serialized (`status` is
        its status code), for non-INVITE server transactions: the INVITE
        machine keeps its Response to match the ACK (§17.2.3)."""
        if not tx.is_server or tx.is_invite:
            raise LocalProtocolError(f"respond_wire() is for non-INVITE server transactions, not {tx!r}")
        if now < self._now:
            now = self._now
        else:
            self._now = now
        tx.on_wire_response(self, status, data, now)

    def respond_and_forget(self, tx: ServerTransaction, resp: Response, now: float) -> None:
        """Send a final response and drop the transaction at once.

        For answers that change nothing and cost nothing to repeat (a digest
        challenge, OPTIONS, a refusal): a retransmitted request is answered
        afresh instead of from stored state, so a flood of unauthenticated
        requests holds no memory for Timer J's 32 s (Kamailio's sl_send_reply
        makes the same trade)."""
        if tx.is_invite or resp.status < 200:
            raise LocalProtocolError("respond_and_forget() is for final responses to non-INVITE requests")
        self.respond(tx, resp, now)
        if tx.state is not TERMINATED:
            self._terminate(tx)

    def trying(self, tx: ServerTransaction, now: float) -> None:
        """Send 100 Trying on `tx` (§8.2.6.1, §16.2); the TU decides when."""
        self.respond(tx, make_response(tx.request, 100), now)

    def send_request(self, req: Request, flow: Flow, now: float) -> ClientTransaction:
        """Start a client transaction for `req` towards `flow` (§17.1).

        The caller has put its Via with a fresh magic-cookie branch on top; the
        layer adds nothing.  ACK is not a transaction: the ACK of a non-2xx is
        built by the INVITE transaction, the ACK of a 2xx goes out with
        ``send_stateless``."""
        method = req.method
        if method == "ACK":
            raise LocalProtocolError("ACK is not sent through a client transaction; use send_stateless()")
        branch = req.branch
        if branch is None or not branch.startswith(MAGIC_COOKIE):
            raise LocalProtocolError(f"request needs a top Via branch starting with {MAGIC_COOKIE}: {branch!r}")
        if req.cseq_method != method:
            raise LocalProtocolError(f"CSeq method {req.cseq_method!r} differs from the method {method!r}")
        key = (branch, method)
        if key in self._client:
            raise LocalProtocolError(f"branch {branch!r} is already used by a {method} client transaction")
        if now < self._now:
            now = self._now
        else:
            self._now = now
        tx: ClientTransaction
        if method == "INVITE":
            tx = ClientInviteTransaction(key, req, flow)
        else:
            tx = ClientNonInviteTransaction(key, req, flow)
        self._client[key] = tx
        self._add_to_flow(tx)
        tx.start(self, now)
        return tx

    def send_stateless(self, msg: Request | Response, flow: Flow) -> None:
        """Queue `msg` with no transaction (the 2xx ACK, a stateless 400/503)."""
        self._out.append(Outgoing(msg.to_bytes(), flow))

    def send_stateless_bytes(self, data: bytes, flow: Flow) -> None:
        """Queue a message already serialized, with no transaction."""
        self._out.append(Outgoing(data, flow))

    def cancel_target(self, cancel: Request) -> ServerTransaction | None:
        """The server INVITE transaction a CANCEL names (§9.2): matched with the
        §17.2.3 rules as if the CANCEL were the INVITE."""
        if cancel.method != "CANCEL":
            raise LocalProtocolError(f"cancel_target() needs a CANCEL, not {cancel.method}")
        branch = cancel.branch
        if branch is not None and branch.startswith(MAGIC_COOKIE):
            port = _sent_by_port(cancel.via_port, cancel.via_transport)
            key: ServerKey = (branch, cancel.via_host.lower(), port, "INVITE")
        else:
            # §9.2: the To tag of a CANCEL equals the INVITE's (§9.1).
            key = _key_2543(cancel, "INVITE", cancel.to_tag)
        return self._server.get(key)

    def make_branch(self) -> str:
        """A fresh branch from the injected id source, magic cookie ensured
        (§8.1.1.7), for the TU's Via and its 2xx ACKs."""
        b = self._new_branch()
        return b if b.startswith(MAGIC_COOKIE) else MAGIC_COOKIE + b

    def __len__(self) -> int:
        """Live transactions, server and client."""
        return len(self._server) + len(self._client)

    @property
    def server_count(self) -> int:
        return len(self._server)

    @property
    def client_count(self) -> int:
        return len(self._client)

    # --- services for the state machines ----------------------------------------
    def _send(self, data: bytes, flow: Flow) -> None:
        self._out.append(Outgoing(data, flow))

    def _emit(self, event: Event) -> None:
        self._events.append(event)

    def _arm(self, tx: Transaction, letter: str, duration: float, now: float) -> TimerEntry:
        return self._queues.arm(tx, letter, duration, now)

    def _terminate(self, tx: ServerTransaction | ClientTransaction) -> None:
        """Terminated: the transaction leaves every table at once (§17.1.1.2:
        it "MUST be destroyed the instant it enters the Terminated state")."""
        tx._cancel_timers()
        tx._set_state(TERMINATED)
        table: dict[Any, Any] = self._server if tx.is_server else self._client
        if table.get(tx.key) is tx:
            del table[tx.key]
        txs = self._by_flow.get(tx.flow)
        if txs is not None:
            txs.pop(tx, None)
            if not txs:
                del self._by_flow[tx.flow]
        tx._wire = None
        self._events.append(TransactionTerminated(tx))

    def _add_to_flow(self, tx: Transaction) -> None:
        txs = self._by_flow.get(tx.flow)
        if txs is None:
            txs = self._by_flow[tx.flow] = {}
        txs[tx] = None
