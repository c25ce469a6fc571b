-- Record lookups by id always take the primary key. `records_changes` (the change feed's index,
-- 0007) leads with the same (tenant_id, integration_id) as the primary key, so for a lookup of
-- a page's ids the planner may choose it instead, reading every record of the integration for
-- each id and filtering on record_id: it does whenever it believes the integration holds no
-- records, i.e. for a new integration (not in the statistics yet) or a new database (no
-- statistics at all), which is when the biggest syncs happen, and a cached plan keeps that
-- choice as the sync grows (quadratic: a 30,000-record sync took 76 s instead of 3 s).
-- As a partial index on `seq IS NOT NULL` (true of every row: seq is NOT NULL) it is the
-- same unique index, but the planner uses it only for a query that constrains seq itself
-- (`seq > $3` implies the predicate), which the feed's reads do and lookups by id do not.
DROP INDEX records_changes;
CREATE UNIQUE INDEX records_changes ON records (tenant_id, integration_id, seq)
    WHERE seq IS NOT NULL;
