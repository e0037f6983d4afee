-- the standby fs-ha set on each node and when (FreeSWITCH's xmlstatus does not show standby): status shows it,
-- so a node left in standby by a drain or notify that could not finish is seen
CREATE TABLE IF NOT EXISTS fsha.standby (
    node  text PRIMARY KEY,
    "on"  boolean NOT NULL,
    by    text NOT NULL,
    at    timestamptz NOT NULL DEFAULT now()
);
