"""The SIP message model shared by both parsers (RFC 3261 §7).

A parsed message is lazy: the parser fills the transaction-key slots
(`call_id`, `cseq`, `cseq_method`, `from_tag`, `to_tag`, the top Via's
`branch`/`via_host`/`via_port`/`via_transport`, `max_forwards`) and a packed
index of header offsets into the original bytes.  Header objects are built
on first use, typed values (Contact, Route, ...) on first access, and an
unmodified message serializes back to exactly the bytes it came from.

Index layout (``array('I')`` in native byte order, stored as bytes):
``[msg_start, start_line_end, headers_end, body_start, body_end,
a_s, a_e, b_s, b_e, c_s, c_e, n_headers, (name_s, name_e, val_s, val_e) * n]``
where a/b/c are the three start-line parts.
"""

from __future__ import annotations

import weakref
from array import array
from collections.abc import Callable, Iterator
from typing import Any, Self

from sipcore.errors import LocalProtocolError
from sipcore.message import headers as h
from sipcore.message.grammar import split_commas, unfold
from sipcore.message.uri import URI, parse_uri

IDX_FIXED = 12

COMPACT_FORMS = {
    "i": "Call-ID",
    "m": "Contact",
    "e": "Content-Encoding",
    "l": "Content-Length",
    "c": "Content-Type",
    "f": "From",
    "s": "Subject",
    "k": "Supported",
    "t": "To",
    "v": "Via",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "u": "Allow-Events",
    "x": "Session-Expires",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
    "y": "Identity",
    "n": "Identity-Info",
}
_WELL_KNOWN = [
    "Via",
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Contact",
    "Max-Forwards",
    "Route",
    "Record-Route",
    "Content-Length",
    "Content-Type",
    "Content-Encoding",
    "Expires",
    "Min-Expires",
    "Authorization",
    "Proxy-Authorization",
    "WWW-Authenticate",
    "Proxy-Authenticate",
    "Allow",
    "Supported",
    "Require",
    "Proxy-Require",
    "Unsupported",
    "User-Agent",
    "Server",
    "Date",
    "Path",
    "Subject",
    "Accept",
    "Event",
    "Refer-To",
    "Referred-By",
    "Allow-Events",
    "Session-Expires",
    "Min-SE",
    "Timestamp",
    "Warning",
    "Retry-After",
    "Reason",
    "Authentication-Info",
    "Accept-Contact",
    "Reject-Contact",
    "Request-Disposition",
    "Identity",
    "Identity-Info",
    "Subscription-State",
    "RSeq",
    "RAck",
    "P-Asserted-Identity",
]
_CANONICAL = {n.lower(): n for n in _WELL_KNOWN}
_CANONICAL.update(COMPACT_FORMS)


def canonical_name(name: str) -> str:
    """Header name as sipcore writes it: compact forms expanded, known names in
    their RFC spelling, unknown names as given."""
    return _CANONICAL.get(name.lower(), name)


_KEY_CACHE: dict[str, str] = {}

# The Cython module's `build_fields` when the C parser is in use (installed by
# the sipcore.message facade); the loop in Message._build_fields otherwise.
_fast_build_fields: Callable[[bytes, bytes, dict[str, str], Callable[[str], str]], list[HeaderField]] | None = None


def header_key(name: str) -> str:
    """Case-insensitive comparison key of a header name (compact forms folded)."""
    key = _KEY_CACHE.get(name)
    if key is None:
        key = canonical_name(name).lower()
        if len(_KEY_CACHE) < 4096:  # names come off the wire: bounded
            _KEY_CACHE[name] = key
    return key


# Headers whose change invalidates the parsed transaction-key slots.
_KEY_HEADERS = frozenset({"via", "from", "to", "call-id", "cseq", "max-forwards"})


class HeaderField:
    """One header field line: name as written, unfolded value, original bytes
    (None once the field was changed or built)."""

    __slots__ = ("name", "value", "raw", "key")

    def __init__(self, name: str, value: str, raw: bytes | None = None) -> None:
        self.name = name
        self.value = value
        self.raw = raw
        self.key = header_key(name)

    @classmethod
    def known(cls, name: str, value: str, key: str) -> HeaderField:
        """A field whose key the caller already knows (no name lookup)."""
        f = cls.__new__(cls)
        f.name, f.value, f.raw, f.key = name, value, None, key
        return f

    def __repr__(self) -> str:
        return f"HeaderField({self.name!r}, {self.value!r})"


