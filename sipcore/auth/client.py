"""Digest as a client (RFC 7616 §3.4, RFC 3261 §22.2): answering a trunk's challenge.

sipcore authenticates to upstream trunks (carriers, PBXs) with the credentials
the operator configured for them; this builds the Authorization or
Proxy-Authorization value for one request from one challenge.  Pure.
"""

from __future__ import annotations

from sipcore.auth.digest import HEX_LEN, compute_response, hash_hex
from sipcore.message.headers import AuthHeader, parse_auth


def pick_challenge(values: list[str]) -> AuthHeader | None:
    """The challenge to answer among a response's values: SHA-256 before MD5
    (RFC 8760 §2), Digest only, qop=auth or no qop."""
    best: tuple[int, AuthHeader] | None = None
    for v in values:
        try:
            ch = parse_auth(v)
        except Exception:
            continue
        if ch.scheme.lower() != "digest":
            continue
        alg = (ch.get("algorithm") or "MD5").upper()
        if alg not in HEX_LEN:
            continue
        qop = ch.get("qop")
        if qop is not None and "auth" not in [q.strip().lower() for q in qop.split(",")]:
            continue
        rank = 0 if alg == "SHA-256" else 1
        if best is None or rank < best[0]:
            best = (rank, ch)
    return best[1] if best else None


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def authorization(
    challenge: AuthHeader, username: str, password: str, method: str, uri: str, cnonce: str, nc: int = 1
) -> str:
    """The credentials answering `challenge` for `method` `uri`."""
    realm = challenge.get("realm") or ""
    nonce = challenge.get("nonce") or ""
    alg = (challenge.get("algorithm") or "MD5").upper()
    ha1 = hash_hex(alg, f"{username}:{realm}:{password}")
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(realm)}",
        f"nonce={_quote(nonce)}",
        f"uri={_quote(uri)}",
        f"algorithm={alg}",
    ]
    qop = challenge.get("qop")
    if qop is not None:
        ncs = f"{nc:08x}"
        resp = compute_response(alg, ha1, nonce, ncs, cnonce, "auth", method, uri)
        parts += [f"response={_quote(resp)}", "qop=auth", f"nc={ncs}", f"cnonce={_quote(cnonce)}"]
    else:  # RFC 2069 compatibility: response = H(HA1:nonce:HA2)
        ha2 = hash_hex(alg, f"{method}:{uri}")
        parts.append(f"response={_quote(hash_hex(alg, f'{ha1}:{nonce}:{ha2}'))}")
    opaque = challenge.get("opaque")
    if opaque is not None:
        parts.append(f"opaque={_quote(opaque)}")
    return "Digest " + ", ".join(parts)
