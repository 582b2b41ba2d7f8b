-- 0001: tenants, devices, the device-count log, registrations, usage, meta.
--
-- Applied by sipcore.store.migrate in ONE transaction together with its row in
-- schema_migrations. Conventions: times are INTEGER ms UTC (*_ms); counts and
-- money are INTEGER, never REAL; STRICT tables make SQLite refuse a value of
-- the wrong type instead of storing it (SQLite >= 3.37).
--
-- Tenant and device ids are AUTOINCREMENT so that an id is never reused after
-- a delete: usage rows keep the id of a removed device, and a new device must
-- not inherit its MAU of the month.

CREATE TABLE tenants (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    domain      TEXT    NOT NULL UNIQUE COLLATE NOCASE,  -- the SIP domain and digest realm, stored lower-case
    plan        TEXT    NULL,
    timezone    TEXT    NOT NULL DEFAULT 'UTC',          -- IANA name; billing months are local to it
    parent_id   INTEGER NULL REFERENCES tenants (id),
    webhook_url TEXT    NULL,
    created_ms  INTEGER NOT NULL
) STRICT;

CREATE INDEX tenants_parent ON tenants (parent_id) WHERE parent_id IS NOT NULL;

-- Passwords are never stored: only HA1 = H(username:realm:password) with
-- realm = the tenant's domain, for MD5 and SHA-256 (RFC 7616 §3.4.2).
-- User names are case-sensitive (RFC 3261 §19.1.4).
CREATE TABLE devices (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   INTEGER NOT NULL REFERENCES tenants (id),
    username    TEXT    NOT NULL,
    ha1_md5     TEXT    NOT NULL CHECK (length(ha1_md5) = 32),
    ha1_sha256  TEXT    NOT NULL CHECK (length(ha1_sha256) = 64),
    enabled     INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL,
    UNIQUE (tenant_id, username)
) STRICT;

-- device_count(tenant) counts the enabled devices of a tenant from this index alone.
CREATE INDEX devices_tenant_enabled ON devices (tenant_id, enabled);

-- One row per change of a tenant's number of provisioned (existing and
-- enabled) devices, written in the transaction that changes it. The peak of a
-- month is max(the count in force at its start, every count logged inside
-- it); the rowid orders changes that share a millisecond.
CREATE TABLE device_count_log (
    tenant_id INTEGER NOT NULL REFERENCES tenants (id),
    at_ms     INTEGER NOT NULL,
    count     INTEGER NOT NULL CHECK (count >= 0)
) STRICT;

CREATE INDEX device_count_log_tenant_at ON device_count_log (tenant_id, at_ms);

-- The location service's durable copy (RFC 3261 §10.3), written in batches
-- by the BatchWriter. No foreign keys on purpose: a batch must never fail
-- because a device was removed by another process a moment earlier.
-- remove_device deletes the device's bindings itself.
CREATE TABLE bindings (
    aor            TEXT    NOT NULL,
    contact        TEXT    NOT NULL,
    tenant_id      INTEGER NOT NULL,
    device_id      INTEGER NOT NULL,
    expires_ms     INTEGER NOT NULL,
    q_milli        INTEGER NOT NULL CHECK (q_milli BETWEEN 0 AND 1000),  -- q=0.7 is 700
    call_id        TEXT    NOT NULL,
    cseq           INTEGER NOT NULL,
    instance       TEXT    NULL,      -- +sip.instance (RFC 5626)
    reg_id         INTEGER NULL,      -- reg-id (RFC 5626)
    path           TEXT    NULL,      -- JSON list of Path header values (RFC 3327)
    flow_transport TEXT    NOT NULL,
    flow_host      TEXT    NOT NULL,
    flow_port      INTEGER NOT NULL,
    flow_conn      INTEGER NOT NULL DEFAULT 0,
    user_agent     TEXT    NULL,
    updated_ms     INTEGER NOT NULL,
    PRIMARY KEY (aor, contact)
) STRICT, WITHOUT ROWID;

CREATE INDEX bindings_expires ON bindings (expires_ms);
CREATE INDEX bindings_tenant ON bindings (tenant_id);
CREATE INDEX bindings_device ON bindings (device_id);

-- Usage rows have a natural key and are upserted, so a replay (a restart, a
-- retried batch) cannot count twice. No foreign keys: a device removed
-- mid-month still counts in that month.
CREATE TABLE usage_mau (
    tenant_id INTEGER NOT NULL,
    month     TEXT    NOT NULL CHECK (month GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]'),  -- tenant's time zone
    device_id INTEGER NOT NULL,
    first_ms  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, month, device_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE usage_gauge (
    tenant_id  INTEGER NOT NULL,
    month      TEXT    NOT NULL CHECK (month GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]'),
    metric     TEXT    NOT NULL,   -- METERING.md name, e.g. connections.peak
    value      INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,   -- when value last rose
    PRIMARY KEY (tenant_id, month, metric)
) STRICT, WITHOUT ROWID;

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value ANY  NOT NULL
) STRICT, WITHOUT ROWID;

-- Bumped by every provisioning change, so a running server polls one row to
-- know when to reload credentials.
INSERT INTO meta (key, value) VALUES ('provisioning_serial', 0);
