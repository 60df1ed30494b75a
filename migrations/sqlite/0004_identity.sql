-- The store's identity: one row, a UUID written once when the store is first opened
-- (by Store::connect, not here, so each store gets its own). Every container an operator
-- creates carries it as the `flotilla.dev/store` label; garbage collection, adoption and
-- event watches only touch containers of this store. Keep in step with postgres.
CREATE TABLE store_identity (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    uid TEXT    NOT NULL
);
