-- Per-node layout (docs/freeswitch-recovery.md): ONE shared table with FreeSWITCH's six columns, in our
-- schema; each node sees only its own rows through a view fsha_node_<name>.recovery (created by
-- `fs-ha db init --layout per-node` for every configured node) selected by the search_path of its DSN.
CREATE TABLE IF NOT EXISTS fsha.recovery (
    runtime_uuid  varchar(255),
    technology    varchar(255),
    profile_name  varchar(255),
    hostname      varchar(255),
    uuid          varchar(255),
    metadata      text
);
CREATE INDEX IF NOT EXISTS recovery_hostname ON fsha.recovery (hostname);
CREATE INDEX IF NOT EXISTS recovery_uuid ON fsha.recovery (uuid);
CREATE INDEX IF NOT EXISTS recovery_runtime_uuid ON fsha.recovery (runtime_uuid);
