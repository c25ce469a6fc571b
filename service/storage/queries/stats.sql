-- Fleet-wide numbers for the metrics (service.observability.gauges), read every few seconds
-- by each replica, never per scrape. Across tenants on purpose: they are the operator's view.

-- name: stats_by_status
-- Integrations by status and breaker state: one grouped count (a sequential scan of the
-- table, ~10 ms per 100k rows), run periodically.
SELECT status, breaker_open, count(*) AS n,
       min(breaker_opened_at) FILTER (WHERE breaker_open) AS oldest_open
FROM integrations
GROUP BY status, breaker_open

-- name: stats_oldest_due
-- The oldest attempt that is due at $1 and that no replica works on: the scheduler's lag.
-- The integrations_due index leads with the connector type (claims ask for one type at a
-- time), so the connector types are found by skipping through it (one probe per type), and
-- each type's due range is walked from its start up to its first such row (the conditions
-- are claim_due's).
WITH RECURSIVE types AS (
    (SELECT connector_type FROM integrations
     WHERE next_sync_at IS NOT NULL AND status IN ('ACTIVE', 'ERROR')
     ORDER BY connector_type LIMIT 1)
    UNION ALL
    SELECT (SELECT i.connector_type FROM integrations i
            WHERE i.connector_type > t.connector_type
              AND i.next_sync_at IS NOT NULL AND i.status IN ('ACTIVE', 'ERROR')
            ORDER BY i.connector_type LIMIT 1)
    FROM types t
    WHERE t.connector_type IS NOT NULL
)
SELECT min(oldest.next_sync_at)
FROM types
CROSS JOIN LATERAL (
    SELECT i.next_sync_at
    FROM integrations i
    WHERE i.connector_type = types.connector_type
      AND i.next_sync_at <= $1 AND i.status IN ('ACTIVE', 'ERROR')
      AND (i.claim_expires_at IS NULL OR i.claim_expires_at <= $1)
      AND NOT EXISTS (
          SELECT 1 FROM sync_runs r
          WHERE r.tenant_id = i.tenant_id AND r.integration_id = i.id
            AND r.outcome = 'RUNNING' AND r.lease_expires_at > $1)
    ORDER BY i.next_sync_at
    LIMIT 1
) oldest

-- name: stats_migration
-- The newest schema migration applied (readiness compares it with the newest shipped).
SELECT coalesce(max(version), 0) FROM schema_migrations
