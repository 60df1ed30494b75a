-- Run output (attempt logs, resource samples) copied by the leader from its data dir, so
-- that every replica can serve it and a new leader can restore it. Keep in step with
-- ../sqlite/0006_run_output.sql.
--
-- A file `<run uid>/<file>` is stored as consecutive chunks of at most 1 MiB, each keyed
-- by the byte offset it starts at: re-shipping a chunk is a no-op (ON CONFLICT DO NOTHING),
-- and the file is the chunks in offset order. `end_offset` (byte_offset + length of data)
-- lets readers find the chunk holding a given byte without reading data. Rows are not
-- tied to `objects` by a foreign key: a cascade would delete megabytes inside the write
-- transaction every writer waits for; deleting a run deletes its rows right after.
CREATE TABLE run_output (
    run_uid     TEXT   COLLATE "C" NOT NULL,
    file        TEXT   COLLATE "C" NOT NULL,
    byte_offset BIGINT NOT NULL,
    end_offset  BIGINT NOT NULL,
    data        BYTEA  NOT NULL,
    PRIMARY KEY (run_uid, file, byte_offset)
);

-- Chunks are stored compressed (TOAST), and logs compress well. lz4 costs a fraction of
-- the CPU of the default pglz, which shows on a small machine capturing a loud run
-- (scripts/bench-output.sh); a server older than PostgreSQL 14, or built without lz4,
-- keeps pglz.
DO $$
BEGIN
    ALTER TABLE run_output ALTER COLUMN data SET COMPRESSION lz4;
EXCEPTION WHEN OTHERS THEN
    NULL;
END
$$;
