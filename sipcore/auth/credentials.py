"""Fast reading of (Proxy-)Authorization values (RFC 3261 §25.1, RFC 7616 §3.4).

``credentials = auth-scheme LWS auth-param *(COMMA auth-param)`` with
``auth-param = token EQUAL ( token / quoted-string )``.

The message layer's :func:`sipcore.message.headers.parse_auth` is the
reference grammar, but it walks the value one character at a time and builds
a dataclass; this runs on every REGISTER and INVITE, so here one compiled
regular expression consumes one ``name=value`` pair per match and the result
is a plain dict.  It is deliberately a little more lenient than the reference
(any octet except white space, comma and DQUOTE in an unquoted value, so that
clients which forget to quote ``uri`` or ``response`` still parse; empty list
elements are skipped as RFC 7230 §7 asks), and stricter in one way: a
parameter given twice makes the whole value unusable, since a second
``realm`` or ``nonce`` can only be confusion or an attack.
"""

from __future__ import annotations

import re

_TOKEN = r"[A-Za-z0-9!#$%&'*+.^_`|~-]++"
_SCHEME = re.compile(rf"[ \t]*({_TOKEN})(?:[ \t]+|\Z)")
# One auth-param and the commas after it, or else the rest of the value, which
# marks it malformed: with that last alternative ``findall`` consumes the
# whole value in one C-level pass and never skips anything silently.  The
# quoted string is written as an unrolled loop (no per-character alternation):
# linear, and about twice as fast.  Every quantifier is possessive (Python
# 3.11): each is followed by something its class excludes, so giving back
# characters could never lead to a match, and not trying is 10% faster.
_PARAM = re.compile(
    rf"""({_TOKEN})[ \t]*+=[ \t]*+(?:"([^"\\\r\n]*+(?:\\[^\r\n][^"\\\r\n]*+)*+)"|([^\s",]*+))[ \t]*+(?:,[ \t,]*+|\Z)"""
    # Junk takes the rest of the value in one match: the value is malformed
    # whatever follows, and retrying at every later character would make an
    # unterminated quote cost time quadratic in its length.
    r"|([\s\S]+)"
)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)


def split_credentials(value: str) -> tuple[str, dict[str, str] | None] | None:
    """Split one credentials value into its scheme and its parameters.

    Returns ``None`` when not even a scheme can be read, ``(scheme, None)``
    when the scheme is there but the parameter list is malformed (or repeats
    a name), else ``(scheme, params)`` with lower-case names and unquoted
    values.  Never raises.
    """
    m = _SCHEME.match(value)
    if m is None:
        return None
    scheme = m.group(1)
    found = _PARAM.findall(value, m.end())
    # A junk match has an empty name, a real one never does; a repeated name
    # makes the dict shorter than the list.
    params = {name.lower(): quoted or token for name, quoted, token, _ in found}
    if len(params) != len(found) or "" in params:
        return scheme, None
    if "\\" in value:
        for name, quoted, _, _ in found:
            if "\\" in quoted:
                params[name.lower()] = _QUOTED_PAIR.sub(r"\1", quoted)
    return scheme, params
