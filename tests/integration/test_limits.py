"""A free-plan tenant hits its MAU limit with real REGISTERs; alerts reach a real webhook once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from .harness import ServerProcess, free_port, register_from
from .test_register import wait_for

pytestmark = pytest.mark.integration

DOMAIN = "free.test"


class Hook:
    """A local HTTP server recording every POST body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, object]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                n = int(self.headers.get("Content-Length") or 0)
                hook.bodies.append(json.loads(self.rfile.read(n)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.http = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_port}/alerts"
        self.thread = threading.Thread(target=self.http.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    yield h
    h.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    plans = tmp_path / "plans"
    plans.mkdir()
    # The free tier of seed 001 with a limit of 4 MAU instead of 1,000, so that
    # a test reaches it with 5 phones.
    text = (Path(__file__).resolve().parents[2] / "config" / "plans" / "voximplant-free.toml").read_text()
    (plans / "tiny-free.toml").write_text(text.replace("included = 1000\n", "included = 4\n"))
    s = ServerProcess(tmp_path, extra_toml=f'[billing]\nplans_dir = "{plans}"\n')
    s.start()
    yield s
    if s.proc is not None and s.proc.poll() is None:
        s.stop()


def register_status(server: ServerProcess, user: str, port: int) -> str:
    try:
        register_from(server.port, port, user, f"pw-{user}", domain=DOMAIN)
    except AssertionError as e:
        return str(e).split("\r\n", 1)[0]
    return "SIP/2.0 200 OK"


def test_free_plan_blocks_the_fifth_user_and_alerts_once(server: ServerProcess, hook: Hook) -> None:
    server.cli("tenant", "add", DOMAIN)
    server.cli("billing", "plan", DOMAIN, "tiny-free", "--plans-dir", str(server.dir / "plans"))
    server.cli("billing", "webhook", DOMAIN, hook.url)
    for i in range(5):
        server.cli("device", "add", f"u{i}@{DOMAIN}", "--password", f"pw-u{i}")
    server.wait_provisioned()
    ports = [free_port() for _ in range(5)]
    for i in range(4):
        assert register_status(server, f"u{i}", ports[i]) == "SIP/2.0 200 OK"
    refused = register_status(server, "u4", ports[4])
    assert refused == "SIP/2.0 403 Monthly Active User Limit Reached", refused
    for i in range(4):  # what was allowed keeps working: they refresh
        assert register_status(server, f"u{i}", ports[i]) == "SIP/2.0 200 OK"
    wait_for(lambda: len(hook.bodies) >= 3, timeout=10, what="three webhook POSTs")
    thresholds = sorted(int(str(b.get("threshold_pct"))) for b in hook.bodies)
    assert thresholds == [50, 75, 100], hook.bodies
    assert {b.get("metric") for b in hook.bodies} == {"mau"}
    # a restart neither re-sends them nor lets the fifth user in
    server.stop()
    server.start()
    assert register_status(server, "u4", ports[4]).startswith("SIP/2.0 403")
    assert register_status(server, "u0", ports[0]) == "SIP/2.0 200 OK"
    out = server.cli("alerts", "--tenant", DOMAIN).stdout
    assert out.count("mau") == 3, out
    time.sleep(1.5)  # the worker's first pass after the start has had time to send anything still due
    assert len(hook.bodies) == 3, hook.bodies
