"""Load shedding on real sockets: a server that falls behind its UDP input
(here: paused with SIGSTOP while a burst of INVITEs arrives) answers new requests 503
with Retry-After until its queue drains, then serves normally again."""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import ServerProcess

pytestmark = pytest.mark.integration

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n" + (
    "a=x-pad:" + "p" * 700 + "\r\n"  # about 1 KB a datagram, as a real INVITE with SDP
)


BUFFER_KB = 1024
CAPACITY = 2 * BUFFER_KB * 1024  # what the kernel counts the queue against (twice what is asked)


def rx_queue(port: int) -> int:
    """Bytes waiting in the receive queue of the UDP socket bound to 127.0.0.1:`port`."""
    local = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == local:
                return int(fields[4].split(":")[1], 16)
    raise AssertionError(f"no UDP socket on 127.0.0.1:{port}")


def can_grow_buffers() -> bool:
    with open("/proc/sys/net/core/rmem_max") as f:
        return os.geteuid() == 0 or int(f.read()) >= BUFFER_KB * 1024


def invite(local_port: int, branch: str) -> bytes:
    return (
        f"INVITE sip:alice@sipcore.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{local_port};branch={branch}\r\n"
        f"From: <sip:mallory@sipcore.test>;tag={branch[7:]}\r\nTo: <sip:alice@sipcore.test>\r\n"
        f"Call-ID: {branch}@burst\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        f"Contact: <sip:mallory@127.0.0.1:{local_port}>\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: {len(SDP)}\r\n\r\n{SDP}"
    ).encode()


def call_id(msg: bytes) -> bytes:
    return msg.split(b"\r\nCall-ID: ", 1)[1].split(b"\r\n", 1)[0]


def collect(s: socket.socket, quiet: float = 1.0) -> list[bytes]:
    out = []
    s.settimeout(quiet)
    while True:
        try:
            out.append(s.recv(65536))
        except TimeoutError:
            return out


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    if not can_grow_buffers():
        pytest.skip(f"a {BUFFER_KB} KB receive buffer needs root or net.core.rmem_max >= {BUFFER_KB * 1024}")
    srv = ServerProcess(tmp_path, server_toml=f"udp_receive_buffer_kb = {BUFFER_KB}\n")
    srv.start()
    yield srv
    assert srv.proc is not None
    os.kill(srv.proc.pid, signal.SIGCONT)  # never leave it stopped
    srv.stop()


def test_a_burst_the_server_cannot_keep_up_with_gets_503_then_service_resumes(server: ServerProcess) -> None:
    assert server.proc is not None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        s.bind(("127.0.0.1", 0))
        me = s.getsockname()[1]
        time.sleep(0.05)  # the queues are read at most every 10 ms: the burst's first message reads them
        os.kill(server.proc.pid, signal.SIGSTOP)
        try:
            sent = 0
            while rx_queue(server.port) < 0.85 * CAPACITY and sent < 10_000:  # fill it to 85 %, no drop
                s.sendto(invite(me, "z9hG4bK" + uuid.uuid4().hex[:12]), ("127.0.0.1", server.port))
                sent += 1
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        # Final answers, once per call (an INVITE's non-2xx is retransmitted until ACKed).
        finals = {call_id(a): a for a in collect(s) if a.startswith(b"SIP/2.0 ") and not a.startswith(b"SIP/2.0 100")}
        shed = [a for a in finals.values() if a.startswith(b"SIP/2.0 503 Overloaded\r\n")]
        # refused from the third read of the full queue (10 ms apart) until it drained to 12.5 %
        assert len(finals) == sent
        assert len(shed) >= sent // 3, b"".join(a[8:9] for a in finals.values())
        assert all(b"\r\nRetry-After: " in a for a in shed)
        assert all(a.startswith((b"SIP/2.0 503", b"SIP/2.0 407")) for a in finals.values())
        time.sleep(0.05)  # past the check interval: the next message finds the queue empty
        branch = "z9hG4bK" + uuid.uuid4().hex[:12]
        s.sendto(invite(me, branch), ("127.0.0.1", server.port))
        later = [a for a in collect(s, 0.5) if call_id(a) == f"{branch}@burst".encode()]
        assert later and later[-1].startswith(b"SIP/2.0 407"), "drained: a new call is challenged again"
    log = server.log.read_text()
    assert "overloaded: a receive queue is" in log
    assert "overload over after" in log and "new requests refused with 503" in log
