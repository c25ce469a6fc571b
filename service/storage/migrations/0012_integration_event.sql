-- One change's bookkeeping, written in one place: the tenant's next revision, the event, the
-- integration.status_changed webhook for every enabled endpoint of the tenant that wants it,
-- and the notification that wakes the watch feeds. change_insert, change_update and
-- change_delete (queries/integrations.sql) each write their own state and call this, so the
-- three cannot drift apart (procrastinate keeps its atomic steps in SQL the same way).
--
-- Taking the revision locks the tenant's revision row until commit, which orders commits by
-- revision (see 0001): the call must be the transaction's last write. p_hold first lets the
-- server end the transaction should this process stall while holding that lock (is_local:
-- this transaction only). p_state is the integration's stored state (NULL for a tombstone);
-- the event keeps it with the revision it was given.
CREATE FUNCTION record_integration_event(
    p_tenant text, p_integration uuid, p_hold text,
    p_trigger text, p_from text, p_to text, p_reason text, p_actor text, p_error jsonb,
    p_state jsonb, p_at timestamptz, p_connector text, p_hook_id uuid, p_hook jsonb
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    taken bigint;
BEGIN
    PERFORM set_config('idle_in_transaction_session_timeout', p_hold, true);
    INSERT INTO tenant_revisions AS t (tenant_id, revision) VALUES (p_tenant, 1)
    ON CONFLICT (tenant_id) DO UPDATE SET revision = t.revision + 1
    RETURNING t.revision INTO taken;
    INSERT INTO events (tenant_id, revision, integration_id, trigger, from_status, to_status,
                        reason, actor, error, state, occurred_at, connector_type)
    VALUES (p_tenant, taken, p_integration, p_trigger, p_from, p_to, p_reason, p_actor, p_error,
            CASE WHEN p_state IS NULL THEN NULL
                 ELSE jsonb_set(p_state, '{revision}', to_jsonb(taken)) END,
            p_at, p_connector);
    INSERT INTO webhook_deliveries (tenant_id, endpoint_id, event_id, event_type,
                                    integration_id, revision, payload, created_at,
                                    next_attempt_at)
    SELECT p_tenant, w.id, p_hook_id, 'integration.status_changed', p_integration, taken,
           p_hook, p_at, p_at
    FROM webhook_endpoints w
    WHERE w.tenant_id = p_tenant AND w.enabled
      AND (cardinality(w.event_types) = 0 OR 'integration.status_changed' = ANY(w.event_types));
    PERFORM pg_notify('integration_events', p_tenant || ':' || taken);
    RETURN taken;
END
$$;
