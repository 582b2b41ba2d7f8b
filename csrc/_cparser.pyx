# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Cython SIP parser: the fast implementation of the contract that
``sipcore.message._pyparser`` defines (see ``sipcore.message.parsing`` for
the order of checks).

It scans lines and header names in C, and extracts the transaction-key
fields (top Via, CSeq, Call-ID, From/To tags, Max-Forwards, Content-Length)
on a C fast path that accepts only a strict subset of the grammar: plain
values without folding, escapes, quoting, IPv6 or non-ASCII bytes.  Any value
outside that subset goes to the same Python functions the reference parser
uses, so the two agree by construction there; the differential tests check
that the fast path agrees on the rest.

The model objects are the pure-Python ``Request``/``Response`` classes.
Their ``__slots__`` are written through the member descriptors' offsets
(looked up and type-checked at import): a fresh object's slots are NULL, so
storing a new reference is all ``setattr`` would do, minus its lookup cost.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.ref cimport PyObject, Py_INCREF
from cpython.unicode cimport PyUnicode_DecodeUTF8, PyUnicode_DecodeASCII
from cpython.long cimport PyLong_FromLong
from libc.string cimport memchr, memcmp, memcpy
from libc.stdint cimport uint32_t
from libc.stdlib cimport malloc, free

from sipcore.errors import (
    HeaderTooLong,
    IncompleteMessage,
    MessageTooLarge,
    ParseError,
    TooManyHeaders,
)
from sipcore.message import headers as _h
from sipcore.message.grammar import PARAM_VALUE_CHARS, TOKEN_CHARS, WORD_CHARS, USER_CHARS, PARAM_CHARS
from sipcore.message.limits import DEFAULT_LIMITS
from sipcore.message.model import IDX_FIXED as _PY_IDX_FIXED, Request, Response
from sipcore.message.parsing import check_request_uri, check_version, header_value

cdef extern from "Python.h":
    ctypedef struct PyTypeObject:
        pass
    ctypedef struct PyMemberDef:
        const char* name
        int type
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member
    object PyType_GenericAlloc(PyTypeObject* tp, Py_ssize_t nitems)
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void* PyUnicode_DATA(object o)

# --- character tables ---------------------------------------------------------

cdef enum:
    T_TOKEN = 1
    T_WORD = 2
    T_USER = 4
    T_PARAM = 8
    T_PVAL = 16
    T_HOST = 32

cdef unsigned char CT[256]

def _init_tables():
    cdef int i
    for i in range(256):
        CT[i] = 0
    for chars, bit in ((TOKEN_CHARS, T_TOKEN), (WORD_CHARS, T_WORD), (PARAM_VALUE_CHARS, T_PVAL)):
        for ch in chars:
            CT[ord(ch)] |= bit
    # Fast-path subsets: no '%' (escapes), no '?' (URI headers), no ':' in
    # userinfo (passwords): anything else goes to the reference grammar.
    for ch in USER_CHARS:
        if ch not in "%?:":
            CT[ord(ch)] |= T_USER
    for ch in PARAM_CHARS:
        if ch not in "%":
            CT[ord(ch)] |= T_PARAM
    for ch in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-":
        CT[ord(ch)] |= T_HOST

_init_tables()

# --- interned values ----------------------------------------------------------

# Shared int objects for ports, status codes, small CSeq numbers and lengths:
# each one saves an allocation and a free per message.
cdef enum:
    NINTS = 10000
cdef list _INTS = [i for i in range(NINTS)]

cdef str S_INVITE = "INVITE", S_ACK = "ACK", S_BYE = "BYE", S_CANCEL = "CANCEL"
cdef str S_OPTIONS = "OPTIONS", S_REGISTER = "REGISTER", S_MESSAGE = "MESSAGE"
cdef str S_UPDATE = "UPDATE", S_INFO = "INFO", S_PRACK = "PRACK", S_REFER = "REFER"
cdef str S_NOTIFY = "NOTIFY", S_SUBSCRIBE = "SUBSCRIBE", S_PUBLISH = "PUBLISH"
cdef str S_UDP = "UDP", S_TCP = "TCP", S_TLS = "TLS", S_SCTP = "SCTP", S_WS = "WS", S_WSS = "WSS"


cdef inline object _dec(const char* p, Py_ssize_t n):
    return PyUnicode_DecodeUTF8(p, n, "surrogateescape")


cdef inline object _astr(const char* p, Py_ssize_t n):
    """A str from bytes the caller has checked are ASCII (a table scan):
    skips the decoder's own scan, which costs more than the copy."""
    s = PyUnicode_New(n, 127)
    memcpy(PyUnicode_DATA(s), p, n)
    return s


