-- Objects and the store-wide revision counter (PostgreSQL).
-- Keep in step with ../sqlite/0001_objects.sql: both backends share column names and
-- types (JSON as TEXT, timestamps as BIGINT milliseconds since the Unix epoch).

-- One row: the last resourceVersion handed out. Every write transaction advances it first
-- (the row lock serialises writers), so revisions are unique, strictly increasing in commit
-- order, and a future watch can resume from one.
CREATE TABLE revision (
    id    SMALLINT PRIMARY KEY CHECK (id = 1),
    value BIGINT   NOT NULL
);
INSERT INTO revision (id, value) VALUES (1, 0);

-- Key columns use the "C" collation so lists sort byte-wise, exactly as on SQLite,
-- whatever the database locale. The primary key also serves lookups by (kind) and
-- (kind, namespace).
CREATE TABLE objects (
    kind             TEXT COLLATE "C" NOT NULL,
    namespace        TEXT COLLATE "C" NOT NULL,
    name             TEXT COLLATE "C" NOT NULL,
    uid              TEXT   NOT NULL UNIQUE,
    generation       BIGINT NOT NULL,
    resource_version BIGINT NOT NULL,
    managed_by       TEXT,
    labels           TEXT   NOT NULL,
    annotations      TEXT   NOT NULL,
    spec             TEXT   NOT NULL,
    status           TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);

CREATE INDEX objects_managed_by ON objects (managed_by);