class Headers:
    """Ordered, case-insensitive header fields with duplicates kept."""

    # The owner is held weakly: a strong back-reference would make every
    # message whose headers were read a reference cycle, freed only by the
    # cyclic GC, which at tens of thousands of messages a second is what
    # the server would spend its time on.
    __slots__ = ("_fields", "_owner", "_by_key")

    def __init__(self, fields: list[HeaderField] | None = None, owner: Message | None = None) -> None:
        self._fields = fields or []
        self._owner = weakref.ref(owner) if owner is not None else None
        self._by_key: dict[str, list[str]] | None = None

    def _lookup(self) -> dict[str, list[str]]:
        """key -> values in order, for the lookups: a request is asked for a
        header about ten times on its way through the core, and one pass
        beats ten scans.  Built on the first lookup, dropped by every change."""
        by_key: dict[str, list[str]] = {}
        for f in self._fields:
            vals = by_key.get(f.key)
            if vals is None:
                by_key[f.key] = [f.value]
            else:
                vals.append(f.value)
        self._by_key = by_key
        return by_key

    # reading
    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((f.name, f.value) for f in self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return header_key(name) in (self._by_key or self._lookup())

    def fields(self) -> list[HeaderField]:
        return list(self._fields)

    def get(self, name: str, default: str | None = None) -> str | None:
        vals = (self._by_key or self._lookup()).get(header_key(name))
        return default if vals is None else vals[0]

    def get_all(self, name: str) -> list[str]:
        vals = (self._by_key or self._lookup()).get(header_key(name))
        return [] if vals is None else vals.copy()

    def count(self, name: str) -> int:
        vals = (self._by_key or self._lookup()).get(header_key(name))
        return 0 if vals is None else len(vals)

    def values(self, name: str) -> list[str]:
        """All comma-separated elements of every field called `name` (§7.3.1)."""
        out: list[str] = []
        for v in self.get_all(name):
            if '"' in v or "<" in v:
                out.extend(split_commas(v))
            else:  # option tags, methods, media types: nothing to protect
                out.extend(x.strip(" \t") for x in v.split(","))
        return out

    # writing
    def _changed(self, key: str) -> None:
        self._by_key = None
        owner = self._owner() if self._owner is not None else None
        if owner is not None:
            owner._header_changed(key)

    def add(self, name: str, value: str) -> None:
        f = HeaderField(canonical_name(name), value)
        self._fields.append(f)
        self._changed(f.key)

    def prepend(self, name: str, value: str) -> None:
        """Insert above the first field of the same name (Via, Record-Route)."""
        f = HeaderField(canonical_name(name), value)
        pos = next((i for i, g in enumerate(self._fields) if g.key == f.key), 0)
        self._fields.insert(pos, f)
        self._changed(f.key)

    def set(self, name: str, value: str) -> None:
        """Replace every field called `name` by one (in the first one's place)."""
        f = HeaderField(canonical_name(name), value)
        pos = next((i for i, g in enumerate(self._fields) if g.key == f.key), None)
        self._fields = [g for g in self._fields if g.key != f.key]
        if pos is None:
            self._fields.append(f)
        else:
            self._fields.insert(pos, f)
        self._changed(f.key)

    def remove(self, name: str) -> int:
        k = header_key(name)
        before = len(self._fields)
        self._fields = [g for g in self._fields if g.key != k]
        if len(self._fields) != before:
            self._changed(k)
        return before - len(self._fields)

    def pop_first_value(self, name: str, *, keep_keys: bool = False) -> str | None:
        """Remove the first element of the first field called `name`
        (the top Via of a response, §16.7 step 3).  With `keep_keys`, the
        message's transaction-key slots are left as they were instead of
        being parsed again: for a response a proxy relays and never matches
        again (the per-packet path)."""
        k = header_key(name)
        for i, f in enumerate(self._fields):
            if f.key == k:
                if "," not in f.value:  # one element: the common case, nothing to split
                    first = f.value
                    del self._fields[i]
                else:  # "Via: a, b" as SIPp and some phones send them
                    elems = split_commas(f.value)
                    first = elems[0]
                    if len(elems) <= 1:
                        del self._fields[i]
                    else:
                        self._fields[i] = HeaderField(f.name, ", ".join(elems[1:]))
                if keep_keys:
                    self._by_key = None
                    owner = self._owner() if self._owner is not None else None
                    if owner is not None:
                        owner._cache = None
                else:
                    self._changed(k)
                return first
        return None

    def to_bytes(self) -> bytes:
        out: list[bytes] = []
        built: list[str] = []  # consecutive built lines are encoded together
        for f in self._fields:
            if f.raw is None:
                built.append(f"{f.name}: {f.value}\r\n")
                continue
            if built:
                out.append("".join(built).encode("utf-8", "surrogateescape"))
                built = []
            out.append(f.raw)
        if built:
            out.append("".join(built).encode("utf-8", "surrogateescape"))
        return b"".join(out)


_MISSING: Any = object()


def _dec(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


class Message:
    """Common part of :class:`Request` and :class:`Response`."""

    __slots__ = (
        "__weakref__",
        "_data",
        "_idx",
        "_headers",
        "_body",
        "_cache",
        "call_id",
        "cseq",
        "cseq_method",
        "from_tag",
        "to_tag",
        "branch",
        "via_host",
        "via_port",
        "via_transport",
        "max_forwards",
    )

    _data: bytes | None
    _idx: bytes | None
    _headers: Headers | None
    _body: bytes | None
    _cache: dict[str, Any] | None
    call_id: str
    cseq: int
    cseq_method: str
    from_tag: str | None
    to_tag: str | None
    branch: str | None
    via_host: str
    via_port: int | None
    via_transport: str
    max_forwards: int | None

    def _init_built(self, headers: list[tuple[str, str]], body: bytes) -> None:
        self._data = None
        self._idx = None
        self._body = body
        self._cache = None
        fields = [HeaderField(canonical_name(n), v) for n, v in headers]
        if not any(f.key == "content-length" for f in fields):
            fields.append(HeaderField("Content-Length", str(len(body))))
        self._headers = Headers(fields, self)
        self._refresh_keys()

    # --- index access ------------------------------------------------------
    def without_parsed_state(self) -> Self:
        """This message with its header objects and typed-value cache dropped
        (they are rebuilt from the bytes on the next use); returns self."""
        if self._data is not None:
            self._headers = None
            self._cache = None
        return self

    def _index(self) -> array[int]:
        a: array[int] = array("I")
        assert self._idx is not None
        a.frombytes(self._idx)
        return a

    def _slice(self, a: int, b: int) -> bytes:
        assert self._data is not None
        return self._data[a:b]

    # --- headers -------------------------------------------------------------
    @property
    def headers(self) -> Headers:
        hs = self._headers
        if hs is None:
            hs = self._headers = Headers(self._build_fields(), self)
        return hs

    def _build_fields(self) -> list[HeaderField]:
        """Header objects from the index: once per message, on first use."""
        if _fast_build_fields is not None:
            assert self._data is not None and self._idx is not None
            return _fast_build_fields(self._data, self._idx, _KEY_CACHE, header_key)
        idx = self._index()
        data = self._data
        assert data is not None
        n = idx[11]
        line_starts = idx[IDX_FIXED::4]
        new = HeaderField.__new__
        cache = _KEY_CACHE
        fields = []
        for k in range(n):
            o = IDX_FIXED + 4 * k
            ns, ne, vs, ve = idx[o : o + 4]
            raw_value = data[vs:ve]
            value = raw_value.decode("utf-8", "surrogateescape")
            if raw_value.find(b"\n") >= 0:  # not `in`: bytes.__contains__ raises and swallows a TypeError first
                value = unfold(value)
            name = data[ns:ne].decode("ascii")  # a token: checked by the parser
            f = new(HeaderField)
            f.name = name
            f.value = value
            f.raw = data[ns : line_starts[k + 1] if k + 1 < n else idx[2]]
            f.key = cache.get(name) or header_key(name)
            fields.append(f)
        return fields

    def _header_changed(self, key: str) -> None:
        self._cache = None
        if key in _KEY_HEADERS:
            self._refresh_keys()

    def _refresh_keys(self) -> None:
        """Re-derive the transaction-key slots from the (changed) headers."""
        hs = self.headers
        vias = hs.get_all("Via")
        if vias:
            top = h.parse_top_via(vias[0])
            self.branch, self.via_host, self.via_port, self.via_transport = (
                top.branch,
                top.host,
                top.port,
                top.transport,
            )
        else:
            self.branch, self.via_host, self.via_port, self.via_transport = None, "", None, ""
        cid = hs.get("Call-ID")
        self.call_id = cid.strip() if cid else ""
        cseq = hs.get("CSeq")
        if cseq:
            c = h.parse_cseq(cseq)
            self.cseq, self.cseq_method = c.number, c.method
        else:
            self.cseq, self.cseq_method = 0, ""
        f = hs.get("From")
        self.from_tag = h.parse_name_addr(f, "From").tag if f else None
        t = hs.get("To")
        self.to_tag = h.parse_name_addr(t, "To").tag if t else None
        mf = hs.get("Max-Forwards")
        self.max_forwards = h.parse_max_forwards(mf) if mf is not None else None

    def _typed(self, key: str, build: Any) -> Any:
        cache = self._cache
        if cache is None:
            cache = self._cache = {}
        # get() with a sentinel, not try/except KeyError: the first access of
        # each typed value is a miss, and raising costs more than the parse.
        val = cache.get(key, _MISSING)
        if val is _MISSING:
            val = cache[key] = build()
        return val

    # --- typed accessors (parsed on first use; ParseError if malformed) ------
    @property
    def vias(self) -> list[h.Via]:
        return self._typed("via", lambda: [v for f in self.headers.get_all("Via") for v in h.parse_via_list(f)])

    @property
    def from_(self) -> h.NameAddr:
        return self._typed("from", lambda: h.parse_name_addr(self.headers.get("From") or "", "From"))

    @property
    def to(self) -> h.NameAddr:
        return self._typed("to", lambda: h.parse_name_addr(self.headers.get("To") or "", "To"))

    def _name_addrs(self, name: str) -> list[h.NameAddr]:
        return self._typed(
            name.lower(),
            lambda: [na for f in self.headers.get_all(name) for na in h.parse_name_addr_list(f, name)],
        )

    @property
    def contact_star(self) -> bool:
        """True for `Contact: *` (RFC 3261 §10.2.2)."""
        vals = self.headers.get_all("Contact")
        return len(vals) == 1 and vals[0].strip() == "*"

    @property
    def contacts(self) -> list[h.NameAddr]:
        if self.contact_star:
            return []
        return self._name_addrs("Contact")

    @property
    def routes(self) -> list[h.NameAddr]:
        return self._name_addrs("Route")

    @property
    def record_routes(self) -> list[h.NameAddr]:
        return self._name_addrs("Record-Route")

    @property
    def paths(self) -> list[h.NameAddr]:
        return self._name_addrs("Path")

    def _scalar(self, name: str, parse: Any) -> Any:
        def build() -> Any:
            v = self.headers.get(name)
            return None if v is None else parse(v)

        return self._typed(name.lower(), build)

    @property
    def expires(self) -> int | None:
        return self._scalar("Expires", h.parse_expires)  # type: ignore[no-any-return]

    @property
    def min_expires(self) -> int | None:
        return self._scalar("Min-Expires", h.parse_expires)  # type: ignore[no-any-return]

    @property
    def date(self) -> str | None:
        return self._scalar("Date", h.parse_date)  # type: ignore[no-any-return]

    def _auths(self, name: str) -> list[h.AuthHeader]:
        return self._typed(name.lower(), lambda: [h.parse_auth(v) for v in self.headers.get_all(name)])

    @property
    def authorization(self) -> list[h.AuthHeader]:
        return self._auths("Authorization")

    @property
    def proxy_authorization(self) -> list[h.AuthHeader]:
        return self._auths("Proxy-Authorization")

    @property
    def www_authenticate(self) -> list[h.AuthHeader]:
        return self._auths("WWW-Authenticate")

    @property
    def proxy_authenticate(self) -> list[h.AuthHeader]:
        return self._auths("Proxy-Authenticate")

    @property
    def content_type(self) -> str | None:
        v = self.headers.get("Content-Type")
        return None if v is None else v.split(";", 1)[0].strip().lower()

    @property
    def body(self) -> bytes:
        if self._body is not None:
            return self._body
        idx = self._index()
        return self._slice(idx[3], idx[4])

    @body.setter
    def body(self, value: bytes) -> None:
        self._body = value
        self.headers.set("Content-Length", str(len(value)))

    def validate(self) -> None:
        """Parse every header whose grammar sipcore knows; raise ParseError on
        the first malformed one.  Layers that act on a header call its
        accessor anyway; this is for elements that want strict checking
        (RFC 4475 §3.1.2 cases a liberal proxy may let through)."""
        _ = (self.vias, self.from_, self.to, self.contacts, self.routes, self.record_routes)
        _ = (self.paths, self.expires, self.min_expires, self.date, self.authorization)
        _ = (self.proxy_authorization, self.www_authenticate, self.proxy_authenticate)

    # --- serialization -----------------------------------------------------
    def _start_line(self) -> bytes:
        raise NotImplementedError

    def _start_part(self, i: int) -> str:
        idx = self._index()
        return _dec(self._slice(idx[i], idx[i + 1]))

    def _raw_start_line(self) -> bytes | None:
        if self._idx is None:
            return None
        idx = self._index()
        return self._slice(idx[0], idx[1])

    def to_bytes(self) -> bytes:
        """Wire form: the original bytes when nothing changed, else canonical
        for what changed (and the original bytes of untouched header lines)."""
        if self._headers is None and self._body is None and self._data is not None:
            idx = self._index()
            return self._data[idx[0] : idx[4]]
        head = self._start_line()
        if self._data is not None and self._headers is None:
            idx = self._index()
            hdrs = self._data[idx[1] : idx[2]]
            hdrs = hdrs[hdrs.index(b"\n") + 1 :]
        else:
            hdrs = self.headers.to_bytes()
        return head + b"\r\n" + hdrs + b"\r\n" + self.body

    __bytes__ = to_bytes

    def _snapshot(self) -> tuple[Any, ...]:
        """Everything a parser produced, for the differential tests."""
        return (
            type(self).__name__,
            self._idx,
            self.call_id,
            self.cseq,
            self.cseq_method,
            self.from_tag,
            self.to_tag,
            self.branch,
            self.via_host,
            self.via_port,
            self.via_transport,
            self.max_forwards,
            list(self.headers),
            self.body,
        )


class Request(Message):
    __slots__ = ("method", "ruri")

    method: str
    ruri: str

    def __init__(self, method: str, ruri: str, headers: list[tuple[str, str]], body: bytes = b"") -> None:
        self.method = method
        self.ruri = ruri
        self._init_built(headers, body)

    @classmethod
    def derived(
        cls,
        orig: Request,
        ruri: str,
        fields: list[HeaderField],
        via: tuple[str | None, str, int | None, str],
        max_forwards: int | None,
        method: str | None = None,
    ) -> Request:
        """A request built from `orig` by a proxy (§16.6): `fields` are the new
        header fields (unchanged ones may be `orig`'s own objects, which keeps
        their original bytes), `via` = (branch, host, port, transport) of the
        Via the proxy put on top.  The other transaction keys (Call-ID, CSeq,
        tags) are copied from `orig`'s slots instead of being parsed again:
        forwarding is on the per-packet path."""
        r = cls.__new__(cls)
        r.method = method or orig.method
        r.ruri = ruri
        r._data = r._idx = r._cache = None
        r._body = orig.body
        r._headers = Headers(fields, r)
        r.call_id, r.cseq, r.cseq_method = orig.call_id, orig.cseq, orig.cseq_method
        r.from_tag, r.to_tag = orig.from_tag, orig.to_tag
        r.branch, r.via_host, r.via_port, r.via_transport = via
        r.max_forwards = max_forwards
        return r

    @property
    def uri(self) -> URI:
        return self._typed("ruri:" + self.ruri, lambda: parse_uri(self.ruri))  # type: ignore[no-any-return]

    def _start_line(self) -> bytes:
        raw = self._raw_start_line()
        if raw is not None and self._start_part(5) == self.method and self._start_part(7) == self.ruri:
            return raw
        return f"{self.method} {self.ruri} SIP/2.0".encode("utf-8", "surrogateescape")

    def _snapshot(self) -> tuple[Any, ...]:
        return super()._snapshot() + (self.method, self.ruri)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.ruri} call-id={self.call_id!r} cseq={self.cseq}>"


class Response(Message):
    __slots__ = ("status", "reason")

    status: int
    reason: str

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes = b"") -> None:
        if not 100 <= status <= 699:
            raise LocalProtocolError(f"status {status} out of range")
        self.status = status
        self.reason = reason
        self._init_built(headers, body)

    def _start_line(self) -> bytes:
        raw = self._raw_start_line()
        if raw is not None and self._start_part(7) == str(self.status) and self._start_part(9) == self.reason:
            return raw
        return f"SIP/2.0 {self.status} {self.reason}".encode("utf-8", "surrogateescape")

    def _snapshot(self) -> tuple[Any, ...]:
        return super()._snapshot() + (self.status, self.reason)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason} call-id={self.call_id!r} cseq={self.cseq} {self.cseq_method}>"