cdef object _method_str(const char* p, Py_ssize_t n):
    """Method names are case-sensitive (§7.1): share one str per known method."""
    if n == 6:
        if memcmp(p, "INVITE", 6) == 0:
            return S_INVITE
        if memcmp(p, "CANCEL", 6) == 0:
            return S_CANCEL
        if memcmp(p, "UPDATE", 6) == 0:
            return S_UPDATE
        if memcmp(p, "NOTIFY", 6) == 0:
            return S_NOTIFY
    elif n == 3:
        if memcmp(p, "ACK", 3) == 0:
            return S_ACK
        if memcmp(p, "BYE", 3) == 0:
            return S_BYE
    elif n == 7:
        if memcmp(p, "OPTIONS", 7) == 0:
            return S_OPTIONS
        if memcmp(p, "MESSAGE", 7) == 0:
            return S_MESSAGE
        if memcmp(p, "PUBLISH", 7) == 0:
            return S_PUBLISH
    elif n == 8:
        if memcmp(p, "REGISTER", 8) == 0:
            return S_REGISTER
    elif n == 4:
        if memcmp(p, "INFO", 4) == 0:
            return S_INFO
    elif n == 5:
        if memcmp(p, "PRACK", 5) == 0:
            return S_PRACK
        if memcmp(p, "REFER", 5) == 0:
            return S_REFER
    elif n == 9:
        if memcmp(p, "SUBSCRIBE", 9) == 0:
            return S_SUBSCRIBE
    return _astr(p, n)


cdef object _transport_str(const char* p, Py_ssize_t n):
    """Upper-cased transport token, shared for the common ones."""
    if n == 3:
        if _ieq(p, "udp", 3):
            return S_UDP
        if _ieq(p, "tcp", 3):
            return S_TCP
        if _ieq(p, "tls", 3):
            return S_TLS
        if _ieq(p, "wss", 3):
            return S_WSS
    elif n == 4 and _ieq(p, "sctp", 4):
        return S_SCTP
    elif n == 2 and _ieq(p, "ws", 2):
        return S_WS
    return _astr(p, n).upper()


cdef inline bint _ieq(const char* p, const char* lower, Py_ssize_t n):
    cdef Py_ssize_t i
    for i in range(n):
        if (p[i] | 0x20) != lower[i]:
            return False
    return True


# --- slot offsets ---------------------------------------------------------------

cdef Py_ssize_t _offset(cls, str name) except -1:
    for klass in cls.__mro__:
        d = klass.__dict__.get(name)
        if d is not None:
            if type(d).__name__ != "member_descriptor":
                raise ImportError(f"{cls.__name__}.{name} is not a slot")
            return (<PyMemberDescrObject*><PyObject*>d).d_member.offset
    raise ImportError(f"{cls.__name__} has no slot {name}")


cdef Py_ssize_t O_DATA = _offset(Request, "_data")
cdef Py_ssize_t O_IDX = _offset(Request, "_idx")
cdef Py_ssize_t O_HEADERS = _offset(Request, "_headers")
cdef Py_ssize_t O_BODY = _offset(Request, "_body")
cdef Py_ssize_t O_CACHE = _offset(Request, "_cache")
cdef Py_ssize_t O_CALL_ID = _offset(Request, "call_id")
cdef Py_ssize_t O_CSEQ = _offset(Request, "cseq")
cdef Py_ssize_t O_CSEQ_METHOD = _offset(Request, "cseq_method")
cdef Py_ssize_t O_FROM_TAG = _offset(Request, "from_tag")
cdef Py_ssize_t O_TO_TAG = _offset(Request, "to_tag")
cdef Py_ssize_t O_BRANCH = _offset(Request, "branch")
cdef Py_ssize_t O_VIA_HOST = _offset(Request, "via_host")
cdef Py_ssize_t O_VIA_PORT = _offset(Request, "via_port")
cdef Py_ssize_t O_VIA_TRANSPORT = _offset(Request, "via_transport")
cdef Py_ssize_t O_MAX_FORWARDS = _offset(Request, "max_forwards")
cdef Py_ssize_t O_METHOD = _offset(Request, "method")
cdef Py_ssize_t O_RURI = _offset(Request, "ruri")
cdef Py_ssize_t O_STATUS = _offset(Response, "status")
cdef Py_ssize_t O_REASON = _offset(Response, "reason")

if (_offset(Response, "_data") != O_DATA or _offset(Response, "max_forwards") != O_MAX_FORWARDS):
    raise ImportError("Request and Response do not share the Message slot layout")


