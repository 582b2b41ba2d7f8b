"""Session Description Protocol parser (RFC 8866, formerly RFC 4566).

What: :func:`parse_sdp` turns an ``application/sdp`` body into an immutable
:class:`SessionDescription` holding the session-level fields and one
:class:`MediaDescription` per ``m=`` section, with ``a=rtpmap`` / ``a=fmtp``
already resolved per payload type.

Why: the proxy never negotiates media, but the metering layer must know
whether a call carries video and which codecs each side offers.  The helpers
answer exactly those questions:

* :attr:`SessionDescription.has_active_video`: an ``m=video`` line whose
  port is not 0 (RFC 3264 §5.1/§6: port 0 rejects or disables a stream).
  This is the product's metering definition, so the direction attribute is
  deliberately **not** consulted: an ``a=inactive`` video stream on a
  non-zero port still counts.
* :attr:`MediaDescription.codecs`: codec names in offer order, resolving
  static RTP payload types that carry no ``a=rtpmap`` through the RFC 3551
  §6 table (:data:`STATIC_PAYLOAD_TYPES`).
* :meth:`SessionDescription.codec_set`: the voice/video codecs of all active
  streams of one media kind; ``telephone-event`` (RFC 4733) and ``CN``
  (comfort noise, RFC 3389) are left out because they are not codecs a call
  is billed for.
* :attr:`MediaDescription.direction` (RFC 3264 §5.1, RFC 8866 §6.7): a
  media-level direction attribute wins, otherwise the session-level one,
  otherwise ``"sendrecv"``.
* :meth:`SessionDescription.connection_for`: the effective ``c=`` of a
  stream (media level overrides session level, RFC 8866 §5.7).

Strictness: the body comes from the network, so every malformation ends in
:class:`~sipcore.errors.SdpError` (never ``IndexError``, ``ValueError`` or
``UnicodeDecodeError``).  The grammar is enforced where the metering layer
depends on it: ``v=0`` first, ``<letter>=<value>`` lines, well-formed
``o=``, ``c=``, ``b=``, ``t=``, ``m=`` and ``a=rtpmap`` lines, no NUL or bare
CR.  It is lenient where a strict reading would only lose data: a missing
``o=``, ``s=`` or ``t=`` is accepted, the field order inside a section is not
checked, unknown line types are ignored (RFC 8866 §5), and the ``i=``,
``u=``, ``e=``, ``p=``, ``k=``, ``r=`` and ``z=`` lines are accepted but not
kept.  A body may have at most :data:`MAX_LINES` lines and
:data:`MAX_MEDIA` media sections, so a flood cannot exhaust memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sipcore.errors import SdpError

__all__ = [
    "DIRECTIONS",
    "MAX_LINES",
    "MAX_MEDIA",
    "NON_CODEC_ENCODINGS",
    "STATIC_PAYLOAD_TYPES",
    "Bandwidth",
    "Codec",
    "Connection",
    "MediaDescription",
    "Origin",
    "SessionDescription",
    "Timing",
    "parse_sdp",
]

#: Most lines a body may have (trailing empty lines not counted).
MAX_LINES = 1024
#: Most ``m=`` sections a body may have.
MAX_MEDIA = 64

#: The direction attributes of RFC 3264 §5.1 / RFC 8866 §6.7.
DIRECTIONS: frozenset[str] = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})
_DEFAULT_DIRECTION = "sendrecv"

#: Encodings that :meth:`SessionDescription.codec_set` leaves out: DTMF
#: events (RFC 4733) and comfort noise (RFC 3389) are not voice codecs.
NON_CODEC_ENCODINGS: frozenset[str] = frozenset({"TELEPHONE-EVENT", "CN"})

# Types RFC 8866 §5 defines.  Those in _SESSION_ONLY may not follow the
# first m= line; any other letter is an unknown type and is ignored.
_KNOWN_TYPES = frozenset("vosiuepcbtrzkam")
_SESSION_ONLY = frozenset("vosueptrz")

_DIGITS = re.compile(r"[0-9]+")
# Fields are separated by SP (RFC 8866 §9); runs of SP/HTAB and a trailing
# space, which some user agents emit, are tolerated.  str.split() is not
# used because it would also split on exotic Unicode whitespace.
_FIELD_SEP = re.compile(r"[ \t]+")


def _fields(value: str, maxsplit: int = 0) -> list[str]:
    value = value.strip(" \t")
    return _FIELD_SEP.split(value, maxsplit) if value else []


@dataclass(frozen=True, slots=True)
class Codec:
    """One payload format: ``a=rtpmap`` or a static RFC 3551 entry."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    @property
    def name(self) -> str:
        """The encoding name upper-cased (``"opus"`` -> ``"OPUS"``)."""
        return self.encoding.upper()


