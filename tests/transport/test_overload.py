"""Overload detection from the UDP receive queues (sipcore/transport/overload.py)."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator

import pytest

from sipcore.transport.overload import LoadShedder, receive_queue

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="SO_MEMINFO is Linux's")


@pytest.fixture
def unread() -> Iterator[tuple[socket.socket, socket.socket]]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    yield rx, tx
    rx.close()
    tx.close()


@linux_only
def test_the_queue_of_a_real_socket_grows_with_unread_datagrams(unread: tuple[socket.socket, socket.socket]) -> None:
    rx, tx = unread
    empty = receive_queue(rx)
    assert empty is not None
    assert empty == (0, rx.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    for _ in range(10):
        tx.sendto(b"x" * 1000, rx.getsockname())
    queued, capacity = receive_queue(rx) or (0, 0)
    assert 10_000 <= queued < capacity, (queued, capacity)
    rx.setblocking(False)
    while True:
        try:
            rx.recv(2000)
        except BlockingIOError:
            break
    assert receive_queue(rx) == empty


def test_no_queue_where_the_kernel_does_not_tell() -> None:
    assert receive_queue(object()) is None  # type: ignore[arg-type]


def test_on_at_the_high_mark_off_below_a_quarter_of_it() -> None:
    level = [0]
    shedder = LoadShedder([lambda: (level[0], 1000)], high_pct=40, interval_s=0.01, sustain=3)
    t = 0.0

    def at(queued: int) -> bool | None:
        nonlocal t
        level[0] = queued
        t += 0.01
        return shedder.check(t)

    assert at(399) is None and not shedder.shedding
    assert at(400) is None and at(1000) is None and not shedder.shedding, "a burst: not yet"
    assert at(10) is None and at(400) is None and at(500) is None, "it drained in between: counting again"
    assert at(400) is True and shedder.shedding and shedder.worst == 0.4, "three reads in a row: overload"
    assert at(900) is None, "already on"
    assert at(100) is None and shedder.shedding, "between the marks: stays on (no flapping)"
    assert at(99) is False and not shedder.shedding
    assert at(399) is None and not shedder.shedding, "between the marks: stays off"


def test_reads_at_most_once_per_interval_and_the_fullest_queue_decides() -> None:
    reads = []

    def reader(queued: int) -> object:
        def read() -> tuple[int, int]:
            reads.append(queued)
            return queued, 1000

        return read

    shedder = LoadShedder([reader(10), reader(600), lambda: None], high_pct=50, interval_s=0.01, sustain=1)  # type: ignore[list-item]
    assert shedder.check(1.0) is True
    assert shedder.check(1.005) is None and len(reads) == 2, "not again within the interval"
    assert shedder.check(1.011) is None and len(reads) == 4


def test_zero_never_sheds() -> None:
    shedder = LoadShedder([lambda: (1000, 1000)], high_pct=0)
    assert shedder.check(1.0) is None and not shedder.shedding


def test_config_default_and_a_bad_value_names_file_key_and_range() -> None:
    from sipcore.config import ServerConfig, parse_config
    from sipcore.errors import ConfigError

    assert ServerConfig().overload_queue_pct == 25 and ServerConfig().udp_receive_buffer_kb == 4096
    with pytest.raises(ConfigError, match="server.udp_receive_buffer_kb.*64-524288"):
        parse_config("[server]\nudp_receive_buffer_kb = 10\n", "x.toml")
    assert parse_config("[server]\noverload_queue_pct = 0\n", "x.toml").server.overload_queue_pct == 0
    with pytest.raises(ConfigError) as e:
        parse_config("[server]\noverload_queue_pct = 99\n", "x.toml")
    assert "x.toml" in str(e.value) and "server.overload_queue_pct" in str(e.value) and "5-95" in str(e.value)
