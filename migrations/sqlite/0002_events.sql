-- Kubernetes-like events: one row per (object, reason, message), counted when repeated.
-- Keep in step with ../postgres/0002_events.sql.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT   NOT NULL,
    namespace  TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    type       TEXT   NOT NULL,
    reason     TEXT   NOT NULL,
    message    TEXT   NOT NULL,
    count      BIGINT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL,
    UNIQUE (kind, namespace, name, reason, message)
);
CREATE INDEX events_last_seen ON events (last_seen);
