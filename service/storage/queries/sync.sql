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

-- name: records_list
-- Ordered by id; $3 is the previous page's last id.
SELECT record_id, data, updated_at, octet_length(data::text) AS size FROM records
WHERE tenant_id = $1 AND integration_id = $2 AND ($3::text IS NULL OR record_id > $3)
ORDER BY record_id
LIMIT $4

-- name: sync_page_commit
-- One page (or part of a page) of a sync run, in one statement: its records ($3 ids, $4 their
-- JSON text, each id once), the records the provider reported deleted ($7), at the end of a
-- full listing ($8) the records the listing did not see, the cursor ($9) with the record
-- count, and the run's counters and lease ($10 run, $11 full_resync, $12 lease expiry, $14
-- records rejected with $15 an example, $16 whether this ends a provider page).
-- New and changed records get the data and the update time $6; unchanged ones are only
-- marked as seen by the listing $5 (NULL for a page of changes), so an unchanged feed rewrites
-- nothing. No record is touched by two parts (a page id is in `written` or `marked`, never in
-- `gone`), and PostgreSQL runs every data-modifying part whether or not it is read.
-- The fence: the cursor moves only while the integration has the run's lease version $13, and
-- the counters only while the run is RUNNING; no row back means the claim was lost and the
-- caller must roll back.
WITH page AS (
    SELECT record_id, data::jsonb AS data FROM unnest($3::text[], $4::text[]) AS p (record_id, data)
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
    UPDATE records r SET listing = $5
    FROM existing e JOIN page p ON p.record_id = e.record_id
    WHERE r.tenant_id = $1 AND r.integration_id = $2 AND r.record_id = e.record_id
      AND e.data = p.data AND r.listing IS DISTINCT FROM $5
    RETURNING 1
), gone AS (
    DELETE FROM records r
    WHERE r.tenant_id = $1 AND r.integration_id = $2
      AND (r.record_id = ANY($7::text[])
           OR ($8 AND r.listing IS DISTINCT FROM $5 AND r.record_id <> ALL($3::text[])))
    RETURNING 1
), counts AS (
    SELECT (SELECT count(*) FROM page) - (SELECT count(*) FROM existing) AS inserted,
           (SELECT count(*) FROM written) AS written,
           (SELECT count(*) FROM gone) AS deleted
), moved AS (
    UPDATE integrations i SET cursor = $9, record_count = i.record_count + c.inserted - c.deleted
    FROM counts c
    WHERE i.tenant_id = $1 AND i.id = $2 AND i.lease_version = $13
    RETURNING i.record_count
), progress AS (
    UPDATE sync_runs s SET
        pages = s.pages + CASE WHEN $16 THEN 1 ELSE 0 END,
        records_upserted = s.records_upserted + c.written,
        records_deleted = s.records_deleted + c.deleted, full_resync = s.full_resync OR $11,
        lease_expires_at = $12, records_rejected = s.records_rejected + $14,
        rejected_example = CASE WHEN s.rejected_example = '' THEN $15 ELSE s.rejected_example END
    FROM counts c
    WHERE s.tenant_id = $1 AND s.id = $10 AND s.outcome = 'RUNNING'
    RETURNING s.*
)
SELECT m.record_count AS integration_record_count, p.* FROM moved m CROSS JOIN progress p