# RFC 3261 §21 reason phrases for the responses sipcore generates.
REASONS = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


def _first(by_key: dict[str, list[str]], key: str) -> str:
    vals = by_key.get(key)
    return vals[0] if vals else ""


def make_response(
    req: Request,
    status: int,
    reason: str | None = None,
    to_tag: str | None = None,
    extra: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    top_via: str | None = None,
) -> Response:
    """Build a response to `req` (RFC 3261 §8.2.6.2): Via (all, in order),
    From, To (with `to_tag` added when the request's To has none and the
    status is above 100), Call-ID and CSeq copied; Content-Length set.
    `top_via` replaces the first Via value (the server adds received/rport
    there, RFC 3261 §18.2.1 and RFC 3581 §4).

    On the hot path of every transaction: the copied fields come from the
    request's lookup index (which the core has built by then), and the
    transaction keys are copied from the request's slots instead of being
    parsed again from the copied headers."""
    hs = req.headers
    by_key = hs._by_key or hs._lookup()
    field = HeaderField.known
    fields = [field("Via", v, "via") for v in by_key.get("via", ())]
    if top_via is not None and fields:
        fields[0] = field("Via", top_via, "via")
    to = _first(by_key, "to")
    tag = req.to_tag
    if to_tag and status > 100 and tag is None:
        to = f"{to};tag={to_tag}"
        tag = to_tag
    fields.append(field("From", _first(by_key, "from"), "from"))
    fields.append(field("To", to, "to"))
    fields.append(field("Call-ID", _first(by_key, "call-id"), "call-id"))
    fields.append(field("CSeq", _first(by_key, "cseq"), "cseq"))
    if status == 100 and "timestamp" in by_key:
        fields.append(field("Timestamp", by_key["timestamp"][0], "timestamp"))  # §8.2.6.1
    if extra:
        fields.extend(HeaderField(canonical_name(n), v) for n, v in extra)
    fields.append(field("Content-Length", str(len(body)), "content-length"))
    if not 100 <= status <= 699:
        raise LocalProtocolError(f"status {status} out of range")
    resp = Response.__new__(Response)
    resp.status = status
    resp.reason = reason or REASONS.get(status, "Unknown")
    resp._data = resp._idx = resp._cache = None
    resp._body = body
    resp._headers = Headers(fields, resp)
    resp.call_id, resp.cseq, resp.cseq_method = req.call_id, req.cseq, req.cseq_method
    resp.from_tag, resp.to_tag = req.from_tag, tag
    resp.branch, resp.via_host, resp.via_port, resp.via_transport = (
        req.branch,
        req.via_host,
        req.via_port,
        req.via_transport,
    )
    resp.max_forwards = None
    return resp


