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
