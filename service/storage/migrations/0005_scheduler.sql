-- The background sync loop and the breaker. tenant_id leads every key (see 0001); the one
-- exception, the due-time index, is explained where it is created.

-- The breaker's full state (service.domain.breaker.BreakerState): the probe schedule's step
-- and why nothing at all is attempted (PAUSED, DISCONNECTED). The probe step replaces the
-- probe interval column, which nothing ever wrote.
ALTER TABLE integrations
    ADD COLUMN breaker_slow_steps integer NOT NULL DEFAULT 0,
    ADD COLUMN breaker_halt       text,
    DROP COLUMN probe_interval;
UPDATE integrations SET breaker_halt = status WHERE status IN ('PAUSED', 'DISCONNECTED');

-- Claims. `lease_version` is the fencing token: every claim of an integration's work (a sync
-- started by the schedule or by the Sync RPC, a probe) increments it, and every write of that
-- work (a page and its cursor, a probe's outcome) must still see the version it was claimed
-- with. A worker that stalled (SIGSTOP, a partition) while another took over finds a newer
-- version and writes nothing. `claim_expires_at` covers a claim until its sync run starts
-- (the run's own lease takes over from there) or its probe has written its outcome; a claim
-- of a replica that died simply expires. `claimed_by` names the worker, for operators.
ALTER TABLE integrations
    ADD COLUMN lease_version    bigint NOT NULL DEFAULT 0,
    ADD COLUMN claim_expires_at timestamptz,
    ADD COLUMN claimed_by       text;

-- The sweep: "what is due now, across all tenants, earliest first". This is the one index
-- that does not lead with tenant_id, on purpose: the sweep is the one query that is across
-- tenants by nature, and a tenant-first index would make every sweep visit every tenant.
-- It is not unique, so a distributed engine can still place it shard by shard (each shard
-- indexes its own rows; the sweep then runs per shard). Partial: only integrations that sync
-- on their own are in it, so paused, disconnected and unconfigured ones cost nothing.
CREATE INDEX integrations_due ON integrations (next_sync_at)
    WHERE next_sync_at IS NOT NULL AND status IN ('ACTIVE', 'ERROR');

-- Lateness. `late_at` is when the integration becomes late unless a sync succeeds first
-- (twice its interval after the last success), written with every change; `late_noticed` is
-- the `late_at` for which the loop recorded a "late" event (so WatchStatus saw it). A success
-- moves `late_at` on, which re-arms the notice without anyone resetting it.
ALTER TABLE integrations
    ADD COLUMN late_at      timestamptz,
    ADD COLUMN late_noticed timestamptz;
UPDATE integrations SET late_at = COALESCE(last_synced_at, created_at) + 2 * sync_interval
WHERE status IN ('ACTIVE', 'ERROR');
-- Same reasoning as integrations_due: found across tenants, and only the unnoticed ones.
CREATE INDEX integrations_late ON integrations (late_at)
    WHERE late_at IS NOT NULL AND late_noticed IS DISTINCT FROM late_at;

-- Integrations that were ACTIVE or ERROR before the schedule existed are due now.
UPDATE integrations SET next_sync_at = COALESCE(next_sync_at, now())
WHERE status IN ('ACTIVE', 'ERROR');

-- Which claim a sync run belongs to (the integration's lease_version when it started) and
-- which worker ran it.
ALTER TABLE sync_runs
    ADD COLUMN lease_version bigint NOT NULL DEFAULT 0,
    ADD COLUMN worker        text   NOT NULL DEFAULT '';
