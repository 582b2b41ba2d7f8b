"""The arrows point down: sans-IO packages never import I/O modules, and no
layer imports a layer above it (ARCHITECTURE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "sipcore"
SANS_IO = ["message", "transaction", "dialog", "auth", "registrar", "proxy", "metering", "rating"]
FORBIDDEN = {"asyncio", "socket", "ssl", "sqlite3", "aiosqlite", "uvloop", "selectors", "pyroute2"}
EDGE = {"transport", "store", "server", "cli"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def _modules(pkg: str) -> list[Path]:
    d = PKG / pkg
    return sorted(d.rglob("*.py")) if d.is_dir() else []


@pytest.mark.parametrize("pkg", SANS_IO)
def test_sans_io_imports_no_io(pkg: str) -> None:
    for path in _modules(pkg):
        for name in _imports(path):
            root = name.split(".")[0]
            assert root not in FORBIDDEN, f"{path.relative_to(PKG)} imports {name}"
            if name.startswith("sipcore."):
                layer = name.split(".")[1]
                assert layer not in EDGE, f"{path.relative_to(PKG)} imports the edge layer {name}"


def test_the_checker_sees_imports(tmp_path: Path) -> None:
    f = tmp_path / "m.py"
    f.write_text("import asyncio\nfrom sipcore.store import x\nfrom . import y\n")
    assert _imports(f) == {"asyncio", "sipcore.store"}


def test_message_layer_is_present() -> None:
    assert _modules("message"), "the message package must exist"


def test_cparser_source_imports_no_io() -> None:
    src = (PKG.parent / "csrc" / "_cparser.pyx").read_text()
    for mod in FORBIDDEN:
        assert f"import {mod}" not in src and f"from {mod} " not in src
