"""Names and password digests for provisioning (PURE helpers of the store).

A password is hashed into the two HA1 values digest authentication needs
(RFC 7616 §3.4.2: HA1 = H(username ":" realm ":" password), realm = the
tenant's domain) and then forgotten: it is never stored or logged.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sipcore.store.errors import InvalidValue

HA1Function = Callable[[str, str, str, str], str]

# RFC 3261 §25.1: user = 1*( unreserved / escaped / user-unreserved ).  Stricter
# than a digest username needs to be, but a device must be reachable as a SIP
# URI, and it keeps ':' (the A1 separator), '@' and quotes out of the realm math.
_USER = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2}){1,128}")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_DOMAIN = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")
MAX_PASSWORD = 1024


def ha1_function() -> HA1Function:
    """``sipcore.auth.digest.compute_ha1``, imported when first needed (not at
    import time of the store), and resolved once per provisioning call."""
    from sipcore.auth.digest import compute_ha1

    return compute_ha1


def check_domain(domain: str) -> str:
    """The domain lower-cased (DNS names are case-insensitive, and the realm must be one string)."""
    d = domain.lower() if isinstance(domain, str) else ""
    if not _DOMAIN.fullmatch(d):
        raise InvalidValue(f"domain {domain!r}: expected a host name such as example.com")
    return d


def check_username(user: str) -> str:
    if not isinstance(user, str) or not _USER.fullmatch(user):
        raise InvalidValue(f"user name {user!r}: 1-128 characters allowed in the user part of a SIP URI")
    return user


def check_password(password: str) -> str:
    if not isinstance(password, str) or not password:
        raise InvalidValue("the password must not be empty")
    if len(password) > MAX_PASSWORD:
        raise InvalidValue(f"the password is longer than {MAX_PASSWORD} characters")
    return password
