-- Hardening: the half-open breaker, records a sync had to reject, deletions that say which
-- connector they were, and the retention of sync runs. tenant_id leads every key (see 0001).

-- Half-open: a probe passed while the breaker was open; the next attempt is the trial sync
-- that must succeed before the breaker closes (service.domain.breaker, rule 7).
ALTER TABLE integrations ADD COLUMN breaker_trial boolean NOT NULL DEFAULT false;

-- Records a sync could not store (PostgreSQL cannot hold them, or over the size limit) or that
-- a later record with the same id superseded on the same page: how many, and one example.
ALTER TABLE sync_runs
    ADD COLUMN records_rejected bigint NOT NULL DEFAULT 0,
    ADD COLUMN rejected_example text   NOT NULL DEFAULT '';

-- Every event names its integration's connector type, so a WatchStatus filtered by connector
-- type can tell whether a deletion (whose event carries no state) is one of its own.
ALTER TABLE events ADD COLUMN connector_type text;
UPDATE events e SET connector_type = i.connector_type
FROM integrations i WHERE i.tenant_id = e.tenant_id AND i.id = e.integration_id;
UPDATE events SET connector_type = state->>'connector_type'
WHERE connector_type IS NULL AND state IS NOT NULL;

-- The retention of sync runs finds old ones per tenant without scanning every run.
CREATE INDEX sync_runs_by_age ON sync_runs (tenant_id, ended_at);
