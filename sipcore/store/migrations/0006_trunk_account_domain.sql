-- 0006: the SIP domain of our account at a trunk (`sipcore trunk add --domain`):
-- what a REGISTER to it names in its Request-URI, To and From when the
-- carrier's domain is not the address it is reached at (sip:acct@carrier.com,
-- sent to an outbound proxy).  NULL: the address host, as before.
ALTER TABLE trunks ADD COLUMN account_domain TEXT;
