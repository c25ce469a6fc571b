-- Reading the synced records and their change feed, and the retention of tombstones (see
-- migrations/0007_changes_and_webhooks.sql). Each read is one statement, so it is one snapshot:
-- the integration's numbers and the rows agree.

-- name: records_snapshot_page
-- A page of the integration's live records ordered by id, after id $4, as of change number
-- $3 (NULL on the first page: the integration's current number, returned as `snapshot`).
-- Records changed or created after the snapshot are left out: the feed after it brings them.
-- No row at all: the integration does not exist (for this tenant).
WITH i AS (
    SELECT coalesce($3::bigint, change_seq) AS snapshot FROM integrations
    WHERE tenant_id = $1 AND id = $2
)
SELECT i.snapshot, r.record_id, r.data, r.updated_at, r.seq
FROM i LEFT JOIN LATERAL (
    SELECT record_id, data, updated_at, seq FROM records
    WHERE tenant_id = $1 AND integration_id = $2 AND deleted_at IS NULL
      AND seq <= i.snapshot AND ($4::text IS NULL OR record_id > $4)
    ORDER BY record_id
    LIMIT $5
) r ON true
ORDER BY r.record_id

-- name: record_changes
-- At most $4 changes of the integration after change number $3, in order: each record once, at
-- its latest state (a tombstone for a deleted one), with the integration's last number and its
-- purge watermark. No row at all: the integration does not exist (for this tenant).
WITH i AS (
    SELECT change_seq, changes_purged_through FROM integrations
    WHERE tenant_id = $1 AND id = $2
)
SELECT i.change_seq AS head, i.changes_purged_through AS purged_through,
       r.record_id, r.data, r.updated_at, r.seq, r.deleted_at
FROM i LEFT JOIN LATERAL (
    SELECT record_id, data, updated_at, seq, deleted_at FROM records
    WHERE tenant_id = $1 AND integration_id = $2 AND seq > $3
    ORDER BY seq
    LIMIT $4
) r ON true
ORDER BY r.seq

-- name: tombstones_due
-- Integrations holding tombstones older than $1 (the retention job's work list).
SELECT DISTINCT tenant_id, integration_id FROM records
WHERE deleted_at IS NOT NULL AND deleted_at < $1
LIMIT $2

-- name: tombstones_purge
-- Remove at most $4 of the integration's tombstones older than $3 and move its watermark to
-- the highest number removed, in one statement (a feed read sees both or neither). The
-- integration's row is locked first, as page commits lock it, so the two never deadlock; one
-- that is busy is skipped (SKIP LOCKED) for the next pass.
WITH held AS (
    SELECT id FROM integrations WHERE tenant_id = $1 AND id = $2 FOR UPDATE SKIP LOCKED
), doomed AS (
    SELECT r.record_id FROM records r, held
    WHERE r.tenant_id = $1 AND r.integration_id = $2
      AND r.deleted_at IS NOT NULL AND r.deleted_at < $3
    LIMIT $4
), gone AS (
    DELETE FROM records r USING doomed d
    WHERE r.tenant_id = $1 AND r.integration_id = $2 AND r.record_id = d.record_id
    RETURNING r.seq
), watermark AS (
    UPDATE integrations i SET
        changes_purged_through = greatest(i.changes_purged_through, g.through)
    FROM (SELECT max(seq) AS through FROM gone HAVING count(*) > 0) g
    WHERE i.tenant_id = $1 AND i.id = $2
)
SELECT count(*) FROM gone
