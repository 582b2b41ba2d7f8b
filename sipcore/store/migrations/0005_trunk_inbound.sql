-- 0005: how a trunk's own requests are recognised (`sipcore trunk add --inbound`):
-- 'address' by exact source host:port (as before, the default for existing
-- trunks), 'digest' by Proxy-Authorization with its username/password in its
-- tenant's realm from any address, 'both' by the two together.  Digest needs
-- the credentials, so a trunk without a username stays 'address'.
ALTER TABLE trunks ADD COLUMN inbound TEXT NOT NULL DEFAULT 'address'
    CHECK (inbound IN ('address', 'digest', 'both') AND (inbound = 'address' OR username IS NOT NULL));