cdef inline void _put(object obj, Py_ssize_t off, object val):
    Py_INCREF(val)
    (<PyObject**>((<char*><PyObject*>obj) + off))[0] = <PyObject*>val


# --- small scanners ---------------------------------------------------------------

cdef enum:
    IDX_FIXED = 12

if _PY_IDX_FIXED != IDX_FIXED:
    raise ImportError("model.IDX_FIXED changed: update _cparser")

cdef enum:
    K_OTHER = 0
    K_VIA = 1
    K_FROM = 2
    K_TO = 3
    K_CALLID = 4
    K_CSEQ = 5
    K_MAXFWD = 6
    K_CLEN = 7
    NKEYS = 8


cdef inline int _hkey(const char* p, Py_ssize_t n):
    cdef char c
    if n == 1:
        c = p[0] | 0x20
        if c == b'v':
            return K_VIA
        if c == b'f':
            return K_FROM
        if c == b't':
            return K_TO
        if c == b'i':
            return K_CALLID
        if c == b'l':
            return K_CLEN
        return K_OTHER
    if n == 2 and _ieq(p, "to", 2):
        return K_TO
    if n == 3 and _ieq(p, "via", 3):
        return K_VIA
    if n == 4:
        if _ieq(p, "from", 4):
            return K_FROM
        if _ieq(p, "cseq", 4):
            return K_CSEQ
        return K_OTHER
    if n == 7 and _ieq(p, "call-id", 7):
        return K_CALLID
    if n == 12 and _ieq(p, "max-forwards", 12):
        return K_MAXFWD
    if n == 14 and _ieq(p, "content-length", 14):
        return K_CLEN
    return K_OTHER


cdef inline bint _digit(char c):
    return b'0' <= c <= b'9'


cdef inline bint _alpha(char c):
    return (b'a' <= c <= b'z') or (b'A' <= c <= b'Z')


cdef bint _host_ok(const char* p, Py_ssize_t n):
    """Mirror of grammar.is_ipv4 / is_hostname in one pass (no IPv6: that is
    not on the fast path).  The caller has checked every byte is T_HOST."""
    cdef Py_ssize_t i, e, ls = 0, run = 0
    cdef int dots = 0
    cdef bint digits_only = True, ok = True
    cdef char first = 0, c
    if n == 0 or n > 255:
        return False
    e = n - 1 if p[n - 1] == b'.' else n
    if e == 0:
        return False
    for i in range(e + 1):
        if i == e or p[i] == b'.':
            if i == ls or p[ls] == b'-' or p[i - 1] == b'-':
                ok = False
            if i - ls > 3:
                digits_only = False
            first = p[ls] if i > ls else 0
            if i < e:
                dots += 1
            ls = i + 1
        else:
            c = p[i]
            if not _digit(c):
                digits_only = False
    # IPv4address: four dot-separated runs of 1-3 digits, no trailing dot
    if digits_only and dots == 3 and e == n and ok:
        return True
    return ok and _alpha(first)


cdef Py_ssize_t _uri_fast(const char* p, Py_ssize_t n):
    """Length of p when it is a plain sip:/sips: URI on the fast path, else -1.

    Plain: lower-case scheme, optional user@ without escapes or password,
    hostname or IPv4, optional port, parameters without escapes, no headers.
    """
    cdef Py_ssize_t i, hs, he, ps
    cdef long port
    if n > 4 and memcmp(p, "sip:", 4) == 0:
        i = 4
    elif n > 5 and memcmp(p, "sips:", 5) == 0:
        i = 5
    else:
        return -1
    at = <const char*>memchr(p + i, b'@', n - i)
    if at != NULL:
        if at == p + i:
            return -1
        while p + i < at:
            if not (CT[<unsigned char>p[i]] & T_USER):
                return -1
            i += 1
        i += 1
        if memchr(p + i, b'@', n - i) != NULL:
            return -1
    hs = i
    while i < n and (CT[<unsigned char>p[i]] & T_HOST):
        i += 1
    he = i
    if not _host_ok(p + hs, he - hs):
        return -1
    if i < n and p[i] == b':':
        i += 1
        ps = i
        port = 0
        while i < n and _digit(p[i]) and i - ps < 5:
            port = port * 10 + (p[i] - 48)
            i += 1
        if i == ps or port > 65535 or (i < n and _digit(p[i])):
            return -1
    while i < n and p[i] == b';':
        i += 1
        ps = i
        while i < n and (CT[<unsigned char>p[i]] & T_PARAM):
            i += 1
        if i == ps:
            return -1
        if i < n and p[i] == b'=':
            i += 1
            ps = i
            while i < n and (CT[<unsigned char>p[i]] & T_PARAM):
                i += 1
            if i == ps:
                return -1
    return i if i == n else -1


