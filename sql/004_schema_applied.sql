-- which version of these files a database already has (a takeover checks it before it would apply them:
-- CREATE INDEX IF NOT EXISTS locks the table before it finds the index there, so it waited behind any open
-- transaction on the recovery table, a concurrent takeover's rewrite included, and queued FreeSWITCH's writes)
CREATE TABLE IF NOT EXISTS fsha.schema_applied (
    key         text PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