def _static(pt: int, encoding: str, rate: int, channels: int | None = None) -> tuple[int, Codec]:
    return pt, Codec(pt, encoding, rate, channels)


#: Static RTP payload types of RFC 3551 §6, Tables 4 and 5 (1 and 2 are
#: reserved there and so absent; a stream using them needs an ``a=rtpmap``).
STATIC_PAYLOAD_TYPES: Mapping[int, Codec] = MappingProxyType(
    dict(
        [
            _static(0, "PCMU", 8000, 1),
            _static(3, "GSM", 8000, 1),
            _static(4, "G723", 8000, 1),
            _static(5, "DVI4", 8000, 1),
            _static(6, "DVI4", 16000, 1),
            _static(7, "LPC", 8000, 1),
            _static(8, "PCMA", 8000, 1),
            _static(9, "G722", 8000, 1),
            _static(10, "L16", 44100, 2),
            _static(11, "L16", 44100, 1),
            _static(12, "QCELP", 8000, 1),
            _static(13, "CN", 8000, 1),
            _static(14, "MPA", 90000),
            _static(15, "G728", 8000, 1),
            _static(16, "DVI4", 11025, 1),
            _static(17, "DVI4", 22050, 1),
            _static(18, "G729", 8000, 1),
            _static(25, "CelB", 90000),
            _static(26, "JPEG", 90000),
            _static(28, "nv", 90000),
            _static(31, "H261", 90000),
            _static(32, "MPV", 90000),
            _static(33, "MP2T", 90000),
            _static(34, "H263", 90000),
        ]
    )
)


@dataclass(frozen=True, slots=True)
class Origin:
    """The ``o=`` line (RFC 8866 §5.2); every field is kept verbatim."""

    username: str
    sess_id: str
    sess_version: str
    nettype: str
    addrtype: str
    address: str


@dataclass(frozen=True, slots=True)
class Connection:
    """A ``c=`` line (RFC 8866 §5.7).

    ``address`` is the bare address (an IPv4 or IPv6 literal or a host name)
    with the multicast suffixes split off: for ``IP4`` ``/<ttl>[/<num>]``, for
    ``IP6`` ``/<num>`` (IPv6 has no TTL field).
    """

    nettype: str
    addrtype: str
    address: str
    ttl: int | None = None
    num_addresses: int | None = None


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """A ``b=<bwtype>:<bandwidth>`` line (RFC 8866 §5.8), e.g. ``AS`` kbit/s."""

    bwtype: str
    bandwidth: int


@dataclass(frozen=True, slots=True)
class Timing:
    """A ``t=<start> <stop>`` line (RFC 8866 §5.9), NTP seconds; 0 = unbounded."""

    start: int
    stop: int


