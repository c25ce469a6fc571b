-- Claims of background work (syncs and probes) and lateness notices (see
-- migrations/0005_scheduler.sql). Every time ($1 and the like) is the service's clock.

-- name: claim_due
-- Up to $3 integrations of connector type $2 whose next attempt is due at $1, earliest first,
-- claimed by worker $6: each one's lease version (the fencing token of the work) moves on, and
-- the claim holds until $4 for a sync, $5 for a probe (the breaker is open, and no probe has
-- passed yet: then the attempt is the trial sync). Skipped: rows
-- another replica is claiming at this moment (SKIP LOCKED, so replicas never wait for each
-- other), unexpired claims, and integrations whose sync run is alive (its lease covers it).
WITH due AS (
    SELECT i.tenant_id, i.id
    FROM integrations i
    WHERE i.next_sync_at <= $1 AND i.status IN ('ACTIVE', 'ERROR')
      AND i.connector_type = $2
      AND (i.claim_expires_at IS NULL OR i.claim_expires_at <= $1)
      AND NOT EXISTS (
          SELECT 1 FROM sync_runs r
          WHERE r.tenant_id = i.tenant_id AND r.integration_id = i.id
            AND r.outcome = 'RUNNING' AND r.lease_expires_at > $1)
    ORDER BY i.next_sync_at
    LIMIT $3
    FOR UPDATE OF i SKIP LOCKED
)
UPDATE integrations i SET
    lease_version = i.lease_version + 1,
    claim_expires_at = CASE WHEN i.breaker_open AND NOT i.breaker_trial THEN $5::timestamptz
                            ELSE $4::timestamptz END,
    claimed_by = $6
FROM due
WHERE i.tenant_id = due.tenant_id AND i.id = due.id
RETURNING i.tenant_id, i.id, i.connector_type, i.lease_version,
          i.breaker_open AND NOT i.breaker_trial AS probe

-- name: claim_take
-- A claimed sync starts: its run's lease takes over from the claim. No row: the claim was
-- lost (it expired and another worker claimed the integration since).
UPDATE integrations SET claim_expires_at = NULL, claimed_by = NULL
WHERE tenant_id = $1 AND id = $2 AND lease_version = $3
RETURNING lease_version

-- name: claim_now
-- Work started by a person (the Sync RPC) claims the integration at once: a new version, so
-- whatever was claimed before (a pending scheduled sync, a probe in flight) cannot write.
UPDATE integrations SET lease_version = lease_version + 1, claim_expires_at = NULL,
    claimed_by = NULL
WHERE tenant_id = $1 AND id = $2
RETURNING lease_version

-- name: claim_release
-- Hand a claim back (the probe wrote its outcome, or this worker stops): the integration is
-- free for the next sweep of any replica. Only while the claim is still ours.
UPDATE integrations SET claim_expires_at = NULL, claimed_by = NULL
WHERE tenant_id = $1 AND id = $2 AND lease_version = $3

-- name: late_due
-- Integrations that became late at or before $1 and whose lateness has not been recorded.
SELECT tenant_id, id, late_at FROM integrations
WHERE late_at <= $1 AND late_noticed IS DISTINCT FROM late_at
ORDER BY late_at
LIMIT $2

-- name: late_notice
-- Take the notice of one lateness (row-locked until the caller's event commits). No row:
-- another replica took it, a success moved late_at on meanwhile, or someone holds the row
-- (SKIP LOCKED: a notice never waits, e.g. on a stalled replica; a later sweep retries).
WITH target AS (
    SELECT tenant_id, id FROM integrations
    WHERE tenant_id = $1 AND id = $2 AND late_at = $3
      AND late_noticed IS DISTINCT FROM late_at
    FOR UPDATE SKIP LOCKED
)
UPDATE integrations i SET late_noticed = i.late_at
FROM target
WHERE i.tenant_id = target.tenant_id AND i.id = target.id
RETURNING i.late_at
