-- 0004: where sipcore's registration with each trunk stands (trunks added
-- with --register; sipcore.proxy.upstream), for `sipcore trunk list`.
--
-- Same conventions as before: INTEGER ms UTC, STRICT tables.  One row per
-- trunk, upserted by the running server's batch writer with the latest
-- state; it goes with its trunk (ON DELETE CASCADE), and a state written
-- after the trunk was removed is not inserted (the upsert checks trunks).
CREATE TABLE trunk_registrations (
    trunk_id        INTEGER PRIMARY KEY REFERENCES trunks (id) ON DELETE CASCADE,
    state           TEXT    NOT NULL CHECK (state IN ('registering', 'registered', 'failed', 'unregistered')),
    last_status     INTEGER NULL CHECK (last_status BETWEEN 100 AND 699),  -- NULL: no response (timeout, ...)
    last_reason     TEXT    NOT NULL DEFAULT '',
    expires_at_ms   INTEGER NULL,   -- registered: when the trunk's binding of us ends
    next_attempt_ms INTEGER NULL,   -- the next REGISTER (refresh, or retry after a failure)
    updated_ms      INTEGER NOT NULL
) STRICT;
