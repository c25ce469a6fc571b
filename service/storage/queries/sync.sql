-- Sync runs, the synced records and the sync cursor (see migrations/0002_sync.sql).

-- name: sync_run_running
-- The integration's running run, locked; the caller holds the integration's row lock.
SELECT * FROM sync_runs
WHERE tenant_id = $1 AND integration_id = $2 AND outcome = 'RUNNING'
FOR UPDATE

-- name: sync_start_hold
-- What starting a sync needs, in one read under the integration's row lock (held until the
-- transaction ends): the integration with its lease version, where the next sync continues
-- (`cursor`), its credentials (sealed) and whose account they are, and whether a run is
-- RUNNING (its id; the run itself is read locked only then, which is rare).
SELECT i.*, c.kind AS credentials_kind, c.set_at AS credentials_set_at,
       c.sealed AS credentials_sealed, c.account AS credentials_account,
       (SELECT r.id FROM sync_runs r
        WHERE r.tenant_id = i.tenant_id AND r.integration_id = i.id AND r.outcome = 'RUNNING')
           AS running_id
FROM integrations i LEFT JOIN credentials c
    ON c.tenant_id = i.tenant_id AND c.integration_id = i.id
WHERE i.tenant_id = $1 AND i.id = $2
FOR UPDATE OF i

-- name: sync_run_start
-- A run starts, holding the integration's claim: the scheduler's claim $7 (the claim turns
-- into the run, whose lease covers it from now on; no row when the claim was lost), or, with
-- $7 NULL, a new claim for work a person started (a new lease version, so whatever held the
-- integration before cannot write). seq is the integration's next run number; safe because
-- the caller holds the integration's row lock (and the primary key would refuse a duplicate).
WITH claim AS (
    UPDATE integrations SET
        lease_version = CASE WHEN $7::bigint IS NULL THEN lease_version + 1
                             ELSE lease_version END,
        claim_expires_at = NULL, claimed_by = NULL
    WHERE tenant_id = $1 AND id = $2 AND ($7::bigint IS NULL OR lease_version = $7)
    RETURNING lease_version
)
INSERT INTO sync_runs (tenant_id, integration_id, seq, id, trigger, outcome, started_at,
                       lease_expires_at, lease_version, worker)
SELECT $1, $2,
       COALESCE((SELECT max(seq) FROM sync_runs WHERE tenant_id = $1 AND integration_id = $2),
                0) + 1,
       $3::uuid, $4::text, 'RUNNING', $5::timestamptz, $6::timestamptz, claim.lease_version,
       $8::text
FROM claim
RETURNING *

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

-- name: sync_hold
-- A runner about to write: the integration locked (until the transaction ends) with its
-- lease version, and its run as it stands (run_*; NULL when the run is gone).
SELECT i.*, c.kind AS credentials_kind, c.set_at AS credentials_set_at,
       r.tenant_id AS run_tenant_id, r.integration_id AS run_integration_id, r.id AS run_id,
       r.seq AS run_seq, r.trigger AS run_trigger, r.outcome AS run_outcome,
       r.started_at AS run_started_at, r.ended_at AS run_ended_at, r.pages AS run_pages,
       r.records_upserted AS run_records_upserted, r.records_deleted AS run_records_deleted,
       r.full_resync AS run_full_resync, r.error AS run_error, r.note AS run_note,
       r.lease_expires_at AS run_lease_expires_at, r.lease_version AS run_lease_version,
       r.worker AS run_worker, r.records_rejected AS run_records_rejected,
       r.rejected_example AS run_rejected_example
FROM integrations i
LEFT JOIN credentials c ON c.tenant_id = i.tenant_id AND c.integration_id = i.id
LEFT JOIN sync_runs r ON r.tenant_id = i.tenant_id AND r.id = $3
WHERE i.tenant_id = $1 AND i.id = $2
FOR UPDATE OF i

-- name: sync_run_get
SELECT * FROM sync_runs WHERE tenant_id = $1 AND id = $2

