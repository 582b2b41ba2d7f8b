"""The `sipcore` command line: version, parse, usage errors, help text."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from sipcore import __version__
from sipcore.cli import COMMANDS, build_parser, main

from .conftest import TESTDATA

ROOT = Path(__file__).resolve().parent.parent


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out)
    return code, out.getvalue()


@pytest.mark.parametrize("path", sorted((TESTDATA / "bench-corpus").glob("*.sip")), ids=lambda p: p.name)
def test_parse_every_corpus_file(path: Path) -> None:
    code, out = run("parse", str(path))
    assert code == 0, out
    first = path.read_bytes().split(b"\r\n", 1)[0].decode()
    assert f"start-line: {first}" in out
    assert "header: Call-ID: " in out and "transaction: branch=" in out


def test_parse_error_exit_1() -> None:
    code, out = run("parse", str(TESTDATA / "rfc4475" / "badvers.dat"))
    assert code == 1 and "VersionNotSupported (505 Version Not Supported)" in out


def test_parse_lazy_error_exit_1() -> None:
    code, out = run("parse", str(TESTDATA / "rfc4475" / "regbadct.dat"))
    assert code == 1 and "Contact" in out and "start-line: REGISTER" in out


def test_parse_py_impl() -> None:
    code, out = run("parse", "--impl", "py", str(TESTDATA / "rfc4475" / "wsinv.dat"))
    assert code == 0 and "parser: py" in out


@pytest.mark.parametrize(
    "argv", [[], ["nosuch"], ["parse"], ["parse", "/nonexistent/file"], ["parse", "--impl", "x", "f"]]
)
def test_usage_errors_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("sipcore: error: ") and err.count("\n") == 1


def test_console_script_version() -> None:
    r = subprocess.run([sys.executable, "-m", "sipcore", "--version"], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and r.stdout.strip() == f"sipcore {__version__}"


def test_every_subcommand_has_help_and_is_in_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    ap = build_parser()
    for name in COMMANDS:
        sub = ap._subparsers._group_actions[0].choices[name]  # type: ignore[union-attr]
        assert sub.format_help().strip()
        assert (COMMANDS[name][0].__doc__ or "").strip(), name
        assert f"sipcore {name}" in readme, f"README does not mention `sipcore {name}`"


def _rfc_files() -> list[tuple[Path, int]]:
    import json

    out = []
    for d, files in ((TESTDATA / "rfc4475", "*.dat"), (TESTDATA / "rfc5118" / "wire", "*.dat")):
        man = json.loads(((d if d.name != "wire" else d.parent) / "manifest.json").read_text())
        for p in sorted(d.glob(files)):
            verdict = man.get(p.name, {}).get("verdict")
            if verdict in ("VALID", "INVALID"):
                out.append((p, 0 if verdict == "VALID" else 1))
    return out


@pytest.mark.parametrize("path, code", _rfc_files(), ids=lambda x: getattr(x, "name", str(x)))
def test_parse_every_rfc_file(path: Path, code: int) -> None:
    got, out = run("parse", str(path))
    assert got == code, out
    assert out.startswith("parser: ")
