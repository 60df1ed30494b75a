-- Deleted objects, for replicas following each other's writes. Only PostgreSQL stores
-- are shared by several operators, so SQLite never fills it; the table exists so both
-- schemas stay alike. Keep in step with ../postgres/0007_deletions.sql.
CREATE TABLE deletions (
    kind             TEXT    NOT NULL,
    namespace        TEXT    NOT NULL,
    name             TEXT    NOT NULL,
    uid              TEXT    NOT NULL,
    generation       INTEGER NOT NULL,
    resource_version INTEGER PRIMARY KEY,
    managed_by       TEXT,
    labels           TEXT    NOT NULL,
    annotations      TEXT    NOT NULL,
    spec             TEXT    NOT NULL,
    status           TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
