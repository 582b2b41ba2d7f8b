"""Real-socket test harness: a `sipcore serve` subprocess on 127.0.0.1, the
CLI against its database, and SIPp runs with their statistics."""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
import weakref
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).resolve().parent / "sipp"


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def need(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{binary} missing: .ci/run must install the Debian package {package}")
        pytest.skip(f"{binary} not installed (apt-get install {package})")
    return path


def sip_options(port: int, transport: str = "udp", timeout: float = 1.0) -> int | None:
    """Send one OPTIONS and return the response status (None on timeout)."""
    branch = "z9hG4bK" + uuid.uuid4().hex[:12]
    msg = (
        f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/{transport.upper()} 127.0.0.1:9;branch={branch}\r\n"
        f"From: <sip:probe@127.0.0.1>;tag=p1\r\nTo: <sip:127.0.0.1:{port}>\r\nCall-ID: {branch}\r\n"
        "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.settimeout(timeout)
        try:
            if transport == "udp":
                s.sendto(msg, ("127.0.0.1", port))
            else:
                s.connect(("127.0.0.1", port))
                s.sendall(msg)
            data = s.recv(65536)
        except OSError:
            return None
    return int(data.split(b" ", 2)[1]) if data.startswith(b"SIP/2.0 ") else None


@dataclass
class SippResult:
    returncode: int
    successful: int
    failed: int
    retransmissions: int
    output: str


class ServerProcess:
    def __init__(self, workdir: Path, extra_toml: str = "", log_level: str = "info", server_toml: str = "") -> None:
        self.dir = workdir
        self.port = free_port()
        self.db = workdir / "sipcore.db"
        self.config = workdir / "sipcore.toml"
        self.log = workdir / "server.log"
        self.config.write_text(
            f'[server]\nlisten = ["udp:127.0.0.1:{self.port}", "tcp:127.0.0.1:{self.port}"]\n'
            f'log_level = "{log_level}"\n{server_toml}[store]\npath = "{self.db}"\nflush_interval_ms = 50\n'
            f'[demo]\npassword = "demo-secret-1"\n{extra_toml}'
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [sys.executable, "-m", "sipcore", *args, "--db", str(self.db)],
            capture_output=True,
            text=True,
            cwd=self.dir,
            timeout=120,
            check=False,
        )
        if check and r.returncode != 0:
            raise AssertionError(f"sipcore {' '.join(args)} failed ({r.returncode}): {r.stderr}{r.stdout}")
        return r

    def wait_provisioned(self, timeout: float = 15.0) -> None:
        """Wait until the running server has loaded every provisioning change
        committed so far: the database's serial, read now, shows up in a
        "serial N loaded" log line (written once the directory and the plan
        guard have it).  Counting "provisioning changed" lines instead races:
        a reload can start between two CLI commits and satisfy the count with
        only the first loaded."""
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True) as db:
            (want,) = db.execute("SELECT value FROM meta WHERE key = 'provisioning_serial'").fetchone()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            loaded = [int(m) for m in re.findall(r"serial (\d+) loaded", self.log.read_text())]
            if loaded and max(loaded) >= int(want):
                return
            time.sleep(0.05)
        raise AssertionError(f"server did not load provisioning serial {want} within {timeout}s")

    def start(self, timeout: float = 15.0) -> None:
        """Start the server and return once it answers OPTIONS and has logged
        "ready" (a UDP listener answers while the others are still opening,
        before the start-up summary a test may read)."""
        readies = self._readies()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sipcore", "serve", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            if sip_options(self.port, timeout=0.2) == 200 and self._readies() > readies:
                return
        raise AssertionError(f"server not ready after {timeout}s:\n{self.log.read_text()}")

    def _readies(self) -> int:
        return self.log.read_text().count(" ready: ") if self.log.exists() else 0

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def sipp(self, scenario: str, *args: str, timeout: float = 120.0, transport: str = "u1") -> SippResult:
        sipp = need("sipp", "sip-tester")
        stat = self.dir / f"sipp-{uuid.uuid4().hex[:6]}.csv"
        cmd = [
            sipp,
            "-sf",
            str(SCENARIOS / scenario),
            f"127.0.0.1:{self.port}",
            "-i",
            "127.0.0.1",
            "-t",
            transport,
            "-nostdin",
            "-trace_stat",
            "-stf",
            str(stat),
            "-fd",
            "1",
            *args,
        ]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=self.dir, timeout=timeout, check=False)
        rows = list(csv.reader(stat.open(), delimiter=";")) if stat.exists() else []
        if len(rows) < 2:
            raise AssertionError(f"SIPp produced no statistics ({r.returncode}): {r.stdout[-2000:]}{r.stderr}")
        head, last = rows[0], rows[-1]
        get = lambda k: int(last[head.index(k)])  # noqa: E731
        return SippResult(
            r.returncode,
            get("SuccessfulCall(C)"),
            get("FailedCall(C)"),
            get("Retransmissions(C)"),
            r.stdout[-3000:] + r.stderr[-2000:],
        )


