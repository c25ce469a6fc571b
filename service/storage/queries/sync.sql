-- Sync runs, the synced records and the sync cursor (see migrations/0002_sync.sql).

-- name: sync_run_running
-- The integration's running run, locked; the caller holds the integration's row lock.
SELECT * FROM sync_runs
WHERE tenant_id = $1 AND integration_id = $2 AND outcome = 'RUNNING'
FOR UPDATE

-- name: sync_run_insert
-- seq is the integration's next run number; safe because the caller holds the integration's
-- row lock (and the primary key would refuse a duplicate anyway).
INSERT INTO sync_runs (tenant_id, integration_id, seq, id, trigger, outcome, started_at,
                       lease_expires_at, lease_version, worker)
VALUES ($1, $2,
        COALESCE((SELECT max(seq) FROM sync_runs WHERE tenant_id = $1 AND integration_id = $2),
                 0) + 1,
        $3, $4, 'RUNNING', $5, $6, $7, $8)
RETURNING *

-- name: sync_run_get
SELECT * FROM sync_runs WHERE tenant_id = $1 AND id = $2

-- name: sync_run_get_for_update
SELECT * FROM sync_runs WHERE tenant_id = $1 AND id = $2 FOR UPDATE

-- name: sync_run_progress
-- One more committed page; the lease is renewed with it.
UPDATE sync_runs SET
    pages = pages + 1, records_upserted = records_upserted + $3,
    records_deleted = records_deleted + $4, full_resync = full_resync OR $5,
    lease_expires_at = $6
WHERE tenant_id = $1 AND id = $2 AND outcome = 'RUNNING'
RETURNING *

-- name: sync_run_renew
-- The runner's sign of life between pages (a slow provider can take a while per page).
UPDATE sync_runs SET lease_expires_at = $3
WHERE tenant_id = $1 AND id = $2 AND outcome = 'RUNNING'

-- name: sync_run_finish
UPDATE sync_runs SET
    outcome = $3, ended_at = $4, error = $5, note = $6, lease_expires_at = NULL
WHERE tenant_id = $1 AND id = $2 AND outcome = 'RUNNING'
RETURNING *

-- name: sync_runs_list
-- Newest first; $3 is the seq of the previous page's last run.
SELECT * FROM sync_runs
WHERE tenant_id = $1 AND integration_id = $2 AND ($3::bigint IS NULL OR seq < $3)
ORDER BY seq DESC
LIMIT $4

-- name: sync_cursor_get
SELECT cursor FROM integrations WHERE tenant_id = $1 AND id = $2

-- name: sync_cursor_put
-- The cursor and the record count move together with the page that changed them. The fence:
-- only while the integration still has the run's lease version $5 (no row: taken over).
UPDATE integrations SET cursor = $3, record_count = record_count + $4
WHERE tenant_id = $1 AND id = $2 AND lease_version = $5
RETURNING record_count

-- name: records_upsert
-- One page of records ($3 ids, $4 data, each id once). New and changed records get the data
-- and the update time $6; unchanged ones are only marked as seen by the listing $5 (NULL for
-- a page of changes), so an unchanged feed rewrites nothing. Returns how many records are new
-- and how many were written (new or changed).
WITH page AS (
    SELECT record_id, data FROM unnest($3::text[], $4::jsonb[]) AS p (record_id, data)
), existing AS (
    SELECT r.record_id, r.data
    FROM records r JOIN page p ON p.record_id = r.record_id
    WHERE r.tenant_id = $1 AND r.integration_id = $2
), written AS (
    INSERT INTO records (tenant_id, integration_id, record_id, data, listing, updated_at)
    SELECT $1, $2, p.record_id, p.data, $5, $6
    FROM page p LEFT JOIN existing e ON e.record_id = p.record_id
    WHERE e.data IS DISTINCT FROM p.data
    ON CONFLICT (tenant_id, integration_id, record_id) DO UPDATE
        SET data = excluded.data, listing = excluded.listing, updated_at = excluded.updated_at
    RETURNING 1
), marked AS (
    -- Disjoint from `written` (equal data here, different data there), so no row is touched
    -- twice; PostgreSQL runs a data-modifying WITH whether or not it is read.
    UPDATE records r SET listing = $5
    FROM existing e JOIN page p ON p.record_id = e.record_id
    WHERE r.tenant_id = $1 AND r.integration_id = $2 AND r.record_id = e.record_id
      AND e.data = p.data AND r.listing IS DISTINCT FROM $5
    RETURNING 1
)
SELECT (SELECT count(*) FROM page) - (SELECT count(*) FROM existing) AS inserted,
       (SELECT count(*) FROM written) AS written

-- name: records_delete
-- Records the provider reported deleted; returns how many existed.
DELETE FROM records
WHERE tenant_id = $1 AND integration_id = $2 AND record_id = ANY($3::text[])

-- name: records_delete_unlisted
-- The end of a full listing: what it did not see is gone at the provider.
DELETE FROM records
WHERE tenant_id = $1 AND integration_id = $2 AND listing IS DISTINCT FROM $3

-- name: records_list
-- Ordered by id; $3 is the previous page's last id.
SELECT record_id, data, updated_at FROM records
WHERE tenant_id = $1 AND integration_id = $2 AND ($3::text IS NULL OR record_id > $3)
ORDER BY record_id
LIMIT $4