cdef Py_ssize_t _params_fast(const char* p, Py_ssize_t i, Py_ssize_t n, const char* want,
                             Py_ssize_t wlen, Py_ssize_t* vs, Py_ssize_t* ve, int* found):
    """Scan *( ";" token [ "=" pvalue ] ) from i, without whitespace or quotes.

    Returns the index where scanning stopped (the caller checks what is
    there) or -1 when the syntax leaves the fast path.  The first parameter
    named `want` (case-insensitive) is reported through vs/ve/found
    (found = 2 with a value, 1 without).
    """
    cdef Py_ssize_t ns, ne
    while i < n and p[i] == b';':
        i += 1
        ns = i
        while i < n and (CT[<unsigned char>p[i]] & T_TOKEN):
            i += 1
        ne = i
        if ne == ns:
            return -1
        if i < n and p[i] == b'=':
            i += 1
            vs_ = i
            while i < n and (CT[<unsigned char>p[i]] & T_PVAL):
                i += 1
            if i == vs_:
                return -1
            if found[0] == 0 and ne - ns == wlen and _ieq(p + ns, want, wlen):
                found[0] = 2
                vs[0] = vs_
                ve[0] = i
        else:
            if (ne - ns == 6 and _ieq(p + ns, "branch", 6)) or (ne - ns == 8 and _ieq(p + ns, "received", 8)) \
                    or (ne - ns == 5 and _ieq(p + ns, "maddr", 5)) or (ne - ns == 3 and _ieq(p + ns, "ttl", 3)):
                return -1
            if found[0] == 0 and ne - ns == wlen and _ieq(p + ns, want, wlen):
                found[0] = 1
    return i


# --- key-field extractors: fast path or reference fallback ------------------------

cdef int _top_via(object msg, bytes data, Py_ssize_t vs, Py_ssize_t ve) except -1:
    """Fill the top-Via slots of msg."""
    cdef const char* p = PyBytes_AS_STRING(data) + vs
    cdef Py_ssize_t n = ve - vs, i, ts, hs, he, bvs = 0, bve = 0, ps
    cdef int found = 0
    cdef long port = -1
    if n > 9 and memcmp(p, "SIP/2.0/", 8) == 0:
        i = 8
        ts = i
        while i < n and _alpha(p[i]):
            i += 1
        if i > ts and i < n and p[i] == b' ':
            te = i
            i += 1
            hs = i
            while i < n and (CT[<unsigned char>p[i]] & T_HOST):
                i += 1
            he = i
            if _host_ok(p + hs, he - hs):
                if i < n and p[i] == b':':
                    i += 1
                    ps = i
                    port = 0
                    while i < n and _digit(p[i]) and i - ps < 5:
                        port = port * 10 + (p[i] - 48)
                        i += 1
                    if i == ps or port > 65535 or (i < n and _digit(p[i])):
                        i = -1
                if i >= 0:
                    i = _params_fast(p, i, n, "branch", 6, &bvs, &bve, &found)
                if i >= 0 and (i == n or p[i] == b','):
                    _put(msg, O_VIA_TRANSPORT, _transport_str(p + ts, te - ts))
                    _put(msg, O_VIA_HOST, _astr(p + hs, he - hs))
                    _put(msg, O_VIA_PORT, None if port < 0 else (_INTS[port] if port < NINTS else PyLong_FromLong(port)))
                    _put(msg, O_BRANCH, _astr(p + bvs, bve - bvs) if found == 2 else None)
                    return 0
    via = _h.parse_top_via(header_value(data, vs, ve))
    _put(msg, O_VIA_TRANSPORT, via.transport)
    _put(msg, O_VIA_HOST, via.host)
    _put(msg, O_VIA_PORT, via.port)
    _put(msg, O_BRANCH, via.branch)
    return 0