def write_users(workdir: Path, n: int, domain: str = "sipcore.test", prefix: str = "u") -> tuple[Path, Path]:
    """A provisioning CSV and the matching SIPp injection file."""
    devices = workdir / "devices.csv"
    users = workdir / "users.csv"
    with devices.open("w") as d, users.open("w") as u:
        d.write("user,domain,password\n")
        u.write("SEQUENTIAL\n")
        for i in range(n):
            d.write(f"{prefix}{i},{domain},pw-{prefix}{i}-x\n")
            u.write(f"{prefix}{i};{domain};[authentication username={prefix}{i} password=pw-{prefix}{i}-x]\n")
    return devices, users


def register_from(server_port: int, local_port: int, user: str, password: str, domain: str = "sipcore.test") -> int:
    """REGISTER `user` with digest from 127.0.0.1:`local_port`, so that calls to
    it go to whatever listens on that port afterwards (a SIPp UAS): sipcore
    routes to the flow a binding registered from, not to its Contact.
    Returns the size of the 200 OK."""
    import hashlib

    call_id = f"reg-{user}-{uuid.uuid4().hex[:10]}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", local_port))
        s.settimeout(3)

        def send(cseq: int, auth: str = "") -> bytes:
            msg = (
                f"REGISTER sip:{domain} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};rport;branch=z9hG4bK{uuid.uuid4().hex[:12]}\r\n"
                f"From: <sip:{user}@{domain}>;tag=r1\r\nTo: <sip:{user}@{domain}>\r\n"
                f"Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nMax-Forwards: 70\r\n"
                f"Contact: <sip:{user}@127.0.0.1:{local_port}>\r\nExpires: 3600\r\n{auth}Content-Length: 0\r\n\r\n"
            )
            s.sendto(msg.encode(), ("127.0.0.1", server_port))
            return s.recv(65536)

        ch = send(1).decode()
        assert " 401 " in ch.split("\r\n", 1)[0], ch
        line = next(h for h in ch.split("\r\n") if h.startswith("WWW-Authenticate") and "MD5" in h)
        nonce = line.split('nonce="', 1)[1].split('"', 1)[0]
        ha1 = hashlib.md5(f"{user}:{domain}:{password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"REGISTER:sip:{domain}".encode()).hexdigest()
        resp = hashlib.md5(f"{ha1}:{nonce}:00000001:c1:auth:{ha2}".encode()).hexdigest()
        auth = (
            f'Authorization: Digest username="{user}", realm="{domain}", nonce="{nonce}", uri="sip:{domain}", '
            f'response="{resp}", algorithm=MD5, qop=auth, nc=00000001, cnonce="c1"\r\n'
        )
        ok = send(2, auth).decode()
        assert " 200 " in ok.split("\r\n", 1)[0], ok
        return len(ok.encode())


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=5)


class SippBackground:
    """A SIPp instance running beside the test (a UAS: a callee or a trunk)."""

    def __init__(self, workdir: Path, scenario: str, port: int, *args: str) -> None:
        sipp = need("sipp", "sip-tester")
        self.log = workdir / f"sipp-bg-{port}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sipp, "-sf", str(SCENARIOS / scenario), "-i", "127.0.0.1", "-p", str(port), "-nostdin", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=workdir,
            )
        # A test that fails before wait() must not leave a SIPp waiting for calls
        # that never come (at the latest when the session ends).
        weakref.finalize(self, _kill, self.proc)
        time.sleep(0.3)

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
