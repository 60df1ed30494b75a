-- Runs that have not finished, by namespace: what a pipeline with `whenBusy: Reject`
-- counts before it takes a run. Partial, so it holds only the few unfinished runs
-- however long the history. It reads the stored text, not JSON: the store writes
-- canonical JSON (compact, keys sorted), so an unfinished run's status holds
-- `"phase":"Pending"` or `"phase":"Running"` exactly, and a row whose text is not JSON
-- (damage the store reports, never overwrites) is indexed without an error. Keep in
-- step with ../sqlite/0008_unfinished_runs.sql and Store::unfinished_runs.
CREATE INDEX objects_unfinished_runs
    ON objects (namespace)
    WHERE kind = 'Run'
      AND (status IS NULL
           OR strpos(status, '"phase":"Pending"') > 0
           OR strpos(status, '"phase":"Running"') > 0);
