-- Leases: which operator replica leads (runs the controllers). Keep in step with
-- postgres. SQLite has one operator (a second is refused), which never takes a lease;
-- the table keeps the two schemas alike.
-- Times are milliseconds on the DATABASE's clock, so replicas with
-- skewed clocks agree on when a lease has expired. `epoch` grows with every change of
-- holder: it is the fencing token of the leader.
CREATE TABLE leases (
    name       TEXT   PRIMARY KEY,
    holder     TEXT   NOT NULL,
    epoch      BIGINT NOT NULL,
    renewed_at BIGINT NOT NULL,
    ttl_ms     BIGINT NOT NULL
);

-- Writes after a revision, for operators following the writes of others.
CREATE INDEX objects_resource_version ON objects (resource_version);
