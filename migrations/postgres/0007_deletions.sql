-- Deleted objects, for replicas following each other's writes: a delete on PostgreSQL
-- copies the object here in its transaction, with the revision the delete took as its
-- resource_version, so every replica's watches see the delete as a DELETED event.
-- Rows older than the last 100,000 revisions are pruned by the deletes themselves.
-- Keep in step with ../sqlite/0007_deletions.sql.
CREATE TABLE deletions (
    kind             TEXT COLLATE "C" NOT NULL,
    namespace        TEXT COLLATE "C" NOT NULL,
    name             TEXT COLLATE "C" NOT NULL,
    uid              TEXT   NOT NULL,
    generation       BIGINT NOT NULL,
    resource_version BIGINT PRIMARY KEY,
    managed_by       TEXT,
    labels           TEXT   NOT NULL,
    annotations      TEXT   NOT NULL,
    spec             TEXT   NOT NULL,
    status           TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL
);
