"""A real softphone (baresip, Debian package) registers with digest."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.harness import ServerProcess, need

pytestmark = pytest.mark.interop


def baresip_config(confdir: Path, server_port: int, local_port: int, password: str) -> None:
    confdir.mkdir()
    (confdir / "accounts").write_text(
        f'<sip:demo@sipcore.test;transport=udp>;auth_pass={password};outbound="sip:127.0.0.1:{server_port}";'
        "regint=600\n"
    )
    # no audio device on a test machine: only what registration needs
    (confdir / "config").write_text(
        f"sip_listen\t127.0.0.1:{local_port}\nmodule_path\t/usr/lib/baresip/modules\nmodule\tg711.so\n"
        "module_app\taccount.so\n"
    )
    (confdir / "contacts").write_text("")


def test_baresip_registers_and_unregisters(server: ServerProcess, tmp_path: Path) -> None:
    baresip = need("baresip", "baresip")
    confdir = tmp_path / "baresip"
    baresip_config(confdir, server.port, server.port + 1 if server.port < 65000 else server.port - 1, "demo-secret-1")
    proc = subprocess.Popen(
        [baresip, "-f", str(confdir), "-t", "5", "-s"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        seen = []
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and not seen:
            rows = server.cli("registrations").stdout.splitlines()[1:]
            seen = [r for r in rows if "sip:demo@sipcore.test" in r]
            time.sleep(0.2)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert seen, f"baresip never showed up in `sipcore registrations`:\n{out[-3000:]}"
    assert "baresip" in seen[0]  # its User-Agent is stored with the binding
    assert out.count("SIP/2.0 200 OK") >= 2, out[-3000:]  # REGISTER, then the un-REGISTER at exit
    log = server.log.read_text()
    assert "REGISTER sip:sipcore.test;transport=udp -> 401 Unauthorized" in log
    assert "REGISTER sip:sipcore.test;transport=udp -> 200 OK" in log
    time.sleep(0.3)
    assert not [r for r in server.cli("registrations").stdout.splitlines()[1:] if "demo@" in r]


def _tone(path: Path, seconds: int = 20) -> None:
    """An 8 kHz sine WAV: baresip's audio source (no sound card on a test machine)."""
    import math
    import struct
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(
            b"".join(
                struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 8000))) for i in range(8000 * seconds)
            )
        )


def _phone(confdir: Path, user: str, password: str, server_port: int, local_port: int, tone: Path, extra: str) -> None:
    confdir.mkdir()
    (confdir / "accounts").write_text(
        f'<sip:{user}@sipcore.test;transport=udp>;auth_pass={password};outbound="sip:127.0.0.1:{server_port}";'
        f"regint=600{extra}\n"
    )
    # RTP from a WAV file; received audio goes to aubridge (a sink needing no device).
    (confdir / "config").write_text(
        f"sip_listen\t127.0.0.1:{local_port}\nmodule_path\t/usr/lib/baresip/modules\nmodule\tg711.so\n"
        "module\taufile.so\nmodule\taubridge.so\nmodule\trtcpsummary.so\nmodule_app\taccount.so\nmodule_app\tmenu.so\n"
        f"audio_source\taufile,{tone}\naudio_player\taubridge,x\naudio_alert\taubridge,x\n"
    )
    (confdir / "contacts").write_text("")


def test_two_baresip_phones_call_each_other_through_the_proxy(server: ServerProcess, tmp_path: Path) -> None:
    import re
    import sqlite3

    from tests.integration.harness import free_port

    baresip = need("baresip", "baresip")
    server.cli("device", "add", "alice@sipcore.test", "--password", "pa-1")
    server.cli("device", "add", "bob@sipcore.test", "--password", "pb-1")
    server.wait_provisioned()
    tone = tmp_path / "tone.wav"
    _tone(tone)
    _phone(tmp_path / "bob", "bob", "pb-1", server.port, free_port(), tone, ";answermode=auto")
    _phone(tmp_path / "alice", "alice", "pa-1", server.port, free_port(), tone, "")
    bob = subprocess.Popen(
        [baresip, "-f", str(tmp_path / "bob"), "-t", "14"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 5
        while not [r for r in server.cli("registrations").stdout.splitlines() if "bob@" in r]:
            assert time.monotonic() < deadline, "bob never registered"
            time.sleep(0.2)
        # alice dials at start and hangs up (BYE) when -t ends her run
        alice = subprocess.run(
            [baresip, "-f", str(tmp_path / "alice"), "-t", "6", "-e", "/dial sip:bob@sipcore.test"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        bob_out, _ = bob.communicate(timeout=20)
    finally:
        if bob.poll() is None:
            bob.kill()
    a_out = alice.stdout
    assert "Call established" in a_out, a_out[-3000:]
    assert "Call established" in bob_out, bob_out[-3000:]
    # RTP flowed both ways (rtcpsummary: packets received / sent, 50 a second with G.711)
    stats = re.findall(r"PR=(\d+);PS=(\d+);", a_out + bob_out)
    assert stats, (a_out[-1500:], bob_out[-1500:])
    for received, sent in stats:
        assert int(received) >= 100 and int(sent) >= 100, stats
    seen = re.search(r"terminated \(duration: (\d+) secs\)", a_out)
    assert seen, a_out[-2000:]
    client_s = int(seen.group(1))
    log = server.log.read_text()
    assert re.search(r"BYE sip:bob\S* -> udp:127\.0\.0\.1", log), "the BYE went through the proxy"
    deadline = time.monotonic() + 5
    rows: list[tuple[str, int, str]] = []
    while time.monotonic() < deadline:
        with sqlite3.connect(server.db) as c:
            rows = list(c.execute("SELECT direction, voice_ms, end_reason FROM legs WHERE answer_ms IS NOT NULL"))
        if len(rows) == 2:
            break
        time.sleep(0.2)
    assert sorted(r[0] for r in rows) == ["originating", "terminating"], rows
    for _, voice_ms, reason in rows:
        assert reason == "bye_caller"
        # baresip prints whole seconds; the server's leg also covers the
        # network and scheduling latency of the answer and the BYE.
        assert client_s - 1 < voice_ms / 1000 < client_s + 1.5, (voice_ms, client_s)
