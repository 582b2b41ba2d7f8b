-- 0003: billing -- plan history, tenant tax rates, issued invoices, usage
-- alerts and the webhook outbox.
--
-- Same conventions as 0001/0002: INTEGER ms UTC, STRICT tables.  Money is
-- never REAL: amounts are INTEGER minor units (cents) next to the full
-- invoice as JSON, whose numbers are decimal strings.

-- A tenant's plans over time, for mid-month changes (seed 001: "apply the new
-- plan's rate for the remaining days of the month").  A row is in force from
-- from_ms (local midnight of its first day, in the tenant's zone) until the
-- next row.  A tenant without rows is on tenants.plan since the day it was
-- created; the first change of such a tenant also records that.
-- tenants.plan always holds the plan in force now.
CREATE TABLE tenant_plans (
    tenant_id INTEGER NOT NULL REFERENCES tenants (id),
    from_ms   INTEGER NOT NULL,
    plan      TEXT    NOT NULL CHECK (plan <> ''),
    set_ms    INTEGER NOT NULL,   -- when the operator made the change
    PRIMARY KEY (tenant_id, from_ms)
) STRICT, WITHOUT ROWID;

-- A tenant's own tax rate (METERING.md: a tenant owns "a tax rate"); without
-- a row the rate of the plan in force at month end applies (seed 001).
CREATE TABLE tenant_tax (
    tenant_id   INTEGER PRIMARY KEY REFERENCES tenants (id),
    tax_percent TEXT    NOT NULL CHECK (tax_percent GLOB '[0-9]*' AND tax_percent NOT GLOB '*[^0-9.]*'),
    updated_ms  INTEGER NOT NULL
) STRICT;

-- Issued invoices: immutable revisions.  Issuing an unchanged rating writes
-- nothing; a changed one (a price fix, late usage) adds revision N+1.  The
-- triggers make "never edit an issued invoice" a property of the database,
-- not of the code that happens to touch it.
CREATE TABLE invoices (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id      INTEGER NOT NULL REFERENCES tenants (id),
    month          TEXT    NOT NULL CHECK (month GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]'),  -- tenant's zone
    revision       INTEGER NOT NULL CHECK (revision >= 1),
    issued_ms      INTEGER NOT NULL,
    plans          TEXT    NOT NULL,   -- plan names in force, comma-separated, in order
    currency       TEXT    NOT NULL CHECK (length(currency) = 3),
    minor_digits   INTEGER NOT NULL CHECK (minor_digits BETWEEN 0 AND 4),
    subtotal_minor INTEGER NOT NULL,   -- 80.90 USD is 8090
    tax_minor      INTEGER NOT NULL,
    total_minor    INTEGER NOT NULL,
    digest         TEXT    NOT NULL,   -- SHA-256 of the content without revision: "unchanged" is digest equality
    body           TEXT    NOT NULL,   -- Invoice.to_json_dict() as JSON, decimal strings
    UNIQUE (tenant_id, month, revision)
) STRICT;

CREATE TRIGGER invoices_never_updated BEFORE UPDATE ON invoices
BEGIN
    SELECT RAISE(ABORT, 'issued invoices are immutable: issue a new revision');
END;

CREATE TRIGGER invoices_never_deleted BEFORE DELETE ON invoices
BEGIN
    SELECT RAISE(ABORT, 'issued invoices are immutable: issue a new revision');
END;

-- Usage alerts (METERING.md): a billing account's metric reached a threshold
-- percentage of its included quantity.  The natural key makes the alert
-- exactly-once per threshold, account and month, across restarts.
-- No foreign key, like the usage tables.
CREATE TABLE alerts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     INTEGER NOT NULL,
    month         TEXT    NOT NULL CHECK (month GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]'),
    metric        TEXT    NOT NULL,
    threshold_pct INTEGER NOT NULL CHECK (threshold_pct BETWEEN 1 AND 100),
    value         INTEGER NOT NULL CHECK (value >= 0),
    included      TEXT    NOT NULL,   -- decimal string, the plan's included quantity
    at_ms         INTEGER NOT NULL,
    UNIQUE (tenant_id, month, metric, threshold_pct)
) STRICT;

-- Durable outbox of webhook POSTs, written in the transaction that records
-- the alert; a worker delivers due rows with exponential backoff.
-- next_attempt_ms is NULL once delivered (delivered_ms set) or given up.
CREATE TABLE webhook_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       INTEGER NOT NULL,
    alert_id        INTEGER NULL REFERENCES alerts (id),
    url             TEXT    NOT NULL,
    body            TEXT    NOT NULL,   -- the JSON document POSTed
    created_ms      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_ms INTEGER NULL,
    delivered_ms    INTEGER NULL,
    last_error      TEXT    NULL
) STRICT;

CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_ms) WHERE next_attempt_ms IS NOT NULL;
CREATE INDEX webhook_outbox_alert ON webhook_outbox (alert_id);
