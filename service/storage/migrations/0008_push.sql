-- Push channels (Google Calendar events.watch) and each integration's push state. tenant_id
-- leads every key (see 0001); the two due-time indexes are explained where they are created.

-- The push state the API shows (service.domain.push.Push) and its bookkeeping: when the channel
-- reconciler next looks (`push_check_at`), whether a notification awaits a sync
-- (`push_pending`, `push_notified_at`) and the safety net's interval while a channel is open.
ALTER TABLE integrations
    ADD COLUMN push_state         text        NOT NULL DEFAULT 'OFF',
    ADD COLUMN push_reason        text        NOT NULL DEFAULT '',
    ADD COLUMN push_expires_at    timestamptz,
    ADD COLUMN push_retry_at      timestamptz,
    ADD COLUMN push_check_at      timestamptz,
    ADD COLUMN push_pending       boolean     NOT NULL DEFAULT false,
    ADD COLUMN push_notified_at   timestamptz,
    ADD COLUMN push_poll_interval interval;

-- The reconciler's sweep: "whose channel needs a look now, across all tenants". Like
-- integrations_due, across tenants by nature and not unique; partial, so integrations with
-- nothing to do cost nothing.
CREATE INDEX integrations_push_due ON integrations (push_check_at)
    WHERE push_check_at IS NOT NULL;

-- Every channel we opened and have not yet seen stopped. A channel belongs to the
-- configuration and credentials it was opened with (`config`, `credentials_set_at`): when
-- either changes it is replaced. `token_sealed` is the per-channel secret Google echoes in
-- every notification, sealed like credentials (bound to this row). A channel that must go
-- (replaced, no longer wanted, its integration deleted) is retired: the reconciler stops it at
-- `stop_at` (retried later when that fails); the row goes once the provider stopped it, or
-- once it expired (nothing is left to stop).
--
-- No foreign key to integrations, on purpose: a deleted integration's channel must still be
-- stopped, and channels.stop needs the resource id kept here. Delete copies the integration's
-- sealed credentials into `orphan_credentials` (still bound to the integration's identity) so
-- the stop can be authorised; they go with the row.
CREATE TABLE push_channels (
    tenant_id          text        NOT NULL,
    channel_id         text        NOT NULL,
    integration_id     uuid        NOT NULL,
    connector_type     text        NOT NULL,
    token_sealed       bytea       NOT NULL,
    resource_id        text        NOT NULL,
    config             jsonb       NOT NULL,
    credentials_set_at timestamptz,
    opened_at          timestamptz NOT NULL,
    expires_at         timestamptz NOT NULL,
    last_message       bigint      NOT NULL DEFAULT 0,
    stop_at            timestamptz,
    stop_attempts      integer     NOT NULL DEFAULT 0,
    orphan_credentials bytea,
    PRIMARY KEY (tenant_id, channel_id),
    CHECK (length(channel_id) <= 64)
);
CREATE INDEX push_channels_by_integration ON push_channels (tenant_id, integration_id);
-- Stops to make, across tenants (same reasoning as integrations_push_due).
CREATE INDEX push_channels_stop_due ON push_channels (stop_at) WHERE stop_at IS NOT NULL;
