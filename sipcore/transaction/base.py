"""States and the common part of the four transaction state machines (RFC 3261 §17).

Each machine (client/server x INVITE/non-INVITE, in ``client.py`` and
``server.py``) declares its initial state and a table of legal transitions;
``Transaction._set_state`` is the only writer of ``state`` after construction
and raises :class:`LocalProtocolError` on a move the table does not allow, so
a bug in a handler fails loudly instead of leaving a transaction in a state
the RFC figures do not have.

A transaction never reads the clock and never calls up: the layer passes
itself and `now` into every handler, and the handler answers by calling the
layer's ``_send`` / ``_emit`` / ``_arm`` / ``_terminate``.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, ClassVar

from sipcore.errors import LocalProtocolError
from sipcore.flow import Flow
from sipcore.message import Request, Response
from sipcore.transaction.events import TransactionTimedOut

if TYPE_CHECKING:
    from sipcore.transaction.layer import TransactionLayer
    from sipcore.transaction.timers import TimerEntry

MAGIC_COOKIE = "z9hG4bK"
"""RFC 3261 §8.1.1.7: branches of RFC 3261 elements begin with it."""


class State(enum.Enum):
    """Transaction states, named as in RFC 3261 Figures 5-8 and RFC 6026 Figures 5 and 7."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


# Module-level aliases: the handlers compare states on every message.
CALLING = State.CALLING
TRYING = State.TRYING
PROCEEDING = State.PROCEEDING
COMPLETED = State.COMPLETED
CONFIRMED = State.CONFIRMED
ACCEPTED = State.ACCEPTED
TERMINATED = State.TERMINATED

Transitions = dict[State, frozenset[State]]

# Retransmission timers live in ``Transaction._rtx``; every other timer in ``_life``.
RETRANSMIT_TIMERS = frozenset({"A", "E", "G"})


class Transaction:
    """Common slots of every transaction.

    ``key`` is the table key (§17.1.3 for clients, §17.2.3 for servers),
    ``request`` the request that created the transaction, ``flow`` where it
    came from (server) or went to (client), ``last_response`` the latest
    response sent (server) or received (client)."""

    __slots__ = (
        "key",
        "state",
        "request",
        "flow",
        "method",
        "last_response",
        "_wire",
        "_life",
        "_rtx",
        "_rtx_interval",
    )

    is_invite: ClassVar[bool]
    is_server: ClassVar[bool]
    INITIAL: ClassVar[State]
    TRANSITIONS: ClassVar[Transitions]

    def __init__(self, key: tuple[Any, ...], request: Request, flow: Flow) -> None:
        self.key = key
        self.state = self.INITIAL
        self.request = request
        self.flow = flow
        self.method = request.method
        self.last_response: Response | None = None
        # Bytes this transaction retransmits: the request (client) or the last
        # response (server).
        self._wire: bytes | None = None
        self._life: TimerEntry | None = None
        self._rtx: TimerEntry | None = None
        self._rtx_interval = 0.0

    def _set_state(self, new: State) -> None:
        if new not in self.TRANSITIONS[self.state]:
            raise LocalProtocolError(
                f"{type(self).__name__} {self.method}: illegal transition {self.state.value} -> {new.value}"
            )
        self.state = new

    def _cancel_timers(self) -> None:
        e = self._life
        if e is not None:
            e.tx = None
            self._life = None
        e = self._rtx
        if e is not None:
            e.tx = None
            self._rtx = None

    def _cancel_retransmit(self) -> None:
        e = self._rtx
        if e is not None:
            e.tx = None
            self._rtx = None

    def _timer_fired(self, layer: TransactionLayer, letter: str, now: float) -> None:
        """Forget the fired entry, then run the machine's handler for it."""
        if letter in RETRANSMIT_TIMERS:
            self._rtx = None
        else:
            self._life = None
        self.on_timer(layer, letter, now)

    def _resend(self, layer: TransactionLayer, letter: str, interval: float, now: float) -> None:
        """A retransmission timer (A, E, G) fired: send the stored bytes again
        and re-arm it `interval` later (each machine computes its doubling)."""
        if self._wire is not None:
            layer._send(self._wire, self.flow)
        self._rtx_interval = interval
        self._rtx = layer._arm(self, letter, interval, now)

    def _time_out(self, layer: TransactionLayer) -> None:
        """Timer B, F or H: Terminated, and the TU is told (§17.1.1.2, §17.1.2.2, §17.2.1)."""
        layer._emit(TransactionTimedOut(self))  # type: ignore[arg-type]  # only concrete machines arm B/F/H
        layer._terminate(self)  # type: ignore[arg-type]

    # --- per-machine handlers ---------------------------------------------
    def on_timer(self, layer: TransactionLayer, letter: str, now: float) -> None:
        raise NotImplementedError

    def on_transport_error(self, layer: TransactionLayer, now: float) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        side = "server" if self.is_server else "client"
        return f"<{side} {self.method} tx {self.state.value} {self.key!r}>"


def check_table(cls: type[Transaction]) -> None:
    """Sanity check of a machine's transition table at import time: every state
    it can reach has a row, and Terminated is final."""
    reachable = {cls.INITIAL} | {s for targets in cls.TRANSITIONS.values() for s in targets}
    missing = reachable - set(cls.TRANSITIONS)
    if missing or cls.TRANSITIONS.get(TERMINATED):
        raise LocalProtocolError(f"{cls.__name__}: bad transition table (missing rows {missing})")
