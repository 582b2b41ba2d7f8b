"""Digest arithmetic against the RFC 7616 §3.9.1 worked example."""

from __future__ import annotations

import pytest

from sipcore.auth import compute_ha1, compute_response
from sipcore.auth.credentials import split_credentials
from sipcore.auth.digest import encode, hash_hex

# RFC 7616 §3.9.1 (the HTTP example: method GET, uri /dir/index.html)
USERNAME = "Mufasa"
REALM = "http-auth@example.org"
PASSWORD = "Circle of Life"
NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
EXPECTED = {
    "SHA-256": "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
    "MD5": "8ca523f5e9506fed4657c9700eebdbec",
}


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_rfc7616_worked_example(algorithm: str) -> None:
    ha1 = compute_ha1(USERNAME, REALM, PASSWORD, algorithm)
    response = compute_response(algorithm, ha1, NONCE, "00000001", CNONCE, "auth", "GET", "/dir/index.html")
    assert response == EXPECTED[algorithm]


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_rfc7616_authorization_header_reads_and_verifies(algorithm: str) -> None:
    # The example's Authorization header field, unfolded as the message layer delivers it.
    value = (
        f'Digest username="{USERNAME}", realm="{REALM}", uri="/dir/index.html", '
        f'algorithm={algorithm}, nonce="{NONCE}", nc=00000001, cnonce="{CNONCE}", '
        f'qop=auth, response="{EXPECTED[algorithm]}", opaque="{OPAQUE}"'
    )
    split = split_credentials(value)
    assert split is not None
    scheme, params = split
    assert scheme == "Digest" and params is not None
    assert params["opaque"] == OPAQUE and params["algorithm"] == algorithm
    ha1 = compute_ha1(params["username"], params["realm"], PASSWORD, algorithm)
    recomputed = compute_response(
        algorithm, ha1, params["nonce"], params["nc"], params["cnonce"], params["qop"], "GET", params["uri"]
    )
    assert recomputed == params["response"]


def test_ha1_is_the_hash_of_user_realm_password() -> None:
    assert compute_ha1("alice", "example.com", "pw", "MD5") == hash_hex("MD5", "alice:example.com:pw")
    assert len(compute_ha1("alice", "example.com", "pw", "SHA-256")) == 64
    assert compute_ha1("alice", "example.com", "pw", "MD5") != compute_ha1("alice", "example.org", "pw", "MD5")


@pytest.mark.parametrize("algorithm", ["MD5-sess", "SHA-256-sess", "sha-256", "SHA-512-256", ""])
def test_ha1_rejects_unsupported_algorithms(algorithm: str) -> None:
    with pytest.raises(ValueError):
        compute_ha1("alice", "example.com", "pw", algorithm)


def test_hashes_cover_the_wire_octets() -> None:
    # A non-UTF-8 octet decoded by the message layer (surrogateescape) hashes as the octet.
    latin1 = b"J\xf6rg".decode("utf-8", "surrogateescape")
    assert encode(latin1) == b"J\xf6rg"
    assert hash_hex("MD5", latin1) == hash_hex("MD5", "J\udcf6rg")
    # A lone surrogate that no decoder produced must not raise.
    assert encode("\ud800") == "\ud800".encode("utf-8", "surrogatepass")
