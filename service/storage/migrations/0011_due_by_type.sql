-- The sweep claims due work one connector type at a time (each type has its own concurrency
-- limit), so "what is due now" is always asked for one type. On `integrations_due`
-- (next_sync_at alone) a type with nothing due, or with less due than the others, made the
-- scan visit every due integration of every other type, and a fleet of 100,000 due feeds
-- cost each sweep a sequential scan per idle type (80 ms each, several per sweep, on the
-- path of every claim). Leading with the type makes each claim a range scan of that type's
-- due integrations only. As before, across tenants on purpose (see 0005), and partial.
DROP INDEX integrations_due;
CREATE INDEX integrations_due ON integrations (connector_type, next_sync_at)
    WHERE next_sync_at IS NOT NULL AND status IN ('ACTIVE', 'ERROR');
