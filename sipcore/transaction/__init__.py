"""SANS-IO SIP transactions: RFC 3261 §17 with RFC 6026 (see ``layer.py``)."""

from __future__ import annotations

from sipcore.transaction.base import MAGIC_COOKIE, State, Transaction
from sipcore.transaction.client import (
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    ClientTransaction,
    build_ack,
)
from sipcore.transaction.events import (
    AckReceived,
    Event,
    Outgoing,
    Overloaded,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
)
from sipcore.transaction.layer import TransactionLayer
from sipcore.transaction.server import ServerInviteTransaction, ServerNonInviteTransaction, ServerTransaction
from sipcore.transaction.timers import TimerConfig

__all__ = [
    "MAGIC_COOKIE",
    "AckReceived",
    "ClientInviteTransaction",
    "ClientNonInviteTransaction",
    "ClientTransaction",
    "Event",
    "Outgoing",
    "Overloaded",
    "RequestReceived",
    "ResponseReceived",
    "ServerInviteTransaction",
    "ServerNonInviteTransaction",
    "ServerTransaction",
    "State",
    "StrayResponse",
    "TimerConfig",
    "Transaction",
    "TransactionLayer",
    "TransactionTerminated",
    "TransactionTimedOut",
    "TransportFailed",
    "build_ack",
]
