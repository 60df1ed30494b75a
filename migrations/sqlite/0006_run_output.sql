-- Run output (attempt logs, resource samples) copied by the leader from its data dir.
-- Keep in step with ../postgres/0006_run_output.sql. Only stores shared by replicas
-- (PostgreSQL) fill it: one operator per SQLite store serves its output from its own data
-- dir. The table keeps the two schemas alike.
CREATE TABLE run_output (
    run_uid     TEXT   NOT NULL,
    file        TEXT   NOT NULL,
    byte_offset BIGINT NOT NULL,
    end_offset  BIGINT NOT NULL,
    data        BLOB   NOT NULL,
    PRIMARY KEY (run_uid, file, byte_offset)
);