cdef object _tag(bytes data, Py_ssize_t vs, Py_ssize_t ve, str what):
    """The tag parameter of a From/To value."""
    cdef const char* p = PyBytes_AS_STRING(data) + vs
    cdef Py_ssize_t n = ve - vs, i = 0, us, ue, tvs = 0, tve = 0
    cdef int found = 0
    cdef const char* gt
    if n > 0:
        if p[0] == b'"':
            i = 1
            while i < n and p[i] != b'"' and p[i] != b'\\' and p[i] >= 0x20 and p[i] != 0x7f:
                i += 1
            if i < n and p[i] == b'"':
                i += 1
                if i < n and p[i] == b' ':
                    i += 1
            else:
                i = -1
        elif p[0] != b'<' and p[0] != b's':
            # token display name: words separated by single spaces
            while i < n and (CT[<unsigned char>p[i]] & T_TOKEN):
                i += 1
                if i < n and p[i] == b' ' and i + 1 < n and (CT[<unsigned char>p[i + 1]] & T_TOKEN):
                    i += 1
            if i < n and p[i] == b' ':
                i += 1
            if i == 0 or i >= n or p[i] != b'<':
                i = -1
        if i >= 0 and i < n and p[i] == b'<':
            gt = <const char*>memchr(p + i, b'>', n - i)
            if gt != NULL:
                us = i + 1
                ue = gt - p
                if _uri_fast(p + us, ue - us) >= 0:
                    i = _params_fast(p, ue + 1, n, "tag", 3, &tvs, &tve, &found)
                    if i == n:
                        return _astr(p + tvs, tve - tvs) if found == 2 else None
        elif i == 0:
            # addr-spec: the URI runs to the first ';' (RFC 3261 §20.10)
            ue = 0
            while ue < n and p[ue] != b';' and p[ue] != b' ' and p[ue] != b',':
                ue += 1
            if ue == n or p[ue] == b';':
                if _uri_fast(p, ue) >= 0:
                    i = _params_fast(p, ue, n, "tag", 3, &tvs, &tve, &found)
                    if i == n:
                        return _astr(p + tvs, tve - tvs) if found == 2 else None
    return _h.parse_name_addr(header_value(data, vs, ve), what).tag


cdef object _cseq(object msg, bytes data, Py_ssize_t vs, Py_ssize_t ve):
    """Fill the CSeq slots of msg; return the CSeq method (borrowed from msg)."""
    cdef const char* p = PyBytes_AS_STRING(data) + vs
    cdef Py_ssize_t n = ve - vs, i = 0, ms
    cdef long long num = 0
    while i < n and _digit(p[i]) and i < 11:
        num = num * 10 + (p[i] - 48)
        i += 1
    if 0 < i <= 10 and i < n - 1 and p[i] == b' ':
        i += 1
        ms = i
        while i < n and (CT[<unsigned char>p[i]] & T_TOKEN):
            i += 1
        if i == n:
            if num > 2147483647:
                raise ParseError("CSeq number out of range")
            m = _method_str(p + ms, n - ms)
            _put(msg, O_CSEQ, _INTS[num] if num < NINTS else PyLong_FromLong(<long>num))
            _put(msg, O_CSEQ_METHOD, m)
            return m
    c = _h.parse_cseq(header_value(data, vs, ve))
    _put(msg, O_CSEQ, c.number)
    _put(msg, O_CSEQ_METHOD, c.method)
    return c.method


cdef object _call_id(bytes data, Py_ssize_t vs, Py_ssize_t ve):
    cdef const char* p = PyBytes_AS_STRING(data) + vs
    cdef Py_ssize_t n = ve - vs, i, at = -1
    cdef bint ok = n > 0
    for i in range(n):
        if p[i] == b'@':
            if at >= 0:
                ok = False
                break
            at = i
        elif not (CT[<unsigned char>p[i]] & T_WORD):
            ok = False
            break
    if ok and at != 0 and at != n - 1:
        return _astr(p, n)
    return _h.parse_call_id(header_value(data, vs, ve))


cdef object _small_uint(bytes data, Py_ssize_t vs, Py_ssize_t ve, long maximum, int maxdigits, bint is_length):
    cdef const char* p = PyBytes_AS_STRING(data) + vs
    cdef Py_ssize_t n = ve - vs, i
    cdef long v = 0
    if 0 < n <= maxdigits:
        for i in range(n):
            if not _digit(p[i]):
                break
            v = v * 10 + (p[i] - 48)
        else:
            if v <= maximum:
                return _INTS[v] if v < NINTS else PyLong_FromLong(v)
    if is_length:
        return _h.parse_content_length(header_value(data, vs, ve))
    return _h.parse_max_forwards(header_value(data, vs, ve))


# --- the parser -----------------------------------------------------------------------

