-- Per-node layout (see the README, "Farms: the per-node layout"): ONE shared table with FreeSWITCH's six
-- columns, in our schema; each node sees only its own rows through a view fsha_node_<name>.recovery
-- (created by `fs-ha db init --layout per-node` for every configured node) selected by the search_path of
-- its DSN. The base table is deliberately NOT named recovery: a FreeSWITCH logging in as a role named fsha
-- with PostgreSQL's default search_path ("$user", public) would otherwise find every node's rows in it.
DO $$
BEGIN
  -- fs-ha before 0.2 named it fsha.recovery; the per-node views follow the rename (they refer to the table, not its name)
  IF to_regclass('fsha.recovery_base') IS NULL AND EXISTS (
       SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'fsha' AND c.relname = 'recovery' AND c.relkind = 'r') THEN
    ALTER TABLE fsha.recovery RENAME TO recovery_base;
  END IF;
END $$;
CREATE TABLE IF NOT EXISTS fsha.recovery_base (
    runtime_uuid  varchar(255),
    technology    varchar(255),
    profile_name  varchar(255),
    hostname      varchar(255),
    uuid          varchar(255),
    metadata      text
);
CREATE INDEX IF NOT EXISTS recovery_hostname ON fsha.recovery_base (hostname);
CREATE INDEX IF NOT EXISTS recovery_uuid ON fsha.recovery_base (uuid);
CREATE INDEX IF NOT EXISTS recovery_runtime_uuid ON fsha.recovery_base (runtime_uuid);
