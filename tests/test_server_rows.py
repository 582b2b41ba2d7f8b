"""What the server hands the store survives hostile header bytes and restarts."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipcore.flow import Flow
from sipcore.registrar import Binding
from sipcore.server import binding_to_row, row_to_binding
from sipcore.store import Store


def binding(user_agent: str, contact: str = '"M\udcfcller" <sip:m@192.0.2.1:5060>') -> Binding:
    return Binding(
        aor="sip:m@sipcore.test",
        key="k",
        contact=contact,
        uri="sip:m@192.0.2.1:5060",
        expires_ms=2_000_000_000_000,
        q_milli=1000,
        call_id="c\udce9",
        cseq=1,
        flow=Flow("tcp", "192.0.2.1", 5060, 1_000_001),
        tenant_id=1,
        device_id=1,
        updated_ms=1,
        user_agent=user_agent,
    )


@pytest.mark.asyncio
async def test_non_utf8_header_bytes_are_stored_not_fatal(tmp_path: Path) -> None:
    store = await Store.open(str(tmp_path / "db.sqlite"))
    try:
        row = binding_to_row(binding("T\udce9l\udce9phone"))
        assert row.user_agent == "T\\xe9l\\xe9phone" and row.contact.startswith('"M\\xfcller"')
        await store.save_bindings([row], [])
        (loaded,) = await store.load_bindings(1)
        assert loaded.user_agent == "T\\xe9l\\xe9phone"
        b = row_to_binding(loaded)
        assert b.flow.conn_id == 0  # a TCP connection id does not survive a restart
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_server_secret_persists(tmp_path: Path) -> None:
    path = str(tmp_path / "db.sqlite")
    store = await Store.open(path)
    assert await store.server_secret(create=b"a" * 32) == b"a" * 32
    await store.close()
    store = await Store.open(path)
    try:
        assert await store.server_secret(create=b"b" * 32) == b"a" * 32
    finally:
        await store.close()
