-- Leases: which operator replica leads (runs the controllers). Keep in step with sqlite.
-- Times are milliseconds on the DATABASE's clock (clock_timestamp()), so replicas with
-- skewed clocks agree on when a lease has expired. `epoch` grows with every change of
-- holder: it is the fencing token of the leader.
CREATE TABLE leases (
    name       TEXT   COLLATE "C" PRIMARY KEY,
    holder     TEXT   NOT NULL,
    epoch      BIGINT NOT NULL,
    renewed_at BIGINT NOT NULL,
    ttl_ms     BIGINT NOT NULL
);

-- Writes after a revision, for operators following the writes of others.
CREATE INDEX objects_resource_version ON objects (resource_version);