def _empty_map() -> Mapping[Any, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One ``m=`` section (RFC 8866 §5.14) and the lines that follow it.

    ``connection`` and ``bandwidths`` are the media-level lines only; use
    :meth:`SessionDescription.connection_for` for the effective address.
    ``attributes`` holds every ``a=`` line as ``(name, value)``, ``value``
    being ``None`` for a property attribute such as ``a=sendrecv``.
    ``rtpmap`` and ``fmtp`` are read-only views derived from ``attributes``
    and therefore take no part in equality or hashing.  ``fmtp`` keeps the
    first ``a=fmtp`` of each integer payload type; a non-numeric format's
    ``a=fmtp`` stays only in ``attributes``.  ``session_direction`` is the
    session-level direction attribute, if any, which :attr:`direction`
    falls back on.
    """

    media: str
    port: int
    port_count: int | None
    proto: str
    formats: tuple[str, ...]
    connection: Connection | None = None
    bandwidths: tuple[Bandwidth, ...] = ()
    attributes: tuple[tuple[str, str | None], ...] = ()
    rtpmap: Mapping[int, Codec] = field(default_factory=_empty_map, compare=False)
    fmtp: Mapping[int, str] = field(default_factory=_empty_map, compare=False)
    session_direction: str | None = None

    @property
    def active(self) -> bool:
        """True unless the port is 0 (RFC 3264: port 0 = rejected/disabled)."""
        return self.port != 0

    @property
    def direction(self) -> str:
        """``sendrecv``/``sendonly``/``recvonly``/``inactive``.

        The first media-level direction attribute, else the session-level
        one, else ``"sendrecv"`` (RFC 3264 §5.1).
        """
        return _first_direction(self.attributes) or self.session_direction or _DEFAULT_DIRECTION

    @property
    def is_rtp(self) -> bool:
        """True when the transport protocol is RTP-based (``RTP/AVP``,
        ``RTP/SAVPF``, ``UDP/TLS/RTP/SAVPF``...), i.e. formats are payload
        types."""
        return "RTP" in self.proto.upper().split("/")

    @property
    def codecs(self) -> tuple[str, ...]:
        """Upper-case codec names in ``m=`` line order, without repeats.

        For RTP streams each format is a payload type resolved through
        ``a=rtpmap``, else through :data:`STATIC_PAYLOAD_TYPES`; a dynamic
        payload type without ``a=rtpmap`` is skipped.  For other protocols
        (``udptl``, ``TCP/MSRP``...) the formats themselves are the names,
        except the wildcard ``*``.
        """
        names: dict[str, None] = {}
        for fmt in self.formats:
            if self.is_rtp:
                codec = self._resolve(fmt)
                if codec is not None:
                    names.setdefault(codec.name, None)
            elif fmt != "*":
                names.setdefault(fmt.upper(), None)
        return tuple(names)

    def _resolve(self, fmt: str) -> Codec | None:
        if not (_DIGITS.fullmatch(fmt) and len(fmt) <= 3):
            return None
        pt = int(fmt)
        codec = self.rtpmap.get(pt)
        if codec is None:
            codec = STATIC_PAYLOAD_TYPES.get(pt)
        return codec


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A parsed SDP body; see the module docstring for the helpers' meaning."""

    version: int
    origin: Origin | None
    session_name: str
    connection: Connection | None = None
    bandwidths: tuple[Bandwidth, ...] = ()
    times: tuple[Timing, ...] = ()
    attributes: tuple[tuple[str, str | None], ...] = ()
    media: tuple[MediaDescription, ...] = ()

    @property
    def has_active_video(self) -> bool:
        """True when some ``m=video`` line has a port other than 0.

        This is the metering definition of a video call: direction
        attributes (even ``a=inactive``) are intentionally ignored.
        """
        return any(m.media.lower() == "video" and m.port != 0 for m in self.media)

    def connection_for(self, media: MediaDescription) -> Connection | None:
        """The effective ``c=`` of ``media``: its own, else the session's."""
        return media.connection if media.connection is not None else self.connection

    def codec_set(self, kind: str = "audio") -> frozenset[str]:
        """Codec names over the active (port != 0) streams of ``kind``.

        ``kind`` is compared case-insensitively with the ``m=`` media type.
        :data:`NON_CODEC_ENCODINGS` (``TELEPHONE-EVENT``, ``CN``) are left
        out.
        """
        wanted = kind.lower()
        return frozenset(
            name
            for m in self.media
            if m.active and m.media.lower() == wanted
            for name in m.codecs
            if name not in NON_CODEC_ENCODINGS
        )


# --------------------------------------------------------------------------
# parsing


class _MediaBuilder:
    __slots__ = (
        "attributes",
        "bandwidths",
        "connection",
        "fmtp",
        "formats",
        "media",
        "port",
        "port_count",
        "proto",
        "rtpmap",
    )

    def __init__(
        self,
        media: str,
        port: int,
        port_count: int | None,
        proto: str,
        formats: tuple[str, ...],
    ) -> None:
        self.media = media
        self.port = port
        self.port_count = port_count
        self.proto = proto
        self.formats = formats
        self.connection: Connection | None = None
        self.bandwidths: list[Bandwidth] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.rtpmap: dict[int, Codec] = {}
        self.fmtp: dict[int, str] = {}

    def build(self, session_direction: str | None) -> MediaDescription:
        return MediaDescription(
            media=self.media,
            port=self.port,
            port_count=self.port_count,
            proto=self.proto,
            formats=self.formats,
            connection=self.connection,
            bandwidths=tuple(self.bandwidths),
            attributes=tuple(self.attributes),
            rtpmap=MappingProxyType(self.rtpmap),
            fmtp=MappingProxyType(self.fmtp),
            session_direction=session_direction,
        )


def _decode(body: bytes | bytearray | memoryview | str) -> str:
    if isinstance(body, str):
        return body
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body).decode("utf-8", errors="surrogateescape")
    raise TypeError(f"SDP body must be bytes or str, not {type(body).__name__}")


def _split_lines(text: str) -> list[str]:
    text = text.rstrip("\r\n")
    if not text:
        raise SdpError("empty session description")
    if text.count("\n") >= MAX_LINES:
        raise SdpError(f"session description has more than {MAX_LINES} lines")
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    for i, line in enumerate(lines, start=1):
        if "\r" in line or "\x00" in line:
            raise SdpError(f"line {i}: bare CR or NUL inside a line")
    return lines


