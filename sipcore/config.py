"""Configuration: frozen dataclasses loaded from TOML (PURE).

Unknown keys are rejected, every value is type-checked, and every error names
the file, the key path and the reason (:class:`~sipcore.errors.ConfigError`).
`sipcore serve` without --config runs the embedded default
(``sipcore/data/sipcore.example.toml``, linked as ``config/sipcore.example.toml``).
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from sipcore.errors import ConfigError

EMBEDDED_NAME = "<embedded sipcore.example.toml>"


class Listener(NamedTuple):
    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


def parse_listener(text: str) -> Listener:
    """``udp:HOST:PORT`` / ``tcp:[::1]:5060``; raises ValueError with a reason."""
    transport, sep, rest = text.partition(":")
    if not sep or transport not in ("udp", "tcp"):
        raise ValueError(f"{text!r}: expected udp:HOST:PORT or tcp:HOST:PORT")
    if rest.startswith("["):
        host, _, port_s = rest[1:].partition("]")
        port_s = port_s[1:] if port_s.startswith(":") else ""
    else:
        host, _, port_s = rest.rpartition(":")
    if not host or not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise ValueError(f"{text!r}: expected udp:HOST:PORT or tcp:HOST:PORT with a port 0-65535")
    return Listener(transport, host, int(port_s))


@dataclass(frozen=True)
class ServerConfig:
    listen: tuple[str, ...] = ("udp:0.0.0.0:5060", "tcp:0.0.0.0:5060")
    """Listeners, transport:host:port; 0.0.0.0 means every IPv4 interface."""
    advertise: str = ""
    """host[:port] written into Via/Record-Route/Contact instead of the interface address."""
    log_level: str = "info"
    """debug (one line per message), info (access log), warning, error."""
    tcp_idle_timeout_s: int = 3900
    """A TCP connection with no traffic for this long is closed.  Longer than
    registrar.max_expires_s: a phone that registered over TCP without
    keepalives must still be reachable on its connection until it refreshes."""
    max_tcp_connections: int = 10000
    """Connections beyond this are refused."""
    max_tcp_connections_per_ip: int = 200
    """Connections from one address beyond this are refused, so one host cannot
    take every slot (a NAT'd office needs one per phone)."""
    max_transactions: int = 1_000_000
    """Live SIP transactions; beyond it new requests get 503.  A completed
    UDP REGISTER transaction lives 32 s (Timer J) in about 1.5 KB, so the
    default holds ~15,000 requests/s."""
    udp_receive_buffer_kb: int = 4096
    """Kernel receive buffer of each UDP listener (SO_RCVBUF, or SO_RCVBUFFORCE
    when allowed; beyond net.core.rmem_max only with CAP_NET_ADMIN).  The
    Linux default, ~200 KB, holds ~90 INVITEs: a burst, or a stall of a few
    ms, overflows it and the dropped datagrams come back as retransmissions.
    0 = the system default."""
    overload_queue_pct: int = 25
    """Shed load when a UDP listener's kernel receive queue stays this % full
    (three reads 10 ms apart; with 4 MB, about 0.1 s of backlog, well under
    T1): new requests get 503 (calls already up go on) until every queue is
    down to a quarter of this mark.  0 = never shed."""

    def check(self) -> list[tuple[str, str]]:
        errs = []
        for i, item in enumerate(self.listen):
            try:
                parse_listener(item)
            except ValueError as e:
                errs.append((f"listen[{i}]", str(e)))
        if not self.listen:
            errs.append(("listen", "at least one listener is needed"))
        if self.log_level not in ("debug", "info", "warning", "error"):
            errs.append(("log_level", "must be debug, info, warning or error"))
        if self.udp_receive_buffer_kb != 0 and not 64 <= self.udp_receive_buffer_kb <= 524_288:
            errs.append(("udp_receive_buffer_kb", "must be 0 (system default) or 64-524288 (KB)"))
        if self.overload_queue_pct != 0 and not 5 <= self.overload_queue_pct <= 95:
            errs.append(("overload_queue_pct", "must be 0 (never shed) or 5-95 (% of the receive queue)"))
        return errs

    @property
    def listeners(self) -> tuple[Listener, ...]:
        return tuple(parse_listener(x) for x in self.listen)


@dataclass(frozen=True)
class StoreConfig:
    path: str = "var/sipcore.db"
    """SQLite database file (created with its directory when missing)."""
    flush_interval_ms: int = 100
    """Upper bound on how long a registration or usage change waits in memory before its batch commits."""


@dataclass(frozen=True)
class TimersConfig:
    t1_ms: int = 500
    """RFC 3261 T1, the RTT estimate."""
    t2_ms: int = 4000
    """RFC 3261 T2, the maximum retransmit interval for non-INVITE requests and INVITE responses."""
    t4_ms: int = 5000
    """RFC 3261 T4, the maximum duration a message remains in the network."""

    def check(self) -> list[tuple[str, str]]:
        return [(k, "must be at least 1") for k in ("t1_ms", "t2_ms", "t4_ms") if getattr(self, k) < 1]


@dataclass(frozen=True)
class ParserConfig:
    max_message_bytes: int = 65536
    """Largest accepted message; larger gets 513."""
    max_headers: int = 128
    """Most header fields in one message."""
    max_line_bytes: int = 8192
    """Longest header line."""


@dataclass(frozen=True)
class RegistrarConfig:
    min_expires_s: int = 60
    """Shorter requested expiries get 423 Interval Too Brief with Min-Expires (RFC 3261 §10.3 step 7)."""
    max_expires_s: int = 3600
    """Longer requested expiries are clamped to this."""
    default_expires_s: int = 3600
    """Expiry when the REGISTER names none."""
    expires_jitter_pct: int = 10
    """Clamped expiries are reduced by up to this percentage, at random, to spread refresh storms."""
    max_contacts_per_aor: int = 10
    """More bindings for one address-of-record are refused (403 with a reason)."""
    max_bindings: int = 1_000_000
    """Bound on the whole location table."""

    def check(self) -> list[tuple[str, str]]:
        errs = []
        if not 1 <= self.min_expires_s <= self.max_expires_s:
            errs.append(("min_expires_s", "must be at least 1 and not above max_expires_s"))
        if not self.min_expires_s <= self.default_expires_s <= self.max_expires_s:
            errs.append(("default_expires_s", "must lie between min_expires_s and max_expires_s"))
        if not 0 <= self.expires_jitter_pct <= 50:
            errs.append(("expires_jitter_pct", "must be 0-50"))
        return errs


@dataclass(frozen=True)
class AuthSection:
    nonce_ttl_s: int = 300
    """Nonces older than this are refused with stale=true."""
    max_failures: int = 10
    """Failed authentications from one address within failure_window_s that block it."""
    failure_window_s: int = 60
    """Window for counting failures."""
    block_s: int = 300
    """How long a blocked address is refused."""
    algorithms: tuple[str, ...] = ("MD5", "SHA-256")
    """Digest algorithms offered, one challenge each, most preferred first
    (RFC 8760 §2.4).  MD5 leads by default because widely deployed clients
    (baresip 1.0, SIPp 3.6) answer only the first challenge and fail on
    SHA-256; a fleet that supports SHA-256 can put it first."""
    md5_only_user_agents: tuple[str, ...] = ("baresip v0.", "baresip v1.", "SIPp")
    """User-Agent prefixes of clients that fail on any challenge they cannot
    answer instead of skipping it (libre before 2.x, SIPp 3.6): they are sent
    only the MD5 challenge.  MD5 is offered to everyone anyway, so this
    downgrades nothing."""

    def check(self) -> list[tuple[str, str]]:
        if (
            not self.algorithms
            or not set(self.algorithms) <= {"SHA-256", "MD5"}
            or len(set(self.algorithms)) != len(self.algorithms)
        ):
            return [("algorithms", 'must list "SHA-256" and/or "MD5", each at most once')]
        return []


@dataclass(frozen=True)
class ProxyConfig:
    forking: str = "parallel"
    """How a call to a user with several bindings is forked: "parallel" (all
    at once, the first answer wins) or "serial" (one at a time, highest q first)."""
    max_call_duration_s: int = 14400
    """A call still up after this long is ended by the proxy with BYE to both
    sides (0: no limit)."""
    max_dialogs: int = 200_000
    """Bound on the table of timed dialogs (session timers, maximum duration, probes)."""
    dialog_probe_s: int = 120
    """A call with no in-dialog request or response for this long gets an
    in-dialog OPTIONS to each side; a side that answers 481, 408 or nothing
    ends the call (BYE to both sides), billed up to when that side was last
    heard from (0: no probing)."""
    heartbeat_s: int = 5
    """How often the server stamps its liveness in the store; after a crash the
    calls left open are closed at the last stamp."""
    trunk_probe_s: int = 30
    """Every trunk is sent OPTIONS this often; one that does not answer is
    marked down and calls fail over to the next route (0: no probing)."""
    trunk_register_expires_s: int = 3600
    """The expiry asked for in the REGISTERs to trunks added with --register
    (the registrar may grant less, or ask for more with 423); refreshed
    at half the granted time."""

    def check(self) -> list[tuple[str, str]]:
        errs = []
        if self.forking not in ("parallel", "serial"):
            errs.append(("forking", 'must be "parallel" or "serial"'))
        if not 1 <= self.heartbeat_s <= 300:
            errs.append(("heartbeat_s", "must be 1-300"))
        if self.dialog_probe_s != 0 and not 10 <= self.dialog_probe_s <= 86400:
            errs.append(("dialog_probe_s", "must be 0 (no probing) or 10-86400 (seconds)"))
        if not 60 <= self.trunk_register_expires_s <= 86400:
            errs.append(("trunk_register_expires_s", "must be 60-86400 (seconds)"))
        return errs


DEFAULT_PLANS_DIR = "config/plans"
SOURCE_PLANS_DIR = Path(__file__).resolve().parent.parent / "config" / "plans"
"""The plan files of a source checkout (or an editable install)."""


@dataclass(frozen=True)
class BillingConfig:
    plans_dir: str = DEFAULT_PLANS_DIR
    """Directory of plan files ``NAME.toml``; a tenant's plan is a NAME.  A
    relative path is relative to the working directory; when the default is
    not there, the ``config/plans`` of the source checkout is used."""
    alert_thresholds_pct: tuple[int, ...] = (50, 75, 100)
    """Percentages of an included quantity at which a tenant gets one alert per month."""
    webhook_timeout_s: int = 10
    """A webhook POST that has no answer after this long failed (and is retried)."""
    webhook_backoff_ms: int = 1000
    """Delay before the first retry of a failed webhook; doubled at each failure."""
    webhook_max_backoff_ms: int = 3_600_000
    """Upper bound of the retry delay."""
    webhook_max_attempts: int = 12
    """Attempts before a webhook is given up (kept, with its last error)."""

    def check(self) -> list[tuple[str, str]]:
        errs = []
        t = self.alert_thresholds_pct
        if not t or any(not 1 <= x <= 100 for x in t) or list(t) != sorted(set(t)):
            errs.append(("alert_thresholds_pct", "must be increasing percentages between 1 and 100"))
        for key in ("webhook_timeout_s", "webhook_backoff_ms", "webhook_max_attempts"):
            if getattr(self, key) < 1:
                errs.append((key, "must be at least 1"))
        if self.webhook_max_backoff_ms < self.webhook_backoff_ms:
            errs.append(("webhook_max_backoff_ms", "must not be below webhook_backoff_ms"))
        if not self.plans_dir:
            errs.append(("plans_dir", "must not be empty"))
        return errs

    def plans_path(self) -> Path:
        """The plans directory to use (see ``plans_dir``)."""
        path = Path(self.plans_dir)
        if self.plans_dir == DEFAULT_PLANS_DIR and not path.is_dir() and SOURCE_PLANS_DIR.is_dir():
            return SOURCE_PLANS_DIR
        return path


@dataclass(frozen=True)
class DemoConfig:
    enabled: bool = True
    """Create the demo tenant and device at start when missing."""
    domain: str = "sipcore.test"
    """The demo tenant's SIP domain (the digest realm)."""
    user: str = "demo"
    """The demo device's user name."""
    password: str = ""
    """Empty: generate one at first start and print it once in the log."""


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    timers: TimersConfig = field(default_factory=TimersConfig)
    parser: ParserConfig = field(default_factory=ParserConfig)
    registrar: RegistrarConfig = field(default_factory=RegistrarConfig)
    auth: AuthSection = field(default_factory=AuthSection)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    billing: BillingConfig = field(default_factory=BillingConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    source: str = ""
    """Where this configuration was read from (not a TOML key)."""


def _check_type(value: Any, tp: Any) -> bool:
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if typing.get_origin(tp) is tuple:
        (inner, _) = typing.get_args(tp)
        return isinstance(value, list) and all(_check_type(v, inner) for v in value)
    raise TypeError(tp)  # pragma: no cover - a config field of an unsupported type


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is tuple:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return {bool: "true or false", int: "an integer", str: "a string"}[tp]


def _build(cls: Any, table: Any, path: str, prefix: str) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(path, prefix, "must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.name != "source"}
    for key in table:
        if key not in names:
            raise ConfigError(path, f"{prefix}.{key}" if prefix else key, "unknown key")
    kwargs: dict[str, Any] = {}
    for name in names:
        if name not in table:
            continue
        key = f"{prefix}.{name}" if prefix else name
        tp = hints[name]
        value = table[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, path, key)
        elif not _check_type(value, tp):
            raise ConfigError(path, key, f"must be {_type_name(tp)}")
        elif isinstance(value, int) and not isinstance(value, bool) and value < 0:
            raise ConfigError(path, key, "must not be negative")
        else:
            kwargs[name] = tuple(value) if isinstance(value, list) else value
    obj = cls(**kwargs)
    for key, reason in getattr(obj, "check", lambda: [])():
        raise ConfigError(path, f"{prefix}.{key}" if prefix else key, reason)
    return obj


def parse_config(text: str, path: str) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path, "(syntax)", str(e)) from e
    cfg: Config = _build(Config, data, path, "")
    return dataclasses.replace(cfg, source=path)


def read_toml_text(path: str | Path) -> str:
    """A configuration or plan file's text; ConfigError naming the file otherwise."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(str(path), "(file)", e.strerror or str(e)) from e
    except UnicodeDecodeError as e:
        raise ConfigError(str(path), "(file)", f"not UTF-8: {e}") from e


def load_config(path: str | Path) -> Config:
    return parse_config(read_toml_text(path), str(path))


def embedded_config_text() -> str:
    return resources.files("sipcore").joinpath("data/sipcore.example.toml").read_text(encoding="utf-8")


def default_config() -> Config:
    return parse_config(embedded_config_text(), EMBEDDED_NAME)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "[" + ", ".join(_toml_value(x) for x in v) + "]"


def config_to_toml(cfg: Config) -> str:
    """The effective configuration, every key with its value (for `config check`)."""
    out = []
    for f in dataclasses.fields(cfg):
        section = getattr(cfg, f.name)
        if not dataclasses.is_dataclass(section):
            continue
        out.append(f"[{f.name}]")
        for g in dataclasses.fields(section):
            out.append(f"{g.name} = {_toml_value(getattr(section, g.name))}")
        out.append("")
    return "\n".join(out)
