"""Client transactions: RFC 3261 §17.1 with the RFC 6026 Accepted state.

Theory of operation
-------------------
The TU builds a request with its own Via (branch included) on top and calls
``TransactionLayer.send_request``; the client transaction sends it, keeps
resending it on unreliable transports, matches the responses (§17.1.3: top
Via branch + CSeq method) and hands them up in ``ResponseReceived`` events.

INVITE (RFC 3261 §17.1.1 Figure 5, as replaced by RFC 6026 §7.2 Figure 5)::

    Calling    --Timer A-----> Calling    (resend; A doubles, UDP only)
    Calling    --Timer B-----> Terminated (TU told: TransactionTimedOut)
    Calling    --1xx---------> Proceeding (A and B stop)
    Calling/Proceeding --2xx----> Accepted  (Timer M = 64*T1)
    Calling/Proceeding --300-699-> Completed (ACK sent; Timer D = 32 s UDP, 0 reliable)
    Completed  --300-699-----> Completed  (ACK resent, response absorbed)
    Completed  --Timer D-----> Terminated
    Accepted   --2xx---------> Accepted   (passed up: the TU ACKs every 2xx)
    Accepted   --Timer M-----> Terminated

The ACK of a non-2xx final response is built here (§17.1.1.3); the ACK of a
2xx is the TU's own request (§13.2.2.4), sent with ``send_stateless``.

Non-INVITE (RFC 3261 §17.1.2 Figure 6)::

    Trying     --Timer E-----> Trying     (resend; E = MIN(2*E, T2), UDP only)
    Trying     --1xx---------> Proceeding (E keeps running, now at T2)
    Trying/Proceeding --Timer F--> Terminated (TU told: TransactionTimedOut)
    Trying/Proceeding --200-699--> Completed (Timer K = T4 UDP, 0 reliable)
    Completed  --Timer K-----> Terminated

Timer D is "at least 32 seconds" (§17.1.1.2); it is max(32 s, 64*T1) so that
a raised T1 still covers the server's response retransmissions (Timer H).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from sipcore.flow import Flow
from sipcore.message import Request, Response
from sipcore.message.grammar import split_commas
from sipcore.transaction.base import (
    ACCEPTED,
    CALLING,
    COMPLETED,
    PROCEEDING,
    TERMINATED,
    TRYING,
    Transaction,
    Transitions,
    check_table,
)
from sipcore.transaction.events import ResponseReceived, TransportFailed

if TYPE_CHECKING:
    from sipcore.transaction.layer import TransactionLayer


def build_ack(invite: Request, response: Response) -> Request:
    """The ACK of a non-2xx final response, per RFC 3261 §17.1.1.3.

    Request-URI, Call-ID, From and the CSeq number come from the INVITE, To
    from the response (it carries the tag), the single Via is the INVITE's top
    Via (so the ACK matches the server transaction, §17.2.3), and the INVITE's
    Route header fields are kept so the ACK follows the INVITE's path.
    Max-Forwards is copied for the same reason (70 if the INVITE had none)."""
    hs = invite.headers
    vias = hs.get_all("Via")
    headers: list[tuple[str, str]] = [("Via", split_commas(vias[0])[0] if vias else "")]
    mf = invite.max_forwards
    headers.append(("Max-Forwards", str(70 if mf is None else mf)))
    headers.extend((("From", hs.get("From") or ""), ("To", response.headers.get("To") or "")))
    headers.extend((("Call-ID", hs.get("Call-ID") or ""), ("CSeq", f"{invite.cseq} ACK")))
    headers.extend(("Route", r) for r in hs.get_all("Route"))
    return Request("ACK", invite.ruri, headers)


class ClientTransaction(Transaction):
    """A client transaction, created by ``TransactionLayer.send_request``."""

    __slots__ = ()
    is_server = False

    def start(self, layer: TransactionLayer, now: float) -> None:
        """Send the request for the first time and arm the first timers."""
        raise NotImplementedError

    def on_response(self, layer: TransactionLayer, resp: Response, now: float) -> None:
        """A response matched this transaction (§17.1.3)."""
        raise NotImplementedError

    def _send_request(self, layer: TransactionLayer) -> None:
        data = self.request.to_bytes()
        self._wire = data
        layer._send(data, self.flow)


class ClientInviteTransaction(ClientTransaction):
    """RFC 3261 §17.1.1 / RFC 6026 §7.2 (Figure 5)."""

    __slots__ = ("ack",)
    is_invite = True
    INITIAL = CALLING
    TRANSITIONS: ClassVar[Transitions] = {
        CALLING: frozenset({PROCEEDING, COMPLETED, ACCEPTED, TERMINATED}),
        # Proceeding -> Terminated only on a transport error (§17.1.4, see below).
        PROCEEDING: frozenset({COMPLETED, ACCEPTED, TERMINATED}),
        COMPLETED: frozenset({TERMINATED}),
        ACCEPTED: frozenset({TERMINATED}),
        TERMINATED: frozenset(),
    }

    def __init__(self, key: tuple[str, str], request: Request, flow: Flow) -> None:
        super().__init__(key, request, flow)
        self.ack: bytes | None = None
        """The serialized ACK of the non-2xx final response, once sent."""

    def start(self, layer: TransactionLayer, now: float) -> None:
        self._send_request(layer)
        if not self.flow.reliable:
            self._rtx_interval = layer._t1
            self._rtx = layer._arm(self, "A", layer._t1, now)
        self._life = layer._arm(self, "B", layer._t64, now)

    def on_response(self, layer: TransactionLayer, resp: Response, now: float) -> None:
        state = self.state
        status = resp.status
        if state is CALLING or state is PROCEEDING:
            if status < 200:
                if state is CALLING:
                    # §17.1.1.2: no more retransmissions in Proceeding, and
                    # Timer B only guards Calling (a proxy uses Timer C).
                    self._cancel_timers()
                    self._set_state(PROCEEDING)
                self.last_response = resp
                layer._emit(ResponseReceived(self, resp))
                return
            self._cancel_timers()
            self.last_response = resp
            if status < 300:
                self._set_state(ACCEPTED)
                layer._emit(ResponseReceived(self, resp))
                self._life = layer._arm(self, "M", layer._t64, now)
                return
            self._set_state(COMPLETED)
            layer._emit(ResponseReceived(self, resp))
            ack = self.ack = build_ack(self.request, resp).to_bytes()
            layer._send(ack, self.flow)  # §17.1.1.3: same address, port and transport
            if self.flow.reliable:
                layer._terminate(self)  # Timer D = 0 for reliable transports
            else:
                self._life = layer._arm(self, "D", layer._timer_d, now)
        elif state is COMPLETED:
            if status >= 300:
                # §17.1.1.2: a retransmitted final response re-triggers the ACK
                # and is not passed up.
                if self.ack is not None:
                    layer._send(self.ack, self.flow)
            elif status >= 200:
                # Lenient on purpose: §16.7 step 5 has a proxy forward "any 2xx
                # response to an INVITE request" even after a final response,
                # so a 2xx from another fork can follow a 6xx.  The TU must see
                # it to ACK it (and BYE), so it is passed up, not dropped.
                layer._emit(ResponseReceived(self, resp))
        elif state is ACCEPTED and 200 <= status < 300:
            # RFC 6026 §7.2: "A 2xx response received while in the Accepted
            # state MUST be passed to the TU"; the TU generates the ACK.
            layer._emit(ResponseReceived(self, resp))

    def on_timer(self, layer: TransactionLayer, letter: str, now: float) -> None:
        if letter == "A":
            # §17.1.1.2: resend with doubling intervals while in Calling.
            self._resend(layer, "A", 2 * self._rtx_interval, now)
        elif letter == "B":
            self._time_out(layer)
        else:  # D (Completed) or M (Accepted)
            layer._terminate(self)

    def on_transport_error(self, layer: TransactionLayer, now: float) -> None:
        # Figure 5 has "Transport Err. / Inform TU" on Calling and Completed.
        # Lenient on purpose for Proceeding: §17.1.4 says generally that on a
        # fatal transport error "the client transaction SHOULD inform the TU
        # ... and SHOULD transition directly to the Terminated state"; a closed
        # connection means the final response cannot arrive there.  Accepted
        # is left to Timer M: the 2xx retransmissions may still come.
        if self.state is not ACCEPTED:
            layer._emit(TransportFailed(self))
            layer._terminate(self)


class ClientNonInviteTransaction(ClientTransaction):
    """RFC 3261 §17.1.2 (Figure 6)."""

    __slots__ = ()
    is_invite = False
    INITIAL = TRYING
    TRANSITIONS: ClassVar[Transitions] = {
        TRYING: frozenset({PROCEEDING, COMPLETED, TERMINATED}),
        PROCEEDING: frozenset({COMPLETED, TERMINATED}),
        COMPLETED: frozenset({TERMINATED}),
        TERMINATED: frozenset(),
    }

    def start(self, layer: TransactionLayer, now: float) -> None:
        self._send_request(layer)
        if not self.flow.reliable:
            self._rtx_interval = layer._t1
            self._rtx = layer._arm(self, "E", layer._t1, now)
        self._life = layer._arm(self, "F", layer._t64, now)

    def on_response(self, layer: TransactionLayer, resp: Response, now: float) -> None:
        state = self.state
        if state is not TRYING and state is not PROCEEDING:
            return  # §17.1.2.2: Completed buffers (absorbs) retransmitted responses
        self.last_response = resp
        if resp.status < 200:
            if state is TRYING:
                self._set_state(PROCEEDING)  # Timer E keeps running (at T2 from now on)
            layer._emit(ResponseReceived(self, resp))
            return
        self._cancel_timers()
        self._set_state(COMPLETED)
        layer._emit(ResponseReceived(self, resp))
        if self.flow.reliable:
            layer._terminate(self)  # Timer K = 0 for reliable transports
        else:
            self._life = layer._arm(self, "K", layer._t4, now)

    def on_timer(self, layer: TransactionLayer, letter: str, now: float) -> None:
        if letter == "E":
            # §17.1.2.2: MIN(2*E, T2) in Trying; T2 once in Proceeding.
            interval = min(2 * self._rtx_interval, layer._t2) if self.state is TRYING else layer._t2
            self._resend(layer, "E", interval, now)
        elif letter == "F":
            self._time_out(layer)
        else:  # K
            layer._terminate(self)

    def on_transport_error(self, layer: TransactionLayer, now: float) -> None:
        # Figure 6: Trying and Proceeding; Completed has nothing left to send.
        if self.state is TRYING or self.state is PROCEEDING:
            layer._emit(TransportFailed(self))
            layer._terminate(self)


check_table(ClientInviteTransaction)
check_table(ClientNonInviteTransaction)
