"""Dead-call detection: in-dialog OPTIONS to both sides of a quiet call (sans-IO).

Theory of operation
-------------------
A phone that crashes (or loses its network) mid-call sends no BYE; without a
session timer (RFC 4028) the call would stay up, and be billed, until
``[proxy] max_call_duration_s``.  So when a confirmed dialog has carried no
in-dialog request or response for ``[proxy] dialog_probe_s``, the proxy sends
an OPTIONS inside the dialog to each side (built like the proxy's own BYE:
the side's remote target and flow, From/To/Call-ID of the dialog, our Via),
as a client transaction.  Its CSeq is the last one the other side used, not
the next: the phone compares the other side's next real request against the
highest CSeq it has seen and MUST refuse a lower one with 500 (RFC 3261
§12.2.2), so a probe that consumed a number would make the caller's BYE
look out of order.  An equal number is allowed.

RFC 5057 §5.1 tells what the answer means: a 481 says the dialog is gone at
that side; any other final response (200, but also 405, 501, 403 ...) says the
usage is still alive.  A 408, a transaction timeout (Timer F, 64*T1) or a
transport failure say the side is unreachable, which for billing is the
same.  A dead side ends the call: BYE to both sides and the legs closed at
the moment the dead side was last heard from (its last in-dialog request or
response, its last probe answer, or the answer of the call), not when the
probe failed, so the probe interval is not billed.

The deadline lives in the dialog heap of ``dialogs.py`` (``Dialog.quiet_since``
+ ``probe_s``); traffic moves ``quiet_since`` without touching the heap.  At
most one probe per side is in flight: a side whose previous probe has not
finished (``probe_s`` shorter than Timer F) is skipped until it does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sipcore.errors import SipcoreError
from sipcore.flow import Flow
from sipcore.message import Request, Response
from sipcore.metering.legs import END_TIMEOUT
from sipcore.proxy.dialogs import Dialog, DialogKey, DialogTable
from sipcore.transaction import ClientTransaction, TransactionLayer

log = logging.getLogger("sipcore.proxy")

# RFC 5057 §5.1: "481 Call/Transaction Does Not Exist" terminates the dialog;
# 408 and a timeout mean the side cannot be reached: dead for billing too.
_DEAD = frozenset({481, 408})


def in_dialog_request(
    d: Dialog,
    to_callee: bool,
    method: str,
    via: str,
    extra: tuple[tuple[str, str], ...] = (),
    *,
    next_cseq: bool = True,
) -> tuple[Request, Flow]:
    """A request the proxy itself sends inside `d` to one side, as if from the
    other side (its From/To, and its next CSeq, which is consumed, or with
    `next_cseq` False its last one again: 1 for a side that has sent none,
    below any first CSeq a phone picks); and the flow it goes over."""
    if to_callee:
        d.caller_cseq += 1 if next_cseq or not d.caller_cseq else 0
        ruri, frm, to, cseq, flow = d.callee_target, d.caller_from, d.caller_to, d.caller_cseq, d.callee_flow
    else:
        d.callee_cseq += 1 if next_cseq or not d.callee_cseq else 0
        ruri, frm, to, cseq, flow = d.caller_target, d.caller_to, d.caller_from, d.callee_cseq, d.caller_flow
    headers = [
        ("Via", via),
        ("Max-Forwards", "70"),
        ("From", frm),
        ("To", to),
        ("Call-ID", d.call_id),
        ("CSeq", f"{cseq} {method}"),
        *extra,
        ("Content-Length", "0"),
    ]
    return Request(method, ruri, headers), flow


class DialogProbes:
    """The in-dialog OPTIONS in flight, at most one per side of a dialog.

    `via(flow)` makes our Via with a fresh branch; `bye(dialog, now)` sends
    the proxy's BYE to both sides."""

    def __init__(
        self,
        layer: TransactionLayer,
        dialogs: DialogTable,
        via: Callable[[Flow], str],
        bye: Callable[[Dialog, float], None],
    ) -> None:
        self.layer = layer
        self.dialogs = dialogs
        self._via = via
        self._bye = bye
        self._by_tx: dict[ClientTransaction, tuple[Dialog, bool]] = {}  # probe -> (dialog, to the callee)
        self._out: set[tuple[DialogKey, bool]] = set()

    def __len__(self) -> int:
        return len(self._by_tx)

    def probe(self, d: Dialog, now: float) -> None:
        """The dialog was quiet for a probe interval: OPTIONS to each side."""
        for to_callee in (True, False):
            side = (d.key, to_callee)
            if side in self._out:
                continue  # the previous probe of this side is still out
            flow = d.callee_flow if to_callee else d.caller_flow
            req, flow = in_dialog_request(d, to_callee, "OPTIONS", self._via(flow), next_cseq=False)
            try:
                tx = self.layer.send_request(req, flow, now)
            except SipcoreError as e:
                log.warning("cannot probe call %s: %s", d.call_id, e)
                continue
            self._by_tx[tx] = (d, to_callee)
            self._out.add(side)

    def on_response(self, tx: ClientTransaction, resp: Response, now: float, now_ms: int) -> bool:
        """True when `tx` is a probe (a provisional answer is waited past)."""
        entry = self._by_tx.get(tx)
        if entry is None:
            return False
        if resp.status < 200:
            return True
        self._finished(tx)
        d, to_callee = entry
        if resp.status in _DEAD:
            self._dead(d, to_callee, str(resp.status), now)
        elif not d.ended:
            d.heard(not to_callee, now, now_ms)
        return True

    def on_failure(self, tx: ClientTransaction, why: str, now: float) -> bool:
        """Timer F or a transport failure; True when `tx` is a probe."""
        entry = self._by_tx.get(tx)
        if entry is None:
            return False
        self._finished(tx)
        self._dead(entry[0], entry[1], why, now)
        return True

    def forget(self, tx: ClientTransaction) -> None:
        """The transaction left the layer (normally after its final answer)."""
        if tx in self._by_tx:
            self._finished(tx)

    def _finished(self, tx: ClientTransaction) -> None:
        d, to_callee = self._by_tx.pop(tx)
        self._out.discard((d.key, to_callee))

    def _dead(self, d: Dialog, to_callee: bool, why: str, now: float) -> None:
        if d.ended:
            return
        side = "callee" if to_callee else "caller"
        log.info("call %s ended: %s did not answer an in-dialog OPTIONS (%s)", d.call_id, side, why)
        # BYE to both sides, not only to the live one: a side that answered 481
        # answers the BYE 481 too (one transaction, harmless), and a side that
        # timed out may still hear us when only its answers are lost (a NAT
        # binding gone one way): then it stops its media and frees the call.
        self._bye(d, now)
        self.dialogs.end(d, d.callee_alive_ms if to_callee else d.caller_alive_ms, END_TIMEOUT)
