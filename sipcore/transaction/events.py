"""What the transaction layer hands up to its TU, and what it puts on the wire.

Events are past-tense frozen dataclasses (ARCHITECTURE.md); the TU pops them
with ``TransactionLayer.next_event()``.  Outgoing messages are already
serialized: the edge writes ``data`` to ``flow`` and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from sipcore.flow import Flow

if TYPE_CHECKING:
    from sipcore.message import Request, Response
    from sipcore.transaction.client import ClientTransaction
    from sipcore.transaction.server import ServerTransaction


class Outgoing(NamedTuple):
    """Bytes to write on a flow (a tuple: one is made per sent message)."""

    data: bytes
    flow: Flow


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of every transaction-layer event."""


@dataclass(frozen=True, slots=True)
class RequestReceived(Event):
    """A new request created server transaction `tx` (§17.2); the TU must answer
    it through ``respond(tx, ...)``.  Retransmissions never produce this."""

    tx: ServerTransaction
    request: Request
    flow: Flow


@dataclass(frozen=True, slots=True)
class AckReceived(Event):
    """An ACK that is not part of a non-2xx INVITE transaction: the end-to-end
    ACK of a 2xx (§13.2.2.4, §17.1.1.3), or an ACK matched by a server INVITE
    transaction in the Accepted state, which RFC 6026 §7.1 passes to the TU."""

    request: Request
    flow: Flow


@dataclass(frozen=True, slots=True)
class ResponseReceived(Event):
    """A response for client transaction `tx`: provisional and final ones, and
    2xx retransmissions in the Accepted state (RFC 6026 §7.2), which a proxy
    must forward.  Retransmitted non-2xx finals are absorbed (§17.1.1.2)."""

    tx: ClientTransaction
    response: Response


@dataclass(frozen=True, slots=True)
class StrayResponse(Event):
    """A response that matches no client transaction (§17.1.3).  RFC 6026 §8.4:
    a proxy forwards only stray 2xx responses to INVITE, and only statelessly."""

    response: Response
    flow: Flow


@dataclass(frozen=True, slots=True)
class TransactionTimedOut(Event):
    """Timer B or F fired (the TU synthesizes a 408, §16.7 / §8.1.3.1), or
    Timer H fired on a server INVITE transaction (the ACK never came, §17.2.1)."""

    tx: ServerTransaction | ClientTransaction


@dataclass(frozen=True, slots=True)
class TransportFailed(Event):
    """The transport could not deliver a message of `tx` (§17.1.4, §17.2.4)."""

    tx: ServerTransaction | ClientTransaction


@dataclass(frozen=True, slots=True)
class TransactionTerminated(Event):
    """`tx` reached the Terminated state and left the table; drop references."""

    tx: ServerTransaction | ClientTransaction


@dataclass(frozen=True, slots=True)
class Overloaded(Event):
    """A new request arrived while the table was full (``max_transactions``); no
    transaction was created.  The server answers 503 statelessly (§21.5.4)."""

    request: Request
    flow: Flow
