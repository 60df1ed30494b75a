-- Objects and the store-wide revision counter (SQLite).
-- Keep in step with ../postgres/0001_objects.sql: both backends share column names and
-- types (JSON as TEXT, timestamps as BIGINT milliseconds since the Unix epoch).

-- One row: the last resourceVersion handed out. Every write transaction advances it first,
-- so revisions are unique, strictly increasing and a future watch can resume from one.
CREATE TABLE revision (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value BIGINT  NOT NULL
);
INSERT INTO revision (id, value) VALUES (1, 0);

-- The primary key also serves lookups by (kind) and (kind, namespace).
CREATE TABLE objects (
    kind             TEXT   NOT NULL,
    namespace        TEXT   NOT NULL,
    name             TEXT   NOT NULL,
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
