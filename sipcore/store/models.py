"""Rows the store returns and accepts (immutable; times in ms UTC)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True, slots=True)
class Tenant:
    id: int
    domain: str
    """SIP domain, lower-case; also the digest realm of the tenant's devices."""
    plan: str | None
    timezone: str
    """IANA zone in which the tenant's billing months run."""
    parent_id: int | None
    webhook_url: str | None
    created_ms: int


@dataclass(frozen=True, slots=True)
class Device:
    id: int
    tenant_id: int
    domain: str
    username: str
    enabled: bool
    created_ms: int
    updated_ms: int

    @property
    def aor(self) -> str:
        """``user@domain`` as operators write it."""
        return f"{self.username}@{self.domain}"


@dataclass(frozen=True, slots=True)
class CredentialRow:
    """What digest authentication needs for one device; never a password."""

    realm: str
    username: str
    device_id: int
    tenant_id: int
    ha1_md5: str
    ha1_sha256: str
    enabled: bool


class BindingRow(NamedTuple):
    """One Contact binding of an address-of-record (RFC 3261 §10.3), as stored.

    A NamedTuple, unlike the other rows: one is built on the packet thread
    for every registration, and a frozen dataclass of 17 fields costs four
    times as much to build."""

    aor: str
    contact: str
    tenant_id: int
    device_id: int
    expires_ms: int
    q_milli: int
    """q-value in thousandths: q=0.5 is 500 (no floats in the store)."""
    call_id: str
    cseq: int
    flow_transport: str
    flow_host: str
    flow_port: int
    flow_conn: int = 0
    """Connection id for stream transports, 0 for UDP."""
    instance: str | None = None
    reg_id: int | None = None
    path: tuple[str, ...] | None = None
    """Path header values (RFC 3327), stored as a JSON list."""
    user_agent: str | None = None
    updated_ms: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.aor, self.contact)