-- name: sync_run_renew
-- The runner's sign of life between pages (a slow provider can take a while per page).
UPDATE sync_runs SET lease_expires_at = $3
WHERE tenant_id = $1 AND id = $2 AND outcome = 'RUNNING'

-- name: sync_run_finish
-- The run's end, and its sync_run.finished webhook for every enabled endpoint of the tenant
-- that wants it ($7 event id, $8 the payload's parts known before the write; the counters are
-- the row's). The revision is the integration's as the run ended (its last change's).
WITH finished AS (
    UPDATE sync_runs SET
        outcome = $3, ended_at = $4, error = $5, note = $6, lease_expires_at = NULL
    WHERE tenant_id = $1 AND id = $2 AND outcome = 'RUNNING'
    RETURNING *
), hooks AS (
    INSERT INTO webhook_deliveries (tenant_id, endpoint_id, event_id, event_type,
                                    integration_id, revision, payload, created_at,
                                    next_attempt_at)
    SELECT $1, w.id, $7, 'sync_run.finished', f.integration_id, i.revision,
           jsonb_build_object('integration_id', f.integration_id, 'sync_run',
               $8::jsonb || jsonb_build_object(
                   'pages', f.pages, 'records_upserted', f.records_upserted,
                   'records_deleted', f.records_deleted, 'full_resync', f.full_resync)),
           $4, $4
    FROM finished f
    JOIN integrations i ON i.tenant_id = $1 AND i.id = f.integration_id
    JOIN webhook_endpoints w ON w.tenant_id = $1
    WHERE w.enabled
      AND (cardinality(w.event_types) = 0 OR 'sync_run.finished' = ANY(w.event_types))
)
SELECT * FROM finished

-- name: sync_runs_list
-- Newest first; $3 is the seq of the previous page's last run.
SELECT * FROM sync_runs
WHERE tenant_id = $1 AND integration_id = $2 AND ($3::bigint IS NULL OR seq < $3)
ORDER BY seq DESC
LIMIT $4

-- name: sync_cursor_get
-- Where the next sync continues, and whose account the credentials are (if known).
SELECT i.cursor, c.account
FROM integrations i LEFT JOIN credentials c
    ON c.tenant_id = i.tenant_id AND c.integration_id = i.id
WHERE i.tenant_id = $1 AND i.id = $2


-- name: sync_page_commit
-- One page (or part of a page) of a sync run, in one statement: its records ($3 ids, $4 their
-- JSON text, each id once), the records the provider reported deleted ($7), at the end of a
-- full listing ($8) the records the listing did not see, the cursor ($9) with the record
-- count, the run's counters and lease ($10 run, $11 full_resync, $12 lease expiry, $14
-- records rejected with $15 an example, $16 whether this ends a provider page), the change
-- feed, the records.changed webhook ($17 event id, at most $18 ids of each kind in it), and
-- with $19 the run's successful end (see `finished`).
-- New and changed records get the data, the update time $6 and the next change numbers;
-- unchanged ones keep their number and are only marked as seen by the listing $5 (NULL for a
-- page of changes), so an unchanged feed rewrites nothing and emits no change. Deleted records
-- become tombstones (data cleared) with the numbers after those; a record sent again over its
-- tombstone is written anew. A page id is never deleted by the same page (it is in `changed` or
-- `unchanged`, never in `doomed`), and PostgreSQL runs every data-modifying part whether or
-- not it is read.
-- Change numbers start after the integration's `change_seq`, read from the row the caller holds
-- locked (`holder`), so they commit in order. The fence: nothing is written unless the
-- integration still has the run's lease version $13, and the counters move only while the run
-- is RUNNING; no row back means the claim was lost and the caller must roll back.
-- Cost: a page costs the same on its sync's first page as on its hundredth, whatever the
-- planner believes about `records` (a cached generic plan knows neither the page's size nor
-- the integration's): records are found one id at a time on the primary key (LATERAL …
-- LIMIT 1; migration 0010 keeps the feed's index out of it), and written by one upsert whose
-- conflict check is the primary key too. Only the end of a full listing ($8, a one-time
-- filter) reads all the integration's records.
WITH page AS MATERIALIZED (
    SELECT record_id, data::jsonb AS data FROM unnest($3::text[], $4::text[]) AS p (record_id, data)
), holder AS (
    SELECT change_seq, revision FROM integrations
    WHERE tenant_id = $1 AND id = $2 AND lease_version = $13
), existing AS MATERIALIZED (
    SELECT p.record_id, r.data, r.listing, r.updated_at, r.seq
    FROM page p CROSS JOIN LATERAL (
        SELECT r.data, r.listing, r.updated_at, r.seq FROM records r
        WHERE r.tenant_id = $1 AND r.integration_id = $2 AND r.record_id = p.record_id
        LIMIT 1
    ) r
), changed AS MATERIALIZED (
    SELECT p.record_id, p.data, row_number() OVER (ORDER BY p.record_id) AS n
    FROM page p LEFT JOIN existing e ON e.record_id = p.record_id
    WHERE e.data IS DISTINCT FROM p.data
), unchanged AS MATERIALIZED (
    -- Seen again as it is: only the listing that saw it changes.
    SELECT e.record_id, e.data, e.updated_at, e.seq
    FROM existing e JOIN page p ON p.record_id = e.record_id
    WHERE e.data = p.data AND e.listing IS DISTINCT FROM $5
), doomed AS MATERIALIZED (
    SELECT d.record_id,
           (SELECT count(*) FROM changed) + row_number() OVER (ORDER BY d.record_id) AS n
    FROM (
        SELECT g.record_id
        FROM unnest($7::text[]) AS g (record_id) CROSS JOIN LATERAL (
            SELECT 1 FROM records r
            WHERE r.tenant_id = $1 AND r.integration_id = $2 AND r.record_id = g.record_id
              AND r.deleted_at IS NULL
            LIMIT 1
        ) r
        UNION
        SELECT r.record_id FROM records r
        WHERE r.tenant_id = $1 AND r.integration_id = $2 AND $8 AND r.deleted_at IS NULL
          AND r.listing IS DISTINCT FROM $5
    ) d
    WHERE NOT EXISTS (SELECT FROM page p WHERE p.record_id = d.record_id)
), written AS (
    -- Every row the page changes, in one pass: new and changed records, the listing's mark on
    -- unchanged ones (their data, time and number as they are), tombstones.
    INSERT INTO records (tenant_id, integration_id, record_id, data, listing, updated_at, seq,
                         deleted_at)
    SELECT $1, $2, w.record_id, w.data, w.listing, w.updated_at, w.seq, w.deleted_at
    FROM (
        SELECT c.record_id, c.data, $5::uuid AS listing, $6::timestamptz AS updated_at,
               h.change_seq + c.n AS seq, NULL::timestamptz AS deleted_at
        FROM changed c CROSS JOIN holder h
        UNION ALL
        SELECT u.record_id, u.data, $5, u.updated_at, u.seq, NULL
        FROM unchanged u CROSS JOIN holder h
        UNION ALL
        SELECT d.record_id, NULL, NULL, $6, h.change_seq + d.n, $6
        FROM doomed d CROSS JOIN holder h
    ) w
    ON CONFLICT (tenant_id, integration_id, record_id) DO UPDATE
        SET data = excluded.data, listing = excluded.listing, updated_at = excluded.updated_at,
            seq = excluded.seq, deleted_at = excluded.deleted_at
    RETURNING 1
), counts AS (
    -- A tombstone in the page is a record coming back: it counts as inserted.
    SELECT (SELECT count(*) FROM page)
           - (SELECT count(*) FROM existing WHERE data IS NOT NULL) AS inserted,
           (SELECT count(*) FROM changed) AS written,
           (SELECT count(*) FROM doomed) AS deleted
), moved AS (
    UPDATE integrations i SET
        cursor = $9, record_count = i.record_count + c.inserted - c.deleted,
        change_seq = i.change_seq + c.written + c.deleted
    FROM counts c
    WHERE i.tenant_id = $1 AND i.id = $2 AND i.lease_version = $13
    RETURNING i.record_count
), progress AS (
    UPDATE sync_runs s SET
        pages = s.pages + CASE WHEN $16 THEN 1 ELSE 0 END,
        records_upserted = s.records_upserted + c.written,
        records_deleted = s.records_deleted + c.deleted, full_resync = s.full_resync OR $11,
        lease_expires_at = CASE WHEN $19 THEN NULL ELSE $12::timestamptz END,
        records_rejected = s.records_rejected + $14,
        rejected_example = CASE WHEN s.rejected_example = '' THEN $15 ELSE s.rejected_example END,
        outcome = CASE WHEN $19 THEN 'SUCCEEDED' ELSE s.outcome END,
        ended_at = CASE WHEN $19 THEN $6::timestamptz ELSE s.ended_at END
    FROM counts c
    WHERE s.tenant_id = $1 AND s.id = $10 AND s.outcome = 'RUNNING'
    RETURNING s.*
), finished AS (
    -- The run's last page ($19) ends it SUCCEEDED, with its sync_run.finished webhook ($20
    -- event id, $21 the payload's parts known before the write; the counters are the row's),
    -- as sync_run_finish does for every other end.
    INSERT INTO webhook_deliveries (tenant_id, endpoint_id, event_id, event_type,
                                    integration_id, revision, payload, created_at,
                                    next_attempt_at)
    SELECT $1, w.id, $20, 'sync_run.finished', $2, h.revision,
           jsonb_build_object('integration_id', $2::uuid, 'sync_run',
               $21::jsonb || jsonb_build_object(
                   'pages', p.pages, 'records_upserted', p.records_upserted,
                   'records_deleted', p.records_deleted, 'full_resync', p.full_resync)),
           $6, $6
    FROM progress p CROSS JOIN holder h JOIN webhook_endpoints w ON w.tenant_id = $1
    WHERE $19 AND w.enabled
      AND (cardinality(w.event_types) = 0 OR 'sync_run.finished' = ANY(w.event_types))
), hooks AS (
    INSERT INTO webhook_deliveries (tenant_id, endpoint_id, event_id, event_type,
                                    integration_id, revision, payload, created_at,
                                    next_attempt_at)
    SELECT $1, w.id, $17, 'records.changed', $2, h.revision,
           jsonb_build_object(
               'integration_id', $2::uuid, 'sync_run_id', $10::uuid,
               'sequence_from', h.change_seq + 1,
               'sequence_through', h.change_seq + c.written + c.deleted,
               'upserted', c.written, 'deleted', c.deleted,
               'upserted_ids', (SELECT coalesce(jsonb_agg(record_id ORDER BY n), '[]')
                                FROM changed WHERE n <= $18),
               'deleted_ids', (SELECT coalesce(jsonb_agg(record_id ORDER BY n), '[]')
                               FROM doomed WHERE n - c.written <= $18),
               'ids_truncated', c.written > $18 OR c.deleted > $18),
           $6, $6
    FROM holder h CROSS JOIN counts c JOIN webhook_endpoints w ON w.tenant_id = $1
    WHERE w.enabled AND c.written + c.deleted > 0
      AND (cardinality(w.event_types) = 0 OR 'records.changed' = ANY(w.event_types))
)
SELECT m.record_count AS integration_record_count, p.* FROM moved m CROSS JOIN progress p

-- name: sync_runs_compact
-- One batch of tenant $1's sync runs that ended before $2, at most $3, keeping each
-- integration's latest run however old (it says how the integration last synced).
WITH doomed AS (
    SELECT r.integration_id, r.seq
    FROM sync_runs r
    WHERE r.tenant_id = $1 AND r.ended_at < $2
      AND r.seq < (SELECT max(m.seq) FROM sync_runs m
                   WHERE m.tenant_id = r.tenant_id AND m.integration_id = r.integration_id)
    LIMIT $3
), gone AS (
    DELETE FROM sync_runs s USING doomed d
    WHERE s.tenant_id = $1 AND s.integration_id = d.integration_id AND s.seq = d.seq
    RETURNING 1
)
SELECT count(*) FROM gone