cdef class CParser:
    """A parser bound to one set of limits (its index buffer is sized by them)."""

    cdef Py_ssize_t max_message, max_headers, max_line
    cdef uint32_t* idx

    def __cinit__(self, limits=DEFAULT_LIMITS):
        self.max_message = limits.max_message_bytes
        self.max_headers = limits.max_headers
        self.max_line = limits.max_line_bytes
        self.idx = <uint32_t*>malloc((IDX_FIXED + 4 * self.max_headers + 4) * sizeof(uint32_t))
        if self.idx == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.idx)

    def parse(self, data):
        """Parse one datagram (or one framed stream message)."""
        if type(data) is not bytes:
            data = bytes(data)
        return self._parse(<bytes>data)

    cdef object _parse(self, bytes data):
        cdef const char* buf = PyBytes_AS_STRING(data)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        cdef Py_ssize_t pos = 0, nlpos, end, sl_s = 0, sl_e = 0, name_e, headers_end = 0, body_start = 0
        cdef Py_ssize_t nh = 0, k, vs, ve, o, sp1, sp2, cl
        cdef const char* nl
        cdef const char* colon
        cdef bint first = True
        cdef int key
        cdef int counts[NKEYS]
        cdef Py_ssize_t firsts[NKEYS]
        cdef uint32_t* idx = self.idx
        cdef unsigned char c
        cdef bint uri_fast, ascii = True
        method = None

        if n > self.max_message:
            raise MessageTooLarge(f"message of {n} bytes exceeds {self.max_message}")
        while pos < n and (buf[pos] == b'\r' or buf[pos] == b'\n'):
            pos += 1
        if pos == n:
            raise ParseError("empty message")
        for k in range(NKEYS):
            counts[k] = 0
            firsts[k] = -1

        # 3. lines
        while True:
            nl = <const char*>memchr(buf + pos, b'\n', n - pos)
            if nl == NULL:
                raise ParseError("header section not terminated by an empty line")
            nlpos = nl - buf
            end = nlpos - 1 if nlpos > pos and buf[nlpos - 1] == b'\r' else nlpos
            if end - pos > self.max_line:
                raise HeaderTooLong(f"line longer than {self.max_line} bytes")
            if first:
                sl_s = pos
                sl_e = end
                first = False
            elif end == pos:
                headers_end = pos
                body_start = nlpos + 1
                break
            elif buf[pos] == b' ' or buf[pos] == b'\t':
                if nh == 0:
                    raise ParseError("continuation line before the first header")
                idx[IDX_FIXED + 4 * (nh - 1) + 3] = <uint32_t>end
            else:
                # name = token, then *WSP ":" -- one pass instead of a search for
                # ':' plus a check of the name; the slow branch keeps the
                # reference's distinction between "no colon" and "bad name".
                name_e = pos
                while name_e < end and (CT[<unsigned char>buf[name_e]] & T_TOKEN):
                    name_e += 1
                k = name_e
                while k < end and (buf[k] == b' ' or buf[k] == b'\t'):
                    k += 1
                if k == end or buf[k] != b':' or name_e == pos:
                    if memchr(buf + pos, b':', end - pos) == NULL:
                        raise ParseError("header line without ':'")
                    raise ParseError("bad header name")
                colon = buf + k
                if nh >= self.max_headers:
                    raise TooManyHeaders(f"more than {self.max_headers} header fields")
                o = IDX_FIXED + 4 * nh
                idx[o] = <uint32_t>pos
                idx[o + 1] = <uint32_t>name_e
                idx[o + 2] = <uint32_t>(colon - buf + 1)
                idx[o + 3] = <uint32_t>end
                key = _hkey(buf + pos, name_e - pos)
                counts[key] += 1
                if firsts[key] < 0:
                    firsts[key] = nh
                nh += 1
            pos = nlpos + 1

        # 4. start line
        cdef const char* sl = buf + sl_s
        cdef Py_ssize_t sln = sl_e - sl_s
        cdef object msg
        cdef bint is_request
        cdef const char* sp
        cdef int code
        if sln >= 4 and (sl[0] | 0x20) == b's' and (sl[1] | 0x20) == b'i' and (sl[2] | 0x20) == b'p' and sl[3] == b'/':
            is_request = False
            sp = <const char*>memchr(sl, b' ', sln)
            if sp == NULL:
                raise ParseError("bad status line")
            sp1 = sp - sl
            if not (sp1 == 7 and memcmp(sl, "SIP/2.0", 7) == 0):
                check_version(data[sl_s:sl_s + sp1])
            if sln - sp1 - 1 < 3 or not (b'1' <= sl[sp1 + 1] <= b'6' and _digit(sl[sp1 + 2]) and _digit(sl[sp1 + 3])):
                raise ParseError("bad status code")
            if sln > sp1 + 4 and sl[sp1 + 4] != b' ':
                raise ParseError("bad status code")
            for k in range(sp1 + 5, sln):
                c = <unsigned char>sl[k]
                if (c < 0x20 and c != 9) or c == 0x7f:
                    raise ParseError("control character in reason phrase")
                if c >= 0x80:
                    ascii = False
            code = (sl[sp1 + 1] - 48) * 100 + (sl[sp1 + 2] - 48) * 10 + (sl[sp1 + 3] - 48)
            idx[5] = <uint32_t>sl_s
            idx[6] = <uint32_t>(sl_s + sp1)
            idx[7] = <uint32_t>(sl_s + sp1 + 1)
            idx[8] = <uint32_t>(sl_s + sp1 + 4)
            idx[9] = <uint32_t>(sl_s + sp1 + 5 if sln > sp1 + 4 else sl_e)
            idx[10] = <uint32_t>sl_e
            msg = PyType_GenericAlloc(<PyTypeObject*>Response, 0)
            _put(msg, O_STATUS, _INTS[code])
            if sln <= sp1 + 5:
                _put(msg, O_REASON, "")
            elif ascii:
                _put(msg, O_REASON, _astr(sl + sp1 + 5, sln - sp1 - 5))
            else:
                _put(msg, O_REASON, _dec(sl + sp1 + 5, sln - sp1 - 5))
        else:
            is_request = True
            sp = <const char*>memchr(sl, b' ', sln)
            sp1 = sp - sl if sp != NULL else -1
            sp = <const char*>memchr(sl + sp1 + 1, b' ', sln - sp1 - 1) if sp1 >= 0 else NULL
            sp2 = sp - sl if sp != NULL else -1
            if (sp1 <= 0 or sp2 <= sp1 + 1 or sp2 >= sln - 1
                    or memchr(sl + sp2 + 1, b' ', sln - sp2 - 1) != NULL):
                raise ParseError("Request-Line must be Method SP Request-URI SP SIP-Version")
            for k in range(sp1):
                if not (CT[<unsigned char>sl[k]] & T_TOKEN):
                    raise ParseError("bad method")
            if not (sln - sp2 - 1 == 7 and memcmp(sl + sp2 + 1, "SIP/2.0", 7) == 0):
                check_version(data[sl_s + sp2 + 1:sl_e])
            uri_fast = _uri_fast(sl + sp1 + 1, sp2 - sp1 - 1) >= 0
            if not uri_fast:
                check_request_uri(_dec(sl + sp1 + 1, sp2 - sp1 - 1))
            idx[5] = <uint32_t>sl_s
            idx[6] = <uint32_t>(sl_s + sp1)
            idx[7] = <uint32_t>(sl_s + sp1 + 1)
            idx[8] = <uint32_t>(sl_s + sp2)
            idx[9] = <uint32_t>(sl_s + sp2 + 1)
            idx[10] = <uint32_t>sl_e
            msg = PyType_GenericAlloc(<PyTypeObject*>Request, 0)
            method = _method_str(sl, sp1)
            _put(msg, O_METHOD, method)
            _put(msg, O_RURI, _astr(sl + sp1 + 1, sp2 - sp1 - 1) if uri_fast else _dec(sl + sp1 + 1, sp2 - sp1 - 1))

        # value spans: skip LWS at both ends (folded lines included)
        for k in range(nh):
            o = IDX_FIXED + 4 * k
            vs = idx[o + 2]
            ve = idx[o + 3]
            while vs < ve and (buf[vs] == b' ' or buf[vs] == b'\t' or buf[vs] == b'\r' or buf[vs] == b'\n'):
                vs += 1
            while ve > vs and (buf[ve - 1] == b' ' or buf[ve - 1] == b'\t' or buf[ve - 1] == b'\r' or buf[ve - 1] == b'\n'):
                ve -= 1
            idx[o + 2] = <uint32_t>vs
            idx[o + 3] = <uint32_t>ve

        # 5. singletons and mandatory headers
        if (counts[K_CALLID] > 1 or counts[K_CSEQ] > 1 or counts[K_FROM] > 1 or counts[K_TO] > 1
                or counts[K_MAXFWD] > 1 or counts[K_CLEN] > 1):
            raise ParseError("duplicate singleton header")
        if counts[K_VIA] == 0 or counts[K_FROM] == 0 or counts[K_TO] == 0 or counts[K_CALLID] == 0 or counts[K_CSEQ] == 0:
            raise ParseError("missing mandatory header")

        # 6. transaction keys
        o = IDX_FIXED + 4 * firsts[K_VIA]
        _top_via(msg, data, idx[o + 2], idx[o + 3])
        o = IDX_FIXED + 4 * firsts[K_CSEQ]
        cseq_method = _cseq(msg, data, idx[o + 2], idx[o + 3])
        if is_request:
            if cseq_method is not method and cseq_method != method:
                raise ParseError("CSeq method does not match the request method")
        o = IDX_FIXED + 4 * firsts[K_CALLID]
        call_id = _call_id(data, idx[o + 2], idx[o + 3])
        o = IDX_FIXED + 4 * firsts[K_FROM]
        from_tag = _tag(data, idx[o + 2], idx[o + 3], "From")
        o = IDX_FIXED + 4 * firsts[K_TO]
        to_tag = _tag(data, idx[o + 2], idx[o + 3], "To")
        if firsts[K_MAXFWD] >= 0:
            o = IDX_FIXED + 4 * firsts[K_MAXFWD]
            max_forwards = _small_uint(data, idx[o + 2], idx[o + 3], 255, 3, False)
        else:
            max_forwards = None

        # 7. framing
        idx[0] = <uint32_t>sl_s
        idx[1] = <uint32_t>sl_e
        idx[2] = <uint32_t>headers_end
        idx[3] = <uint32_t>body_start
        if firsts[K_CLEN] >= 0:
            o = IDX_FIXED + 4 * firsts[K_CLEN]
            cl = _small_uint(data, idx[o + 2], idx[o + 3], 2147483647, 10, True)
            if body_start + cl > n:
                raise IncompleteMessage(f"Content-Length {cl} but only {n - body_start} body bytes")
            idx[4] = <uint32_t>(body_start + cl)
        else:
            idx[4] = <uint32_t>n
        idx[11] = <uint32_t>nh

        _put(msg, O_DATA, data)
        _put(msg, O_IDX, PyBytes_FromStringAndSize(<char*>idx, (IDX_FIXED + 4 * nh) * sizeof(uint32_t)))
        _put(msg, O_HEADERS, None)
        _put(msg, O_BODY, None)
        _put(msg, O_CACHE, None)
        _put(msg, O_CALL_ID, call_id)
        _put(msg, O_FROM_TAG, from_tag)
        _put(msg, O_TO_TAG, to_tag)
        _put(msg, O_MAX_FORWARDS, max_forwards)
        return msg


