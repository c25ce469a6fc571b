-- The foundation: integrations, their sealed credentials, the event log, idempotency keys.
-- tenant_id leads every primary key, unique constraint and index so the schema can be
-- distributed by tenant (e.g. Citus) without redesign.

-- One revision counter per tenant. A writer takes the next revision as the *last* statement
-- of its transaction and holds the row lock until commit, so revisions commit in order and
-- a reader that has seen revision N can never later find an N-1 (no gaps, no reordering).
CREATE TABLE tenant_revisions (
    tenant_id text PRIMARY KEY,
    revision  bigint NOT NULL
);

CREATE TABLE integrations (
    tenant_id             text        NOT NULL,
    id                    uuid        NOT NULL,
    display_name          text        NOT NULL,
    connector_type        text        NOT NULL,
    status                text        NOT NULL,
    sync_state            text,
    config                jsonb       NOT NULL DEFAULT '{}',
    missing_config_fields text[]      NOT NULL DEFAULT '{}',
    last_error            jsonb,
    consecutive_failures  integer     NOT NULL DEFAULT 0,
    breaker_open          boolean     NOT NULL DEFAULT false,
    breaker_opened_at     timestamptz,
    next_attempt_at       timestamptz,
    breaker_threshold     integer,
    probe_interval        interval,
    sync_interval         interval    NOT NULL,
    last_synced_at        timestamptz,
    next_sync_at          timestamptz,
    record_count          bigint      NOT NULL DEFAULT 0,
    cursor                jsonb,
    revision              bigint      NOT NULL,
    created_at            timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX integrations_newest ON integrations (tenant_id, created_at DESC, id DESC);

-- Credentials sealed with AES-256-GCM, the integration id bound as associated data.
CREATE TABLE credentials (
    tenant_id      text        NOT NULL,
    integration_id uuid        NOT NULL,
    kind           text        NOT NULL,
    sealed         bytea       NOT NULL,
    set_at         timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, integration_id),
    FOREIGN KEY (tenant_id, integration_id) REFERENCES integrations (tenant_id, id)
        ON DELETE CASCADE
);

-- The history of every integration, and the truth behind WatchStatus. A deleted
-- integration's events go with it, but for its tombstone.
CREATE TABLE events (
    tenant_id      text        NOT NULL,
    revision       bigint      NOT NULL,
    integration_id uuid        NOT NULL,
    trigger        text        NOT NULL,
    from_status    text,
    to_status      text,
    reason         text        NOT NULL DEFAULT '',
    actor          text        NOT NULL,
    error          jsonb,
    state          jsonb,
    occurred_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, revision)
);
CREATE INDEX events_by_integration ON events (tenant_id, integration_id, revision DESC);

-- Create's idempotency keys, kept for the request-id TTL.
CREATE TABLE create_requests (
    tenant_id      text        NOT NULL,
    request_id     text        NOT NULL,
    integration_id uuid        NOT NULL,
    fingerprint    text        NOT NULL,
    created_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, request_id)
);
CREATE INDEX create_requests_age ON create_requests (tenant_id, created_at);
