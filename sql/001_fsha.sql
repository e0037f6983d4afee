-- fs-ha's own tables, in a schema of ours. Idempotent: safe to apply twice, on a live database.
CREATE SCHEMA IF NOT EXISTS fsha;

-- one row per node, written by a healthy check_fs: lets a takeover tell "peer unreachable" from "peer dead"
CREATE TABLE IF NOT EXISTS fsha.heartbeat (
    node        text PRIMARY KEY,
    switchname  text NOT NULL,
    core_uuid   text,
    healthy     boolean NOT NULL,
    detail      text,
    at          timestamptz NOT NULL DEFAULT now()
);

-- one row per takeover attempt: who, from, to, counts, timings, result
CREATE TABLE IF NOT EXISTS fsha.audit (
    id           bigserial PRIMARY KEY,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL,
    command      text NOT NULL,
    from_node    text NOT NULL,
    to_node      text NOT NULL,
    result       text NOT NULL,
    reason       text NOT NULL,
    adopted      integer NOT NULL DEFAULT 0,
    recovered    integer,
    missing      integer,
    skipped      integer NOT NULL DEFAULT 0,
    timings      jsonb NOT NULL DEFAULT '{}'
);

-- the original rows handed over by a takeover, kept until the adopting node has re-tracked them;
-- and rows that could not be rewritten (note = 'skipped: ...'), kept for the operator
CREATE TABLE IF NOT EXISTS fsha.takeover_rows (
    takeover_id   text NOT NULL,
    from_node     text NOT NULL,
    to_node       text NOT NULL,
    moved_at      timestamptz NOT NULL DEFAULT now(),
    runtime_uuid  varchar(255),
    technology    varchar(255),
    profile_name  varchar(255),
    hostname      varchar(255),
    uuid          varchar(255),
    metadata      text,
    note          text NOT NULL DEFAULT 'moved'
);
CREATE INDEX IF NOT EXISTS takeover_rows_uuid ON fsha.takeover_rows (uuid);

-- which takeover an audit row reports (a rerun records one that was interrupted: see takeover_rows)
ALTER TABLE fsha.audit ADD COLUMN IF NOT EXISTS takeover_id text;

-- each adopter's share and result (a takeover may spread one node's calls over several adopters)
ALTER TABLE fsha.audit ADD COLUMN IF NOT EXISTS adopters jsonb NOT NULL DEFAULT '[]';

-- the VRRP state each node's keepalived last announced per instance (the agent and the notify hooks write it;
-- fs-ha status shows it): what an operator reads at a glance, never what fs-ha decides on
CREATE TABLE IF NOT EXISTS fsha.vrrp (
    node      text NOT NULL,
    instance  text NOT NULL,
    state     text NOT NULL,
    at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (node, instance)
);