cdef CParser _default = CParser(DEFAULT_LIMITS)


def parse(data, limits=None):
    """Parse one datagram; `limits` defaults to ``DEFAULT_LIMITS``."""
    if limits is None or limits is DEFAULT_LIMITS:
        if type(data) is not bytes:
            data = bytes(data)
        return _default._parse(<bytes>data)
    return CParser(limits).parse(data)


# --- header objects on first use ----------------------------------------------------

from sipcore.message.grammar import unfold as _unfold
from sipcore.message.model import HeaderField as _HeaderField

cdef Py_ssize_t OF_NAME = _offset(_HeaderField, "name")
cdef Py_ssize_t OF_VALUE = _offset(_HeaderField, "value")
cdef Py_ssize_t OF_RAW = _offset(_HeaderField, "raw")
cdef Py_ssize_t OF_KEY = _offset(_HeaderField, "key")


def build_fields(bytes data, bytes idx_bytes, dict key_cache, key_of):
    """The HeaderField list of a parsed message (the model's `_build_fields`,
    in C): names as written, unfolded values, each line's original bytes and
    its comparison key (`key_cache`, filled by `key_of` on a miss)."""
    cdef const char* buf = PyBytes_AS_STRING(data)
    cdef const uint32_t* idx = <const uint32_t*>PyBytes_AS_STRING(idx_bytes)
    cdef Py_ssize_t n, k, o, ns, ne, vs, ve, end, i
    cdef bint ascii
    if PyBytes_GET_SIZE(idx_bytes) < IDX_FIXED * 4:
        raise ValueError("not a message index")
    n = idx[11]
    if PyBytes_GET_SIZE(idx_bytes) != (IDX_FIXED + 4 * n) * 4:
        raise ValueError("not a message index")
    out = []
    for k in range(n):
        o = IDX_FIXED + 4 * k
        ns = idx[o]
        ne = idx[o + 1]
        vs = idx[o + 2]
        ve = idx[o + 3]
        end = idx[o + 4] if k + 1 < n else idx[2]
        name = _astr(buf + ns, ne - ns)  # a token: the parser checked it is ASCII
        ascii = True
        for i in range(vs, ve):
            if <unsigned char>buf[i] >= 0x80:
                ascii = False
                break
        value = _astr(buf + vs, ve - vs) if ascii else _dec(buf + vs, ve - vs)
        if memchr(buf + vs, b'\n', ve - vs) != NULL:
            value = _unfold(value)
        key = key_cache.get(name)
        if key is None:
            key = key_of(name)
        f = PyType_GenericAlloc(<PyTypeObject*>_HeaderField, 0)
        _put(f, OF_NAME, name)
        _put(f, OF_VALUE, value)
        _put(f, OF_RAW, PyBytes_FromStringAndSize(buf + ns, end - ns))
        _put(f, OF_KEY, key)
        out.append(f)
    return out
