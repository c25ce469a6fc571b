-- name: watch_head
-- The tenant's newest committed revision; 0 before its first change.
SELECT coalesce((SELECT revision FROM tenant_revisions WHERE tenant_id = $1), 0)

-- name: watch_snapshot
-- The integrations a WatchStatus filter selects; run in the same REPEATABLE READ transaction
-- as watch_head so the snapshot is exactly the state as of that revision.
SELECT i.*, c.kind AS credentials_kind, c.set_at AS credentials_set_at
FROM integrations i LEFT JOIN credentials c
    ON c.tenant_id = i.tenant_id AND c.integration_id = i.id
WHERE i.tenant_id = $1
  AND (cardinality($2::uuid[]) = 0 OR i.id = ANY($2::uuid[]))
  AND (cardinality($3::text[]) = 0 OR i.status = ANY($3::text[]))
  AND ($4::text = '' OR i.connector_type = $4)
ORDER BY i.created_at, i.id

-- name: watch_history
-- A page of a tenant's history after revision $2 and up to $3, oldest first, with the
-- compaction watermark and the head. One statement is one snapshot, so a page can never
-- straddle a compaction unnoticed. Always returns a row: with no events, the event columns
-- are NULL.
WITH bounds AS (
    SELECT coalesce((SELECT compacted_through FROM history_compaction
                     WHERE tenant_id = $1), 0) AS compacted_through,
           coalesce((SELECT revision FROM tenant_revisions WHERE tenant_id = $1), 0) AS head
)
SELECT b.compacted_through, b.head, e.*
FROM bounds b
LEFT JOIN LATERAL (
    SELECT * FROM events
    WHERE tenant_id = $1 AND revision > $2 AND revision <= $3
    ORDER BY revision
    LIMIT $4
) e ON true
ORDER BY e.revision

-- name: history_tenants
-- Every tenant that has history (the retention job's work list).
SELECT tenant_id FROM tenant_revisions ORDER BY tenant_id

-- name: history_compact
-- One batch of compaction for tenant $1: events up to the newest one that occurred before $2,
-- except the latest event of each integration that still exists (it explains its current
-- status), at most $3 of them, oldest first. The watermark moves in the same statement, so a
-- reader sees either the events or the watermark that says they are gone.
WITH boundary AS (
    SELECT max(revision) AS through FROM events WHERE tenant_id = $1 AND occurred_at < $2
), doomed AS (
    SELECT e.revision
    FROM events e, boundary b
    WHERE e.tenant_id = $1 AND e.revision <= b.through
      AND NOT EXISTS (SELECT 1 FROM integrations i
                      WHERE i.tenant_id = e.tenant_id AND i.id = e.integration_id
                        AND i.revision = e.revision)
    ORDER BY e.revision
    LIMIT $3
), deleted AS (
    DELETE FROM events e USING doomed d
    WHERE e.tenant_id = $1 AND e.revision = d.revision
    RETURNING e.revision
), watermark AS (
    INSERT INTO history_compaction AS h (tenant_id, compacted_through, compacted_at)
    SELECT $1, max(revision), $4 FROM deleted HAVING count(*) > 0
    ON CONFLICT (tenant_id) DO UPDATE
        SET compacted_through = greatest(h.compacted_through, excluded.compacted_through),
            compacted_at = excluded.compacted_at
)
SELECT count(*) FROM deleted
