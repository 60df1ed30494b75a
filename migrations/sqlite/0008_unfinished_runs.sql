-- Runs that have not finished, by namespace and pipeline: what a pipeline with
-- `whenBusy: Reject` counts before it takes a run. Partial, so it holds only the few
-- unfinished runs however long the history. Keep in step with
-- ../postgres/0008_unfinished_runs.sql and Store::unfinished_runs.
CREATE INDEX objects_unfinished_runs
    ON objects (namespace, json_extract(spec, '$.pipelineRef.name'))
    WHERE kind = 'Run'
      AND (status IS NULL OR json_extract(status, '$.phase') IN ('Pending', 'Running'));
