-- API tokens: only a SHA-256 hash of each token is stored. Keep in step with sqlite.
CREATE TABLE tokens (
    name       TEXT   COLLATE "C" PRIMARY KEY,
    hash       TEXT   NOT NULL UNIQUE,
    scopes     TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT
);
