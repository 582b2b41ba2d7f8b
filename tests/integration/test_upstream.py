"""sipcore registers with a trunk over real sockets: a SIPp registrar checks the digest."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import ServerProcess, SippBackground, free_port
from .test_calls import provisioned
from .test_register import wait_for

pytestmark = pytest.mark.integration

DOMAIN = "sipcore.test"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    # No OPTIONS probes: the SIPp registrar would take one for an unexpected call.
    s = ServerProcess(tmp_path, extra_toml="[proxy]\ntrunk_probe_s = 0\ntrunk_register_expires_s = 600\n")
    s.start()
    yield s
    if s.proc is not None and s.proc.poll() is None:
        s.stop()


def registration(server: ServerProcess) -> dict[str, Any] | None:
    with sqlite3.connect(server.db) as c:
        c.row_factory = sqlite3.Row
        row = c.execute("SELECT * FROM trunk_registrations r JOIN trunks t ON t.id = r.trunk_id").fetchone()
    return dict(row) if row else None


def add_trunk(server: ServerProcess, port: int, password: str) -> None:
    provisioned(
        server, "trunk", "add", "carrier", "--tenant", DOMAIN, "--address", f"127.0.0.1:{port}",
        "--username", "acct", "--password", password, "--register",
    )  # fmt: skip


def test_registers_refreshes_and_unregisters_at_a_clean_stop(server: ServerProcess) -> None:
    port = free_port()
    registrar = SippBackground(server.dir, "uas_registrar.xml", port, "-m", "1")
    try:
        add_trunk(server, port, "trunk-pw")

        def registered(granted_ms: int) -> dict[str, Any] | None:
            r = registration(server)
            if r and r["state"] == "registered" and r["expires_at_ms"] - r["updated_ms"] == granted_ms:
                return r
            return None

        first = wait_for(lambda: registered(4000), what="registered with the 4 s the registrar granted")
        assert (first["last_status"], first["last_reason"]) == (200, "OK")
        assert first["next_attempt_ms"] - first["updated_ms"] == 2000, "refreshed at half the granted time"
        listed = server.cli("trunk", "list").stdout
        assert "registered (expires " in listed.splitlines()[1], listed
        refreshed = wait_for(lambda: registered(60_000), what="the refresh")
        assert refreshed["updated_ms"] - first["updated_ms"] >= 1900
        assert server.stop() == 0
        assert registrar.wait(timeout=10) == 0, registrar.log.read_text()[-3000:]
        gone = registration(server)
        assert gone is not None and gone["state"] == "unregistered"
        log = server.log.read_text()
        assert "trunk carrier registered, expires in 4 s" in log
        assert "trunk carrier: unregister: 200 OK" in log
    finally:
        registrar.stop()


def test_a_wrong_password_is_failed_with_the_registrars_answer(server: ServerProcess) -> None:
    port = free_port()
    registrar = SippBackground(server.dir, "uas_registrar.xml", port, "-m", "1")
    try:
        add_trunk(server, port, "not-the-password")
        row = wait_for(
            lambda: (r := registration(server)) and r["state"] == "failed" and r, what="the registration to fail"
        )
        assert (row["last_status"], row["last_reason"]) == (403, "Forbidden")
        assert row["next_attempt_ms"] - row["updated_ms"] == 30_000
        listed = server.cli("trunk", "list").stdout
        assert "failed: 403 Forbidden, retry " in listed, listed
        assert "registration failed: 403 Forbidden; retrying in 30 s" in server.log.read_text()
        assert registrar.wait(timeout=10) == 1, "the registrar refused the credentials"
    finally:
        registrar.stop()
