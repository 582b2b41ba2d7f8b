"""Server transactions: RFC 3261 §17.2 with the RFC 6026 Accepted state.

Theory of operation
-------------------
A server transaction is created by the layer when a request matches none
(§17.2.3) and is handed to the TU in a ``RequestReceived`` event.  From then
on the transaction, not the TU, deals with the network: retransmitted
requests are answered with the stored last response, the ACK of a non-2xx
final response is absorbed, and unreliable transports get the final response
retransmitted.  The TU only calls ``respond()``.

INVITE (RFC 3261 §17.2.1 Figure 7, as replaced by RFC 6026 §7.1 Figure 7)::

    Proceeding --1xx from TU--> Proceeding
    Proceeding --2xx from TU--> Accepted   (Timer L = 64*T1)
    Proceeding --300-699-----> Completed  (Timer G = T1 doubling to T2, UDP only;
                                           Timer H = 64*T1)
    Completed  --ACK---------> Confirmed  (Timer I = T4 UDP, 0 reliable)
    Completed  --Timer H-----> Terminated (TU told: TransactionTimedOut)
    Confirmed  --Timer I-----> Terminated
    Accepted   --Timer L-----> Terminated

In Accepted, INVITE retransmissions are absorbed (the TU retransmits its 2xx,
§13.3.1.4), 2xx retransmissions from the TU are sent, and a matching ACK goes
to the TU.  RFC 6026 Figure 7 draws "Transport Err. / Inform TU" as a loop on
Proceeding, Completed and Accepted, so a transport error is reported and the
transaction lives on until its timers end it.

Non-INVITE (RFC 3261 §17.2.2 Figure 8)::

    Trying     --1xx from TU------> Proceeding
    Trying/Proceeding --200-699---> Completed (Timer J = 64*T1 UDP, 0 reliable)
    Completed  --Timer J----------> Terminated
    Proceeding/Completed --transport error--> Terminated (TU told)

Retransmitted requests are discarded in Trying and answered with the last
response in Proceeding and Completed.

The layer never sends 100 Trying on its own (the TU decides, e.g. with
``TransactionLayer.trying``); responses go back on the flow the request came
in on (RFC 3581 / RFC 5626 symmetric response routing, see ``sipcore.flow``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, ClassVar

from sipcore.flow import Flow
from sipcore.message import Request, Response
from sipcore.transaction.base import (
    ACCEPTED,
    COMPLETED,
    CONFIRMED,
    PROCEEDING,
    TERMINATED,
    TRYING,
    Transaction,
    Transitions,
    check_table,
)
from sipcore.transaction.events import AckReceived, TransportFailed

if TYPE_CHECKING:
    from sipcore.transaction.layer import TransactionLayer

_log = logging.getLogger("sipcore.transaction")


class ServerTransaction(Transaction):
    """A server transaction; the TU answers it with ``TransactionLayer.respond``."""

    __slots__ = ()
    is_server = True

    def on_request(self, layer: TransactionLayer, req: Request, flow: Flow, now: float) -> None:
        """A request matched this transaction (a retransmission, or the ACK of an INVITE)."""
        raise NotImplementedError

    def on_response(self, layer: TransactionLayer, resp: Response, now: float) -> None:
        """The TU passed a response down."""
        raise NotImplementedError

    def on_wire_response(self, layer: TransactionLayer, status: int, data: bytes, now: float) -> None:
        """The TU passed a response down already serialized (non-INVITE only)."""
        raise NotImplementedError

    def _send_response(self, layer: TransactionLayer, resp: Response) -> None:
        data = resp.to_bytes()
        self._wire = data
        self.last_response = resp
        layer._send(data, self.flow)

    def _discard(self, status: int) -> None:
        # §17.2.1/§17.2.2: "Any other final responses passed by the TU to the
        # server transaction MUST be discarded while in the Completed state."
        # The same holds for anything sent after the final response.
        _log.debug("%r: discarding %d from the TU", self, status)


class ServerInviteTransaction(ServerTransaction):
    """RFC 3261 §17.2.1 / RFC 6026 §7.1 (Figure 7)."""

    __slots__ = ()
    is_invite = True
    INITIAL = PROCEEDING
    TRANSITIONS: ClassVar[Transitions] = {
        PROCEEDING: frozenset({COMPLETED, ACCEPTED}),
        COMPLETED: frozenset({CONFIRMED, TERMINATED}),
        CONFIRMED: frozenset({TERMINATED}),
        ACCEPTED: frozenset({TERMINATED}),
        TERMINATED: frozenset(),
    }

    def on_request(self, layer: TransactionLayer, req: Request, flow: Flow, now: float) -> None:
        state = self.state
        if req.method == "ACK":
            if state is COMPLETED:
                # §17.2.1: ACK -> Confirmed; G stops, H is moot, I absorbs further ACKs.
                self._cancel_timers()
                self._set_state(CONFIRMED)
                if self.flow.reliable:
                    layer._terminate(self)  # Timer I = 0 for reliable transports
                else:
                    self._life = layer._arm(self, "I", layer._t4, now)
            elif state is ACCEPTED:
                # RFC 6026 §7.1: "ACK / to TU" in Accepted: it is the 2xx ACK
                # (a UAC that reused the INVITE's branch, or RFC 2543 matching).
                layer._emit(AckReceived(req, flow))
            # Confirmed absorbs retransmitted ACKs; an ACK before any final
            # response (Proceeding) acknowledges nothing and is dropped.
            return
        if state is PROCEEDING or state is COMPLETED:
            # §17.2.1: a retransmitted INVITE gets the most recent provisional
            # (Proceeding) or the final response (Completed) again.
            if self._wire is not None:
                layer._send(self._wire, self.flow)
        # Accepted/Confirmed: absorbed.  RFC 6026 §7.1: retransmissions of the
        # INVITE in Accepted "MUST NOT be passed to the TU"; the TU alone
        # retransmits the 2xx.

    def on_response(self, layer: TransactionLayer, resp: Response, now: float) -> None:
        state = self.state
        status = resp.status
        if state is PROCEEDING:
            self._send_response(layer, resp)
            if status < 200:
                return
            if status < 300:
                self._set_state(ACCEPTED)
                self._life = layer._arm(self, "L", layer._t64, now)
                return
            self._set_state(COMPLETED)
            if not self.flow.reliable:
                self._rtx_interval = layer._t1
                self._rtx = layer._arm(self, "G", layer._t1, now)
            self._life = layer._arm(self, "H", layer._t64, now)
        elif state is ACCEPTED and 200 <= status < 300:
            # RFC 6026 §7.1: 2xx retransmissions (and 2xx from other forks, for
            # a proxy) passed down in Accepted go to the transport.
            self._send_response(layer, resp)
        else:
            self._discard(resp.status)

    def on_timer(self, layer: TransactionLayer, letter: str, now: float) -> None:
        if letter == "G":
            # §17.2.1: resend, then wait MIN(2*G, T2).
            self._resend(layer, "G", min(2 * self._rtx_interval, layer._t2), now)
        elif letter == "H":
            self._time_out(layer)  # §17.2.1: the ACK never came
        else:  # I (Confirmed) or L (Accepted)
            layer._terminate(self)

    def on_transport_error(self, layer: TransactionLayer, now: float) -> None:
        # RFC 6026 Figure 7: "Transport Err. / Inform TU" loops on Proceeding,
        # Completed and Accepted; Timers H and L still bound the lifetime.
        if self.state is not CONFIRMED:
            layer._emit(TransportFailed(self))


class ServerNonInviteTransaction(ServerTransaction):
    """RFC 3261 §17.2.2 (Figure 8)."""

    __slots__ = ()
    is_invite = False
    INITIAL = TRYING
    TRANSITIONS: ClassVar[Transitions] = {
        TRYING: frozenset({PROCEEDING, COMPLETED}),
        PROCEEDING: frozenset({COMPLETED, TERMINATED}),
        COMPLETED: frozenset({TERMINATED}),
        TERMINATED: frozenset(),
    }

    def on_request(self, layer: TransactionLayer, req: Request, flow: Flow, now: float) -> None:
        # §17.2.2: in Trying "any further request retransmissions are
        # discarded"; in Proceeding and Completed the last response is resent.
        if self.state is not TRYING and self._wire is not None:
            layer._send(self._wire, self.flow)

    def on_response(self, layer: TransactionLayer, resp: Response, now: float) -> None:
        if self.state is not TRYING and self.state is not PROCEEDING:
            self._discard(resp.status)
            return
        self.on_wire_response(layer, resp.status, resp.to_bytes(), now)
        if resp.status < 200:
            self.last_response = resp

    def on_wire_response(self, layer: TransactionLayer, status: int, data: bytes, now: float) -> None:
        """:meth:`on_response` with the response already serialized (a TU that
        builds its answers as bytes: no Response object to keep or drop)."""
        state = self.state
        if state is not TRYING and state is not PROCEEDING:
            self._discard(status)
            return
        self._wire = data
        self.last_response = None
        layer._send(data, self.flow)
        if status < 200:
            if state is TRYING:
                self._set_state(PROCEEDING)
            return
        self._set_state(COMPLETED)
        if self.flow.reliable:
            layer._terminate(self)  # Timer J = 0 for reliable transports
        else:
            # For the 64*T1 of Timer J only the response bytes are needed (to
            # answer retransmissions): releasing the parsed request and
            # response cuts a completed transaction from ~6.5 KB to ~1 KB,
            # which is what lets a registrar hold 32 s of traffic in memory.
            self.request = self.request.without_parsed_state()
            self._life = layer._arm(self, "J", layer._t64, now)

    def on_timer(self, layer: TransactionLayer, letter: str, now: float) -> None:
        layer._terminate(self)  # J is the only timer of this machine

    def on_transport_error(self, layer: TransactionLayer, now: float) -> None:
        # Figure 8: only Proceeding and Completed have sent something.
        if self.state is PROCEEDING or self.state is COMPLETED:
            layer._emit(TransportFailed(self))
            layer._terminate(self)


check_table(ServerInviteTransaction)
check_table(ServerNonInviteTransaction)