def _int(text: str, what: str, lineno: int, lo: int = 0, hi: int | None = None) -> int:
    # ASCII digits only (int() would take "+1", " 1", "1_0" or Arabic-Indic
    # digits) and bounded length (int() rejects > 4300 digits with ValueError).
    if not (_DIGITS.fullmatch(text) and len(text) <= 20):
        raise SdpError(f"line {lineno}: {what} is not a decimal integer: {text[:40]!r}")
    value = int(text)
    if value < lo or (hi is not None and value > hi):
        bound = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise SdpError(f"line {lineno}: {what} {value} out of range ({bound})")
    return value


def _parse_origin(value: str, lineno: int) -> Origin:
    parts = _fields(value)
    if len(parts) != 6:
        raise SdpError(
            f"line {lineno}: o= needs 6 fields (username sess-id sess-version "
            f"nettype addrtype address), got {len(parts)}"
        )
    return Origin(*parts)


def _parse_connection(value: str, lineno: int) -> Connection:
    parts = _fields(value)
    if len(parts) != 3:
        raise SdpError(f"line {lineno}: c= needs 3 fields (nettype addrtype address), got {len(parts)}")
    nettype, addrtype, address = parts
    ttl: int | None = None
    num: int | None = None
    kind = addrtype.upper()
    if kind in ("IP4", "IP6") and "/" in address:
        address, *suffix = address.split("/")
        if kind == "IP4":
            if len(suffix) > 2:
                raise SdpError(f"line {lineno}: c= IP4 address takes at most /<ttl>/<num>")
            ttl = _int(suffix[0], "c= TTL", lineno, 0, 255)
            if len(suffix) == 2:
                num = _int(suffix[1], "c= number of addresses", lineno, 1)
        else:
            if len(suffix) > 1:
                raise SdpError(f"line {lineno}: c= IP6 address takes at most /<num>")
            num = _int(suffix[0], "c= number of addresses", lineno, 1)
    if not address:
        raise SdpError(f"line {lineno}: c= has an empty address")
    return Connection(nettype, addrtype, address, ttl, num)


def _parse_bandwidth(value: str, lineno: int) -> Bandwidth:
    bwtype, sep, amount = value.partition(":")
    if not sep or not bwtype or " " in bwtype:
        raise SdpError(f"line {lineno}: b= must be <bwtype>:<bandwidth>")
    return Bandwidth(bwtype, _int(amount, "b= bandwidth", lineno))


def _parse_timing(value: str, lineno: int) -> Timing:
    parts = _fields(value)
    if len(parts) != 2:
        raise SdpError(f"line {lineno}: t= needs 2 fields (start stop), got {len(parts)}")
    return Timing(_int(parts[0], "t= start", lineno), _int(parts[1], "t= stop", lineno))


def _parse_media(value: str, lineno: int) -> _MediaBuilder:
    parts = _fields(value)
    if len(parts) < 3:
        raise SdpError(f"line {lineno}: m= needs <media> <port> <proto> <fmt>...")
    media, port_text, proto, *formats = parts
    port_count: int | None = None
    if "/" in port_text:
        port_text, _, count_text = port_text.partition("/")
        port_count = _int(count_text, "m= port count", lineno, 1)
    port = _int(port_text, "m= port", lineno, 0, 65535)
    return _MediaBuilder(media, port, port_count, proto, tuple(formats))


def _parse_attribute(value: str, lineno: int) -> tuple[str, str | None]:
    name, sep, attr_value = value.partition(":")
    if not name or any(c.isspace() for c in name):
        raise SdpError(f"line {lineno}: a= has an empty or malformed attribute name")
    return name, (attr_value if sep else None)


def _parse_rtpmap(value: str, lineno: int) -> Codec:
    parts = _fields(value)
    if len(parts) != 2:
        raise SdpError(f"line {lineno}: rtpmap must be <pt> <encoding>/<clock rate>[/<channels>]")
    pt = _int(parts[0], "rtpmap payload type", lineno, 0, 127)
    spec = parts[1].split("/")
    if len(spec) not in (2, 3) or not spec[0]:
        raise SdpError(f"line {lineno}: rtpmap must be <pt> <encoding>/<clock rate>[/<channels>], got {value[:80]!r}")
    rate = _int(spec[1], "rtpmap clock rate", lineno, 1)
    channels = _int(spec[2], "rtpmap channels", lineno, 1) if len(spec) == 3 else None
    return Codec(pt, spec[0], rate, channels)


