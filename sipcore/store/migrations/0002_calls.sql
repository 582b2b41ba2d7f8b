-- 0002: call legs, trunks, DIDs, counters, the heartbeat.
--
-- Same conventions as 0001: INTEGER ms UTC, INTEGER counts, STRICT tables.

-- One row per call leg (METERING.md "Call legs"), upserted from the proxy's
-- LegRecord snapshots (sipcore.metering.legs) by leg_id: a snapshot never
-- changes a row whose end_ms is already set, so a replayed or late snapshot
-- cannot count a second twice.  voice_ms + video_ms is the answered time of
-- the closed segments; the open segment (segment_start_ms, with its media
-- state) is what crash recovery credits up to the last heartbeat.
-- No foreign keys (like the usage tables): a removed device's legs stay.
CREATE TABLE legs (
    leg_id              TEXT    PRIMARY KEY,
    tenant_id           INTEGER NOT NULL,
    month               TEXT    NOT NULL CHECK (month GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]'),
    endpoint_kind       TEXT    NOT NULL CHECK (endpoint_kind IN ('device', 'trunk')),
    endpoint_id         INTEGER NOT NULL,
    direction           TEXT    NOT NULL CHECK (direction IN ('originating', 'terminating')),
    transit             INTEGER NOT NULL DEFAULT 0 CHECK (transit IN (0, 1)),
    call_id             TEXT    NOT NULL,
    from_tag            TEXT    NOT NULL,
    to_tag              TEXT    NULL,
    caller              TEXT    NOT NULL,
    callee              TEXT    NOT NULL,
    setup_ms            INTEGER NOT NULL,
    answer_ms           INTEGER NULL,
    end_ms              INTEGER NULL,
    end_reason          TEXT    NULL,
    final_status        INTEGER NULL,
    voice_ms            INTEGER NOT NULL DEFAULT 0 CHECK (voice_ms >= 0),
    video_ms            INTEGER NOT NULL DEFAULT 0 CHECK (video_ms >= 0),
    transcoding_ms      INTEGER NOT NULL DEFAULT 0 CHECK (transcoding_ms >= 0),
    segment_start_ms    INTEGER NULL,
    segment_video       INTEGER NOT NULL DEFAULT 0 CHECK (segment_video IN (0, 1)),
    segment_transcoding INTEGER NOT NULL DEFAULT 0 CHECK (segment_transcoding IN (0, 1)),
    codecs_local        TEXT    NOT NULL DEFAULT '',
    codecs_remote       TEXT    NOT NULL DEFAULT '',
    updated_ms          INTEGER NOT NULL
) STRICT;

-- Rating aggregates a tenant's month; recovery scans the open legs.
CREATE INDEX legs_tenant_month ON legs (tenant_id, month);
CREATE INDEX legs_month ON legs (month);
CREATE INDEX legs_open ON legs (end_ms) WHERE end_ms IS NULL;

-- Trunks: connections to carriers and other PBXs (METERING.md "Trunk").
-- Inbound requests are recognised by source address (host, port); outbound
-- calls go to host:port over transport.  The outbound password is kept in
-- clear because answering the trunk's challenge needs it for a realm only the
-- trunk names (the one secret sipcore cannot store as HA1; file permissions
-- protect the database).
CREATE TABLE trunks (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     INTEGER NOT NULL REFERENCES tenants (id),
    name          TEXT    NOT NULL COLLATE NOCASE,  -- operators type names in any case
    host          TEXT    NOT NULL,
    port          INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
    transport     TEXT    NOT NULL DEFAULT 'udp' CHECK (transport IN ('udp', 'tcp')),
    codecs        TEXT    NOT NULL DEFAULT '',     -- comma-separated encoding names, '' = any
    username      TEXT    NULL,
    password      TEXT    NULL,
    register      INTEGER NOT NULL DEFAULT 0 CHECK (register IN (0, 1)),
    priority      INTEGER NOT NULL DEFAULT 100,    -- lower first among equal prefixes
    allow_transit INTEGER NOT NULL DEFAULT 0 CHECK (allow_transit IN (0, 1)),
    enabled       INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_ms    INTEGER NOT NULL,
    updated_ms    INTEGER NOT NULL,
    UNIQUE (name)
) STRICT;

CREATE INDEX trunks_tenant ON trunks (tenant_id);
-- Unique: inbound calls are attributed to a trunk (and so to a tenant) by
-- source address, so two trunks at one host:port would be indistinguishable.
CREATE UNIQUE INDEX trunks_source ON trunks (host, port);

-- Dial plan: a number matching prefix goes to the trunk (longest prefix first, then priority).
CREATE TABLE trunk_prefixes (
    trunk_id INTEGER NOT NULL REFERENCES trunks (id) ON DELETE CASCADE,
    prefix   TEXT    NOT NULL CHECK (prefix GLOB '?*' AND prefix NOT GLOB '*[^0-9+*#]*'),
    PRIMARY KEY (trunk_id, prefix)
) STRICT, WITHOUT ROWID;

-- Inbound: a DID (the Request-URI user of a call from a trunk) rings a device.
CREATE TABLE dids (
    number    TEXT    PRIMARY KEY,
    tenant_id INTEGER NOT NULL REFERENCES tenants (id),
    device_id INTEGER NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    trunk_id  INTEGER NULL REFERENCES trunks (id) ON DELETE SET NULL  -- NULL: from any trunk of the tenant
) STRICT, WITHOUT ROWID;

-- As device_count_log, for trunks.provisioned.peak.
CREATE TABLE trunk_count_log (
    tenant_id INTEGER NOT NULL REFERENCES tenants (id),
    at_ms     INTEGER NOT NULL,
    count     INTEGER NOT NULL CHECK (count >= 0)
) STRICT;

CREATE INDEX trunk_count_log_tenant_at ON trunk_count_log (tenant_id, at_ms);

-- Counted metrics (messages, signaling.bytes_out): one row per tenant, month
-- and metric, incremented by batches.  A batch commits its increments in one
-- transaction, so a crash loses at most the batch in flight, never counts twice.
CREATE TABLE usage_counter (
    tenant_id  INTEGER NOT NULL,
    month      TEXT    NOT NULL CHECK (month GLOB '[0-9][0-9][0-9][0-9]-[0-1][0-9]'),
    metric     TEXT    NOT NULL,
    value      INTEGER NOT NULL CHECK (value >= 0),
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, month, metric)
) STRICT, WITHOUT ROWID;

-- The running server stamps this every few seconds: after a crash, legs left
-- open are closed at this moment (the last time the server knew them alive).
INSERT INTO meta (key, value) VALUES ('heartbeat_ms', 0);
