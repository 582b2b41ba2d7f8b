"""Phones register over real sockets: SIPp with digest, restarts, kill -9, metering."""

from __future__ import annotations

import json
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from .harness import ServerProcess, free_port, register_from, sip_options, write_users

pytestmark = pytest.mark.integration


def month_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


def wait_for(pred, timeout: float = 5.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def provision(server: ServerProcess, n: int, prefix: str = "u") -> Path:
    devices, users = write_users(server.dir, n, prefix=prefix)
    server.cli("device", "import", str(devices))
    server.wait_provisioned()
    return users


def registrations(server: ServerProcess) -> list[str]:
    out = server.cli("registrations").stdout.strip().splitlines()
    return [line for line in out[1:] if line.strip()]


def usage(server: ServerProcess) -> dict[str, int]:
    out = server.cli("usage", "--tenant", "sipcore.test", "--month", month_now(), "--format", "json").stdout
    return dict(json.loads(out)["metrics"])


def test_sipp_1000_users_register_with_digest(server: ServerProcess) -> None:
    users = provision(server, 1000)
    r = server.sipp(
        "register_auth.xml", "-inf", str(users), "-m", "1000", "-r", "250", "-l", "500", "-recv_timeout", "5000"
    )
    assert (r.returncode, r.successful, r.failed) == (0, 1000, 0), r.output
    regs = wait_for(lambda: len(registrations(server)) >= 1000 and registrations(server), what="bindings flushed")
    assert len(regs) == 1000
    m = usage(server)
    assert m["mau"] == 1000 and m["connections.peak"] == 1000
    assert m["devices.provisioned.peak"] == 1001  # + the demo device


def test_bytes_sent_to_a_registered_device_are_metered(server: ServerProcess) -> None:
    provision(server, 1)
    port = free_port()
    sent = register_from(server.port, port, "u0", "pw-u0-x")  # the 401 before it went to nobody's device yet
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.settimeout(3)
        for i in range(5):
            s.sendto(
                f"OPTIONS sip:127.0.0.1:{server.port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};rport;branch=z9hG4bKopt{i}\r\n"
                f"From: <sip:u0@sipcore.test>;tag=o{i}\r\nTo: <sip:127.0.0.1:{server.port}>\r\n"
                f"Call-ID: opt-{i}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n".encode(),
                ("127.0.0.1", server.port),
            )
            answer = s.recv(65536)
            assert answer.startswith(b"SIP/2.0 200 "), answer
            sent += len(answer)
    assert sip_options(server.port) == 200  # from an address with no binding: nobody's bytes
    m = wait_for(lambda: usage(server).get("signaling.bytes_out") == sent and usage(server), what=f"{sent} bytes")
    assert m["signaling.bytes_out"] == sent


def test_bindings_survive_kill_9_and_nothing_is_counted_twice(server: ServerProcess) -> None:
    users = provision(server, 50, prefix="k")
    r = server.sipp("register_auth.xml", "-inf", str(users), "-m", "50", "-r", "100")
    assert (r.successful, r.failed) == (50, 0), r.output
    wait_for(lambda: len(registrations(server)) == 50, what="bindings flushed")
    before = usage(server)
    server.kill9()
    assert len(registrations(server)) == 50  # read straight from the database
    server.start()
    assert "50 bindings restored" in server.log.read_text()
    # the same phones register again after the restart: still 50 MAU, peak 50
    r = server.sipp("register_auth.xml", "-inf", str(users), "-m", "50", "-r", "100")
    assert (r.successful, r.failed) == (50, 0), r.output
    # the second round's answers went to the phones: billed bytes, not a second count
    sent_before = before.pop("signaling.bytes_out")
    after = wait_for(lambda: usage(server)["signaling.bytes_out"] > sent_before > 0 and usage(server), what="usage")
    after.pop("signaling.bytes_out")
    assert after == before == {**before, "mau": 50, "connections.peak": 50}


def test_tcp_registration_and_crlf_keepalive(server: ServerProcess) -> None:
    users = provision(server, 20, prefix="t")
    r = server.sipp("register_auth.xml", "-inf", str(users), "-m", "20", "-r", "50", transport="t1")
    assert (r.successful, r.failed) == (20, 0), r.output
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as s:
        s.sendall(b"\r\n\r\n")
        assert s.recv(16) == b"\r\n"  # RFC 5626 pong
    assert sip_options(server.port, "tcp") == 200


def test_malformed_input_gets_400_or_is_dropped_and_server_stays_up(server: ServerProcess) -> None:
    bad = (
        b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKbad\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\nCall-ID: bad1\r\nCSeq: 1 INVITE\r\n\r\n"
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(bad, ("127.0.0.1", server.port))
        data = s.recv(4096)
        assert data.startswith(b"SIP/2.0 400 ") and b"Call-ID: bad1" in data
        for junk in (b"\x00" * 100, b"GARBAGE\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n", bytes(range(256)) * 250):
            s.sendto(junk, ("127.0.0.1", server.port))
    assert sip_options(server.port) == 200
    assert server.proc is not None and server.proc.poll() is None


def test_wrong_password_is_challenged_and_disabled_device_cannot_register(server: ServerProcess) -> None:
    users = provision(server, 3, prefix="w")
    text = users.read_text().replace("password=pw-w0-x", "password=wrong")
    users.write_text(text)
    r = server.sipp("register_auth.xml", "-inf", str(users), "-m", "1", "-r", "1", "-recv_timeout", "2000")
    assert r.failed == 1 and r.successful == 0
    server.cli("device", "disable", "w1@sipcore.test")
    server.wait_provisioned()
    r = server.sipp("register_auth.xml", "-inf", str(users), "-m", "3", "-r", "10", "-recv_timeout", "2000")
    assert (r.successful, r.failed) == (1, 2), r.output  # w0 wrong password, w1 disabled, w2 fine


def test_clean_shutdown_on_sigterm(tmp_path: Path) -> None:
    s = ServerProcess(tmp_path)
    s.start()
    assert s.stop() == 0
    assert "shutting down" in s.log.read_text()