def response_bytes(
    req: Request,
    status: int,
    reason: str | None = None,
    to_tag: str | None = None,
    extra: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    top_via: str | None = None,
) -> bytes:
    """``make_response(...).to_bytes()`` without the objects, for answers no
    transaction keeps (challenges, refusals, stateless errors): the same
    bytes (a test holds them equal on the torture corpus) at about a third
    of the cost, which on the challenge half of every registration counts."""
    if not 100 <= status <= 699:
        raise LocalProtocolError(f"status {status} out of range")
    hs = req.headers
    by_key = hs._by_key or hs._lookup()
    lines = [f"SIP/2.0 {status} {reason or REASONS.get(status, 'Unknown')}"]
    vias = by_key.get("via")
    if vias:
        lines.append(f"Via: {vias[0] if top_via is None else top_via}")
        for v in vias[1:]:
            lines.append(f"Via: {v}")
    to = _first(by_key, "to")
    if to_tag and status > 100 and req.to_tag is None:
        to = f"{to};tag={to_tag}"
    lines.append(f"From: {_first(by_key, 'from')}")
    lines.append(f"To: {to}")
    lines.append(f"Call-ID: {_first(by_key, 'call-id')}")
    lines.append(f"CSeq: {_first(by_key, 'cseq')}")
    if status == 100 and "timestamp" in by_key:
        lines.append(f"Timestamp: {by_key['timestamp'][0]}")
    if extra:
        for name, value in extra:
            lines.append(f"{canonical_name(name)}: {value}")
    lines.append(f"Content-Length: {len(body)}\r\n\r\n")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape") + body
