-- status shows each node's last takeover: read from one row per node, written with each audit row (at a
-- million audit rows, sorting them all made status time out); the audit is trimmed to audit.retention_days
-- (each audit write deletes a bounded batch of rows older than that).
CREATE INDEX IF NOT EXISTS audit_started_at ON fsha.audit (started_at);
CREATE INDEX IF NOT EXISTS audit_from_node ON fsha.audit (from_node, id DESC);
CREATE TABLE IF NOT EXISTS fsha.last_takeover (
    node      text PRIMARY KEY,
    audit_id  bigint NOT NULL
);
-- filled once from an audit an older fs-ha wrote (only while the table is still empty)
INSERT INTO fsha.last_takeover (node, audit_id)
SELECT n, max(id) FROM fsha.audit, LATERAL unnest(array_prepend(from_node, string_to_array(to_node, ','))) AS n
 WHERE NOT EXISTS (SELECT 1 FROM fsha.last_takeover)
 GROUP BY n
ON CONFLICT (node) DO NOTHING;