def _add_attribute(
    attributes: list[tuple[str, str | None]],
    value: str,
    lineno: int,
    media: _MediaBuilder | None,
) -> None:
    name, attr_value = _parse_attribute(value, lineno)
    attributes.append((name, attr_value))
    if name == "rtpmap":
        # Lenient on purpose: RFC 4475's VALID messages carry "a=rtpmap:31 LPC"
        # (no clock rate) and phones in the field send worse; a call must not
        # fail metering over an attribute.  The line stays in `attributes`,
        # the payload type falls back to the RFC 3551 static table.
        try:
            codec = _parse_rtpmap(attr_value or "", lineno)
        except SdpError:
            return
        if media is not None:
            if codec.payload_type in media.rtpmap:
                pt = codec.payload_type
                raise SdpError(f"line {lineno}: second rtpmap for payload type {pt}")
            media.rtpmap[codec.payload_type] = codec
    elif name == "fmtp" and media is not None and attr_value is not None:
        fmt, *rest = _fields(attr_value, 1) or [""]
        params = rest[0] if rest else ""
        if _DIGITS.fullmatch(fmt) and len(fmt) <= 3 and int(fmt) <= 127:
            media.fmtp.setdefault(int(fmt), params)


def _first_direction(attributes: Iterable[tuple[str, str | None]]) -> str | None:
    for name, _value in attributes:
        if name in DIRECTIONS:
            return name
    return None


def parse_sdp(body: bytes | str) -> SessionDescription:
    """Parse an SDP body (RFC 8866); raise :class:`SdpError` if malformed.

    ``bytes`` are decoded as UTF-8 with ``surrogateescape``, so undecodable
    octets survive as lone surrogates instead of raising.  Lines may end in
    CRLF or bare LF; trailing empty lines are ignored.
    """
    lines = _split_lines(_decode(body))
    if lines[0] != "v=0":
        raise SdpError(f"first line must be 'v=0', got {lines[0][:40]!r}")

    origin: Origin | None = None
    session_name: str | None = None
    connection: Connection | None = None
    bandwidths: list[Bandwidth] = []
    times: list[Timing] = []
    attributes: list[tuple[str, str | None]] = []
    media: list[_MediaBuilder] = []
    current: _MediaBuilder | None = None

    for lineno, line in enumerate(lines[1:], start=2):
        if not line:
            raise SdpError(f"line {lineno}: empty line inside the session description")
        if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
            raise SdpError(f"line {lineno}: expected <type>=<value> with a lowercase letter type, got {line[:40]!r}")
        typ, value = line[0], line[2:]
        if typ not in _KNOWN_TYPES:
            continue  # RFC 8866 §5: unknown types are ignored
        if typ == "v":
            raise SdpError(f"line {lineno}: v= may only be the first line")
        if current is not None and typ in _SESSION_ONLY:
            raise SdpError(f"line {lineno}: session-level {typ}= after the first m= line")

        if typ == "m":
            if len(media) >= MAX_MEDIA:
                raise SdpError(f"more than {MAX_MEDIA} media sections")
            current = _parse_media(value, lineno)
            media.append(current)
        elif typ == "a":
            _add_attribute(
                current.attributes if current is not None else attributes,
                value,
                lineno,
                current,
            )
        elif typ == "c":
            conn = _parse_connection(value, lineno)
            if current is None:
                if connection is not None:
                    raise SdpError(f"line {lineno}: second session-level c= line")
                connection = conn
            elif current.connection is None:
                # Several media-level c= lines are legal for multicast
                # (RFC 8866 §5.7); the first one is kept.
                current.connection = conn
        elif typ == "b":
            (current.bandwidths if current is not None else bandwidths).append(_parse_bandwidth(value, lineno))
        elif typ == "o":
            if origin is not None:
                raise SdpError(f"line {lineno}: second o= line")
            origin = _parse_origin(value, lineno)
        elif typ == "s":
            if session_name is not None:
                raise SdpError(f"line {lineno}: second s= line")
            session_name = value
        elif typ == "t":
            times.append(_parse_timing(value, lineno))
        # i= u= e= p= k= r= z=: valid, not needed, not kept.

    session_direction = _first_direction(attributes)
    return SessionDescription(
        version=0,
        origin=origin,
        session_name=session_name if session_name is not None else "",
        connection=connection,
        bandwidths=tuple(bandwidths),
        times=tuple(times),
        attributes=tuple(attributes),
        media=tuple(m.build(session_direction) for m in media),
    )
