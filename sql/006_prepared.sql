-- the prepared takeover: a peer's rows rewritten for their adopter while it stands by (adapters/prepare.ts),
-- each from one version of its row (ver: the row's xmin then) under one rewrite (spec: what it was made for).
-- A takeover copies a row's prepared metadata in place server-side when the row is still at that version, so
-- the rows' ~12 KB of XML each need not cross the network nor be compressed while calls wait.
CREATE TABLE IF NOT EXISTS fsha.prepared (
    adopter   text NOT NULL,
    uuid      text NOT NULL,
    peer      text NOT NULL,
    spec      text NOT NULL,
    ver       text NOT NULL,
    metadata  text NOT NULL,
    PRIMARY KEY (adopter, uuid)
);
