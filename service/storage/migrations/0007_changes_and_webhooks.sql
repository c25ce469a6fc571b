-- The change feed of synced records, and webhooks. tenant_id leads every key and index (see
-- 0001); the exceptions are explained where they are created.

-- The change feed lives in the records table itself, so a page write costs no extra row per
-- record. `seq` is the record's change number: the integration's next number whenever the
-- record is inserted, its data changes, or it is deleted; an unchanged record keeps its number,
-- so a resync of unchanged data changes nothing. A deleted record stays as a tombstone (data
-- cleared, `deleted_at` set) until the retention window lets it go. Numbers are taken under
-- the integration's row lock, from `integrations.change_seq`, so they commit in order: a reader
-- that has seen number N never later finds a smaller one.
ALTER TABLE records
    ADD COLUMN seq        bigint,
    ADD COLUMN deleted_at timestamptz,
    ALTER COLUMN data DROP NOT NULL;

-- Existing records get numbers in id order, and their integrations the count as the last
-- number taken.
UPDATE records r SET seq = n.seq
FROM (SELECT tenant_id, integration_id, record_id,
             row_number() OVER (PARTITION BY tenant_id, integration_id ORDER BY record_id) AS seq
      FROM records) n
WHERE r.tenant_id = n.tenant_id AND r.integration_id = n.integration_id
  AND r.record_id = n.record_id;
ALTER TABLE records ALTER COLUMN seq SET NOT NULL;
ALTER TABLE records ADD CONSTRAINT records_tombstone_has_no_data
    CHECK ((deleted_at IS NULL) = (data IS NOT NULL));

-- The feed: an integration's changes after a number, in order. Unique: one change, one number.
CREATE UNIQUE INDEX records_changes ON records (tenant_id, integration_id, seq);
-- The retention job finds old tombstones without looking at live records.
CREATE INDEX records_tombstones ON records (tenant_id, integration_id, deleted_at)
    WHERE deleted_at IS NOT NULL;

-- `change_seq`: the last change number taken. `changes_purged_through`: the highest number of
-- a tombstone the retention job removed; a feed cursor below it may have missed a deletion
-- and is refused (CURSOR_EXPIRED). Written by page commits and the retention job only, never
-- by the lifecycle's row writes.
ALTER TABLE integrations
    ADD COLUMN change_seq             bigint NOT NULL DEFAULT 0,
    ADD COLUMN changes_purged_through bigint NOT NULL DEFAULT 0;
UPDATE integrations i SET change_seq = c.n
FROM (SELECT tenant_id, integration_id, count(*) AS n FROM records
      GROUP BY tenant_id, integration_id) c
WHERE i.tenant_id = c.tenant_id AND i.id = c.integration_id;

-- Webhook endpoints of a tenant. The signing secret is sealed like credentials (the endpoint's
-- identity bound as associated data) and holds the current secret and, during a rotation's
-- overlap, the previous one. `event_types` empty means every type. An endpoint whose every
-- attempt failed since `failing_since` for long enough is disabled (`disabled_reason` says
-- why); `version` is its etag.
CREATE TABLE webhook_endpoints (
    tenant_id       text        NOT NULL,
    id              uuid        NOT NULL,
    url             text        NOT NULL,
    description     text        NOT NULL DEFAULT '',
    event_types     text[]      NOT NULL DEFAULT '{}',
    enabled         boolean     NOT NULL DEFAULT true,
    disabled_reason text        NOT NULL DEFAULT '',
    disabled_at     timestamptz,
    failing_since   timestamptz,
    secret_sealed   bytea       NOT NULL,
    previous_secret_expires_at timestamptz,
    version         bigint      NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX webhook_endpoints_newest ON webhook_endpoints (tenant_id, created_at DESC, id DESC);

-- The outbox: one row per (endpoint, event), written by the same statement as the event
-- itself (a status change, a sync run's end, a page of record changes), so a crash can lose
-- an event only together with the change it reports. `payload` is the whole body sent.
-- A sender claims a due row like the scheduler claims integrations: `lease_version` is the
-- fencing token (every claim moves it; an attempt's outcome is written only while it still
-- holds), `claim_expires_at` how long the claim holds should its replica die. `attempts_log`
-- keeps every attempt (status code, latency, error), bounded by the retry horizon.
CREATE TABLE webhook_deliveries (
    tenant_id        text        NOT NULL,
    endpoint_id      uuid        NOT NULL,
    event_id         uuid        NOT NULL,
    event_type       text        NOT NULL,
    integration_id   uuid,
    revision         bigint      NOT NULL,
    payload          jsonb       NOT NULL,
    state            text        NOT NULL DEFAULT 'PENDING',
    attempts         integer     NOT NULL DEFAULT 0,
    attempts_log     jsonb       NOT NULL DEFAULT '[]',
    created_at       timestamptz NOT NULL,
    next_attempt_at  timestamptz,
    finished_at      timestamptz,
    lease_version    bigint      NOT NULL DEFAULT 0,
    claim_expires_at timestamptz,
    claimed_by       text,
    PRIMARY KEY (tenant_id, endpoint_id, event_id),
    FOREIGN KEY (tenant_id, endpoint_id) REFERENCES webhook_endpoints (tenant_id, id)
        ON DELETE CASCADE
);
-- The delivery log of an endpoint, newest first.
CREATE INDEX webhook_deliveries_newest
    ON webhook_deliveries (tenant_id, endpoint_id, created_at DESC, event_id DESC);
-- The senders' sweep: "what is due now, across all tenants" (like integrations_due in 0005,
-- the one kind of query that is across tenants by nature). Partial: only pending rows.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE state = 'PENDING';
-- The retention job's work list: finished deliveries by age, across tenants likewise.
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (finished_at)
    WHERE finished_at IS NOT NULL;
