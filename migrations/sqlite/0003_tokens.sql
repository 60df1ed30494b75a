-- API tokens: only a SHA-256 hash of each token is stored. Keep in step with postgres.
CREATE TABLE tokens (
    name       TEXT   PRIMARY KEY,
    hash       TEXT   NOT NULL UNIQUE,
    scopes     TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT
);
